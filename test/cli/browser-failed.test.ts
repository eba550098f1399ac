/**
 * `authkeep login` on a machine where the browser cannot show the page (issue 14, item 1): a
 * `$BROWSER` that starts and exits 3 (what xdg-open does without a desktop) and one that cannot
 * start at all. Either way the sign-in URL is printed, the failure is named, and the sign-in
 * completes from that URL, here opened by the robot browser, as a person would open it by hand.
 * Real `authkeep` processes against the real oidc-provider and a protected MCP server.
 */
import assert from 'node:assert/strict';
import { chmod, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { createRobotBrowser, startAuthorizationServer, startProtectedMcpServer } from '../../arena/testbed/index.js';
import { cliEnv, collect, runCliProcess, spawnCli, waitForOutput } from '../helpers/cli-run.js';

const CASES = [
  {
    name: 'a browser command that starts and exits 3',
    browser: async (dir: string) => {
      const script = path.join(dir, 'failing-browser');
      await writeFile(script, '#!/bin/sh\nexit 3\n');
      await chmod(script, 0o755);
      return script;
    },
    says: /The browser command \S*failing-browser failed \(exit status 3\); open the URL above in a browser on this machine/,
  },
  {
    name: 'a browser command that cannot start',
    browser: async (dir: string) => path.join(dir, 'no-such-browser'),
    says: /Could not open a browser \(could not start the browser command \S*no-such-browser: spawn \S+ ENOENT\); open the URL above/,
  },
];

for (const c of CASES) {
  test(`login with ${c.name} prints the sign-in URL, names the failure, and completes from the URL`, async (t) => {
    const as = await startAuthorizationServer();
    t.after(() => as.close());
    const server = await startProtectedMcpServer({ authorizationServer: as, discovery: 'header' });
    t.after(() => server.close());
    const cli = await cliEnv(t);
    const browser = await c.browser(path.dirname(cli.home));

    const child = spawnCli(cli, ['login', server.url, '--allow-http'], { env: { BROWSER: browser } });
    const done = collect(child);
    // The URL comes first, whatever the browser does; the failure is reported as it happens.
    const [, url] = await waitForOutput(
      child.stderr,
      new RegExp(`Open this URL to continue in your browser:\\n\\n {2}(http://\\S+)\\n[\\s\\S]*${c.says.source}`),
    );
    assert.equal(new URL(url as string).origin, as.origin, 'the printed URL is the authorization endpoint');
    const visit = await createRobotBrowser().open(url as string);
    assert.ok(visit.reachedRedirectUri, 'the printed URL leads back to the waiting login');

    const result = await done;
    assert.equal(result.code, 0, `login exits 0\n${result.stderr}`);
    assert.match(result.stdout, /Signed in to /);
    assert.doesNotMatch(result.stderr, /Opened the sign-in page/, 'never claims the page was opened');
    assert.doesNotMatch(result.stderr, /callback_timeout/);
    const token = await runCliProcess(cli, ['token', server.url, '--allow-http']);
    assert.equal(token.code, 0, `token after the sign-in\n${token.stderr}`);
  });
}
