/**
 * integration tests of the oauth/ protocol steps against the real test bed (arena/testbed): a real
 * oidc-provider (refresh-token rotation on, reuse revokes the grant), real protected MCP servers
 * of every discovery variant, and the robot browser. Each test drives the steps by hand: probe,
 * PRM discovery, AS metadata discovery (or the 2025-03-26 back-compat), registration (DCR,
 * pre-registered, the scope retry), the authorization through the robot, code exchange, refresh,
 * reuse detection, and revocation; the AS's own audit is the judge.
 *
 * Not for: the session layer (login orchestration, single-flight, the store).
 */
import assert from 'node:assert/strict';
import { type TestContext, test } from 'node:test';
import { calculatePKCECodeChallenge, generateRandomCodeVerifier, generateRandomState } from 'oauth4webapi';

import {
  type AuthorizationServerOptions,
  type RunningAuthorizationServer,
  startAuthorizationServer,
} from '../../arena/testbed/authorization-server.js';
import { startLoopbackReceiver } from '../../arena/testbed/loopback-receiver.js';
import {
  DISCOVERY_VARIANTS,
  type ProtectedMcpServerOptions,
  type RunningMcpServer,
  startProtectedMcpServer,
} from '../../arena/testbed/mcp-server.js';
import { createRobotBrowser } from '../../arena/testbed/robot-browser.js';
import {
  discoverAuthorizationServer,
  legacyAuthorizationServer,
} from '../../src/oauth/authorization-server-metadata.js';
import { discoverProtectedResource, probeServer } from '../../src/oauth/protected-resource.js';
import { registerClient, type StaticClientCredentials } from '../../src/oauth/registration.js';
import { revokeToken } from '../../src/oauth/revocation.js';
import { selectScope, withOfflineAccess } from '../../src/oauth/scope.js';
import {
  exchangeAuthorizationCode,
  refreshAccessToken,
  TokenEndpointError,
  type TokenSet,
} from '../../src/oauth/token-endpoint.js';
import type { AuthorizationServer, Registration } from '../../src/oauth/types.js';
import { assertNoSecrets } from '../helpers/secrets.js';

const http = { allowInsecureLoopback: true, timeoutMs: 10_000 };

async function startAs(t: TestContext, options: AuthorizationServerOptions = {}): Promise<RunningAuthorizationServer> {
  const as = await startAuthorizationServer(options);
  t.after(() => as.close());
  return as;
}

async function startMcp(t: TestContext, options: ProtectedMcpServerOptions): Promise<RunningMcpServer> {
  const mcp = await startProtectedMcpServer(options);
  t.after(() => mcp.close());
  return mcp;
}

interface Discovered {
  as: AuthorizationServer;
  resource: string;
  scope: string | undefined;
}

/** The MCP spec's discovery, with authkeep's steps only. */
async function discover(serverUrl: string): Promise<Discovered> {
  const probe = await probeServer(serverUrl, http);
  assert.equal(probe.status, 401);
  const prm = await discoverProtectedResource(serverUrl, {
    ...http,
    ...(probe.challenge?.resourceMetadata ? { resourceMetadataUrl: probe.challenge.resourceMetadata } : {}),
  });
  if (!prm) {
    const as = await legacyAuthorizationServer(serverUrl, http);
    return {
      as,
      resource: serverUrl,
      scope: withOfflineAccess(selectScope({ challengeScope: probe.challenge?.scope }), as.scopes_supported),
    };
  }
  const issuer = prm.metadata.authorization_servers[0];
  assert.ok(issuer);
  const as = await discoverAuthorizationServer(issuer, http);
  const scope = selectScope({
    challengeScope: probe.challenge?.scope,
    resourceScopesSupported: prm.metadata.scopes_supported,
  });
  return { as, resource: prm.metadata.resource, scope: withOfflineAccess(scope, as.scopes_supported) };
}

