/**
 * The examples in examples/ run as written against a real protected server: each connects an SDK
 * Client (@modelcontextprotocol/sdk 1.x with keeper.authProvider() or keeper.fetch();
 * @modelcontextprotocol/client 2.x with authProviderV2() or keeper.fetch()), signs in through the
 * robot browser as $BROWSER when nothing is stored, lists the tools and calls one.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { robotBrowserCommand } from '../../arena/testbed/index.js';
import { startBed, tempHome } from '../helpers/bed.js';
import { HANG_TIMEOUT_MS } from '../helpers/cli-run.js';

const run = promisify(execFile);

for (const example of ['sdk-auth-provider', 'sdk-fetch', 'sdk-v2-auth-provider', 'sdk-v2-fetch'] as const) {
  test(`examples/${example}.ts connects an SDK Client to a protected server and calls a tool`, async (t) => {
    const bed = await startBed(t);
    const home = await tempHome(t);
    const script = fileURLToPath(new URL(`../../examples/${example}.ts`, import.meta.url));
    const env = { ...process.env, AUTHKEEP_HOME: home, BROWSER: robotBrowserCommand() };
    const args = [
      '--import',
      'tsx',
      script,
      bed.servers[0]!.url,
      'echo',
      '{"text":"from the example"}',
      '--allow-http',
    ];
    const first = await run(process.execPath, args, { env, timeout: HANG_TIMEOUT_MS });
    assert.match(first.stdout, /tools: .*echo/);
    assert.match(first.stdout, /from the example/);
    const second = await run(process.execPath, args, { env, timeout: HANG_TIMEOUT_MS });
    assert.match(second.stdout, /from the example/);
    const counts = bed.as.audit.counts();
    assert.equal(counts.authorizationRequests, 1, 'the second run reused the stored sign-in');
    assert.equal(counts.registrations, 1);
  });
}
