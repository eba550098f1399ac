/**
 * The @modelcontextprotocol/client 2.x adapter, `authProviderV2(keeper, url)` from
 * `authkeep/sdk-v2`, and `fetch: keeper.fetch(url)` on a 2.x transport, against the real
 * oidc-provider (refresh-token rotation with reuse revocation) and a real protected MCP server:
 * 8 processes each running a 2.x Client across several access-token expiries, started together
 * once every one is connected and judged by the AS's own audit; a process with nothing stored
 * signing in through the provider with the robot browser as $BROWSER; the SDK's own auth() never
 * spending a credential; step-up; recovery after a refused token; compare-and-swap; per-flow
 * verifiers; and a package root that does not need the 2.x client.
 */
import assert from 'node:assert/strict';
import { type ChildProcessByStdio, spawn } from 'node:child_process';
import { appendFile, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  auth,
  Client,
  StreamableHTTPClientTransport,
  startAuthorization,
  UnauthorizedError,
} from '@modelcontextprotocol/client';
import { fingerprint, robotBrowserCommand } from '../../arena/testbed/index.js';
import { AuthkeepError, NeedsAuthError } from '../../src/index.js';
import { authProviderV2 } from '../../src/sdk-v2.js';
import { startBed } from '../helpers/bed.js';
import { asMetadata } from '../helpers/hostile-server.js';
import { hostileWorld } from '../helpers/hostile-world.js';
import { resultText } from '../helpers/mcp-proxy-client.js';
import type { V2ChildSummary } from '../helpers/mcp-sdk-v2-child.js';

const CHILD = fileURLToPath(new URL('../helpers/mcp-sdk-v2-child.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

interface Child {
  process: ChildProcessByStdio<Writable, Readable, Readable>;
  /** Resolves when the child printed READY (the start barrier); rejects if it exits first. */
  ready: Promise<void>;
  done: Promise<{ code: number | null; summary: V2ChildSummary; stderr: string }>;
}

function spawnChild(args: string[], env: NodeJS.ProcessEnv = {}): Child {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, ...args], {
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  child.stdin.on('error', () => undefined); // a child that exited early must not turn "go" into EPIPE
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const lines: string[] = [];
  let onReady: () => void = () => {};
  const ready = new Promise<void>((resolve) => (onReady = resolve));
  createInterface({ input: child.stdout }).on('line', (line) => {
    if (line === 'READY') onReady();
    else lines.push(line);
  });
  const done = new Promise<{ code: number | null; summary: V2ChildSummary; stderr: string }>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => {
      const cleaned = stderr.replace(/.*oidc-provider WARNING.*\n?/g, '');
      const last = lines.filter((line) => line.startsWith('{')).at(-1);
      if (last === undefined) reject(new Error(`child ${child.pid} printed no summary (exit ${code}): ${cleaned}`));
      else resolve({ code, summary: JSON.parse(last) as V2ChildSummary, stderr: cleaned });
    });
  });
  const readyOrExit = Promise.race([
    ready,
    done.then(({ code, stderr: s }) => Promise.reject(new Error(`exited before READY (${code}): ${s}`))),
  ]);
  // Awaited by the test where it matters; a child killed after a failed barrier must not add an
  // unhandled rejection of its own.
  readyOrExit.catch(() => {});
  done.catch(() => {});
  return { process: child, ready: readyOrExit, done };
}

function serverRecordFile(home: string): Promise<string> {
  return readdir(path.join(home, 'servers')).then((files) => {
    const json = files.filter((f) => f.endsWith('.json'));
    assert.equal(json.length, 1, 'one record');
    return path.join(home, 'servers', json[0] as string);
  });
}

async function recordOnDisk(
  home: string,
): Promise<{ generation: number; tokens?: { accessToken: string; refreshToken?: string } }> {
  return JSON.parse(await readFile(await serverRecordFile(home), 'utf8'));
}