/** Register (or use a static client), authorize through the robot, exchange the code. */
async function login(
  t: TestContext,
  d: Discovered,
  options: { staticClient?: StaticClientCredentials; scope?: string } = {},
): Promise<{ registration: Registration; tokens: TokenSet }> {
  const receiver = await startLoopbackReceiver();
  t.after(() => receiver.close());
  const scope = options.scope ?? d.scope;
  const registration = await registerClient(
    d.as,
    {
      clientName: 'authkeep integration',
      redirectUris: [receiver.redirectUri],
      ...(scope ? { scope } : {}),
      ...(options.staticClient ? { staticClient: options.staticClient } : {}),
    },
    http,
  );
  const verifier = generateRandomCodeVerifier();
  const state = generateRandomState();
  const url = new URL(d.as.authorization_endpoint ?? '');
  const params: Record<string, string> = {
    response_type: 'code',
    client_id: registration.clientId,
    redirect_uri: receiver.redirectUri,
    state,
    code_challenge: await calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    resource: d.resource,
    ...(scope ? { scope } : {}),
  };
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  const visit = await createRobotBrowser().open(url.href);
  assert.equal(visit.reachedRedirectUri, true);
  const callback = await receiver.waitForCallback();
  assert.equal(callback.get('state'), state);
  assert.equal(callback.get('iss'), d.as.issuer, 'RFC 9207 iss equals the discovered issuer');
  const code = callback.get('code');
  assert.ok(code, `authorization error: ${callback.get('error') ?? ''}`);
  const tokens = await exchangeAuthorizationCode(
    d.as,
    registration,
    { code, codeVerifier: verifier, redirectUri: receiver.redirectUri, resource: d.resource },
    http,
  );
  return { registration, tokens };
}

/** The MCP server accepts the token (JSON-RPC initialize answered 200). */
async function assertAccepted(mcp: RunningMcpServer, accessToken: string): Promise<void> {
  const res = await fetch(mcp.url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      authorization: `Bearer ${accessToken}`,
    },
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } },
    }),
  });
  await res.body?.cancel();
  assert.equal(res.status, 200);
}

test('every discovery variant: discover, DCR, code exchange, the token works, refresh', async (t) => {
  const as = await startAs(t);
  for (const discovery of DISCOVERY_VARIANTS) {
    await t.test(discovery, async (st) => {
      const mcp = await startMcp(st, { authorizationServer: as, discovery });
      const d = await discover(mcp.url);
      assert.equal(d.as.issuer, mcp.authorizationServer.issuer);
      assert.equal(d.resource, mcp.resource);
      // The legacy variants offer no scope (no PRM, no scope in the challenge); this AS denies a
      // request without any scope, so name the resource's base scope there.
      const { registration, tokens } = await login(st, d, d.scope ? {} : { scope: 'mcp:read' });
      assert.equal(registration.method, 'dynamic');
      assert.equal(tokens.tokenType, 'Bearer');
      assert.ok(tokens.refreshToken);
      await assertAccepted(mcp, tokens.accessToken);
      const refreshed = await refreshAccessToken(
        d.as,
        registration,
        { refreshToken: tokens.refreshToken, resource: d.resource },
        http,
      );
      assert.notEqual(refreshed.refreshToken, tokens.refreshToken, 'rotation');
      await assertAccepted(mcp, refreshed.accessToken);
    });
  }
});

test('issuer with a path, with and without path-inserted metadata', async (t) => {
  for (const pathInsertedMetadata of [false, true]) {
    await t.test(`pathInsertedMetadata=${pathInsertedMetadata}`, async (st) => {
      const as = await startAs(st, { issuerPath: '/tenant', pathInsertedMetadata });
      const mcp = await startMcp(st, { authorizationServer: as, discovery: 'well-known-path' });
      const d = await discover(mcp.url);
      assert.equal(d.as.issuer, `${as.origin}/tenant`);
      const discoveryPaths = as.audit
        .http()
        .filter((e) => e.endpoint === 'discovery' || e.path.includes('/.well-known/'))
        .map((e) => e.path);
      assert.deepEqual(
        discoveryPaths,
        pathInsertedMetadata
          ? ['/.well-known/oauth-authorization-server/tenant']
          : [
              '/.well-known/oauth-authorization-server/tenant',
              '/.well-known/openid-configuration/tenant',
              '/tenant/.well-known/openid-configuration',
            ],
      );
      const { tokens } = await login(st, d);
      await assertAccepted(mcp, tokens.accessToken);
    });
  }
});

test('refresh-token reuse: invalid_grant needs_auth, and the grant is revoked', async (t) => {
  const as = await startAs(t);
  const mcp = await startMcp(t, { authorizationServer: as, discovery: 'header' });
  const d = await discover(mcp.url);
  const { registration, tokens } = await login(t, d);
  assert.ok(tokens.refreshToken);
  const first = await refreshAccessToken(
    d.as,
    registration,
    { refreshToken: tokens.refreshToken, resource: d.resource },
    http,
  );
  assert.ok(first.refreshToken);
  await assert.rejects(
    refreshAccessToken(d.as, registration, { refreshToken: tokens.refreshToken, resource: d.resource }, http),
    (err: unknown) => {
      assert.ok(err instanceof TokenEndpointError);
      assert.equal(err.kind, 'needs_auth');
      assert.equal(err.needsAuthReason, 'invalid_grant');
      assert.equal(err.oauthError, 'invalid_grant');
      assertNoSecrets(err, { 'the refresh token': tokens.refreshToken! }, 'error');
      return true;
    },
  );
  // The whole grant is gone: the rotated token fails too.
  await assert.rejects(
    refreshAccessToken(d.as, registration, { refreshToken: first.refreshToken, resource: d.resource }, http),
    {
      code: 'invalid_grant',
    },
  );
  const counts = as.audit.counts();
  assert.equal(counts.refreshReuses, 1);
  assert.ok(counts.revokedGrants >= 1);
});

