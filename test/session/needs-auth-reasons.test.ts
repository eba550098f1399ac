/**
 * Every needs-auth reason of src/errors.ts, produced end to end through the public AuthKeeper API
 * (getAccessToken, fetch, login, authProvider) against the real oidc-provider testbed and real
 * protected MCP servers, or against a tiny real HTTP server where the misbehaviour is one no real
 * AS can be made to show (a malformed refresh answer). Each test asserts the reason, and that the
 * error's `info` carries what the AS said (`error`, `error_description`), when (`at`, within the
 * call), and which request failed, or that it carries none of them when no request was made; and,
 * where the reason is persisted, that status() reports the same.
 *
 * Time: "the access token has expired" is reached by rewriting the stored expiry (records.ts),
 * never by sleeping. `drift` has its own file (drift.test.ts).
 */
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { createRobotBrowser, startAuthorizationServer } from '../../arena/testbed/index.js';
import { AuthKeeper, NeedsAuthError, type NeedsAuthReason } from '../../src/index.js';
import { canonicalServerUrl } from '../../src/session/canonical-url.js';
import { recordKey, storeLayout } from '../../src/store/paths.js';
import { callTool, startBed, tempHome } from '../helpers/bed.js';
import { asMetadata, startHostileServer } from '../helpers/hostile-server.js';
import { recordLog } from '../helpers/log-events.js';
import { editTokens, expireStoredTokens, readRecord } from '../helpers/records.js';
import { assertNoSecrets } from '../helpers/secrets.js';
import { spawnHelper } from '../helpers/store-fixtures.js';

/** Where each reason is produced end to end (a reason added to errors.ts must be added here). */
const PRODUCED: Record<NeedsAuthReason, string> = {
  no_credentials: 'this file',
  invalid_grant: 'this file',
  client_mismatch: 'this file',
  client_expired: 'security/dead-client.test.ts',
  drift: 'drift.test.ts',
  revoked: 'this file',
  expired: 'this file',
  issuer_changed: 'this file',
  malformed_response: 'this file',
  as_unreachable: 'this file',
  insufficient_scope: 'this file',
  login_failed: 'this file',
  as_error: 'this file',
  store_corrupt: 'this file',
};

interface Expected {
  reason: NeedsAuthReason;
  serverUrl: string;
  /** The AS's `error`, or undefined when it must be absent. */
  error?: string | undefined;
  /** Matches `error_description`, or undefined when it must be absent. */
  errorDescription?: RegExp | string | undefined;
  /** The failed request exactly, or undefined when it must be absent. */
  request?: string | undefined;
  /** `at` lies in [since, now]. */
  since: number;
}

/** Assert the NeedsAuthError `err` says exactly what `expected` says. Returns it. */
function assertNeedsAuth(err: unknown, expected: Expected): NeedsAuthError {
  assert.ok(err instanceof NeedsAuthError, `a NeedsAuthError, got ${String(err)}`);
  const { info } = err;
  assert.equal(err.reason, expected.reason, err.message);
  assert.equal(err.code, expected.reason);
  assert.equal(info.reason, expected.reason);
  assert.equal(info.serverUrl, canonicalServerUrl(expected.serverUrl));
  assert.equal(info.error, expected.error, 'info.error');
  if (expected.errorDescription === undefined) assert.equal(info.errorDescription, undefined, 'info.errorDescription');
  else if (typeof expected.errorDescription === 'string')
    assert.equal(info.errorDescription, expected.errorDescription);
  else assert.match(info.errorDescription ?? '', expected.errorDescription);
  assert.equal(info.request, expected.request, 'info.request');
  const at = Date.parse(info.at);
  assert.ok(at >= expected.since - 1 && at <= Date.now(), `info.at ${info.at} lies within the call`);
  assert.match(err.message, new RegExp(`run \`authkeep login ${canonicalServerUrl(expected.serverUrl)}\``));
  return err;
}

