/**
 * The MCP SDK adapter, `keeper.authProvider(url)`, against the real oidc-provider (refresh-token
 * rotation with reuse revocation) and a real protected SDK server: 8 processes each running an SDK
 * Client across 5+ access-token expiries, judged by the AS's own audit; a process with nothing
 * stored signing in through the provider with the robot browser as $BROWSER; the SDK's own auth()
 * never spending a credential; step-up; and the provider's compare-and-swap and per-flow verifiers.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { appendFile, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { auth, startAuthorization, UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { robotBrowserCommand } from '../../arena/testbed/index.js';
import { AuthkeepError, NeedsAuthError } from '../../src/index.js';
import { startBed, tempHome } from '../helpers/bed.js';
import { resultText } from '../helpers/mcp-proxy-client.js';

const CHILD = fileURLToPath(new URL('../helpers/mcp-sdk-child.ts', import.meta.url));

interface ChildSummary {
  calls: number;
  failures: string[];
  transportErrors: string[];
  tokensServed: number;
}

function runChild(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number | null; summary: ChildSummary; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', reject);
    child.once('exit', (code) => {
      const last = stdout.split('\n').filter(Boolean).at(-1) ?? '{}';
      resolve({
        code,
        summary: JSON.parse(last) as ChildSummary,
        stderr: stderr.replace(/.*oidc-provider WARNING.*\n?/g, ''),
      });
    });
  });
}

async function recordOnDisk(
  home: string,
): Promise<{ generation: number; tokens?: { accessToken: string; refreshToken?: string } }> {
  const dir = path.join(home, 'servers');
  const files = (await readdir(dir)).filter((f) => f.endsWith('.json'));
  assert.equal(files.length, 1, 'one record');
  return JSON.parse(await readFile(path.join(dir, files[0] as string), 'utf8'));
}

test('SDK adapter: 8 processes, each an SDK Client with keeper.authProvider(), across 5+ expiries: every call succeeds, zero reuse, zero revoked grants, zero invalid_grant', async (t) => {
  const bed = await startBed(t, { as: { accessTokenTtlSeconds: 2 } });
  const server = bed.servers[0]!;
  await bed.keeper().login(server.url); // once, in the parent: the children share the stored record
  const before = bed.as.audit.counts();
  const unauthorizedBefore = server.counts().unauthorized;

  const durationMs = 11_000;
  const goAt = Date.now() + 3000; // every child connected and waiting before the first expiry race
  const results = await Promise.all(
    Array.from({ length: 8 }, () => runChild(['loop', bed.home, String(goAt), String(durationMs), server.url])),
  );

  let calls = 0;
  for (const { code, summary, stderr } of results) {
    assert.equal(code, 0, stderr);
    assert.deepEqual(summary.failures, [], 'every call returned its own text');
    assert.ok(summary.calls > 60, `each process made many calls (${summary.calls})`);
    assert.ok(
      summary.tokensServed >= 5,
      `each process was served a new token after each expiry (${summary.tokensServed} tokens)`,
    );
    calls += summary.calls;
  }
  const after = bed.as.audit.counts();
  assert.equal(after.refreshReuses, 0, 'zero refresh-token reuse');
  assert.equal(after.revokedGrants, 0, 'zero revoked grants');
  assert.equal(after.invalidGrants, 0, 'zero invalid_grant');
  assert.equal(after.authorizationRequests, before.authorizationRequests, 'nobody had to sign in again');
  assert.equal(after.registrations, before.registrations, 'the SDK registered no client of its own');
  assert.equal(after.codeExchanges, before.codeExchanges, 'the SDK exchanged no code of its own');
  const refreshes = after.refreshGrants - before.refreshGrants;
  // A 2 s token lives 1-2 s (JWT exp has whole seconds) and is refreshed a quarter early, so each
  // refresh buys at least 750 ms: more refreshes than that many lifetimes in the window would mean
  // two processes refreshed for the same expiry.
  const windowMs = Date.now() - (goAt - 3000);
  assert.ok(refreshes >= 5, `at least 5 expiries were crossed (${refreshes} refreshes)`);
  assert.ok(
    refreshes <= Math.ceil(windowMs / 750) + 1,
    `${refreshes} refreshes for ${windowMs} ms: one per expiry, machine-wide`,
  );
  assert.equal(
    server.counts().unauthorized,
    unauthorizedBefore,
    'the server never answered 401: the SDK never had to enter auth()',
  );
  t.diagnostic(`8 processes, ${calls} calls, ${refreshes} refreshes in ${windowMs} ms, 0 failures`);
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
  const bed = await startBed(t, { as: { accessTokenTtlSeconds: 2 } });
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

test('SDK adapter: the code verifiers of two concurrent flows stay separate (keyed by state, bound by the PKCE challenge)', async (t) => {
  const home = await tempHome(t);
  const { AuthKeeper } = await import('../../src/index.js');
  const provider = new AuthKeeper({ home }).authProvider('https://mcp.example.com/mcp');
  const as = 'https://as.example.com';
  const clientInformation = { client_id: 'c1', redirect_uris: [provider.redirectUrl] };
  // Two flows built by the SDK's own code, with their calls to the provider interleaved as two
  // concurrent auth() runs would interleave them.
  const [s1, s2] = [provider.state(), provider.state()];
  assert.notEqual(s1, s2);
  const [f1, f2] = await Promise.all([
    startAuthorization(as, { clientInformation, redirectUrl: provider.redirectUrl, state: s1 }),
    startAuthorization(as, { clientInformation, redirectUrl: provider.redirectUrl, state: s2 }),
  ]);
  assert.notEqual(f1.codeVerifier, f2.codeVerifier);
  provider.saveCodeVerifier(f1.codeVerifier);
  provider.saveCodeVerifier(f2.codeVerifier);
  await provider.redirectToAuthorization(f2.authorizationUrl);
  await provider.redirectToAuthorization(f1.authorizationUrl);

  assert.throws(() => provider.codeVerifier(), /2 authorization flows are open/, 'no single slot to guess from');
  const [v1, v2] = await Promise.all([
    provider.completeAuthorization(s1, async () => {
      await new Promise((r) => setTimeout(r, 20));
      return provider.codeVerifier();
    }),
    provider.completeAuthorization(s2, async () => provider.codeVerifier()),
  ]);
  assert.equal(v1, f1.codeVerifier, 'flow 1 gets its own verifier');
  assert.equal(v2, f2.codeVerifier, 'flow 2 gets its own verifier');
  await assert.rejects(
    provider.completeAuthorization(s1, async () => provider.codeVerifier()),
    /no open authorization flow/,
    'a verifier is used once',
  );
});