/** Replaces the stored access token with one the server refuses (as after a server-side revocation). */
async function storeRefusedAccessToken(home: string, value: string): Promise<void> {
  const file = await serverRecordFile(home);
  const record = JSON.parse(await readFile(file, 'utf8'));
  record.tokens.accessToken = value;
  await writeFile(file, JSON.stringify(record));
}

test('SDK v2: 8 processes, each a 2.x Client with authProviderV2(), started together once all are connected, each racing 5+ expiries: every call succeeds but for expired tokens, zero reuse, zero revoked grants, one refresh per expiry', async (t) => {
  // Every process calls until its requests carried this many different access tokens after "go".
  const lifetimes = 6;
  const bed = await startBed(t, { as: { accessTokenTtlSeconds: 2 } });
  const server = bed.servers[0]!;
  const parent = bed.keeper();
  await parent.login(server.url); // once, in the parent: the children share the stored record
  const loginToken = fingerprint(await parent.getAccessToken(server.url));
  const before = bed.as.audit.counts();
  const unauthorizedBefore = server.counts().unauthorized;

  const children = Array.from({ length: 8 }, () => spawnChild(['loop', bed.home, String(lifetimes), server.url]));
  let results: Awaited<Child['done']>[];
  try {
    // The start barrier: every child loaded and connected before any starts calling, so all 8
    // race the same expiries however long loading takes.
    await Promise.all(children.map((c) => c.ready));
    for (const child of children) child.process.stdin.write('go\n');
    results = await Promise.all(children.map((c) => c.done));
  } finally {
    // Here, not in t.after: the bed's servers close first there, and wait for these children's
    // connections while the children wait for "go".
    for (const child of children) if (child.process.exitCode === null) child.process.kill('SIGKILL');
  }

  let calls = 0;
  let expired401s = 0;
  let stale = 0;
  const failures: string[] = [];
  const served = new Map<string, number>(); // token fingerprint -> JWT exp (s)
  for (const { code, summary, stderr } of results) {
    assert.equal(code, 0, stderr);
    assert.equal(summary.capped, false, `a child stopped after ${summary.failures.length} failures`);
    assert.ok(summary.servedAfterGo >= lifetimes, 'each process carried a new token after each expiry');
    assert.deepEqual(summary.otherRefusals, [], 'the server refused no token but for its age');
    // A token served with a quarter of its life left can still expire before the server checks
    // it when the machine is slow enough (and one a slow AS issued with less than a second left
    // is served until the once-a-second refresh floor passes: see the child's `stale`); 2.x then
    // runs auth(), where the provider recovers, and that one call fails (2.x retries only after a
    // token request of its own, which it never gets to make); the next succeeds. Nothing else may
    // fail.
    for (const failure of summary.failures) assert.match(failure, /Unauthorized/, 'every call returned its own text');
    assert.ok(
      summary.failures.length <= summary.expired401s,
      `${summary.failures.length} failed calls, each after one of ${summary.expired401s} 401s for an expired token`,
    );
    calls += summary.calls;
    expired401s += summary.expired401s;
    stale += summary.stale;
    failures.push(...summary.failures);
    for (const { token, exp } of summary.served) served.set(token, exp);
  }
  assert.equal(
    server.counts().unauthorized - unauthorizedBefore,
    expired401s,
    'every 401 the server sent was for an expired token, and a child saw it',
  );
  const after = bed.as.audit.counts();
  assert.equal(after.refreshReuses, 0, 'zero refresh-token reuse');
  assert.equal(after.revokedGrants, 0, 'zero revoked grants');
  assert.equal(after.invalidGrants, 0, 'zero invalid_grant');
  assert.equal(after.authorizationRequests, before.authorizationRequests, 'nobody had to sign in again');
  assert.equal(after.registrations, before.registrations, 'the SDK registered no client of its own');
  assert.equal(after.codeExchanges, before.codeExchanges, 'the SDK exchanged no code of its own');

  // One refresh per expiry, machine-wide, judged without a clock:
  // - A refresh starts only once a quarter of its token's life (at most 0.55 s of a 2 s token,
  //   jitter included) is left, or after the server refused that token; the AS stamps
  //   exp = whole seconds + 2. So each token expires at least a second after the one it replaced,
  //   however slow the machine: two carried tokens expiring in the same second were two refreshes
  //   for one expiry.
  // - Refresh is on demand, so the process that refreshes carries the new token in its very next
  //   request. Only a recovery inside auth() (after a 401) obtains a token that the next call
  //   carries a little later, and on a slow enough machine that token can fall due unused. So
  //   every refresh the AS counted is a token a request carried, or followed a 401.
  const refreshes = after.refreshGrants - before.refreshGrants;
  const refreshedTokensCarried = served.size - (served.has(loginToken) ? 1 : 0);
  assert.ok(refreshes >= lifetimes - 1, `at least ${lifetimes - 1} expiries were crossed (${refreshes} refreshes)`);
  const exps = [...served.values()].sort((x, y) => x - y);
  assert.equal(new Set(exps).size, exps.length, `no two carried tokens expire in the same second (${exps.join(' ')})`);
  assert.ok(refreshes >= refreshedTokensCarried, 'every token a request carried came from the sign-in or a refresh');
  assert.ok(
    refreshes <= refreshedTokensCarried + expired401s,
    `${refreshes} refreshes: ${refreshedTokensCarried} tokens carried, ${expired401s} recoveries after a 401`,
  );
  t.diagnostic(
    `8 processes, ${calls} calls, ${refreshes} refreshes, ${served.size} access tokens, ${expired401s} 401s for an expired token (${stale} served late), ${failures.length} failed calls`,
  );
});

