/**
 * Interrupted and mistyped (issue 14, item 8), as real `authkeep` processes against the real
 * oidc-provider: Ctrl-C (SIGINT) or SIGTERM while `login` waits for a browser that never calls back
 * releases the login's lock (no file left in locks/, and `doctor` exits 0); garbage pasted at the
 * `--no-browser` prompt is refused with the reason and asked again, and the sign-in completes.
 */
import assert from 'node:assert/strict';
import { chmod, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { startAuthorizationServer, startProtectedMcpServer } from '../../arena/testbed/index.js';
import { storeLayout } from '../../src/store/paths.js';
import { redirectUrlToPaste } from '../helpers/cli-paste-browser.js';
import { cliEnv, collect, runCliProcess, spawnCli, waitForOutput } from '../helpers/cli-run.js';

async function startServers(t: { after(fn: () => unknown): void }) {
  const as = await startAuthorizationServer();
  t.after(() => as.close());
  const server = await startProtectedMcpServer({ authorizationServer: as, discovery: 'header' });
  t.after(() => server.close());
  return { as, server };
}

async function lockFiles(home: string): Promise<string[]> {
  try {
    return await readdir(storeLayout(home).locksDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

for (const [signal, code] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
] as const) {
  test(`${signal} while login waits for the browser releases its lock; doctor exits 0`, async (t) => {
    const { server } = await startServers(t);
    const cli = await cliEnv(t);
    // A browser that opens (exits 0) and never visits the URL: the login waits for a callback.
    const browser = path.join(path.dirname(cli.home), 'silent-browser');
    await writeFile(browser, '#!/bin/sh\nexit 0\n');
    await chmod(browser, 0o755);

    const child = spawnCli(cli, ['login', server.url, '--allow-http'], { env: { BROWSER: browser } });
    const done = collect(child);
    await waitForOutput(child.stderr, /Waiting for you to finish signing in/);
    const held = await lockFiles(cli.home);
    assert.ok(
      held.some((name) => name.endsWith('.lock')),
      `the waiting login holds a lock: ${held.join(', ')}`,
    );

    child.kill(signal);
    const result = await done;
    assert.equal(result.code, code, `exits ${code} on ${signal}\n${result.stderr}`);
    assert.match(result.stderr, new RegExp(`interrupted \\(${signal}\\)`));
    assert.deepEqual(
      (await lockFiles(cli.home)).filter((name) => name.endsWith('.lock')),
      [],
      'no lock file left',
    );

    const doctor = await runCliProcess(cli, ['doctor']);
    assert.equal(doctor.code, 0, `doctor exits 0\n${doctor.stdout}${doctor.stderr}`);
    assert.doesNotMatch(doctor.stdout, /stale lock/);
  });
}

test('garbage pasted at the --no-browser prompt is refused and asked again; the real URL then signs in', async (t) => {
  const { server } = await startServers(t);
  const cli = await cliEnv(t);
  const child = spawnCli(cli, ['login', server.url, '--no-browser', '--allow-http'], {
    env: { BROWSER: 'false' },
    keepStdinOpen: true,
  });
  const done = collect(child);
  const [, authorizeUrl] = await waitForOutput(
    child.stderr,
    /\n {2}(http:\/\/\S+)\n[\s\S]*Paste that whole address here/,
  );
  const pasted = await redirectUrlToPaste(authorizeUrl as string);
  const redirect = new URL(pasted);

  // Not a URL; then the right address without its query (what a hasty copy gives).
  child.stdin.write('asdf jkl;\n');
  await waitForOutput(child.stderr, /the pasted text is not a URL[^\n]*\nPaste the address again and press Enter:\n/);
  child.stdin.write(`${redirect.origin}${redirect.pathname}\n`);
  await waitForOutput(child.stderr, /carries neither code nor error[^\n]*\nPaste the address again/);
  child.stdin.end(`${pasted}\n`);

  const result = await done;
  assert.equal(result.code, 0, `login exits 0\n${result.stderr}`);
  assert.match(result.stdout, /Signed in to /);
  assert.ok(!result.stderr.includes(redirect.searchParams.get('code') as string), 'the pasted code is never echoed');
  const token = await runCliProcess(cli, ['token', server.url, '--allow-http']);
  assert.equal(token.code, 0, token.stderr);
});
