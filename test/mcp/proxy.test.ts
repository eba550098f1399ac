/**
 * The stdio proxy as an MCP client application runs it: a real child process
 * (`authkeep proxy`, src/cli/main.ts) launched by a real SDK Client over StdioClientTransport, with the robot
 * browser as $BROWSER and a temp AUTHKEEP_HOME, against the real oidc-provider (rotation with reuse
 * revocation) and real SDK servers: Streamable HTTP across token expiries, SSE fallback with header
 * expansion and a dropped stream, a grant revoked mid-session. The AS's own audit is the judge.
 *
 * Determinism: call loops run until something has happened (so many refreshes, a new sign-in and
 * calls after it), never for a fixed time, and nothing is asserted about how many calls fit. A
 * token served with a quarter of its 2 s life left can still expire on its way to the server on a
 * busy machine: the proxy then retries once with another token, and only if that one expires in
 * flight too does the call fail. So a failed call is allowed only when the server's own counts
 * show two tokens refused as expired for it, and no token refused for any other reason.
 */
import assert from 'node:assert/strict';
import { appendFile, readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { robotBrowserCommand } from '../../arena/testbed/index.js';
import { parseProxyOptions } from '../../src/cli/commands/proxy.js';
import { parseGlobalOptions } from '../../src/cli/global-options.js';
import { runCli } from '../../src/cli/program.js';
import { parseHeaderArgs } from '../../src/mcp/proxy-options.js';
import { type Bed, startBed, storedTokenExpiresAt, untilPast } from '../helpers/bed.js';
import { BufferWriter, fakeDeps } from '../helpers/cli-fakes.js';
import { connectThroughProxy, type ProxiedClient, resultText } from '../helpers/mcp-proxy-client.js';
import { startSseMcpServer } from '../helpers/mcp-sse-server.js';
import { assertNoSecrets, witnessSecrets } from '../helpers/secrets.js';

async function browserLog(home: string): Promise<{ file: string; opens: () => Promise<number> }> {
  const file = path.join(home, 'browser.log');
  await appendFile(file, '');
  return { file, opens: async () => (await readFile(file, 'utf8')).split('\n').filter(Boolean).length };
}

interface LoopState {
  calls: number;
  ok: number;
  failures: string[];
  /** The loops gave up waiting for `until` (something that should have happened did not). */
  capped: boolean;
}

/** A loop that has not seen `until` by then is stuck. */
const CAP_MS = 120_000;

/**
 * `loops` concurrent callers of echo until `until(state)` holds (checked before every call); every
 * answer must be its own text. `onOk` hears each successful call.
 */
function callLoops(
  proxy: ProxiedClient,
  loops: number,
  until: (state: LoopState) => boolean,
  onOk: (state: LoopState) => void = () => undefined,
): { state: LoopState; finished: Promise<void> } {
  const state: LoopState = { calls: 0, ok: 0, failures: [], capped: false };
  const capAt = Date.now() + CAP_MS;
  const finished = Promise.all(
    Array.from({ length: loops }, async (_, loop) => {
      for (let i = 0; !until(state); i++) {
        if (Date.now() > capAt) {
          state.capped = true;
          return;
        }
        const text = `loop${loop}-${i}`;
        state.calls++;
        try {
          const got = resultText(
            await proxy.client.callTool({ name: 'echo', arguments: { text } }, undefined, { timeout: 60_000 }),
          );
          if (got === text) {
            state.ok++;
            onOk(state);
          } else state.failures.push(`${text}: got ${JSON.stringify(got)}`);
        } catch (err) {
          state.failures.push(`${text}: ${(err as Error).message}`);
        }
        // Space the calls as a client's are; nothing waits on this pause.
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    }),
  ).then(() => undefined);
  return { state, finished };
}

/** The server's 401s since `before`: every one must be a token that expired in flight (see the header). */
function assertOnlyExpiredInFlight(
  server: Bed['servers'][number],
  before: ReturnType<Bed['servers'][number]['counts']>,
  failures: string[],
  newSignIns = 0,
): number {
  const after = server.counts();
  const expired = after.expiredTokens - before.expiredTokens;
  assert.equal(after.invalidTokens, before.invalidTokens, 'the server refused no token as invalid');
  // A sign-in started by a refused refresh (not by a 401) probes the server without a token first.
  const probes = after.unauthenticated - before.unauthenticated;
  assert.ok(probes <= newSignIns, `${probes} unauthenticated probes; at most one per new sign-in (${newSignIns})`);
  assert.equal(
    after.unauthorized - before.unauthorized - probes,
    expired,
    'every 401 to a token was a token that expired in flight',
  );
  assert.ok(
    2 * failures.length <= expired,
    `${failures.length} failed calls (${failures.join('; ')}), each refused twice for a token that expired in flight (${expired} such refusals)`,
  );
  return expired;
}

async function readRecord(
  home: string,
): Promise<{ registration: { clientId: string }; tokens: { accessToken: string; refreshToken: string } }> {
  const dir = path.join(home, 'servers');
  const [file] = (await readdir(dir)).filter((f) => f.endsWith('.json'));
  return JSON.parse(await readFile(path.join(dir, file as string), 'utf8'));
}

test('proxy: an SDK Client over stdio signs in at start-up, then calls echo across 3+ token expiries with no failed call but for tokens expired in flight; zero reuse, zero revoked grants', async (t) => {
  const bed = await startBed(t, { as: { accessTokenTtlSeconds: 2 } });
  const witness = witnessSecrets(bed.as);
  const server = bed.servers[0]!;
  const browser = await browserLog(bed.home);
  const proxy = await connectThroughProxy(t, [server.url, '--allow-http'], {
    AUTHKEEP_HOME: bed.home,
    BROWSER: robotBrowserCommand(),
    ROBOT_BROWSER_LOG: browser.file,
  });
  assert.equal(await browser.opens(), 1, 'the proxy signed in through $BROWSER before connecting');
  const { tools } = await proxy.client.listTools();
  assert.ok(tools.some((tool) => tool.name === 'echo'));

  const serverAtStart = server.counts(); // after the unauthenticated discovery probes
  const refreshesAtStart = bed.as.audit.counts().refreshGrants;
  const started = Date.now();
  // Call until the session has crossed four expiries (the AS saw four refreshes).
  const { state, finished } = callLoops(proxy, 3, () => bed.as.audit.counts().refreshGrants - refreshesAtStart >= 4);
  await finished;
  assert.equal(state.capped, false, 'the session crossed four expiries');
  const expiredInFlight = assertOnlyExpiredInFlight(server, serverAtStart, state.failures);

  const counts = bed.as.audit.counts();
  assert.ok(counts.refreshGrants >= 3, `at least 3 expiries crossed mid-session (${counts.refreshGrants} refreshes)`);
  assert.equal(counts.refreshReuses, 0, 'zero refresh-token reuse');
  assert.equal(counts.revokedGrants, 0, 'zero revoked grants');
  assert.equal(counts.invalidGrants, 0, 'zero invalid_grant');
  assert.equal(counts.authorizationRequests, 1, 'one sign-in');
  assert.deepEqual(proxy.protocolErrors, [], 'stdout carried JSON-RPC only');

  await proxy.close();
  const logFile = path.join(bed.home, 'logs', `proxy-${proxy.pid}.log`);
  const log = await readFile(logFile, 'utf8');
  assert.match(log, /"event":"refresh.ok"/, 'refreshes are in the log file');
  assert.match(proxy.stderr(), /refreshed access token/, 'and on stderr');
  // No secret of any rotation (nor the sign-in's code and verifier) in the log file or on stderr.
  assert.ok(witness.count('RefreshToken issued') >= 4, 'the sign-in and every rotation were witnessed');
  assertNoSecrets([log, proxy.stderr()], witness.secrets(), 'the proxy log and stderr');
  t.diagnostic(
    `${state.calls} calls in ${Date.now() - started} ms, ${counts.refreshGrants} refreshes, ${expiredInFlight} tokens expired in flight, ${state.failures.length} failures`,
  );
});

test('proxy: falls back to SSE for an SSE-only server, sends --header values with ${ENV} expanded, and survives a dropped stream', async (t) => {
  // 5 s tokens: a call has a second of the token's life to reach the server on a saturated machine.
  const bed = await startBed(t, { as: { accessTokenTtlSeconds: 5 } });
  const sse = await startSseMcpServer(bed.as);
  t.after(() => sse.close());
  const proxy = await connectThroughProxy(
    t,
    [sse.url, '--allow-http', '--header', 'X-Authkeep-Test: v=${AUTHKEEP_TEST_VALUE}'],
    {
      AUTHKEEP_HOME: bed.home,
      BROWSER: robotBrowserCommand(),
      AUTHKEEP_TEST_VALUE: 'expanded',
    },
  );
  assert.match(proxy.stderr(), /Streamable HTTP not offered.*trying SSE/);
  assert.match(proxy.stderr(), /connected over SSE/);
  assert.equal(resultText(await proxy.client.callTool({ name: 'echo', arguments: { text: 'one' } })), 'one');

  // Across an expiry (refresh for the SSE POSTs), then a dropped stream: the next calls are queued
  // while the proxy reconnects and replays initialize, or re-sent after the server's 404.
  await untilPast(await storedTokenExpiresAt(bed.home));
  assert.equal(resultText(await proxy.client.callTool({ name: 'echo', arguments: { text: 'two' } })), 'two');
  sse.dropStreams();
  const after = await Promise.all(
    ['three', 'four', 'five'].map((text) => proxy.client.callTool({ name: 'echo', arguments: { text } })),
  );
  assert.deepEqual(after.map(resultText), ['three', 'four', 'five']);
  assert.equal(sse.counts().streams, 2, 'one reconnect');
  assert.match(proxy.stderr(), /reconnected; the session was initialized again/);

  assert.ok(
    sse.testHeaders.length > 0 && sse.testHeaders.every((v) => v === 'v=expanded'),
    `header sent expanded: ${sse.testHeaders.join(',')}`,
  );
  assert.ok(!proxy.stderr().includes('v=expanded'), 'header values are not logged');
  const counts = bed.as.audit.counts();
  assert.equal(counts.refreshReuses, 0);
  assert.equal(counts.revokedGrants, 0);
  assert.ok(counts.refreshGrants >= 1);
  assert.deepEqual(proxy.protocolErrors, []);
});

test('proxy: a grant revoked mid-session is replaced by a new sign-in through $BROWSER while calls continue, with no failed call but for tokens expired in flight', async (t) => {
  const bed = await startBed(t, { as: { accessTokenTtlSeconds: 2 } });
  const server = bed.servers[0]!;
  await bed.keeper().login(server.url); // stored beforehand: the proxy starts without a browser
  const browser = await browserLog(bed.home);
  const proxy = await connectThroughProxy(t, [server.url, '--allow-http'], {
    AUTHKEEP_HOME: bed.home,
    BROWSER: robotBrowserCommand(),
    ROBOT_BROWSER_LOG: browser.file,
  });
  assert.equal(await browser.opens(), 0);

  const serverAtStart = server.counts();
  // Call until the new sign-in has happened and six calls succeeded after it.
  let okAtSignIn: number | undefined;
  let flowing!: () => void;
  const callsFlow = new Promise<void>((resolve) => (flowing = resolve));
  const { state, finished } = callLoops(
    proxy,
    2,
    (s) => {
      if (okAtSignIn === undefined && bed.as.audit.counts().authorizationRequests >= 2) okAtSignIn = s.ok;
      return okAtSignIn !== undefined && s.ok >= okAtSignIn + 6;
    },
    (s) => {
      if (s.ok >= 2) flowing();
    },
  );
  await callsFlow;
  // Mid-session, someone revokes the refresh token (and so the grant) at the AS.
  const record = await readRecord(bed.home);
  const revoked = await fetch(bed.as.endpoints.revocation, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      token: record.tokens.refreshToken,
      token_type_hint: 'refresh_token',
      client_id: record.registration.clientId,
    }),
  });
  assert.equal(revoked.status, 200);
  await finished;
  assert.equal(state.capped, false, 'a new sign-in happened and calls continued after it');
  assertOnlyExpiredInFlight(server, serverAtStart, state.failures, 1);
  assert.equal(await browser.opens(), 1, 'one new sign-in through $BROWSER');
  assert.match(proxy.stderr(), /authorization needed \(invalid_grant\)/);
  const counts = bed.as.audit.counts();
  assert.equal(counts.authorizationRequests, 2, 'the first sign-in and the one after the revocation');
  assert.equal(counts.refreshReuses, 0, 'no refresh token was ever presented twice');
  assert.equal(counts.invalidGrants, 1, 'exactly one refresh hit the revoked grant');
});