test('SDK v2: a process with nothing stored signs in through the provider (robot browser as $BROWSER) and calls the tool', async (t) => {
  const bed = await startBed(t);
  const server = bed.servers[0]!;
  const browserLog = path.join(bed.home, 'browser.log');
  await appendFile(browserLog, '');
  const child = spawnChild(['fresh', bed.home, server.url], {
    BROWSER: robotBrowserCommand(),
    ROBOT_BROWSER_LOG: browserLog,
  });
  let outcome: Awaited<Child['done']>;
  try {
    outcome = await child.done;
  } finally {
    if (child.process.exitCode === null) child.process.kill('SIGKILL');
  }
  const { code, summary, stderr } = outcome;
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

test("SDK v2: the SDK's own auth() never spends a credential: tokens() carries the issuer stamp and never a refresh token; auth() ends in REDIRECT with no request to the AS and no write", async (t) => {
  const bed = await startBed(t);
  const server = bed.servers[0]!;
  const keeper = bed.keeper();
  await keeper.login(server.url);
  const status = (await keeper.status(server.url))[0];
  const provider = authProviderV2(keeper, server.url);
  const tokens = await provider.tokens();
  assert.ok(tokens?.access_token);
  assert.equal(tokens.refresh_token, undefined, 'the refresh token never reaches the SDK');
  assert.equal(tokens.issuer, bed.as.issuer, 'stamped with its issuer (SEP-2352)');
  assert.equal(tokens.scope, status?.scope, 'and the granted scope');
  assert.ok(provider.redirectUrl, 'a redirect URL always: without one 2.x would request tokens by itself');

  // auth() entered by a provider that has served nothing yet (after a 401 it would first get
  // another token through AuthKeeper, single-flight; that is AuthKeeper's refresh, not the SDK's).
  const sdkSide = authProviderV2(keeper, server.url);
  const before = bed.as.audit.counts();
  const generation = (await recordOnDisk(bed.home)).generation;
  const warnings: string[] = [];
  const warn = console.warn;
  console.warn = (...args: unknown[]) => warnings.push(args.map(String).join(' '));
  let result: string;
  try {
    result = await auth(sdkSide, { serverUrl: server.url });
  } finally {
    console.warn = warn;
  }
  assert.equal(result, 'REDIRECT', 'without a refresh token the SDK can only ask for a redirect (never opened)');
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
  assert.equal((await recordOnDisk(bed.home)).generation, generation, 'auth() saved nothing');
  assert.deepEqual(warnings, [], 'the SDK found every credential stamped with its issuer');

  const info = await provider.clientInformation();
  assert.equal(info.client_id, status?.clientId, "clientInformation is the record's registration");
  assert.equal(info.issuer, bed.as.issuer, 'stamped with its issuer');
  await assert.rejects(
    provider.saveClientInformation({ client_id: 'another-client', issuer: bed.as.issuer }),
    (err: unknown) => {
      assert.ok(err instanceof AuthkeepError);
      assert.equal(err.code, 'store_conflict', 'one record, one registration');
      return true;
    },
  );
});

test('SDK v2: the served access token saved back with an issuer stamp (what 2.x does with unstamped tokens) is not written, so the refresh token survives; also for a 1.x provider handed to a 2.x auth()', async (t) => {
  const bed = await startBed(t);
  const server = bed.servers[0]!;
  const keeper = bed.keeper();
  await keeper.login(server.url);
  const stored = await recordOnDisk(bed.home);
  assert.ok(stored.tokens?.refreshToken);

  const provider = authProviderV2(keeper, server.url);
  const served = await provider.tokens();
  assert.ok(served);
  await provider.saveTokens({ access_token: served.access_token, token_type: 'Bearer', issuer: bed.as.issuer });
  const afterSave = await recordOnDisk(bed.home);
  assert.equal(afterSave.generation, stored.generation, 'nothing was written');
  assert.equal(afterSave.tokens?.refreshToken, stored.tokens?.refreshToken, 'the refresh token is kept');

  // The 1.x provider returns unstamped tokens; 2.x's auth() stamps them and saves them back.
  const legacy = keeper.authProvider(server.url);
  await legacy.tokens();
  const warn = console.warn;
  console.warn = () => {}; // 2.x warns about the missing stamp
  try {
    assert.equal(await auth(legacy, { serverUrl: server.url }), 'REDIRECT');
  } finally {
    console.warn = warn;
  }
  const afterLegacy = await recordOnDisk(bed.home);
  assert.ok(afterLegacy.tokens?.refreshToken, 'the record still holds a refresh token');
  assert.equal((await keeper.status(server.url))[0]?.state, 'ok');
});

test('SDK v2: saveTokens is compare-and-swap: stale tokens do not overwrite newer ones, another issuer is refused, tokens the provider saw are replaced', async (t) => {
  const bed = await startBed(t);
  const server = bed.servers[0]!;
  const keeper = bed.keeper();
  await keeper.login(server.url);
  const provider = authProviderV2(keeper, server.url);
  const seen = (await provider.tokens())?.access_token as string;

  // Another process refreshes: the record now holds newer tokens than the SDK saw.
  const other = bed.keeper();
  const newer = await other.recoverFromRejection(server.url, seen);
  assert.notEqual(newer, seen);
  const stored = await recordOnDisk(bed.home);

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

  const fresh = authProviderV2(other, server.url);
  await fresh.tokens();
  await assert.rejects(
    fresh.saveTokens({ access_token: 'x', token_type: 'Bearer', issuer: 'https://evil.example' }),
    (err: unknown) => err instanceof AuthkeepError && err.code === 'store_conflict',
  );
  await fresh.saveTokens({
    access_token: 'sdk-exchanged-access-token',
    token_type: 'Bearer',
    expires_in: 3600,
    issuer: bed.as.issuer,
  });
  const replaced = await recordOnDisk(bed.home);
  assert.equal(replaced.tokens?.accessToken, 'sdk-exchanged-access-token');
  assert.equal(replaced.generation, stored.generation + 1);
  assert.equal((await fresh.tokens())?.access_token, 'sdk-exchanged-access-token', 'and served from then on');
});

test('SDK v2: non-interactive, nothing stored: connecting ends in NeedsAuthError no_credentials and registers nothing', async (t) => {
  const bed = await startBed(t);
  const server = bed.servers[0]!;
  const provider = authProviderV2(bed.keeper(), server.url, { interactive: false });
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

test("SDK v2: 403 insufficient_scope through the transport's step-up is re-authorized by AuthKeeper with the union of scopes; the triggering call fails once, the next succeeds", async (t) => {
  const bed = await startBed(t);
  const server = bed.servers[0]!;
  const keeper = bed.keeper();
  await keeper.login(server.url);
  const client = new Client({ name: 'authkeep-test', version: '0.0.0' });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(server.url), { authProvider: authProviderV2(keeper, server.url) }),
  );
  t.after(() => client.close());
  await assert.rejects(client.callTool({ name: 'admin_echo', arguments: { text: 'root' } }), UnauthorizedError);
  assert.equal(bed.robotOpens(), 2, 'one sign-in, one step-up');
  assert.equal(resultText(await client.callTool({ name: 'admin_echo', arguments: { text: 'root' } })), 'admin: root');
  const scope = (await keeper.status(server.url))[0]?.scope?.split(' ') ?? [];
  assert.ok(scope.includes('mcp:admin') && scope.includes('mcp:read'), `granted ${scope.join(' ')}`);
  assert.equal(bed.as.audit.counts().registrations, 1, 'no registration of the SDK');
});

test('SDK v2: a token the server refuses (401) is recovered inside auth() through AuthKeeper: that one call fails, the next succeeds; keeper.fetch on a 2.x transport loses no call', async (t) => {
  const bed = await startBed(t);
  const server = bed.servers[0]!;
  await bed.keeper().login(server.url);
  await storeRefusedAccessToken(bed.home, 'refused-by-the-server');
  const before = bed.as.audit.counts();

  const keeper = bed.keeper();
  const client = new Client({ name: 'authkeep-test', version: '0.0.0' });
  t.after(() => client.close());
  await assert.rejects(
    client.connect(
      new StreamableHTTPClientTransport(new URL(server.url), { authProvider: authProviderV2(keeper, server.url) }),
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
    new StreamableHTTPClientTransport(new URL(server.url), { authProvider: authProviderV2(keeper, server.url) }),
  );
  assert.equal(resultText(await retry.callTool({ name: 'echo', arguments: { text: 'recovered' } })), 'recovered');

  // The same refusal through keeper.fetch is recovered in-band: no call fails.
  await storeRefusedAccessToken(bed.home, 'refused-by-the-server-too');
  const viaFetch = new Client({ name: 'authkeep-test', version: '0.0.0' });
  t.after(() => viaFetch.close());
  const other = bed.keeper();
  await viaFetch.connect(new StreamableHTTPClientTransport(new URL(server.url), { fetch: other.fetch(server.url) }));
  assert.equal(resultText(await viaFetch.callTool({ name: 'echo', arguments: { text: 'in-band' } })), 'in-band');
});

test('SDK v2: fetch: keeper.fetch(url) on a 2.x transport carries a new token after each expiry and steps up in-band (no call fails)', async (t) => {
  const bed = await startBed(t, { as: { accessTokenTtlSeconds: 2 } });
  const server = bed.servers[0]!;
  const served = new Set<string>();
  const keeper = bed.keeper({
    fetch: (input, init) => {
      const authorization = new Headers(init?.headers).get('authorization');
      if (String(input).startsWith(server.url) && authorization?.startsWith('Bearer ')) {
        served.add(fingerprint(authorization.slice('Bearer '.length)));
      }
      return fetch(input, init);
    },
  });
  await keeper.login(server.url);
  const before = bed.as.audit.counts();
  const client = new Client({ name: 'authkeep-test', version: '0.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(server.url), { fetch: keeper.fetch(server.url) }));
  t.after(() => client.close());
  let calls = 0;
  while (served.size < 4) {
    const label = `call-${calls++}`;
    assert.equal(resultText(await client.callTool({ name: 'echo', arguments: { text: label } })), label);
  }
  assert.equal(
    resultText(await client.callTool({ name: 'admin_echo', arguments: { text: 'root' } })),
    'admin: root',
    'the 403 was stepped up and the same call re-sent',
  );
  const after = bed.as.audit.counts();
  assert.ok(after.refreshGrants - before.refreshGrants >= 3, '3+ expiries crossed');
  assert.equal(after.refreshReuses, 0);
  assert.equal(after.revokedGrants, 0);
  assert.equal(bed.robotOpens(), 2, 'one sign-in, one step-up');
});

test('SDK v2: the code verifiers of two concurrent flows built by 2.x stay separate (keyed by state, bound by the PKCE challenge)', async (t) => {
  // A record pointing at a hostile AS that advertises RFC 9207 `iss`, and two flows built by 2.x's
  // own code, filed with the provider as two concurrent auth() runs would interleave them.
  const w = await hostileWorld(t);
  w.server.json(
    '/.well-known/oauth-authorization-server',
    asMetadata(w.origin, w.origin, {
      revocation_endpoint: undefined,
      authorization_response_iss_parameter_supported: true,
    }),
  );
  const { AuthKeeper } = await import('../../src/index.js');
  const keeper = new AuthKeeper({ home: w.home, allowInsecureLoopback: true, openAuthorizationUrl: w.approve() });
  await keeper.login(w.mcpUrl);
  const provider = authProviderV2(keeper, w.mcpUrl);
  const clientInformation = { client_id: 'client-1', redirect_uris: [provider.redirectUrl] };
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
  const callback = (state: string) => new URLSearchParams({ state, code: `code-for-${state}`, iss: w.origin });

  assert.throws(() => provider.codeVerifier(), /2 authorization flows are open/, 'no single slot to guess from');
  const [v1, v2] = await Promise.all([
    provider.completeAuthorization(callback(s1), async () => {
      await new Promise((resolve) => setImmediate(resolve));
      return provider.codeVerifier();
    }),
    provider.completeAuthorization(callback(s2), async () => provider.codeVerifier()),
  ]);
  assert.equal(v1, f1.codeVerifier, 'flow 1 gets its own verifier');
  assert.equal(v2, f2.codeVerifier, 'flow 2 gets its own verifier');
  await assert.rejects(
    provider.completeAuthorization(callback(s1), async () => provider.codeVerifier()),
    /no open authorization flow/,
    'a verifier is used once',
  );
});

test('SDK v2: the package root never imports @modelcontextprotocol/client (1.x users need not install it); `authkeep/sdk-v2` is its own export', async () => {
  // Every module the root reaches through relative imports, types included (declarations keep
  // `import type`), and none of them names the 2.x client.
  const seen = new Set<string>();
  const reachesV2: string[] = [];
  const visit = async (file: string): Promise<void> => {
    if (seen.has(file)) return;
    seen.add(file);
    const source = await readFile(file, 'utf8');
    for (const [, specifier] of source.matchAll(/(?:import|export)\s[^'"]*?from\s+'([^']+)'/g)) {
      if (specifier === undefined) continue;
      if (specifier.startsWith('@modelcontextprotocol/client')) reachesV2.push(path.relative(ROOT, file));
      if (specifier.startsWith('.')) await visit(path.resolve(path.dirname(file), specifier.replace(/\.js$/, '.ts')));
    }
  };
  await visit(path.join(ROOT, 'src/index.ts'));
  assert.ok(seen.size > 20, `the walk followed the root's imports (${seen.size} modules)`);
  assert.deepEqual(reachesV2, []);

  const pkg = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8'));
  // The subpath names what the library build emits for src/sdk-v2.ts (.ci/pack-check.sh imports it).
  const build = JSON.parse(await readFile(path.join(ROOT, 'tsconfig.build.json'), 'utf8'));
  const emitted = `./${path.posix.join(build.compilerOptions.outDir, 'sdk-v2')}`;
  assert.equal(build.compilerOptions.rootDir, 'src');
  assert.deepEqual(pkg.exports['./sdk-v2'], { types: `${emitted}.d.ts`, import: `${emitted}.js` });
  assert.equal(pkg.peerDependenciesMeta?.['@modelcontextprotocol/client']?.optional, true);
  assert.equal(pkg.devDependencies['@modelcontextprotocol/client'], '2.4.0', 'the tested version, pinned');
});