/** status() reports the stored marker with the same fields. */
async function assertStatus(keeper: AuthKeeper, err: NeedsAuthError): Promise<void> {
  const [status] = await keeper.status(err.info.serverUrl);
  assert.equal(status?.state, 'needs-auth');
  assert.deepEqual(
    {
      reason: status?.needsAuth?.reason,
      error: status?.needsAuth?.error,
      errorDescription: status?.needsAuth?.errorDescription,
      request: status?.needsAuth?.request,
      at: status?.needsAuth?.at,
    },
    {
      reason: err.info.reason,
      error: err.info.error,
      errorDescription: err.info.errorDescription,
      request: err.info.request,
      at: err.info.at,
    },
  );
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  assert.fail('expected a rejection');
}

const tokenRequest = (as: { endpoints: { token: string } }) => `POST ${as.endpoints.token} (refresh_token)`;

test('every needs-auth reason is produced somewhere', () => {
  // The Record type above fails to compile when errors.ts gains a reason this table lacks.
  assert.equal(Object.keys(PRODUCED).length, 14);
});

test('no_credentials: nothing stored; getAccessToken and fetch say so without any request', async (t) => {
  const bed = await startBed(t);
  const server = bed.servers[0]!;
  const keeper = bed.keeper();
  const since = Date.now();
  const expected = { reason: 'no_credentials', serverUrl: server.url, since } as const;
  assertNeedsAuth(await rejection(keeper.getAccessToken(server.url)), expected);
  assertNeedsAuth(await rejection(callTool(keeper.fetch(server.url), server.url)), expected);
  assert.equal(bed.as.audit.http().length, 0, 'the AS received nothing');
  assert.equal(server.counts().requests, 0, 'the MCP server received nothing');
});

test('invalid_grant: the AS refuses a revoked refresh token; its error, description and the request are kept', async (t) => {
  const bed = await startBed(t);
  const server = bed.servers[0]!;
  await bed.keeper().login(server.url);
  const record = await readRecord(bed.home, server.url);
  const revoke = await fetch(bed.as.endpoints.revocation, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token: record.tokens!.refreshToken!, client_id: record.registration.clientId }),
  });
  assert.equal(revoke.status, 200);
  await expireStoredTokens(bed.home, server.url);

  const keeper = bed.keeper();
  const since = Date.now();
  const err = assertNeedsAuth(await rejection(keeper.getAccessToken(server.url)), {
    reason: 'invalid_grant',
    serverUrl: server.url,
    error: 'invalid_grant',
    errorDescription: 'grant request is invalid',
    request: tokenRequest(bed.as),
    since,
  });
  const refused = bed.as.audit.http().filter((e) => e.endpoint === 'token' && e.grantType === 'refresh_token');
  assert.equal(refused.length, 1);
  assert.equal(refused[0]?.status, 400);
  assert.equal(refused[0]?.error, 'invalid_grant', 'the AS itself refused it');
  assert.equal((err.cause as { status?: number }).status, 400, 'the cause is the token endpoint error');
  await assertStatus(keeper, err);
  // The marker answers the next call: no second request with the dead refresh token.
  assertNeedsAuth(await rejection(bed.keeper().getAccessToken(server.url)), {
    ...err.info,
    serverUrl: server.url,
    since,
  });
  assert.equal(bed.as.audit.counts().refreshGrants, 1);
});

test('client_mismatch: the AS no longer knows the client (invalid_client on refresh)', async (t) => {
  const bed = await startBed(t);
  const server = bed.servers[0]!;
  await bed.keeper().login(server.url);
  const { clientId } = (await readRecord(bed.home, server.url)).registration;
  // The AS's administrator deletes the dynamically registered client.
  await (bed.as.provider.Client as unknown as { adapter: { destroy(id: string): Promise<void> } }).adapter.destroy(
    clientId,
  );
  await expireStoredTokens(bed.home, server.url);

  const keeper = bed.keeper();
  const since = Date.now();
  const err = assertNeedsAuth(await rejection(keeper.getAccessToken(server.url)), {
    reason: 'client_mismatch',
    serverUrl: server.url,
    error: 'invalid_client',
    errorDescription: 'client authentication failed',
    request: tokenRequest(bed.as),
    since,
  });
  const refused = bed.as.audit.http().filter((e) => e.endpoint === 'token' && e.grantType === 'refresh_token');
  assert.deepEqual(
    refused.map((e) => [e.status, e.error]),
    [[401, 'invalid_client']],
  );
  await assertStatus(keeper, err);
});

