/**
 * Attack class: a hostile authorization server puts shell syntax in its authorization_endpoint
 * (the sign-in URL the browser opener is handed), or a scheme that is not a web page. On Windows
 * `cmd /c start "" <url>` treats `&`, `|`, `^`, `<`, `>` as syntax (command execution, and honest
 * URLs cut at the first `&`). What must NOT happen: any shell on any platform, any argv in which
 * the URL is not exactly one intact element, any non-http(s) URL reaching an opener.
 *
 * The platform branches are checked through an injected spawn (the exact argv for win32, darwin
 * and linux, without running them); on this machine a real `$BROWSER` script records the argv it
 * received, from a real sign-in against a hostile AS.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { access, chmod, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { AuthKeeper, AuthkeepError } from '../../src/index.js';
import { createBrowserOpener, openInBrowser, type SpawnBrowser } from '../../src/session/browser.js';
import { tempHome } from '../helpers/bed.js';
import { asMetadata } from '../helpers/hostile-server.js';
import { hostileWorld } from '../helpers/hostile-world.js';

/** Every character cmd.exe or a POSIX shell would act on, in a URL a hostile AS could publish. */
const HOSTILE = `https://as.example.com/authorize?tenant=a&calc.exe|b^c<d>e"f'g$(touch pwned)\`touch pwned2\`;h&response_type=code`;

interface Spawned {
  command: string;
  args: readonly string[];
  shell: unknown;
}

function recordingSpawn(calls: Spawned[]): SpawnBrowser {
  return (command, args, options) => {
    calls.push({ command, args: [...args], shell: options.shell });
    const child = Object.assign(new EventEmitter(), { unref: () => child });
    queueMicrotask(() => child.emit('spawn'));
    return child as unknown as ReturnType<SpawnBrowser>;
  };
}

const PLATFORMS: Array<[NodeJS.Platform, (href: string) => Spawned]> = [
  [
    'win32',
    (href) => ({
      command: 'C:\\Windows\\System32\\rundll32.exe',
      args: ['url.dll,FileProtocolHandler', href],
      shell: false,
    }),
  ],
  ['darwin', (href) => ({ command: '/usr/bin/open', args: [href], shell: false })],
  ['linux', (href) => ({ command: 'xdg-open', args: [href], shell: false })],
];

for (const [platform, expected] of PLATFORMS) {
  test(`${platform}: the platform opener gets the URL as one argv element, with no shell`, async () => {
    const calls: Spawned[] = [];
    const open = createBrowserOpener({ platform, env: { SystemRoot: 'C:\\Windows' }, spawn: recordingSpawn(calls) });
    await open(HOSTILE);
    const href = new URL(HOSTILE).href;
    assert.deepEqual(calls, [expected(href)]);
    const [call] = calls;
    assert.ok(call && !/(^|[\\/])cmd(\.exe)?$/i.test(call.command), 'never cmd.exe');
    assert.ok(href.includes('&calc.exe|b^c'), 'the URL is not cut at & or |');
    assert.ok(href.includes('&response_type=code'), 'the URL keeps every parameter');
  });

  test(`${platform}: a URL that is not http(s) is refused before anything is spawned`, async () => {
    const calls: Spawned[] = [];
    const open = createBrowserOpener({ platform, env: {}, spawn: recordingSpawn(calls) });
    for (const url of [
      'file:///etc/passwd',
      'javascript:alert(1)',
      'ms-msdt:/id PCWDiagnostic /skip force',
      'smb://attacker.example/share/x.exe',
      'C:\\Windows\\System32\\calc.exe',
      'calc.exe',
    ]) {
      await assert.rejects(
        Promise.resolve().then(() => open(url)),
        (err: unknown) =>
          err instanceof AuthkeepError && err.code === 'invalid_argument' && err.field === 'authorization_endpoint',
        url,
      );
    }
    assert.deepEqual(calls, [], 'nothing was spawned');
  });
}

test('$BROWSER replaces the platform opener on every platform, still without a shell', async () => {
  for (const [platform] of PLATFORMS) {
    const calls: Spawned[] = [];
    const open = createBrowserOpener({
      platform,
      env: { BROWSER: 'firefox --new-tab %s' },
      spawn: recordingSpawn(calls),
    });
    await open(HOSTILE);
    assert.deepEqual(calls, [{ command: 'firefox', args: ['--new-tab', new URL(HOSTILE).href], shell: false }]);
  }
});

/** A real `$BROWSER`: records its argv as JSON, then denies the sign-in through the redirect URI. */
async function recordingBrowser(dir: string): Promise<{ script: string; argvFile: string }> {
  const script = path.join(dir, 'recording-browser');
  const argvFile = path.join(dir, 'argv.json');
  await writeFile(
    script,
    `#!${process.execPath}
const { writeFileSync } = require('node:fs');
const args = process.argv.slice(2);
writeFileSync(${JSON.stringify(argvFile)}, JSON.stringify(args));
const authorize = new URL(args[args.length - 1]);
const redirect = new URL(authorize.searchParams.get('redirect_uri'));
redirect.searchParams.set('error', 'access_denied');
redirect.searchParams.set('state', authorize.searchParams.get('state'));
fetch(redirect).then((r) => r.text());
`,
  );
  await chmod(script, 0o755);
  return { script, argvFile };
}

