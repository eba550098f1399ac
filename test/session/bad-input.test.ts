/**
 * Bad input through the whole AuthKeeper: a tiny real server that misbehaves in one way per test
 * (a real oidc-provider cannot be made to). Each failure is a typed error naming the field, the
 * stored records are byte-for-byte unchanged, and no secret reaches an error or a log line.
 */
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { type TestContext, test } from 'node:test';
import { AuthKeeper, AuthkeepError, type LogEvent, NeedsAuthError } from '../../src/index.js';
import { storedTokenExpiresAt, tempHome, untilPast } from '../helpers/bed.js';
import { asMetadata, type HostileServer, startHostileServer } from '../helpers/hostile-server.js';
import { assertNoSecrets as assertNoPlantedSecrets } from '../helpers/secrets.js';

const SECRETS = {
  code: 'auth-code-SECRET-0123456789abcdef',
  access: 'access-token-SECRET-0123456789abcdef',
  refresh: 'refresh-token-SECRET-0123456789abcdef',
  access2: 'access-token-2-SECRET-0123456789abcdef',
  clientSecret: 'client-secret-SECRET-0123456789abcdef',
};

interface Scenario {
  server: HostileServer;
  mcpUrl: string;
  keeper: AuthKeeper;
  home: string;
  logs: LogEvent[];
  errors: unknown[];
}

/** A well-behaved MCP server + AS on one hostile server; `tweak` breaks one thing. */
async function scenario(
  t: TestContext,
  tweak: (s: HostileServer, origin: string) => void = () => {},
): Promise<Scenario> {
  const server = await startHostileServer();
  t.after(() => server.close());
  const origin = server.url;
  const mcpUrl = `${origin}/mcp`;
  server
    .on('POST', '/mcp', {
      status: 401,
      headers: { 'www-authenticate': `Bearer resource_metadata="${origin}/prm", scope="mcp:read"` },
      body: '',
    })
    .json('/prm', { resource: mcpUrl, authorization_servers: [origin], scopes_supported: ['mcp:read'] })
    .json('/.well-known/oauth-authorization-server', asMetadata(origin, origin, { revocation_endpoint: undefined }))
    .on('POST', '/register', { status: 201, json: { client_id: 'client-1', token_endpoint_auth_method: 'none' } })
    .on('POST', '/token', {
      json: {
        access_token: SECRETS.access,
        token_type: 'Bearer',
        expires_in: 1,
        refresh_token: SECRETS.refresh,
        scope: 'mcp:read',
      },
    });
  tweak(server, origin);
  const home = await tempHome(t);
  const logs: LogEvent[] = [];
  const keeper = new AuthKeeper({
    home,
    allowInsecureLoopback: true,
    loginTimeoutMs: 3000,
    transientRetryDelaysMs: [],
    log: (e) => logs.push(e),
    // The "browser": the AS approves at once, redirecting with a code, the state, and iss.
    openAuthorizationUrl: async (url) => {
      const authorize = new URL(url);
      const redirect = new URL(authorize.searchParams.get('redirect_uri') as string);
      redirect.searchParams.set('code', SECRETS.code);
      redirect.searchParams.set('state', authorize.searchParams.get('state') as string);
      redirect.searchParams.set('iss', origin);
      await (await fetch(redirect)).text();
    },
  });
  return { server, mcpUrl, keeper, home, logs, errors: [] };
}

/** Every file under home/servers, by name, as bytes: the stored records. */
async function snapshot(home: string): Promise<Map<string, string>> {
  const dir = path.join(home, 'servers');
  const out = new Map<string, string>();
  let names: string[] = [];
  try {
    names = await readdir(dir);
  } catch {
    return out;
  }
  for (const name of names) out.set(name, (await readFile(path.join(dir, name))).toString('base64'));
  return out;
}

/** No planted secret in any log line or error (down the cause chain too; helpers/secrets.ts). */
function assertNoSecrets(s: Scenario): void {
  assertNoPlantedSecrets([s.logs, s.errors], SECRETS, 'logs and errors');
}