test('revoked: the server refuses the access token and there is no refresh token to get another', async (t) => {
  const bed = await startBed(t, {
    as: {
      staticClients: [
        {
          client_id: 'no-refresh-grant',
          token_endpoint_auth_method: 'none',
          redirect_uris: ['http://127.0.0.1/callback'],
          application_type: 'native',
          grant_types: ['authorization_code'],
        },
      ],
    },
  });
  const server = bed.servers[0]!;
  const keeper = bed.keeper({
    staticClients: { [bed.as.issuer]: { clientId: 'no-refresh-grant', tokenEndpointAuthMethod: 'none' } },
  });
  await keeper.login(server.url);
  assert.equal((await readRecord(bed.home, server.url)).tokens?.refreshToken, undefined, 'the AS issued none');
  // The server revoked the access token on its side: it now refuses it.
  await editTokens(bed.home, server.url, (tokens) => ({ ...tokens, accessToken: 'revoked-by-the-server' }));

  const other = bed.keeper();
  const before = server.counts().unauthorized;
  const since = Date.now();
  const err = assertNeedsAuth(await rejection(callTool(other.fetch(server.url), server.url)), {
    reason: 'revoked',
    serverUrl: server.url,
    since,
  });
  assert.equal(server.counts().unauthorized - before, 1, 'one 401 from the server, for the refused token');
  assert.equal(bed.as.audit.counts().refreshGrants, 0, 'nothing to refresh with, nothing sent to the AS');
  await assertStatus(other, err);
});

test('expired: the access token expired and there is no refresh token; no request is made', async (t) => {
  const bed = await startBed(t, {
    as: {
      staticClients: [
        {
          client_id: 'no-refresh-grant',
          token_endpoint_auth_method: 'none',
          redirect_uris: ['http://127.0.0.1/callback'],
          application_type: 'native',
          grant_types: ['authorization_code'],
        },
      ],
    },
  });
  const server = bed.servers[0]!;
  const options = {
    staticClients: { [bed.as.issuer]: { clientId: 'no-refresh-grant', tokenEndpointAuthMethod: 'none' as const } },
  };
  await bed.keeper(options).login(server.url);
  const served = await bed.keeper(options).getAccessToken(server.url);
  assert.equal((await callTool((u, i) => fetchWith(served, u, i), server.url)).status, 200, 'valid while unexpired');
  await expireStoredTokens(bed.home, server.url);
  const before = bed.as.audit.http().length;

  const keeper = bed.keeper(options);
  const since = Date.now();
  const err = assertNeedsAuth(await rejection(keeper.getAccessToken(server.url)), {
    reason: 'expired',
    serverUrl: server.url,
    since,
  });
  assert.equal(bed.as.audit.http().length, before, 'no request reached the AS');
  await assertStatus(keeper, err);
});

function fetchWith(token: string, input: string | URL | Request, init?: RequestInit): Promise<Response> {
  const headers = new Headers(init?.headers);
  headers.set('authorization', `Bearer ${token}`);
  return fetch(input, { ...init, headers });
}