async function exists(file: string): Promise<boolean> {
  return access(file).then(
    () => true,
    () => false,
  );
}

test('linux, for real: a hostile authorization_endpoint reaches $BROWSER as one intact argument and runs nothing', async (t) => {
  const w = await hostileWorld(t);
  const endpoint = `${w.origin}/authorize?tenant=a&calc.exe|b^c<d>e"f'g$(touch pwned)\`touch pwned2\`;h`;
  w.server.json(
    '/.well-known/oauth-authorization-server',
    asMetadata(w.origin, w.origin, { authorization_endpoint: endpoint, revocation_endpoint: undefined }),
  );
  const dir = await tempHome(t);
  const browser = await recordingBrowser(dir);
  const saved = process.env.BROWSER;
  process.env.BROWSER = browser.script;
  t.after(() => {
    if (saved === undefined) delete process.env.BROWSER;
    else process.env.BROWSER = saved;
  });
  const cwd = process.cwd();
  process.chdir(dir); // where `touch pwned` would land
  t.after(() => process.chdir(cwd));

  // The default opener (no openAuthorizationUrl): $BROWSER, as an embedder would get it.
  const keeper = new AuthKeeper({ home: w.home, allowInsecureLoopback: true, loginTimeoutMs: 30_000 });
  await assert.rejects(keeper.login(w.mcpUrl), (err: unknown) => {
    assert.ok(err instanceof AuthkeepError && err.code === 'authorization_denied', String(err));
    return true;
  });

  const argv = JSON.parse(await readFile(browser.argvFile, 'utf8')) as string[];
  assert.equal(argv.length, 1, `one argument, got ${JSON.stringify(argv)}`);
  const received = new URL(argv[0] as string);
  assert.equal(received.href, argv[0], 'the WHATWG serialisation, unchanged');
  // The authorize URL re-encodes the endpoint's own query; decoded, it is intact.
  assert.equal(received.searchParams.get('tenant'), 'a');
  assert.equal(received.searchParams.get(`calc.exe|b^c<d>e"f'g$(touch pwned)\`touch pwned2\`;h`), '');
  for (const name of ['response_type', 'client_id', 'redirect_uri', 'state', 'code_challenge', 'resource']) {
    assert.ok(received.searchParams.get(name), `${name} survived after the & characters`);
  }
  assert.equal(await exists(path.join(dir, 'pwned')), false, 'no command ran');
  assert.equal(await exists(path.join(dir, 'pwned2')), false, 'no command ran');
});

test('linux, for real: `&|^` quotes, `$(...)` and backticks in a URL reach $BROWSER as one intact argument', async (t) => {
  const w = await hostileWorld(t);
  const dir = await tempHome(t);
  const browser = await recordingBrowser(dir);
  const saved = process.env.BROWSER;
  process.env.BROWSER = browser.script;
  t.after(() => {
    if (saved === undefined) delete process.env.BROWSER;
    else process.env.BROWSER = saved;
  });
  const cwd = process.cwd();
  process.chdir(dir);
  t.after(() => process.chdir(cwd));
  const raw = `${w.origin}/a|b^c'd/authorize?x=1&y=|^'"<>&z=$(touch pwned)&w=\`touch pwned2\`&redirect_uri=${encodeURIComponent(`${w.origin}/back`)}&state=s`;
  // The script answers through redirect_uri once it has recorded its argv: wait for that request.
  const answered = new Promise<void>((resolve) => {
    w.server.on('GET', '/back', () => {
      resolve();
      return { body: 'ok' };
    });
  });
  await openInBrowser(raw);
  await answered;
  const argv = JSON.parse(await readFile(browser.argvFile, 'utf8')) as string[];
  assert.deepEqual(argv, [new URL(raw).href], 'exactly one argument: the URL');
  for (const c of ['&', '|', '^', "'", '$(touch', '`touch']) assert.ok(argv[0]?.includes(c), `${c} arrived`);
  assert.equal(await exists(path.join(dir, 'pwned')), false, 'no command ran');
  assert.equal(await exists(path.join(dir, 'pwned2')), false, 'no command ran');
});

test('linux, for real: a file: URL never reaches $BROWSER', async (t) => {
  const dir = await tempHome(t);
  const browser = await recordingBrowser(dir);
  const saved = process.env.BROWSER;
  process.env.BROWSER = browser.script;
  t.after(() => {
    if (saved === undefined) delete process.env.BROWSER;
    else process.env.BROWSER = saved;
  });
  await assert.rejects(
    Promise.resolve().then(() => openInBrowser('file:///etc/passwd')),
    (err: unknown) => err instanceof AuthkeepError && err.field === 'authorization_endpoint',
  );
  assert.equal(await exists(browser.argvFile), false, 'the browser command never ran');
});