test('a refresh token presented by another client is client_mismatch or invalid_grant, never accepted', async (t) => {
  const as = await startAs(t);
  const mcp = await startMcp(t, { authorizationServer: as, discovery: 'header' });
  const d = await discover(mcp.url);
  const a = await login(t, d);
  const b = await login(t, d);
  assert.notEqual(a.registration.clientId, b.registration.clientId);
  assert.ok(a.tokens.refreshToken);
  await assert.rejects(
    refreshAccessToken(d.as, b.registration, { refreshToken: a.tokens.refreshToken, resource: d.resource }, http),
    (err: unknown) => {
      assert.ok(err instanceof TokenEndpointError);
      assert.equal(err.kind, 'needs_auth');
      return true;
    },
  );
});

test('revocation: the refresh token is revoked and refresh then fails', async (t) => {
  const as = await startAs(t);
  const mcp = await startMcp(t, { authorizationServer: as, discovery: 'header' });
  const d = await discover(mcp.url);
  assert.ok(d.as.revocation_endpoint);
  const { registration, tokens } = await login(t, d);
  assert.ok(tokens.refreshToken);
  assert.equal(await revokeToken(d.as, registration, tokens.refreshToken, 'refresh_token', http), 'revoked');
  assert.equal(as.audit.counts().revocations, 1);
  await assert.rejects(
    refreshAccessToken(d.as, registration, { refreshToken: tokens.refreshToken, resource: d.resource }, http),
    {
      code: 'invalid_grant',
    },
  );
});

test('a pre-registered confidential client (client_secret_basic and _post)', async (t) => {
  for (const method of ['client_secret_basic', 'client_secret_post'] as const) {
    await t.test(method, async (st) => {
      const as = await startAs(st, {
        staticClients: [
          {
            client_id: `static-${method}`,
            client_secret: 'static-secret-value-0123456789',
            token_endpoint_auth_method: method,
            application_type: 'native',
            redirect_uris: ['http://127.0.0.1/callback'],
            grant_types: ['authorization_code', 'refresh_token'],
            response_types: ['code'],
          },
        ],
      });
      const mcp = await startMcp(st, { authorizationServer: as, discovery: 'well-known-root' });
      const d = await discover(mcp.url);
      const { registration, tokens } = await login(st, d, {
        staticClient: {
          clientId: `static-${method}`,
          clientSecret: 'static-secret-value-0123456789',
          tokenEndpointAuthMethod: method,
        },
      });
      assert.equal(registration.method, 'pre_registered');
      assert.equal(as.audit.counts().registrations, 0);
      const exchange = as.audit.http().find((e) => e.grantType === 'authorization_code');
      assert.equal(exchange?.clientAuth, method);
      assert.ok(tokens.refreshToken);
      const refreshed = await refreshAccessToken(
        d.as,
        registration,
        { refreshToken: tokens.refreshToken, resource: d.resource },
        http,
      );
      await assertAccepted(mcp, refreshed.accessToken);
      assert.equal(
        await revokeToken(d.as, registration, refreshed.refreshToken ?? '', 'refresh_token', http),
        'revoked',
      );
    });
  }
});

test('strict registration scopes: DCR with scope is refused, retried once without, login completes', async (t) => {
  const as = await startAs(t, { strictRegistrationScopes: true });
  const mcp = await startMcp(t, { authorizationServer: as, discovery: 'header' });
  const d = await discover(mcp.url);
  assert.ok(d.scope?.includes('mcp:read'));
  const { registration, tokens } = await login(t, d);
  assert.equal(registration.method, 'dynamic');
  const registrations = as.audit.http().filter((e) => e.endpoint === 'registration');
  assert.equal(registrations.length, 2);
  assert.equal(registrations[0]?.status, 400);
  assert.equal(registrations[0]?.error, 'invalid_client_metadata');
  assert.ok(registrations[0]?.bodyNames?.includes('scope'));
  assert.ok(!registrations[1]?.bodyNames?.includes('scope'));
  await assertAccepted(mcp, tokens.accessToken);
});