test('issuer_changed: the server moved to another AS; the new issuer, the old one and the rediscovery are named', async (t) => {
  const bed = await startBed(t);
  const server = bed.servers[0]!;
  const keeper = bed.keeper();
  await keeper.login(server.url);
  const fetchFn = keeper.fetch(server.url);
  assert.equal((await callTool(fetchFn, server.url)).status, 200);

  const next = await startAuthorizationServer({ accessTokenTtlSeconds: 3600 });
  t.after(() => next.close());
  server.switchAuthorizationServer(next);
  const since = Date.now();
  const err = assertNeedsAuth(await rejection(callTool(fetchFn, server.url)), {
    reason: 'issuer_changed',
    serverUrl: server.url,
    errorDescription: `the server now names ${next.issuer}; the stored grant is from ${bed.as.issuer}`,
    request: `discovery of ${canonicalServerUrl(server.url)}`,
    since,
  });
  await assertStatus(keeper, err);
  assert.equal(next.audit.counts().refreshGrants + next.audit.counts().codeExchanges, 0, 'no token sent to the new AS');
});

test('malformed_response: an unusable refresh answer names its field and the request; the record keeps its tokens', async (t) => {
  const srv = await startHostileServer();
  t.after(() => srv.close());
  const origin = srv.url;
  const mcpUrl = `${origin}/mcp`;
  srv
    .on('POST', '/mcp', {
      status: 401,
      headers: { 'www-authenticate': `Bearer resource_metadata="${origin}/prm"` },
      body: '',
    })
    .json('/prm', { resource: mcpUrl, authorization_servers: [origin] })
    .json('/.well-known/oauth-authorization-server', asMetadata(origin, origin))
    .on('POST', '/register', { status: 201, json: { client_id: 'client-1', token_endpoint_auth_method: 'none' } })
    .on('POST', '/token', {
      json: {
        access_token: 'at-1-SECRET-0123456789',
        token_type: 'Bearer',
        expires_in: 3600,
        refresh_token: 'rt-1-SECRET-0123456789',
      },
    });
  const home = await tempHome(t);
  const keeper = hostileKeeper(home, origin);
  await keeper.login(mcpUrl);
  srv.on('POST', '/token', { json: { access_token: 'at-2-SECRET-0123456789', token_type: 'N_A', expires_in: 60 } });
  await expireStoredTokens(home, mcpUrl);
  const stored = await readRecord(home, mcpUrl);

  const since = Date.now();
  const err = assertNeedsAuth(await rejection(hostileKeeper(home, origin).getAccessToken(mcpUrl)), {
    reason: 'malformed_response',
    serverUrl: mcpUrl,
    errorDescription: `POST ${origin}/token (refresh_token) answered with an unusable token_type: unsupported \`token_type\` value`,
    request: `POST ${origin}/token (refresh_token)`,
    since,
  });
  assert.equal(err.field, 'token_type');
  assertNoSecrets(err, ['at-1-SECRET-0123456789', 'rt-1-SECRET-0123456789', 'at-2-SECRET-0123456789'], 'error');
  assert.deepEqual(await readRecord(home, mcpUrl), stored, 'the record is unchanged: tokens kept, no marker');
});

/** An AuthKeeper for a hostile server at `origin` whose "browser" is approved at once with a code. */
function hostileKeeper(home: string, origin: string): AuthKeeper {
  return new AuthKeeper({
    home,
    allowInsecureLoopback: true,
    loginTimeoutMs: 10_000,
    transientRetryDelaysMs: [],
    openAuthorizationUrl: async (url) => {
      const authorize = new URL(url);
      const redirect = new URL(authorize.searchParams.get('redirect_uri') as string);
      redirect.searchParams.set('code', 'code-SECRET-0123456789');
      redirect.searchParams.set('state', authorize.searchParams.get('state') as string);
      redirect.searchParams.set('iss', origin);
      await (await fetch(redirect)).text();
    },
  });
}

