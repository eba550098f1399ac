/**
 * `authkeep proxy` where no browser can open (issue 14, item 2), started the way MCP clients start
 * it: a real SDK Client over stdio, with the SDK's short default environment (HOME, PATH, USER,
 * ...; no DISPLAY) plus AUTHKEEP_HOME and, per case, a `$BROWSER` that exits 3, one that cannot
 * start, or none at all. The proxy must print the sign-in URL (or, where no browser can open and
 * the authorization server offers the device grant, the device code) on stderr and in its log
 * file, keep waiting, and serve the client once the sign-in is completed elsewhere: here by the
 * robot browser from the URL printed on stderr, or by the robot user of the device page.
 */
import assert from 'node:assert/strict';
import { chmod, mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { createRobotBrowser, startAuthorizationServer, startProtectedMcpServer } from '../../arena/testbed/index.js';
import { completeDeviceVerification } from '../../arena/testbed/robot-device.js';
import { tempHome } from '../helpers/bed.js';
import { HANG_TIMEOUT_MS, waitForOutput } from '../helpers/cli-run.js';
import { CLI_MAIN, resultText } from '../helpers/mcp-proxy-client.js';

interface Case {
  name: string;
  deviceFlow: boolean;
  /** `$BROWSER` for the proxy, given a scratch directory; undefined: not set. */
  browser?: (dir: string) => Promise<string>;
  /** What the proxy says about the browser (on stderr and in its log). */
  says: RegExp;
  /** Complete the sign-in from the proxy's stderr. */
  complete: (stderr: NodeJS.ReadableStream, serverUrl: string) => Promise<void>;
}

const literally = (text: string) => text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

async function fromPrintedUrl(stderr: NodeJS.ReadableStream, serverUrl: string): Promise<void> {
  const [, url] = await waitForOutput(
    stderr,
    new RegExp(`to sign in to ${literally(serverUrl)}, open this URL in a browser on this machine: (http://\\S+)\\n`),
  );
  const visit = await createRobotBrowser().open(url as string);
  assert.ok(visit.reachedRedirectUri, 'the printed URL leads back to the waiting proxy');
}

const CASES: Case[] = [
  {
    name: 'a $BROWSER that starts and exits 3',
    deviceFlow: false,
    browser: async (dir) => {
      const script = path.join(dir, 'failing-browser');
      await writeFile(script, '#!/bin/sh\nexit 3\n');
      await chmod(script, 0o755);
      return script;
    },
    says: /the browser command \S*failing-browser failed \(exit status 3\); open the URL above in a browser on this machine/,
    complete: fromPrintedUrl,
  },
  {
    name: 'a $BROWSER that cannot start',
    deviceFlow: false,
    browser: async (dir) => path.join(dir, 'no-such-browser'),
    says: /could not open a browser \(could not start the browser command \S*no-such-browser: spawn \S+ ENOENT\)/,
    complete: fromPrintedUrl,
  },
  {
    name: 'no browser at all and an authorization server offering the device grant',
    deviceFlow: true,
    says: /no browser can be opened here \(no BROWSER is set and xdg-open was not found\): a sign-in uses a code entered on any device/,
    complete: async (stderr, serverUrl) => {
      const [, , userCode, complete] = await waitForOutput(
        stderr,
        new RegExp(
          `to sign in to ${literally(serverUrl)}, open (http://\\S+) in a browser on any device and enter the code (\\S+) \\(or open (http://\\S+), which carries the code\\)`,
        ),
      );
      assert.ok(userCode);
      const result = await completeDeviceVerification(complete as string);
      assert.ok(result.approved, `the device page approved the sign-in (${result.title})`);
    },
  },
];

for (const c of CASES) {
  test(`proxy with ${c.name}: the sign-in is shown on stderr and in the log, and the client is served once it completes`, async (t) => {
    const as = await startAuthorizationServer({ deviceFlow: c.deviceFlow });
    t.after(() => as.close());
    const server = await startProtectedMcpServer({ authorizationServer: as, discovery: 'header' });
    t.after(() => server.close());
    const dir = await tempHome(t);
    const home = path.join(dir, 'home');
    // An MCP client's environment: the SDK adds HOME, PATH, USER, SHELL, TERM, LOGNAME. PATH holds
    // only a directory with node in it (not node's own, which may be /usr/bin), so no xdg-open is
    // found whatever this machine has installed.
    const pathDir = path.join(dir, 'path');
    await mkdir(pathDir);
    await symlink(process.execPath, path.join(pathDir, 'node'));
    const env: Record<string, string> = {
      AUTHKEEP_HOME: home,
      PATH: pathDir,
      ...(c.browser ? { BROWSER: await c.browser(dir) } : {}),
    };
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: ['--import', import.meta.resolve('tsx'), CLI_MAIN, 'proxy', server.url, '--allow-http'],
      env,
      stderr: 'pipe',
    });
    let stderr = '';
    transport.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const client = new Client({ name: 'authkeep-no-browser-test', version: '0.0.0' });
    t.after(() => client.close());
    // The sign-in happens before the proxy answers initialize: the client waits for it.
    const connected = client.connect(transport, { timeout: HANG_TIMEOUT_MS });
    const signedIn = (async () => {
      const stream = transport.stderr as NodeJS.ReadableStream | null;
      assert.ok(stream, 'the proxy has a stderr pipe');
      // Both listen from the start: the URL comes before what the browser did.
      await Promise.all([waitForOutput(stream, c.says), c.complete(stream, server.url)]);
    })();
    await Promise.all([signedIn, connected]).catch((err: unknown) => {
      throw new Error(`${(err as Error).message}\n--- proxy stderr ---\n${stderr}`);
    });

    const echoed = await client.callTool({ name: 'echo', arguments: { text: 'after signing in elsewhere' } });
    assert.equal(resultText(echoed), 'after signing in elsewhere');
    assert.doesNotMatch(stderr, /proxy stopped|unexpected error/);
    assert.match(stderr, c.says);

    // The same lines are in the proxy's log file.
    const log = await readFile(path.join(home, 'logs', `proxy-${transport.pid}.log`), 'utf8');
    const messages = log
      .trim()
      .split('\n')
      .map((line) => (JSON.parse(line) as { message: string }).message);
    assert.ok(
      messages.some((m) => c.says.test(m)),
      `the log file says it too:\n${messages.join('\n')}`,
    );
    assert.ok(
      messages.some((m) => m.startsWith(`to sign in to ${server.url}, open `)),
      'the log file has the sign-in URL or code',
    );
  });
}