test('proxy: http-only against an SSE-only server answers initialize with an error instead of hanging', async (t) => {
  const bed = await startBed(t);
  const sse = await startSseMcpServer(bed.as);
  t.after(() => sse.close());
  await assert.rejects(
    connectThroughProxy(t, [sse.url, '--allow-http', '--transport', 'http-only'], {
      AUTHKEEP_HOME: bed.home,
      BROWSER: robotBrowserCommand(),
    }),
    /could not be sent to the server|cannot reach the server/,
  );
});

test('proxy: mcp-remote arguments: --header with ${ENV}, [callback-port], flags', async () => {
  const warnings: string[] = [];
  const headers = parseHeaderArgs(
    ['Authorization: Bearer ${TOKEN}', 'X-Empty:${UNSET_VAR}', 'X-Url: https://a.example/b:c', 'X-Trim:   spaced  '],
    { TOKEN: 'abc' },
    (m) => warnings.push(m),
  );
  assert.deepEqual(headers, {
    Authorization: 'Bearer abc',
    'X-Empty': '',
    'X-Url': 'https://a.example/b:c',
    'X-Trim': 'spaced',
  });
  assert.equal(warnings.length, 1);
  assert.match(warnings[0] as string, /UNSET_VAR/);
  assert.throws(() => parseHeaderArgs(['no colon here']), /not "Name: value"/);
  assert.throws(() => parseHeaderArgs(['X-Bad: ${V}'], { V: 'a\r\nInjected: yes' }), /line break/);

  // The one parser of the proxy's arguments is the CLI's `authkeep proxy` command.
  const stderr = new BufferWriter();
  const { proxy: options } = parseProxyOptions(
    'https://mcp.example.com/mcp',
    '3334',
    {
      header: ['X-Key: ${K}'],
      transport: 'sse-first',
      host: '127.0.0.1',
      staticOauthClientInfo: '{"client_id":"pre","client_secret":"s"}',
      staticOauthClientMetadata: '{"scope":"mcp:read"}',
      resource: 'https://mcp.example.com/',
    },
    parseGlobalOptions({ allowHttp: true, debug: true }, {}),
    { env: { K: 'v' }, stderr },
  );
  assert.equal(options.serverUrl, 'https://mcp.example.com/mcp');
  assert.equal(options.callbackPort, 3334);
  assert.deepEqual(options.headers, { 'X-Key': 'v' });
  assert.equal(options.transport, 'sse-first');
  assert.equal(options.host, '127.0.0.1');
  assert.equal(options.allowHttp, true);
  assert.equal(options.debug, true);
  assert.deepEqual(options.staticClientInfo, { client_id: 'pre', client_secret: 's' });
  assert.deepEqual(options.staticClientMetadata, { scope: 'mcp:read' });
  assert.equal(options.resource, 'https://mcp.example.com/');
  // Bad arguments are usage errors (exit 2) before anything runs.
  const usage = async (argv: string[], message: RegExp) => {
    const deps = fakeDeps();
    assert.equal(await runCli(['proxy', ...argv], deps), 2, deps.stderr.text);
    assert.match(deps.stderr.text, message);
  };
  await usage(['https://x.example', '--transport', 'carrier-pigeon'], /--transport must be one of/);
  await usage(['https://x.example', '--host', 'evil.example'], /--host/);
  await usage([], /missing required argument 'url'/);
});