test('as_unreachable: the AS is down and the access token has expired; the request and the failure are named, nothing is marked', async (t) => {
  const bed = await startBed(t);
  const server = bed.servers[0]!;
  await bed.keeper().login(server.url);
  await expireStoredTokens(bed.home, server.url);
  const stored = await readRecord(bed.home, server.url);
  await bed.as.close();

  const keeper = bed.keeper({ transientRetryDelaysMs: [] });
  const since = Date.now();
  const err = assertNeedsAuth(await rejection(keeper.getAccessToken(server.url)), {
    reason: 'as_unreachable',
    serverUrl: server.url,
    errorDescription: new RegExp(`^${escapeRegExp(tokenRequest(bed.as))} failed: connection refused$`),
    request: tokenRequest(bed.as),
    since,
  });
  assert.equal((err.cause as { kind?: string }).kind, 'transient');
  assert.deepEqual(await readRecord(bed.home, server.url), stored, 'tokens kept, no marker: a sign-in would not help');
});

test('as_unreachable: the AS keeps answering 503 temporarily_unavailable; every retry is made, its error is carried', async (t) => {
  const srv = await startHostileServer();
  t.after(() => srv.close());
  const origin = srv.url;
  const mcpUrl = `${origin}/mcp`;
  srv
    .on('POST', '/mcp', { status: 401, headers: { 'www-authenticate': `Bearer resource_metadata="${origin}/prm"` } })
    .json('/prm', { resource: mcpUrl, authorization_servers: [origin] })
    .json('/.well-known/oauth-authorization-server', asMetadata(origin, origin))
    .on('POST', '/register', { status: 201, json: { client_id: 'client-1', token_endpoint_auth_method: 'none' } })
    .on('POST', '/token', {
      json: {
        access_token: 'at-1-SECRET-0123456789',
        token_type: 'Bearer',
        expires_in: 3600,
        refresh_token: 'rt-1-SECRET-0123456789',
      },
    });
  const home = await tempHome(t);
  await hostileKeeper(home, origin).login(mcpUrl);
  srv.on('POST', '/token', {
    status: 503,
    json: { error: 'temporarily_unavailable', error_description: 'down for maintenance' },
  });
  await expireStoredTokens(home, mcpUrl);
  const refreshesBefore = srv.requestsTo('POST', '/token').length;

  const keeper = new AuthKeeper({ home, allowInsecureLoopback: true, transientRetryDelaysMs: [1, 1] });
  const since = Date.now();
  assertNeedsAuth(await rejection(keeper.getAccessToken(mcpUrl)), {
    reason: 'as_unreachable',
    serverUrl: mcpUrl,
    error: 'temporarily_unavailable',
    errorDescription: `POST ${origin}/token (refresh_token) failed, retry later: temporarily_unavailable: down for maintenance`,
    request: `POST ${origin}/token (refresh_token)`,
    since,
  });
  assert.equal(srv.requestsTo('POST', '/token').length - refreshesBefore, 3, 'the first attempt and two retries');
  assert.equal((await readRecord(home, mcpUrl)).needsAuth, undefined, 'nothing marked');
});

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

test('insufficient_scope: the SDK adapter, not interactive, meets a 403 for a scope the grant lacks', async (t) => {
  const bed = await startBed(t);
  const server = bed.servers[0]!;
  const keeper = bed.keeper();
  await keeper.login(server.url);
  const granted = (await keeper.status(server.url))[0]?.scope ?? '';
  const client = new Client({ name: 'authkeep-test', version: '0.0.0' });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(server.url), {
      authProvider: keeper.authProvider(server.url, { interactive: false }),
    }),
  );
  t.after(() => client.close());
  const since = Date.now();
  assertNeedsAuth(await rejection(client.callTool({ name: 'admin_echo', arguments: { text: 'root' } })), {
    reason: 'insufficient_scope',
    serverUrl: server.url,
    errorDescription: `the server asks for scope "mcp:read mcp:admin", the grant has "${granted}"`,
    since,
  });
  assert.equal(server.counts().forbidden, 1, 'the server answered 403 once');
  assert.equal(bed.robotOpens(), 1, 'no sign-in was started (only the first)');
});