async function expectLoginFailure(s: Scenario, code: string, field: string): Promise<void> {
  const before = await snapshot(s.home);
  await assert.rejects(s.keeper.login(s.mcpUrl), (err: unknown) => {
    s.errors.push(err);
    assert.ok(err instanceof AuthkeepError, `typed error, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.equal(err.field, field, err.message);
    return true;
  });
  assert.deepEqual(await snapshot(s.home), before, 'stored records are byte-for-byte unchanged');
  assertNoSecrets(s);
}

test('the well-behaved hostile server signs in (the baseline the other cases break)', async (t) => {
  const s = await scenario(t);
  const status = await s.keeper.login(s.mcpUrl);
  assert.equal(status.state, 'ok');
  assert.equal(status.clientId, 'client-1');
  assertNoSecrets(s);
});

test('malformed PRM (authorization_servers not an array): metadata_invalid naming it', async (t) => {
  const s = await scenario(t, (srv, origin) =>
    srv.json('/prm', { resource: `${origin}/mcp`, authorization_servers: 'nope' }),
  );
  await expectLoginFailure(s, 'metadata_invalid', 'authorization_servers');
});

test('PRM resource that does not match the server: resource_mismatch naming resource', async (t) => {
  const s = await scenario(t, (srv, origin) =>
    srv.json('/prm', { resource: 'https://evil.example.com/mcp', authorization_servers: [origin] }),
  );
  await expectLoginFailure(s, 'resource_mismatch', 'resource');
});

test('AS metadata whose issuer differs: issuer_mismatch naming issuer', async (t) => {
  const s = await scenario(t, (srv, origin) =>
    srv.json('/.well-known/oauth-authorization-server', asMetadata('https://other.example.com', origin)),
  );
  await expectLoginFailure(s, 'issuer_mismatch', 'issuer');
});

test('AS without S256: pkce_unsupported naming code_challenge_methods_supported', async (t) => {
  const s = await scenario(t, (srv, origin) =>
    srv.json(
      '/.well-known/oauth-authorization-server',
      asMetadata(origin, origin, { code_challenge_methods_supported: ['plain'] }),
    ),
  );
  await expectLoginFailure(s, 'pkce_unsupported', 'code_challenge_methods_supported');
});

test('an http AS that is not loopback: insecure_url naming the issuer', async (t) => {
  const s = await scenario(t, (srv, origin) =>
    srv.json('/prm', { resource: `${origin}/mcp`, authorization_servers: ['http://as.example.com'] }),
  );
  await expectLoginFailure(s, 'insecure_url', 'authorization_servers[0]');
});

test('malformed registration response: registration_failed naming client_id', async (t) => {
  const s = await scenario(t, (srv) =>
    srv.on('POST', '/register', { status: 201, json: { client_secret: SECRETS.clientSecret } }),
  );
  await expectLoginFailure(s, 'registration_failed', 'client_id');
});

test('malformed token response: token_response_invalid naming access_token', async (t) => {
  const s = await scenario(t, (srv) =>
    srv.on('POST', '/token', { json: { token_type: 'Bearer', refresh_token: SECRETS.refresh } }),
  );
  await expectLoginFailure(s, 'token_response_invalid', 'access_token');
});

test('iss in the authorization response differs (RFC 9207): iss_mismatch naming iss, code never redeemed', async (t) => {
  const s = await scenario(t);
  const keeper = new AuthKeeper({
    home: s.home,
    allowInsecureLoopback: true,
    loginTimeoutMs: 3000,
    log: (e) => s.logs.push(e),
    openAuthorizationUrl: async (url) => {
      const authorize = new URL(url);
      const redirect = new URL(authorize.searchParams.get('redirect_uri') as string);
      redirect.searchParams.set('code', SECRETS.code);
      redirect.searchParams.set('state', authorize.searchParams.get('state') as string);
      redirect.searchParams.set('iss', 'https://mix-up.example.com');
      await (await fetch(redirect)).text();
    },
  });
  await expectLoginFailure({ ...s, keeper }, 'iss_mismatch', 'iss');
  assert.equal(s.server.requestsTo('POST', '/token').length, 0, 'the code was not redeemed');
});

test('a callback with the wrong state never completes the flow: the sign-in times out, nothing stored', async (t) => {
  const s = await scenario(t);
  const keeper = new AuthKeeper({
    home: s.home,
    allowInsecureLoopback: true,
    loginTimeoutMs: 1000,
    log: (e) => s.logs.push(e),
    openAuthorizationUrl: async (url) => {
      const authorize = new URL(url);
      const redirect = new URL(authorize.searchParams.get('redirect_uri') as string);
      redirect.searchParams.set('code', SECRETS.code);
      redirect.searchParams.set('state', 'forged-state');
      const res = await fetch(redirect);
      assert.equal(res.status, 400, 'the loopback callback refuses the forged state');
      await res.text();
    },
  });
  await expectLoginFailure({ ...s, keeper }, 'callback_timeout', 'state');
  assert.equal(s.server.requestsTo('POST', '/token').length, 0, 'no code was redeemed');
});

test('a malformed refresh response: needs-auth malformed_response naming the field; the record is unchanged', async (t) => {
  const s = await scenario(t);
  await s.keeper.login(s.mcpUrl);
  s.server.on('POST', '/token', { json: { access_token: SECRETS.access2, token_type: 'N_A', expires_in: 60 } });
  await untilPast(await storedTokenExpiresAt(s.home)); // the 1 s token from the sign-in is due
  const before = await snapshot(s.home);
  await assert.rejects(s.keeper.getAccessToken(s.mcpUrl), (err: unknown) => {
    s.errors.push(err);
    assert.ok(err instanceof NeedsAuthError);
    assert.equal(err.reason, 'malformed_response');
    assert.equal(err.field, 'token_type');
    return true;
  });
  assert.deepEqual(await snapshot(s.home), before, 'stored record is byte-for-byte unchanged');
  assertNoSecrets(s);
});

test('503 and temporarily_unavailable on refresh are retried with backoff; no re-auth, refresh token kept', async (t) => {
  const s = await scenario(t);
  await s.keeper.login(s.mcpUrl);
  s.server.on(
    'POST',
    '/token',
    { status: 503, body: 'unavailable' },
    { status: 400, json: { error: 'temporarily_unavailable' } },
    { json: { access_token: SECRETS.access2, token_type: 'Bearer', expires_in: 60 } },
  );
  const keeper = new AuthKeeper({ home: s.home, allowInsecureLoopback: true, transientRetryDelaysMs: [20, 20, 20] });
  await untilPast(await storedTokenExpiresAt(s.home)); // the 1 s token from the sign-in is due
  assert.equal(await keeper.getAccessToken(s.mcpUrl), SECRETS.access2);
  assert.equal(s.server.requestsTo('POST', '/token').length, 4, 'code exchange + three refresh attempts');
  const [status] = await keeper.status(s.mcpUrl);
  assert.equal(status?.state, 'ok');
  assert.equal(status?.hasRefreshToken, true, 'the old refresh token is kept when the answer has none');
  const last = s.server.requestsTo('POST', '/token').at(-1);
  assert.equal(last?.form.get('refresh_token'), SECRETS.refresh, 'the same refresh token was retried');
});
