/**
 * The MCP SDK adapter, `keeper.authProvider(url)`, against the real oidc-provider (refresh-token
 * rotation with reuse revocation) and a real protected SDK server: 8 processes each running an SDK
 * Client across 5+ access-token expiries, judged by the AS's own audit; a process with nothing
 * stored signing in through the provider with the robot browser as $BROWSER; the SDK's own auth()
 * never spending a credential; step-up; and the provider's compare-and-swap and per-flow verifiers.
 */
import assert from 'node:assert/strict';
import { appendFile, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { type TestContext, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { auth, startAuthorization, UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { robotBrowserCommand } from '../../arena/testbed/index.js';
import { MIN_REFRESH_SPACING_MS, refreshSpacing } from '../../arena/testbed/refresh-sends.js';
import { AuthKeeper, AuthkeepError, NeedsAuthError } from '../../src/index.js';
import { startBed } from '../helpers/bed.js';
import { cleanStderr, lastJsonLine, runTogether, spawnTsx } from '../helpers/child-process.js';
import { asMetadata } from '../helpers/hostile-server.js';
import { hostileWorld } from '../helpers/hostile-world.js';
import { resultText } from '../helpers/mcp-proxy-client.js';
import type { SdkChildSummary } from '../helpers/mcp-sdk-child.js';

const CHILD = fileURLToPath(new URL('../helpers/mcp-sdk-child.ts', import.meta.url));

async function runChild(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number | null; summary: SdkChildSummary; stderr: string }> {
  const child = spawnTsx(CHILD, args, env);
  const { code } = await child.exited;
  return { code, summary: lastJsonLine<SdkChildSummary>(child), stderr: cleanStderr(child) };
}

async function recordOnDisk(
  home: string,
): Promise<{ generation: number; tokens?: { accessToken: string; refreshToken?: string } }> {
  const dir = path.join(home, 'servers');
  const files = (await readdir(dir)).filter((f) => f.endsWith('.json'));
  assert.equal(files.length, 1, 'one record');
  return JSON.parse(await readFile(path.join(dir, files[0] as string), 'utf8'));
}

test('SDK adapter: 8 processes, each an SDK Client with keeper.authProvider(), each racing 5+ expiries: every call succeeds, zero reuse, zero revoked grants, zero invalid_grant', async (t) => {
  // Every process calls until the provider has served it this many different access tokens.
  const lifetimes = 6;
  const bed = await startBed(t, { as: { accessTokenTtlSeconds: 2 } });
  const server = bed.servers[0]!;
  await bed.keeper().login(server.url); // once, in the parent: the children share the stored record
  const before = bed.as.audit.counts();
  const serverBefore = server.counts();

  const children = Array.from({ length: 8 }, () => spawnTsx(CHILD, ['loop', bed.home, String(lifetimes), server.url]));
  t.after(() => {
    for (const child of children) if (child.proc.exitCode === null) child.proc.kill('SIGKILL');
  });
  // Every child loaded and connected before the first expiry race.
  const summaries = await runTogether<SdkChildSummary>(children);
  for (const summary of summaries) {
    assert.equal(summary.capped, false, `a process was not served ${lifetimes} tokens`);
    assert.ok(summary.tokensServed >= lifetimes, `each process was served a new token after each expiry`);
    assert.equal(summary.stale, 0, 'the provider never served a token that had expired when the SDK asked');
  }
  const serverAfter = server.counts();
  const expiredInFlight = serverAfter.expiredTokens - serverBefore.expiredTokens;
  assert.equal(serverAfter.invalidTokens, serverBefore.invalidTokens, 'the server refused no token as invalid');
  assert.equal(
    serverAfter.unauthorized - serverBefore.unauthorized,
    expiredInFlight,
    'every 401 was a token that expired on its way to the server',
  );
  // A token served with a quarter of its life left can still expire before the server checks it
  // when the machine is slow enough; that one call then fails (the SDK's auth() cannot refresh:
  // it never holds the refresh token) and the next succeeds. Nothing else may fail.
  const failures = summaries.flatMap((s) => s.failures);
  for (const failure of failures)
    assert.match(failure, /Unauthorized|invalid_token/, 'every call returned its own text');
  assert.ok(
    failures.length <= expiredInFlight,
    `${failures.length} failed calls, each after one of the ${expiredInFlight} tokens that expired in flight`,
  );

  const after = bed.as.audit.counts();
  assert.equal(after.refreshReuses, 0, 'zero refresh-token reuse');
  assert.equal(after.revokedGrants, 0, 'zero revoked grants');
  assert.equal(after.invalidGrants, 0, 'zero invalid_grant');
  assert.equal(after.authorizationRequests, before.authorizationRequests, 'nobody had to sign in again');
  assert.equal(after.registrations, before.registrations, 'the SDK registered no client of its own');
  assert.equal(after.codeExchanges, before.codeExchanges, 'the SDK exchanged no code of its own');
  // One refresh per expiry, machine-wide, by the clients' own send instants (refresh-sends.ts).
  const refreshes = after.refreshGrants - before.refreshGrants;
  const spacing = refreshSpacing(
    summaries.flatMap((s) => s.refreshSends),
    server.resource,
  );
  assert.equal(spacing.count, refreshes, 'every refresh the AS saw was sent by a child');
  assert.ok(refreshes >= lifetimes - 1, `at least ${lifetimes - 1} expiries were crossed (${refreshes} refreshes)`);
  assert.ok(
    spacing.minGapMs >= MIN_REFRESH_SPACING_MS,
    `two refreshes ${spacing.minGapMs} ms apart means one expiry was refreshed twice`,
  );
  assert.ok(
    refreshes <= spacing.maxCount,
    `${refreshes} refreshes in ${spacing.spanMs} ms: at most one per expiry, machine-wide (${spacing.maxCount})`,
  );
  const calls = summaries.reduce((n, s) => n + s.calls, 0);
  t.diagnostic(
    `8 processes, ${calls} calls, ${refreshes} refreshes over ${spacing.spanMs} ms (min gap ${spacing.minGapMs} ms), ${expiredInFlight} tokens expired in flight, ${failures.length} failed calls`,
  );
});

test('SDK adapter: a process with nothing stored signs in through the provider (robot browser as $BROWSER) and calls the tool', async (t) => {
  const bed = await startBed(t);
  const server = bed.servers[0]!;
  const browserLog = path.join(bed.home, 'browser.log');
  await appendFile(browserLog, '');
  const { code, summary, stderr } = await runChild(['fresh', bed.home, server.url], {
    BROWSER: robotBrowserCommand(),
    ROBOT_BROWSER_LOG: browserLog,
  });
  assert.equal(code, 0, stderr);
  assert.deepEqual(summary.failures, []);
  assert.equal(summary.calls, 3);
  const counts = bed.as.audit.counts();
  assert.equal(counts.registrations, 1, "one registration (authkeep's, not the SDK's)");
  assert.equal(counts.authorizationRequests, 1);
  assert.equal(counts.codeExchanges, 1);
  assert.equal(
    (await readFile(browserLog, 'utf8')).split('\n').filter(Boolean).length,
    1,
    'the browser was opened once',
  );
  const status = (await bed.keeper().status(server.url))[0];
  assert.equal(status?.state, 'ok', 'the sign-in is stored for every other process');
});

test("SDK adapter: the SDK's own auth() never spends a credential: no refresh, no registration, no code exchange", async (t) => {
  // Hour-long tokens: AuthKeeper itself has no refresh due during the test, so any token request
  // the AS sees would be the SDK's.
  const bed = await startBed(t);
  const server = bed.servers[0]!;
  const keeper = bed.keeper();
  await keeper.login(server.url);
  const provider = keeper.authProvider(server.url);
  const tokens = await provider.tokens();
  assert.ok(tokens?.access_token);
  assert.equal(tokens.refresh_token, undefined, 'the refresh token never reaches the SDK');
  // auth() entered by a provider that has served nothing yet (after a 401 it would first get
  // another token through AuthKeeper, single-flight; that is AuthKeeper's refresh, not the SDK's).
  const sdkSide = keeper.authProvider(server.url);
  const before = bed.as.audit.counts();
  const result = await auth(sdkSide, { serverUrl: server.url });
  assert.equal(
    result,
    'REDIRECT',
    'without a refresh token the SDK can only ask for a redirect (which is never opened)',
  );
  const after = bed.as.audit.counts();
  assert.deepEqual(
    {
      refresh: after.refreshGrants,
      code: after.codeExchanges,
      reg: after.registrations,
      authz: after.authorizationRequests,
    },
    {
      refresh: before.refreshGrants,
      code: before.codeExchanges,
      reg: before.registrations,
      authz: before.authorizationRequests,
    },
  );
  const info = await provider.clientInformation();
  assert.equal(
    info.client_id,
    (await keeper.status(server.url))[0]?.clientId,
    "clientInformation is the record's registration",
  );
  assert.equal(info.issuer, bed.as.issuer, 'stamped with its issuer');
  await provider.saveClientInformation({ ...info }); // the SDK binding the stored registration: accepted
  await assert.rejects(
    provider.saveClientInformation({ client_id: 'another-client', issuer: bed.as.issuer }),
    (err: unknown) => {
      assert.ok(err instanceof AuthkeepError);
      assert.equal(err.code, 'store_conflict', 'one record, one registration');
      return true;
    },
  );
});

test('SDK adapter: non-interactive, nothing stored: the SDK flow ends in NeedsAuthError no_credentials and registers nothing', async (t) => {
  const bed = await startBed(t);
  const server = bed.servers[0]!;
  const provider = bed.keeper().authProvider(server.url, { interactive: false });
  const client = new Client({ name: 'authkeep-test', version: '0.0.0' });
  await assert.rejects(
    client.connect(new StreamableHTTPClientTransport(new URL(server.url), { authProvider: provider })),
    (err: unknown) => {
      assert.ok(err instanceof NeedsAuthError, String(err));
      assert.equal(err.reason, 'no_credentials');
      return true;
    },
  );
  assert.equal(bed.as.audit.counts().registrations, 0);
  assert.equal(bed.robotOpens(), 0);
});

test('SDK adapter: 403 insufficient_scope steps up through the provider (union of scopes); the triggering call fails once, the next succeeds', async (t) => {
  const bed = await startBed(t);
  const server = bed.servers[0]!;
  const keeper = bed.keeper();
  await keeper.login(server.url);
  const client = new Client({ name: 'authkeep-test', version: '0.0.0' });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(server.url), { authProvider: keeper.authProvider(server.url) }),
  );
  t.after(() => client.close());
  await assert.rejects(client.callTool({ name: 'admin_echo', arguments: { text: 'root' } }), UnauthorizedError);
  assert.equal(bed.robotOpens(), 2, 'one sign-in, one step-up');
  assert.equal(resultText(await client.callTool({ name: 'admin_echo', arguments: { text: 'root' } })), 'admin: root');
  const scope = (await keeper.status(server.url))[0]?.scope?.split(' ') ?? [];
  assert.ok(scope.includes('mcp:admin') && scope.includes('mcp:read'), `granted ${scope.join(' ')}`);
});

test('SDK adapter: a token the server rejects (401) is recovered inside auth() through AuthKeeper: that one call fails, the next succeeds; keeper.fetch loses no call', async (t) => {
  const bed = await startBed(t);
  const server = bed.servers[0]!;
  await bed.keeper().login(server.url);
  // The stored access token is one the server will refuse (as after a server-side revocation).
  const file = path.join(
    bed.home,
    'servers',
    (await readdir(path.join(bed.home, 'servers'))).find((f) => f.endsWith('.json')) as string,
  );
  const record = JSON.parse(await readFile(file, 'utf8'));
  record.tokens.accessToken = 'refused-by-the-server';
  await writeFile(file, JSON.stringify(record));
  const before = bed.as.audit.counts();

  const keeper = bed.keeper();
  const client = new Client({ name: 'authkeep-test', version: '0.0.0' });
  t.after(() => client.close());
  await assert.rejects(
    client.connect(
      new StreamableHTTPClientTransport(new URL(server.url), { authProvider: keeper.authProvider(server.url) }),
    ),
    UnauthorizedError,
  );
  const after = bed.as.audit.counts();
  assert.equal(
    after.refreshGrants,
    before.refreshGrants + 1,
    'AuthKeeper refreshed once (single-flight, under the lock)',
  );
  assert.equal(after.authorizationRequests, before.authorizationRequests, 'no sign-in was needed');
  assert.equal(after.registrations, before.registrations);
  const retry = new Client({ name: 'authkeep-test', version: '0.0.0' });
  t.after(() => retry.close());
  await retry.connect(
    new StreamableHTTPClientTransport(new URL(server.url), { authProvider: keeper.authProvider(server.url) }),
  );
  assert.equal(resultText(await retry.callTool({ name: 'echo', arguments: { text: 'recovered' } })), 'recovered');

  // The same rejection through keeper.fetch is recovered in-band: no call fails.
  const again = JSON.parse(await readFile(file, 'utf8'));
  again.tokens.accessToken = 'refused-by-the-server-too';
  await writeFile(file, JSON.stringify(again));
  const viaFetch = new Client({ name: 'authkeep-test', version: '0.0.0' });
  t.after(() => viaFetch.close());
  const other = bed.keeper();
  await viaFetch.connect(new StreamableHTTPClientTransport(new URL(server.url), { fetch: other.fetch(server.url) }));
  assert.equal(resultText(await viaFetch.callTool({ name: 'echo', arguments: { text: 'in-band' } })), 'in-band');
});

test('SDK adapter: saveTokens with stale tokens does not overwrite newer ones; tokens the SDK knew are replaced; another issuer is refused', async (t) => {
  const bed = await startBed(t);
  const server = bed.servers[0]!;
  const keeper = bed.keeper();
  await keeper.login(server.url);
  const provider = keeper.authProvider(server.url);
  const seen = (await provider.tokens())?.access_token as string;

  // Another process refreshes: the record now holds newer tokens than the SDK saw.
  const other = bed.keeper();
  const newer = await other.recoverFromRejection(server.url, seen);
  assert.notEqual(newer, seen);
  const stored = await recordOnDisk(bed.home);
  assert.equal(stored.tokens?.accessToken, newer);

  await provider.saveTokens({
    access_token: 'stale-access-token',
    token_type: 'bearer',
    expires_in: 3600,
    refresh_token: 'stale-refresh-token',
    issuer: bed.as.issuer,
  });
  const afterStale = await recordOnDisk(bed.home);
  assert.equal(afterStale.tokens?.accessToken, newer, 'the newer access token is kept');
  assert.equal(afterStale.tokens?.refreshToken, stored.tokens?.refreshToken, 'and its refresh token');
  assert.equal(afterStale.generation, stored.generation, 'nothing was written');
  assert.equal(await bed.keeper().getAccessToken(server.url), newer);

  // Tokens from another issuer are refused outright (drift), whatever the SDK saw.
  const fresh = other.authProvider(server.url); // it saw the current tokens
  await fresh.tokens();
  await assert.rejects(
    fresh.saveTokens({ access_token: 'x', token_type: 'Bearer', issuer: 'https://evil.example' }),
    /store_conflict|refused/,
  );
  assert.equal((await recordOnDisk(bed.home)).generation, stored.generation);

  // A provider that saw the current tokens may replace them (compare-and-swap succeeds).
  await fresh.saveTokens({
    access_token: 'sdk-exchanged-access-token',
    token_type: 'Bearer',
    expires_in: 3600,
    issuer: bed.as.issuer,
  });
  const replaced = await recordOnDisk(bed.home);
  assert.equal(replaced.tokens?.accessToken, 'sdk-exchanged-access-token');
  assert.equal(
    replaced.tokens?.refreshToken,
    undefined,
    'tokens are written whole: the old refresh token does not outlive its access token',
  );
  assert.equal(replaced.generation, stored.generation + 1);
  assert.equal((await fresh.tokens())?.access_token, 'sdk-exchanged-access-token', 'and served from then on');
});

/**
 * A provider whose record points at a hostile AS (hostile-world.ts) advertising RFC 9207 `iss`,
 * and two SDK-built flows to it, filed with the provider as the SDK's auth() files them.
 */
async function twoSdkFlows(t: TestContext) {
  const w = await hostileWorld(t);
  w.server.json(
    '/.well-known/oauth-authorization-server',
    asMetadata(w.origin, w.origin, {
      revocation_endpoint: undefined,
      authorization_response_iss_parameter_supported: true,
    }),
  );
  const keeper = new AuthKeeper({ home: w.home, allowInsecureLoopback: true, openAuthorizationUrl: w.approve() });
  await keeper.login(w.mcpUrl);
  const provider = keeper.authProvider(w.mcpUrl);
  const clientInformation = { client_id: 'client-1', redirect_uris: [provider.redirectUrl] };
  // Two flows built by the SDK's own code, with their calls to the provider interleaved as two
  // concurrent auth() runs would interleave them.
  const [s1, s2] = [provider.state(), provider.state()];
  assert.notEqual(s1, s2);
  const [f1, f2] = await Promise.all([
    startAuthorization(w.origin, { clientInformation, redirectUrl: provider.redirectUrl, state: s1 }),
    startAuthorization(w.origin, { clientInformation, redirectUrl: provider.redirectUrl, state: s2 }),
  ]);
  assert.notEqual(f1.codeVerifier, f2.codeVerifier);
  provider.saveCodeVerifier(f1.codeVerifier);
  provider.saveCodeVerifier(f2.codeVerifier);
  await provider.redirectToAuthorization(f2.authorizationUrl);
  await provider.redirectToAuthorization(f1.authorizationUrl);
  const callback = (state: string, extra: Record<string, string> = { code: `code-for-${state}`, iss: w.origin }) =>
    new URLSearchParams({ state, ...extra });
  return { w, provider, s1, s2, f1, f2, callback };
}

test('SDK adapter: the code verifiers of two concurrent flows stay separate (keyed by state, bound by the PKCE challenge)', async (t) => {
  const { provider, s1, s2, f1, f2, callback } = await twoSdkFlows(t);
  assert.throws(() => provider.codeVerifier(), /2 authorization flows are open/, 'no single slot to guess from');
  const [r1, r2] = await Promise.all([
    provider.completeAuthorization(callback(s1), async (code) => {
      await new Promise((r) => setTimeout(r, 20));
      return { code, verifier: provider.codeVerifier() };
    }),
    provider.completeAuthorization(callback(s2), async (code) => ({ code, verifier: provider.codeVerifier() })),
  ]);
  assert.deepEqual(r1, { code: `code-for-${s1}`, verifier: f1.codeVerifier }, 'flow 1 gets its own code and verifier');
  assert.deepEqual(r2, { code: `code-for-${s2}`, verifier: f2.codeVerifier }, 'flow 2 gets its own code and verifier');
  await assert.rejects(
    provider.completeAuthorization(callback(s1), async () => provider.codeVerifier()),
    { code: 'state_mismatch' },
    'a verifier is used once',
  );
});

for (const [name, iss] of [
  ['another issuer', 'https://evil.example'],
  ['the issuer with a trailing slash', 'ORIGIN/'],
  ['the issuer with an uppercase scheme', 'HTTP://ORIGIN'],
  ['no iss although the AS advertises it', undefined],
] as const) {
  test(`SDK adapter: a response with ${name} is refused (RFC 9207) before its code reaches the SDK's finishAuth`, async (t) => {
    const { w, provider, s1, callback } = await twoSdkFlows(t);
    const handed: string[] = [];
    const finish = async (code: string) => {
      handed.push(code);
    };
    const named = iss?.replace('HTTP://ORIGIN', w.origin.replace('http:', 'HTTP:')).replace('ORIGIN', w.origin);
    const response = {
      code: 'stolen-code',
      error: 'access_denied',
      error_description: 'Call +1-555-0100',
      ...(named === undefined ? {} : { iss: named }),
    };
    await assert.rejects(provider.completeAuthorization(callback(s1, response), finish), (err: unknown) => {
      assert.ok(err instanceof AuthkeepError, String(err));
      assert.equal(err.code, 'iss_mismatch');
      assert.equal(err.field, 'iss');
      assert.ok(!err.message.includes('555-0100') && !err.message.includes('access_denied'), 'nothing else is read');
      return true;
    });
    assert.deepEqual(handed, [], 'no code handed on');
    await assert.rejects(
      provider.completeAuthorization(callback(s1), finish),
      { code: 'state_mismatch' },
      'the flow is closed: its verifier is not offered again',
    );
    assert.deepEqual(handed, []);
  });
}

test('SDK adapter: issuers are compared exactly: a trailing slash is another issuer for saveClientInformation and saveTokens', async (t) => {
  const { w, provider } = await twoSdkFlows(t);
  await provider.clientInformation();
  await provider.saveClientInformation({ client_id: 'client-1', issuer: w.origin });
  await assert.rejects(provider.saveClientInformation({ client_id: 'client-1', issuer: `${w.origin}/` }), {
    code: 'store_conflict',
  });
  await provider.tokens();
  await assert.rejects(
    provider.saveTokens({ access_token: 'from-elsewhere', token_type: 'Bearer', issuer: `${w.origin}/` }),
    { code: 'store_conflict', field: 'tokens.issuer' },
  );
});