test('login_failed: a sign-in another process runs is denied at the AS; the waiting one is released with its reason', async (t) => {
  const bed = await startBed(t);
  const server = bed.servers[0]!;
  const leader = spawnHelper('login-leader-child.ts', [bed.home, server.url]);
  t.after(() => {
    leader.proc.kill();
  });
  // The other process holds the sign-in lock and waits for its browser step.
  const url = (await leader.waitForLine(/^open /, 60_000)).slice('open '.length);

  const log = recordLog();
  const keeper = bed.keeper({ log: log.sink });
  const since = Date.now();
  const waiting = rejection(keeper.login(server.url));
  await log.next('login.waiting', 60_000);
  // Now the user, in the other process's tab, is refused by the AS.
  bed.as.behavior.denyConsent = true;
  await createRobotBrowser().open(url);
  assert.equal(await leader.waitForLine(/^(ok|failed)/, 60_000), 'failed authorization_denied');

  assertNeedsAuth(await waiting, {
    reason: 'login_failed',
    serverUrl: server.url,
    error: 'authorization_denied',
    errorDescription: `the sign-in run by process ${leader.pid} failed: authorization server answered access_denied: the robot user denied consent`,
    since,
  });
  assert.equal(bed.as.audit.counts().authorizationRequests, 1, 'the waiting process opened no second sign-in');
  assert.equal(bed.robotOpens(), 0, "the waiting process's browser was never opened");
  await leader.exited;
});

test('as_error: the AS refuses the refresh with another OAuth error (invalid_scope); it is kept with the request', async (t) => {
  const bed = await startBed(t);
  const server = bed.servers[0]!;
  await bed.keeper().login(server.url);
  // The stored grant claims a scope the refresh token does not carry (as a record written by
  // another client that stored the scope it asked for rather than the one granted).
  await editTokens(bed.home, server.url, (tokens) => ({ ...tokens, scope: `${tokens.scope} mcp:write` }));
  await expireStoredTokens(bed.home, server.url);

  const keeper = bed.keeper();
  const since = Date.now();
  const err = assertNeedsAuth(await rejection(keeper.getAccessToken(server.url)), {
    reason: 'as_error',
    serverUrl: server.url,
    error: 'invalid_scope',
    errorDescription: 'refresh token missing requested scope',
    request: tokenRequest(bed.as),
    since,
  });
  const refused = bed.as.audit.http().filter((e) => e.endpoint === 'token' && e.grantType === 'refresh_token');
  assert.deepEqual(
    refused.map((e) => [e.status, e.error]),
    [[400, 'invalid_scope']],
  );
  await assertStatus(keeper, err);
});

test('store_corrupt: an unreadable record is named and left in place by a read; no secret in it reaches the error', async (t) => {
  const bed = await startBed(t);
  const server = bed.servers[0]!;
  await bed.keeper().login(server.url);
  const record = await readRecord(bed.home, server.url);
  const file = storeLayout(bed.home).recordPath(recordKey(canonicalServerUrl(server.url)));
  // A record cut off mid-token (JSON.parse quotes its input in its message).
  const text = JSON.stringify(record, null, 2);
  const cut = text.slice(0, text.indexOf(record.tokens!.refreshToken!) + 20);
  await writeFile(file, cut);

  const keeper = bed.keeper();
  const since = Date.now();
  const err = assertNeedsAuth(await rejection(keeper.getAccessToken(server.url)), {
    reason: 'store_corrupt',
    serverUrl: server.url,
    errorDescription: new RegExp(`^the stored record ${escapeRegExp(file)} is not valid JSON$`),
    since,
  });
  assert.equal(await readFile(file, 'utf8'), cut, 'a read leaves the record where it is');
  assertNoSecrets(
    err,
    {
      access: record.tokens!.accessToken,
      refresh: record.tokens!.refreshToken!,
      refreshPrefix: record.tokens!.refreshToken!.slice(0, 20),
    },
    'store_corrupt error',
  );
  const [status] = await keeper.status(server.url);
  assert.equal(status?.needsAuth?.reason, 'store_corrupt', 'status still shows it');
  assert.equal(status?.unreadable?.file, file);
});
