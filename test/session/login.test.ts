/**
 * AuthKeeper end to end against the real oidc-provider (rotation with reuse revocation) and real
 * protected MCP servers: sign-in through the robot browser, tokens, refresh after expiry, step-up
 * on 403, logout with revocation; DCR and pre-registered clients; every discovery variant.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { createRobotBrowser, startAuthorizationServer } from '../../arena/testbed/index.js';
import { type AuthKeeper, NeedsAuthError } from '../../src/index.js';
import { listLocks } from '../../src/store/lock.js';
import { jwtExpiresAt, startBed, untilPast } from '../helpers/bed.js';
import { expireStoredTokens } from '../helpers/records.js';
import { assertNoSecrets, witnessSecrets } from '../helpers/secrets.js';

async function connect(keeper: AuthKeeper, url: string): Promise<Client> {
  const client = new Client({ name: 'authkeep-test', version: '0.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(url), { fetch: keeper.fetch(url) }));
  return client;
}

function text(result: Awaited<ReturnType<Client['callTool']>>): string {
  const content = result.content as Array<{ type: string; text?: string }>;
  return content.map((c) => c.text ?? '').join('');
}

async function recordFile(home: string): Promise<string> {
  const files = (await readdir(path.join(home, 'servers'))).filter((f) => f.endsWith('.json'));
  assert.equal(files.length, 1, 'one record file');
  return path.join(home, 'servers', files[0] as string);
}

test('signs in with dynamic client registration, calls a tool, and refreshes once per expiry', async (t) => {
  // 5 s tokens (4-5 s with whole-second exp): a call has a second of the token's life to reach the
  // server even on a saturated machine, and the test still waits out one lifetime.
  const bed = await startBed(t, { as: { accessTokenTtlSeconds: 5 } });
  const witness = witnessSecrets(bed.as);
  const server = bed.servers[0]!;
  const keeper = bed.keeper();

  const status = await keeper.login(server.url);
  assert.equal(status.state, 'ok');
  assert.equal(status.registration, 'dynamic');
  assert.equal(status.issuer, bed.as.issuer);
  assert.equal(bed.robotOpens(), 1);

  const client = await connect(keeper, server.url);
  assert.equal(text(await client.callTool({ name: 'echo', arguments: { text: 'one' } })), 'one');

  const first = await keeper.getAccessToken(server.url);
  assert.equal(await keeper.getAccessToken(server.url), first, 'cached token is served again');
  // (On a slow machine the sign-in's token may already have been refreshed once for `first`.)
  const refreshesBefore = bed.as.audit.counts().refreshGrants;
  await untilPast(jwtExpiresAt(first));
  const second = await keeper.getAccessToken(server.url);
  assert.notEqual(second, first, 'expired token was refreshed');
  assert.equal(bed.as.audit.counts().refreshGrants, refreshesBefore + 1, 'once for the expiry');
  assert.equal(text(await client.callTool({ name: 'echo', arguments: { text: 'two' } })), 'two');
  await client.close();

  const counts = bed.as.audit.counts();
  assert.equal(counts.registrations, 1);
  assert.equal(counts.authorizationRequests, 1);
  assert.equal(counts.codeExchanges, 1);
  assert.equal(counts.refreshGrants, refreshesBefore + 1);
  assert.equal(counts.refreshReuses, 0);
  assert.equal(counts.revokedGrants, 0);
  assert.equal(counts.invalidGrants, 0);

  // A second AuthKeeper (another process's view) adopts the stored tokens without refreshing.
  const other = bed.keeper();
  assert.equal(await other.getAccessToken(server.url), second);
  assert.equal(bed.as.audit.counts().refreshGrants, refreshesBefore + 1);

  // No secret in any log line: none the AS issued or received during the test (both access
  // tokens, both refresh tokens, the code, the verifier), not only the final record's.
  assert.ok(
    bed.logs.some((e) => e.event === 'refresh.ok'),
    'the refresh was logged',
  );
  assert.ok(witness.count('RefreshToken issued') >= 2 && witness.count('code_verifier received') === 1);
  assertNoSecrets(bed.logs, witness.secrets(), 'the log');
});

test('steps up on 403 insufficient_scope with the union of scopes, bounded', async (t) => {
  const bed = await startBed(t);
  const server = bed.servers[0]!;
  const keeper = bed.keeper();
  await keeper.login(server.url);
  const client = await connect(keeper, server.url);
  const result = await client.callTool({ name: 'admin_echo', arguments: { text: 'root' } });
  assert.equal(text(result), 'admin: root');
  assert.equal(bed.robotOpens(), 2, 'one sign-in, one step-up');
  const [status] = await keeper.status(server.url);
  assert.ok(status?.scope?.split(' ').includes('mcp:admin'), 'granted scope now includes mcp:admin');
  assert.ok(status?.scope?.split(' ').includes('mcp:read'), 'and keeps mcp:read');
  await client.close();
});

test('logout revokes at the AS, deletes the record, and status says needs-auth no_credentials', async (t) => {
  const bed = await startBed(t);
  const server = bed.servers[0]!;
  const keeper = bed.keeper();
  await keeper.login(server.url);
  const result = await keeper.logout(server.url);
  assert.deepEqual(result, { revoked: true, deleted: true, revocation: 'revoked' });
  assert.equal(bed.as.audit.counts().revocations, 1);
  const [status] = await keeper.status(server.url);
  assert.equal(status?.state, 'needs-auth');
  assert.equal(status?.needsAuth?.reason, 'no_credentials');
  await assert.rejects(keeper.getAccessToken(server.url), (err: unknown) => {
    assert.ok(err instanceof NeedsAuthError);
    assert.equal(err.reason, 'no_credentials');
    return true;
  });
});

test('uses a pre-registered confidential client (client_secret_basic) without registering', async (t) => {
  const bed = await startBed(t, {
    as: {
      accessTokenTtlSeconds: 2,
      staticClients: [
        {
          client_id: 'preregistered',
          client_secret: 'preregistered-secret-value-0123456789',
          token_endpoint_auth_method: 'client_secret_basic',
          redirect_uris: ['http://127.0.0.1/callback'],
          application_type: 'native',
          grant_types: ['authorization_code', 'refresh_token'],
        },
      ],
    },
  });
  const server = bed.servers[0]!;
  const keeper = bed.keeper({
    staticClients: {
      [bed.as.issuer]: {
        clientId: 'preregistered',
        clientSecret: 'preregistered-secret-value-0123456789',
        tokenEndpointAuthMethod: 'client_secret_basic',
      },
    },
  });
  const status = await keeper.login(server.url);
  assert.equal(status.registration, 'pre_registered');
  assert.equal(status.clientId, 'preregistered');
  const first = await keeper.getAccessToken(server.url);
  // (On a slow machine the sign-in's token may already have been refreshed once for `first`.)
  const refreshesBefore = bed.as.audit.counts().refreshGrants;
  await untilPast(jwtExpiresAt(first));
  assert.notEqual(await keeper.getAccessToken(server.url), first);
  const counts = bed.as.audit.counts();
  assert.equal(counts.registrations, 0);
  assert.equal(counts.refreshGrants, refreshesBefore + 1, 'the pre-registered client refreshed once for the expiry');
  assert.equal(counts.invalidGrants, 0);
});

for (const discovery of ['header', 'well-known-path', 'well-known-root', 'two-challenges'] as const) {
  test(`discovers and signs in when the server's discovery is ${discovery}`, async (t) => {
    const bed = await startBed(t, { servers: [{ discovery }] });
    const server = bed.servers[0]!;
    const keeper = bed.keeper();
    const status = await keeper.login(server.url);
    assert.equal(status.state, 'ok');
    const client = await connect(keeper, server.url);
    assert.equal(text(await client.callTool({ name: 'echo', arguments: { text: discovery } })), discovery);
    await client.close();
  });
}

test('discovers an issuer with a path (tenant) through path-inserted RFC 8414 metadata', async (t) => {
  const bed = await startBed(t, { as: { issuerPath: '/tenant', pathInsertedMetadata: true } });
  const server = bed.servers[0]!;
  const status = await bed.keeper().login(server.url);
  assert.equal(status.issuer, bed.as.issuer);
  assert.ok(bed.as.issuer.endsWith('/tenant'));
  const first = bed.as.audit.http().find((e) => e.path.includes('.well-known'));
  assert.equal(
    first?.path,
    '/.well-known/oauth-authorization-server/tenant',
    'RFC 8414 path-inserted form asked first',
  );
});

test('discovers an issuer with a path through OIDC path-appended metadata when path-inserted is absent', async (t) => {
  const bed = await startBed(t, { as: { issuerPath: '/tenant', pathInsertedMetadata: false } });
  const status = await bed.keeper().login(bed.servers[0]!.url);
  assert.equal(status.state, 'ok');
  assert.equal(status.issuer, bed.as.issuer);
});

for (const discovery of ['legacy-as-on-origin', 'legacy-default-endpoints'] as const) {
  test(`2025-03-26 back-compat: ${discovery}`, async (t) => {
    const bed = await startBed(t, { servers: [{ discovery }] });
    const server = bed.servers[0]!;
    const keeper = bed.keeper();
    const status = await keeper.login(server.url, { scope: 'mcp:read' });
    assert.equal(status.state, 'ok');
    assert.equal(status.issuer, server.origin);
    const client = await connect(keeper, server.url);
    assert.equal(text(await client.callTool({ name: 'echo', arguments: { text: 'legacy' } })), 'legacy');
    await client.close();
  });
}

test('a registration rejected for its scope is retried without it and the sign-in completes', async (t) => {
  const bed = await startBed(t, { as: { strictRegistrationScopes: true } });
  const status = await bed.keeper().login(bed.servers[0]!.url);
  assert.equal(status.state, 'ok');
  const registrations = bed.as.audit.http().filter((e) => e.endpoint === 'registration');
  assert.equal(registrations.length, 2, 'first registration refused, second accepted');
  assert.equal(registrations[0]?.status, 400);
  assert.ok(registrations[0]?.bodyNames?.includes('scope'));
  assert.ok(!registrations[1]?.bodyNames?.includes('scope'));
});

test('drift: tokens stamped with another client_id yield needs-auth drift and no request to the AS', async (t) => {
  const bed = await startBed(t, { as: { accessTokenTtlSeconds: 1 } });
  const server = bed.servers[0]!;
  await bed.keeper().login(server.url);
  const file = await recordFile(bed.home);
  const record = JSON.parse(await readFile(file, 'utf8'));
  record.tokens.clientId = 'some-other-registration';
  await writeFile(file, JSON.stringify(record));
  const before = bed.as.audit.http().length;

  const keeper = bed.keeper();
  await assert.rejects(keeper.getAccessToken(server.url), (err: unknown) => {
    assert.ok(err instanceof NeedsAuthError);
    assert.equal(err.reason, 'drift');
    return true;
  });
  assert.equal(bed.as.audit.http().length, before, 'the AS received no request');
  const [status] = await keeper.status(server.url);
  assert.equal(status?.needsAuth?.reason, 'drift');
});

test('invalid_grant on refresh marks needs-auth with the reason, the AS error and the request', async (t) => {
  const bed = await startBed(t, { as: { accessTokenTtlSeconds: 1 } });
  const server = bed.servers[0]!;
  const keeper = bed.keeper();
  await keeper.login(server.url);
  // Revoke the grant behind our back (as an admin would).
  const file = await recordFile(bed.home);
  const record = JSON.parse(await readFile(file, 'utf8'));
  const revoke = await fetch(bed.as.endpoints.revocation, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token: record.tokens.refreshToken, client_id: record.registration.clientId }),
  });
  assert.equal(revoke.status, 200);
  // The access token's lifetime has passed (the record says so; a 1 s token whose exchange was slow
  // on a busy machine may be served for a second after it arrived, by design), for a process that
  // has not cached it: its next call refreshes.
  await expireStoredTokens(bed.home, server.url);
  const next = bed.keeper();
  await assert.rejects(next.getAccessToken(server.url), (err: unknown) => {
    assert.ok(err instanceof NeedsAuthError);
    assert.equal(err.reason, 'invalid_grant');
    assert.equal(err.info.error, 'invalid_grant');
    assert.match(err.info.request ?? '', /^POST http:\/\/127\.0\.0\.1:\d+\/.*token/);
    return true;
  });
  const [status] = await next.status(server.url);
  assert.equal(status?.state, 'needs-auth');
  assert.equal(status?.needsAuth?.reason, 'invalid_grant');
  assert.ok(status?.needsAuth?.at);
});

test('servers on one issuer signing in at the same time share one client registration', async (t) => {
  const bed = await startBed(t, {
    servers: [{ discovery: 'header' }, { discovery: 'well-known-path' }, { discovery: 'well-known-root' }],
  });
  // A fresh robot (cookie jar) per tab: concurrent sign-ins are concurrent browser tabs.
  const keeper = bed.keeper({ openAuthorizationUrl: async (url) => void (await createRobotBrowser().open(url)) });
  const statuses = await Promise.all(bed.servers.map((server) => keeper.login(server.url)));
  assert.deepEqual(
    statuses.map((s) => s.state),
    ['ok', 'ok', 'ok'],
  );
  assert.equal(new Set(statuses.map((s) => s.clientId)).size, 1, 'one client_id for the issuer');
  assert.equal(bed.as.audit.counts().registrations, 1, 'the AS saw one registration');
});

test('a server that moved to another authorization server: needs-auth issuer_changed, then login re-registers there', async (t) => {
  const bed = await startBed(t);
  const server = bed.servers[0]!;
  const keeper = bed.keeper();
  await keeper.login(server.url);
  const fetchFn = keeper.fetch(server.url);
  const ok = await fetchFn(server.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }),
  });
  assert.notEqual(ok.status, 401);
  await ok.body?.cancel();

  const next = await startAuthorizationServer({ accessTokenTtlSeconds: 3600 });
  t.after(() => next.close());
  server.switchAuthorizationServer(next);
  await assert.rejects(
    fetchFn(server.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'ping' }),
    }),
    (err: unknown) => {
      assert.ok(err instanceof NeedsAuthError);
      assert.equal(err.reason, 'issuer_changed');
      assert.ok(err.info.errorDescription?.includes(next.issuer));
      return true;
    },
  );
  const [status] = await keeper.status(server.url);
  assert.equal(status?.needsAuth?.reason, 'issuer_changed');

  const after = await keeper.login(server.url);
  assert.equal(after.state, 'ok');
  assert.equal(after.issuer, next.issuer);
  assert.equal(next.audit.counts().registrations, 1, 're-registered at the new issuer');
});

test('keep-fresh refreshes from a timer just before expiry, once per lifetime, with no calls', async (t) => {
  const bed = await startBed(t, { as: { accessTokenTtlSeconds: 2 } });
  const server = bed.servers[0]!;
  // What each sign-in or refresh stored, read when it is logged (the record is written first).
  let file: string | undefined;
  const stored: Array<{ obtainedAt: number; expiresAt: number }> = [];
  const remember = (): void => {
    const { tokens } = JSON.parse(readFileSync(file as string, 'utf8'));
    stored.push({ obtainedAt: tokens.obtainedAt, expiresAt: tokens.expiresAt });
  };
  let threeRefreshes!: () => void;
  const refreshed = new Promise<void>((resolve) => (threeRefreshes = resolve));
  const keeper = bed.keeper({
    refreshMode: 'keep-fresh',
    log: (event) => {
      if (event.event !== 'refresh.ok') return;
      remember();
      if (stored.length === 4) threeRefreshes();
    },
  });
  await keeper.login(server.url);
  file = await recordFile(bed.home);
  remember();
  const before = bed.as.audit.counts().refreshGrants;
  await refreshed; // three refreshes, and not one call

  // Each refresh was sent no earlier than keep-fresh's due instant for the token it replaced:
  // 1.5% of that token's lifetime (at least 20 ms, up to 10% jitter) before its expiry, not in its
  // last quarter as on demand. Every refresh follows the previous one's token: one per lifetime.
  let late = 0;
  for (let i = 1; i < 4; i++) {
    const previous = stored[i - 1]!;
    const lifetime = previous.expiresAt - previous.obtainedAt;
    const due = previous.expiresAt - 1.1 * Math.max(20, 0.015 * lifetime);
    assert.ok(
      stored[i]!.obtainedAt >= due,
      `refresh ${i} sent ${previous.expiresAt - stored[i]!.obtainedAt} ms before a ${lifetime} ms token expired`,
    );
    if (stored[i]!.obtainedAt > previous.expiresAt) late++;
  }
  t.diagnostic(`${late} of 3 timer refreshes were sent after the token expired (timers fire late on a busy machine)`);
  const token = await keeper.getAccessToken(server.url);
  assert.equal(jwtExpiresAt(token) >= stored[3]!.expiresAt, true, 'the token the last refresh stored is served');
  assert.equal(bed.as.audit.counts().refreshGrants - before, 3, 'serving it needed no refresh');
  assert.equal(bed.as.audit.counts().refreshReuses, 0);
});

test('close() waits for a background refresh in flight to be stored, then refreshes no more', async (t) => {
  const bed = await startBed(t, { as: { accessTokenTtlSeconds: 2 } });
  const server = bed.servers[0]!;
  // The AS's answer to the first refresh (it has rotated the refresh token by then) is held back
  // until the test lets it through: the moment a process exiting would lose the rotation.
  let answered!: () => void;
  const refreshAnswered = new Promise<void>((resolve) => (answered = resolve));
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  const keeper = bed.keeper({
    refreshMode: 'keep-fresh',
    fetch: async (input, init) => {
      const response = await fetch(input, init);
      const body = init?.body;
      const form =
        body instanceof URLSearchParams ? body : typeof body === 'string' ? new URLSearchParams(body) : undefined;
      if (form?.get('grant_type') === 'refresh_token') {
        answered();
        await held;
      }
      return response;
    },
  });
  await keeper.login(server.url);
  const before = JSON.parse(await readFile(await recordFile(bed.home), 'utf8'));
  await refreshAnswered; // the keep-fresh timer's refresh: rotated at the AS, not yet stored

  let closed = false;
  const closing = keeper.close().then(() => {
    closed = true;
  });
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(closed, false, 'close() waits for the refresh in flight');
  release();
  await closing;
  const after = JSON.parse(await readFile(await recordFile(bed.home), 'utf8'));
  assert.equal(after.generation, before.generation + 1, 'the rotated tokens were stored before close() resolved');
  assert.notEqual(after.tokens.refreshToken, before.tokens.refreshToken);

  await untilPast(jwtExpiresAt(after.tokens.accessToken)); // a whole lifetime of the new token
  const counts = bed.as.audit.counts();
  assert.equal(counts.refreshGrants, 1, 'no timer refreshed after close()');
  assert.equal(counts.refreshReuses, 0);
});

test('a sign-in given 20 minutes holds the login lock for longer than that: no waiter takes it over from a slow human', async (t) => {
  const bed = await startBed(t);
  const server = bed.servers[0]!;
  let tabOpened!: () => void;
  const opened = new Promise<void>((resolve) => {
    tabOpened = resolve;
  });
  let finish!: () => void;
  const userDone = new Promise<void>((resolve) => {
    finish = resolve;
  });
  const keeper = bed.keeper({
    loginTimeoutMs: 20 * 60_000,
    openAuthorizationUrl: async (url) => {
      tabOpened();
      await userDone; // the human is still reading the consent page
      await createRobotBrowser().open(url);
    },
  });
  const signingIn = keeper.login(server.url);
  await opened;
  let held: Awaited<ReturnType<typeof listLocks>>[number] | undefined;
  try {
    [held] = (await listLocks(path.join(bed.home, 'locks'))).filter((lock) => lock.name.endsWith('login'));
  } finally {
    finish(); // whatever the assertions below say, the sign-in ends
  }
  assert.equal((await signingIn).state, 'ok');
  assert.ok(held?.info, 'the sign-in held the login lock');
  assert.ok((held.info.maxHoldMs ?? 0) > 20 * 60_000, `declared hold ${held.info.maxHoldMs} ms`);
  assert.equal(held.stale, undefined);
});
