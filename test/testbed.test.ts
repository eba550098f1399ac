/**
 * End-to-end checks of the test bed itself (arena/testbed), with NO authkeep code: the real
 * oidc-provider, real SDK MCP servers of every discovery variant, the robot browser, and OAuth
 * driven by hand with plain fetch. If these fail, nothing built on the bed can be trusted.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { promisify } from 'node:util';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

import { REFRESH_REUSE_DETAIL } from '../arena/testbed/audit.js';
import {
  type AuthorizationServerOptions,
  type RunningAuthorizationServer,
  startAuthorizationServer,
} from '../arena/testbed/authorization-server.js';
import { startLoopbackReceiver } from '../arena/testbed/loopback-receiver.js';
import {
  DISCOVERY_VARIANTS,
  type DiscoveryVariant,
  type ProtectedMcpServerOptions,
  type RunningMcpServer,
  startProtectedMcpServer,
} from '../arena/testbed/mcp-server.js';
import { createRobotBrowser } from '../arena/testbed/robot-browser.js';
import { robotBrowserArgv } from '../arena/testbed/robot-browser-command.js';
import { jwtExpiresAt, untilPast } from './helpers/bed.js';
import { assertNoSecrets } from './helpers/secrets.js';

const execFileAsync = promisify(execFile);

// ---------------------------------------------------------------------------------------------
// helpers (hand-driven OAuth; deliberately simple, test-only)

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

interface Endpoints {
  issuer: string;
  authorization: string;
  token: string;
  registration: string;
  revocation?: string;
}

async function getJson(url: string): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(url);
  const text = await res.text();
  return { status: res.status, json: res.headers.get('content-type')?.includes('json') ? JSON.parse(text) : {} };
}

/** Follow the server's discovery chain the way its variant requires. */
async function discover(mcp: RunningMcpServer): Promise<{ endpoints: Endpoints; scope: string | undefined }> {
  const res = await fetch(mcp.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
  assert.equal(res.status, 401);
  const challenge = res.headers.get('www-authenticate') ?? '';
  const scope = /(?:^|[\s,])scope="([^"]*)"/.exec(challenge)?.[1];
  if (mcp.discovery === 'legacy-default-endpoints') {
    return {
      endpoints: {
        issuer: mcp.origin,
        authorization: `${mcp.origin}/authorize`,
        token: `${mcp.origin}/token`,
        registration: `${mcp.origin}/register`,
      },
      scope,
    };
  }
  let issuer = mcp.origin;
  if (mcp.discovery !== 'legacy-as-on-origin') {
    const named = /resource_metadata="([^"]*)"/.exec(challenge)?.[1];
    const prmUrl =
      named ??
      (mcp.discovery === 'well-known-root'
        ? `${mcp.origin}/.well-known/oauth-protected-resource`
        : `${mcp.origin}/.well-known/oauth-protected-resource${new URL(mcp.url).pathname}`);
    const prm = await getJson(prmUrl);
    assert.equal(prm.status, 200);
    assert.equal(prm.json.resource, mcp.resource);
    issuer = (prm.json.authorization_servers as string[])[0] as string;
  }
  const { pathname } = new URL(issuer);
  const metadataUrl =
    pathname === '/'
      ? `${new URL(issuer).origin}/.well-known/oauth-authorization-server`
      : `${new URL(issuer).origin}/.well-known/oauth-authorization-server${pathname}`;
  const meta = await getJson(metadataUrl);
  assert.equal(meta.status, 200, `metadata at ${metadataUrl}`);
  assert.equal(meta.json.issuer, issuer);
  assert.deepEqual(meta.json.code_challenge_methods_supported, ['S256']);
  assert.equal(meta.json.authorization_response_iss_parameter_supported, true);
  return {
    endpoints: {
      issuer,
      authorization: meta.json.authorization_endpoint as string,
      token: meta.json.token_endpoint as string,
      registration: meta.json.registration_endpoint as string,
      revocation: meta.json.revocation_endpoint as string,
    },
    scope,
  };
}

async function registerNativeClient(
  registration: string,
  extra: Record<string, unknown> = {},
): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(registration, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      client_name: 'testbed-hand-client',
      application_type: 'native',
      redirect_uris: ['http://127.0.0.1/callback'],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      ...extra,
    }),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

interface TokenResponse {
  status: number;
  json: { access_token?: string; refresh_token?: string; scope?: string; expires_in?: number; error?: string };
}

async function tokenRequest(
  token: string,
  body: Record<string, string>,
  headers: Record<string, string> = {},
): Promise<TokenResponse> {
  const res = await fetch(token, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(body),
  });
  return { status: res.status, json: (await res.json()) as TokenResponse['json'] };
}

interface Login {
  clientId: string;
  tokens: TokenResponse['json'];
}

/** PKCE S256 authorization through the robot browser to a loopback receiver, then code exchange. */
async function authorize(
  t: TestContext,
  endpoints: Endpoints,
  client: { clientId: string; auth?: Record<string, string>; headers?: Record<string, string> },
  resource: string,
  scope: string,
): Promise<TokenResponse & { callback: URLSearchParams }> {
  const receiver = await startLoopbackReceiver();
  t.after(() => receiver.close());
  const verifier = randomBytes(32).toString('base64url');
  const state = randomBytes(16).toString('base64url');
  const url = new URL(endpoints.authorization);
  const params = {
    response_type: 'code',
    client_id: client.clientId,
    redirect_uri: receiver.redirectUri,
    scope,
    state,
    code_challenge: createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
    resource,
  };
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  const visit = await createRobotBrowser().open(url.href);
  assert.equal(visit.reachedRedirectUri, true);
  assert.equal(visit.status, 200);
  const callback = await receiver.waitForCallback();
  assert.equal(callback.get('state'), state);
  assert.equal(callback.get('iss'), endpoints.issuer, 'RFC 9207 iss');
  const code = callback.get('code');
  assert.ok(code, `callback error: ${callback.get('error')}`);
  const exchanged = await tokenRequest(
    endpoints.token,
    {
      grant_type: 'authorization_code',
      code,
      code_verifier: verifier,
      redirect_uri: receiver.redirectUri,
      resource,
      ...(client.auth ?? { client_id: client.clientId }),
    },
    client.headers,
  );
  return { ...exchanged, callback };
}

async function loginByDcr(t: TestContext, mcp: RunningMcpServer): Promise<Login & { endpoints: Endpoints }> {
  const { endpoints, scope } = await discover(mcp);
  const reg = await registerNativeClient(endpoints.registration);
  assert.equal(reg.status, 201, JSON.stringify(reg.json));
  const clientId = reg.json.client_id as string;
  const result = await authorize(t, endpoints, { clientId }, mcp.resource, scope ?? 'mcp:read');
  assert.equal(result.status, 200, JSON.stringify(result.json.error));
  assert.ok(result.json.access_token && result.json.refresh_token);
  return { clientId, tokens: result.json, endpoints };
}

async function mcpClient(t: TestContext, mcp: RunningMcpServer, accessToken: string): Promise<Client> {
  const client = new Client({ name: 'testbed-test', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(mcp.url), {
    requestInit: { headers: { Authorization: `Bearer ${accessToken}` } },
  });
  await client.connect(transport);
  t.after(() => client.close());
  return client;
}

function textOf(result: unknown): string {
  const content = (result as { content?: Array<{ type: string; text?: string }> }).content ?? [];
  return content.map((c) => c.text ?? '').join('');
}

/** Both WWW-Authenticate fields as sent (fetch would join them with ", "). */
async function rawChallenges(url: string, token?: string): Promise<{ status: number; fields: string[] }> {
  return new Promise((resolve, reject) => {
    const req = request(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    });
    req.on('response', (res) => {
      const fields: string[] = [];
      for (let i = 0; i < res.rawHeaders.length; i += 2) {
        if (res.rawHeaders[i]?.toLowerCase() === 'www-authenticate') fields.push(res.rawHeaders[i + 1] ?? '');
      }
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, fields }));
    });
    req.on('error', reject);
    req.end('{}');
  });
}

// ---------------------------------------------------------------------------------------------

test('every discovery variant: challenge, PRM placement, login by DCR, echo tool', async (t) => {
  const as = await startAs(t);
  for (const discovery of DISCOVERY_VARIANTS) {
    await t.test(discovery, async (st) => {
      const mcp = await startMcp(st, { authorizationServer: as, discovery });
      const { status, fields } = await rawChallenges(mcp.url);
      assert.equal(status, 401);
      const wellKnownPath = `${mcp.origin}/.well-known/oauth-protected-resource/mcp`;
      const wellKnownRoot = `${mcp.origin}/.well-known/oauth-protected-resource`;
      const prmStatus = async (url: string) => (await fetch(url)).status;
      switch (discovery as DiscoveryVariant) {
        case 'header':
          assert.deepEqual(fields, [`Bearer scope="mcp:read", resource_metadata="${mcp.prmUrl}"`]);
          assert.equal(await prmStatus(wellKnownPath), 404);
          assert.equal(await prmStatus(wellKnownRoot), 404);
          break;
        case 'two-challenges':
          assert.deepEqual(fields, [
            'DPoP algs="ES256", error="invalid_token"',
            `Bearer scope="mcp:read", resource_metadata="${mcp.prmUrl}"`,
          ]);
          assert.equal(await prmStatus(wellKnownPath), 404);
          break;
        case 'well-known-path':
          assert.deepEqual(fields, ['Bearer scope="mcp:read"']);
          assert.equal(mcp.prmUrl, wellKnownPath);
          assert.equal(await prmStatus(wellKnownRoot), 404);
          break;
        case 'well-known-root':
          assert.deepEqual(fields, ['Bearer scope="mcp:read"']);
          assert.equal(mcp.prmUrl, wellKnownRoot);
          assert.equal(await prmStatus(wellKnownPath), 404);
          break;
        case 'legacy-as-on-origin':
          assert.deepEqual(fields, ['Bearer']);
          assert.equal(mcp.prmUrl, undefined);
          assert.equal(await prmStatus(wellKnownRoot), 404);
          assert.equal(mcp.authorizationServer.issuer, mcp.origin);
          break;
        case 'legacy-default-endpoints':
          assert.deepEqual(fields, ['Bearer']);
          assert.equal(await prmStatus(`${mcp.origin}/.well-known/oauth-authorization-server`), 404);
          assert.equal(await prmStatus(`${mcp.origin}/.well-known/openid-configuration`), 404);
          break;
      }
      if (mcp.prmUrl) {
        const prm = await getJson(mcp.prmUrl);
        assert.deepEqual(prm.json, {
          resource: mcp.resource,
          authorization_servers: [as.issuer],
          scopes_supported: ['mcp:read', 'mcp:write', 'mcp:admin'],
          bearer_methods_supported: ['header'],
          resource_name: `testbed-mcp-${discovery}`,
        });
      }

      const login = await loginByDcr(st, mcp);
      const payload = JSON.parse(Buffer.from(login.tokens.access_token!.split('.')[1]!, 'base64url').toString());
      assert.equal(payload.aud, mcp.resource);
      assert.equal(payload.iss, mcp.authorizationServer.issuer);
      assert.equal(payload.client_id, login.clientId);
      const client = await mcpClient(st, mcp, login.tokens.access_token!);
      const echoed = await client.callTool({ name: 'echo', arguments: { text: `hi ${discovery}` } });
      assert.equal(textOf(echoed), `hi ${discovery}`);
      assert.equal(mcp.toolCalls(), 1);
      const counts = mcp.authorizationServer.audit.counts({ clientId: login.clientId });
      assert.equal(counts.authorizationRequests, 1);
      assert.equal(counts.codeExchanges, 1);
    });
  }
});

test('step-up 403, refresh rotation, and reuse revoking the grant (seen in the AS audit)', async (t) => {
  const as = await startAs(t);
  const mcp = await startMcp(t, { authorizationServer: as, discovery: 'header' });
  const login = await loginByDcr(t, mcp);
  assert.equal(login.tokens.scope, 'mcp:read');

  // admin_echo without mcp:admin: HTTP 403 with a step-up challenge, surfaced by the SDK client.
  const client = await mcpClient(t, mcp, login.tokens.access_token!);
  await assert.rejects(
    client.callTool({ name: 'admin_echo', arguments: { text: 'x' } }),
    (err: Error & { code?: number }) => {
      assert.equal(err.code, 403);
      return true;
    },
  );
  const forbidden = await fetch(mcp.url, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${login.tokens.access_token}`,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
    },
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 7,
      method: 'tools/call',
      params: { name: 'admin_echo', arguments: { text: 'x' } },
    }),
  });
  assert.equal(forbidden.status, 403);
  assert.equal(
    forbidden.headers.get('www-authenticate'),
    `Bearer error="insufficient_scope", scope="mcp:read mcp:admin", resource_metadata="${mcp.prmUrl}"`,
  );

  // Step up: a new authorization with the union of scopes gives a token that can call admin_echo.
  const stepped = await authorize(t, login.endpoints, { clientId: login.clientId }, mcp.resource, 'mcp:read mcp:admin');
  assert.equal(stepped.status, 200);
  const admin = await mcpClient(t, mcp, stepped.json.access_token!);
  assert.equal(textOf(await admin.callTool({ name: 'admin_echo', arguments: { text: 'up' } })), 'admin: up');

  // Refresh once (without resource: the granted one is used), then reuse the old refresh token.
  const first = login.tokens.refresh_token!;
  const refreshed = await tokenRequest(login.endpoints.token, {
    grant_type: 'refresh_token',
    refresh_token: first,
    client_id: login.clientId,
  });
  assert.equal(refreshed.status, 200);
  assert.ok(refreshed.json.refresh_token && refreshed.json.refresh_token !== first, 'rotated');
  const payload = JSON.parse(Buffer.from(refreshed.json.access_token!.split('.')[1]!, 'base64url').toString());
  assert.equal(payload.aud, mcp.resource);
  const fresh = await mcpClient(t, mcp, refreshed.json.access_token!);
  assert.equal(textOf(await fresh.callTool({ name: 'echo', arguments: { text: 'after refresh' } })), 'after refresh');

  const before = as.audit.counts({ clientId: login.clientId });
  assert.equal(before.refreshReuses, 0);
  assert.equal(before.revokedGrants, 0);

  const reused = await tokenRequest(login.endpoints.token, {
    grant_type: 'refresh_token',
    refresh_token: first,
    client_id: login.clientId,
    resource: mcp.resource,
  });
  assert.equal(reused.status, 400);
  assert.equal(reused.json.error, 'invalid_grant');
  // The whole grant is gone: the newest refresh token fails too.
  const after = await tokenRequest(login.endpoints.token, {
    grant_type: 'refresh_token',
    refresh_token: refreshed.json.refresh_token,
    client_id: login.clientId,
  });
  assert.equal(after.json.error, 'invalid_grant');

  // The last request names no resource and its token is gone: the AS cannot attribute it.
  const byClient = as.audit.counts({ clientId: login.clientId });
  assert.equal(byClient.refreshGrants, 3);
  assert.equal(byClient.invalidGrants, 2);
  const counts = as.audit.counts({ clientId: login.clientId, resource: mcp.resource });
  assert.equal(counts.refreshGrants, 2);
  assert.equal(counts.refreshReuses, 1);
  assert.equal(counts.revokedGrants, 1);
  assert.equal(counts.invalidGrants, 1);
  const reuse = as.audit.events('grant.error').find((e) => e.errorDetail === REFRESH_REUSE_DETAIL);
  assert.ok(reuse);
  assert.equal(reuse.clientId, login.clientId);
  assert.deepEqual(reuse.resources, [mcp.resource]);

  // No secret ever lands in the audit.
  assertNoSecrets(
    as.audit.entries(),
    [first, refreshed.json.refresh_token!, login.tokens.access_token!, refreshed.json.access_token!],
    'the audit',
  );
  const tokenEntry = as.audit.http().find((e) => e.endpoint === 'token' && e.grantType === 'authorization_code');
  assert.match(tokenEntry?.body?.code?.[0] ?? '', /^\[redacted sha256:[0-9a-f]{12}\]$/);
  assert.match(tokenEntry?.body?.code_verifier?.[0] ?? '', /^\[redacted sha256:/);
});

test('strictRegistrationScopes: DCR naming mcp scopes is invalid_client_metadata; without scope it works', async (t) => {
  const strict = await startAs(t, { strictRegistrationScopes: true });
  const mcp = await startMcp(t, { authorizationServer: strict, discovery: 'well-known-path' });
  const rejected = await registerNativeClient(strict.endpoints.registration, { scope: 'mcp:read mcp:write' });
  assert.equal(rejected.status, 400);
  assert.equal(rejected.json.error, 'invalid_client_metadata');
  // Authorization for resource scopes still works there (they come from the resource).
  const login = await loginByDcr(t, mcp);
  assert.equal(login.tokens.scope, 'mcp:read');
  assert.equal(strict.audit.counts().registrations, 1);

  const lenient = await startAs(t);
  assert.equal(
    (await registerNativeClient(lenient.endpoints.registration, { scope: 'mcp:read mcp:write' })).status,
    201,
  );
  const unknown = await registerNativeClient(lenient.endpoints.registration, { scope: 'mcp:read bogus:scope' });
  assert.equal(unknown.json.error, 'invalid_client_metadata');
});

test('tenant issuer: metadata at the issuer path, and path-inserted only when asked', async (t) => {
  const tenant = await startAs(t, { issuerPath: '/tenant', pathInsertedMetadata: true });
  assert.equal(tenant.issuer, `${tenant.origin}/tenant`);
  for (const path of [
    '/.well-known/oauth-authorization-server/tenant',
    '/tenant/.well-known/oauth-authorization-server',
    '/.well-known/openid-configuration/tenant',
    '/tenant/.well-known/openid-configuration',
  ]) {
    const meta = await getJson(tenant.url(path));
    assert.equal(meta.status, 200, path);
    assert.equal(meta.json.issuer, tenant.issuer);
    assert.equal(meta.json.token_endpoint, `${tenant.issuer}/token`);
  }
  assert.equal((await fetch(tenant.url('/.well-known/oauth-authorization-server'))).status, 404);
  const mcp = await startMcp(t, { authorizationServer: tenant, discovery: 'well-known-root' });
  const login = await loginByDcr(t, mcp);
  const client = await mcpClient(t, mcp, login.tokens.access_token!);
  assert.equal(textOf(await client.callTool({ name: 'echo', arguments: { text: 'tenant' } })), 'tenant');

  const plain = await startAs(t, { issuerPath: '/tenant' });
  assert.equal((await fetch(plain.url('/.well-known/oauth-authorization-server/tenant'))).status, 404);
  assert.equal((await fetch(plain.url('/tenant/.well-known/oauth-authorization-server'))).status, 200);
});

test('pre-registered confidential clients (basic and post) and a public one', async (t) => {
  const redirect = ['http://127.0.0.1/callback'];
  const as = await startAs(t, {
    staticClients: [
      {
        client_id: 'conf-basic',
        client_secret: 'basic-secret-value',
        token_endpoint_auth_method: 'client_secret_basic',
        redirect_uris: redirect,
        application_type: 'native',
      },
      {
        client_id: 'conf-post',
        client_secret: 'post-secret-value',
        token_endpoint_auth_method: 'client_secret_post',
        redirect_uris: redirect,
        application_type: 'native',
      },
      { client_id: 'public', token_endpoint_auth_method: 'none', redirect_uris: redirect, application_type: 'native' },
    ],
  });
  const mcp = await startMcp(t, { authorizationServer: as, discovery: 'header' });
  const { endpoints } = await discover(mcp);
  const basic = await authorize(
    t,
    endpoints,
    {
      clientId: 'conf-basic',
      auth: {},
      headers: { authorization: `Basic ${Buffer.from('conf-basic:basic-secret-value').toString('base64')}` },
    },
    mcp.resource,
    'mcp:read',
  );
  assert.equal(basic.status, 200);
  const post = await authorize(
    t,
    endpoints,
    {
      clientId: 'conf-post',
      auth: { client_id: 'conf-post', client_secret: 'post-secret-value' },
    },
    mcp.resource,
    'mcp:read',
  );
  assert.equal(post.status, 200);
  const pub = await authorize(t, endpoints, { clientId: 'public' }, mcp.resource, 'mcp:read');
  assert.equal(pub.status, 200);
  assert.ok(pub.json.refresh_token, 'public clients get refresh tokens');

  const exchanges = as.audit.http().filter((e) => e.endpoint === 'token');
  assert.deepEqual(
    exchanges.map((e) => [e.clientId, e.clientAuth, e.status]),
    [
      ['conf-basic', 'client_secret_basic', 200],
      ['conf-post', 'client_secret_post', 200],
      ['public', 'none', 200],
    ],
  );

  // Cross-client redemption: conf-post presents public's refresh token. The AS says
  // `client mismatch` (no revocation); the audit's fingerprints tie the token to its issuer.
  const cross = await tokenRequest(endpoints.token, {
    grant_type: 'refresh_token',
    refresh_token: pub.json.refresh_token!,
    client_id: 'conf-post',
    client_secret: 'post-secret-value',
  });
  assert.equal(cross.json.error, 'invalid_grant');
  const counts = as.audit.counts();
  assert.equal(counts.clientMismatches, 1);
  assert.equal(counts.revokedGrants, 0);
  const presented = as.audit.http().at(-1)?.body?.refresh_token?.[0];
  const issued = as.audit.events('refresh_token.saved').find((e) => presented?.includes(e.tokenFingerprint ?? '-'));
  assert.equal(issued?.clientId, 'public');

  // Revocation of a refresh token (RFC 7009) revokes its grant.
  const revoked = await fetch(endpoints.revocation!, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      token: pub.json.refresh_token!,
      token_type_hint: 'refresh_token',
      client_id: 'public',
    }),
  });
  assert.equal(revoked.status, 200);
  assert.equal(as.audit.counts({ clientId: 'public' }).revocations, 1);
  assert.equal(as.audit.counts({ clientId: 'public' }).revokedGrants, 1);
  const gone = await tokenRequest(endpoints.token, {
    grant_type: 'refresh_token',
    refresh_token: pub.json.refresh_token!,
    client_id: 'public',
  });
  assert.equal(gone.json.error, 'invalid_grant');

  const dump = JSON.stringify(as.audit.entries());
  assert.ok(!dump.includes('basic-secret-value') && !dump.includes('post-secret-value'));
  assert.ok(!dump.includes(pub.json.refresh_token!));
});

test('unknown resource is rejected, denied consent returns access_denied', async (t) => {
  const as = await startAs(t, { denyConsent: true });
  const mcp = await startMcp(t, { authorizationServer: as, discovery: 'header' });
  const reg = await registerNativeClient(as.endpoints.registration);
  const receiver = await startLoopbackReceiver();
  t.after(() => receiver.close());
  const url = (resource: string) => {
    const u = new URL(as.endpoints.authorization);
    const params = {
      response_type: 'code',
      client_id: reg.json.client_id as string,
      redirect_uri: receiver.redirectUri,
      scope: 'mcp:read',
      state: 's',
      code_challenge: createHash('sha256').update(randomBytes(32).toString('base64url')).digest('base64url'),
      code_challenge_method: 'S256',
      resource,
    };
    for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
    return u.href;
  };
  const robot = createRobotBrowser();
  const unknown = await robot.open(url('http://127.0.0.1:1/not-a-resource'));
  assert.equal(new URL(unknown.finalUrl).searchParams.get('error'), 'invalid_target');
  const denied = await robot.open(url(mcp.resource));
  assert.equal(new URL(denied.finalUrl).searchParams.get('error'), 'access_denied');
  assert.equal(robot.opened(), 2);
});

test('expired access tokens get 401 invalid_token (short TTLs for the arena)', async (t) => {
  const as = await startAs(t, { accessTokenTtlSeconds: 1 });
  const mcp = await startMcp(t, { authorizationServer: as, discovery: 'header' });
  const login = await loginByDcr(t, mcp);
  assert.equal(login.tokens.expires_in, 1);
  await untilPast(jwtExpiresAt(login.tokens.access_token as string)); // a real 1 s lifetime
  const { status, fields } = await rawChallenges(mcp.url, login.tokens.access_token);
  assert.equal(status, 401);
  assert.deepEqual(fields, [
    `Bearer error="invalid_token", error_description="access token expired", scope="mcp:read", resource_metadata="${mcp.prmUrl}"`,
  ]);
});

test('robot-browser CLI as $BROWSER completes a flow and logs the open', async (t) => {
  const as = await startAs(t);
  const mcp = await startMcp(t, { authorizationServer: as, discovery: 'header' });
  const reg = await registerNativeClient(as.endpoints.registration);
  const receiver = await startLoopbackReceiver();
  t.after(() => receiver.close());
  const dir = await mkdtemp(join(tmpdir(), 'testbed-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const log = join(dir, 'browser.log');
  const u = new URL(as.endpoints.authorization);
  const params = {
    response_type: 'code',
    client_id: reg.json.client_id as string,
    redirect_uri: receiver.redirectUri,
    scope: 'mcp:read',
    state: 'cli',
    code_challenge: createHash('sha256').update(randomBytes(32).toString('base64url')).digest('base64url'),
    code_challenge_method: 'S256',
    resource: mcp.resource,
  };
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
  const [cmd, ...args] = robotBrowserArgv();
  await execFileAsync(cmd!, [...args, u.href], { env: { ...process.env, ROBOT_BROWSER_LOG: log }, cwd: dir });
  const callback = await receiver.waitForCallback();
  assert.equal(callback.get('state'), 'cli');
  assert.ok(callback.get('code'));
  const lines = (await readFile(log, 'utf8')).trim().split('\n');
  assert.equal(lines.length, 1);
  assert.match(lines[0]!, /reached_redirect_uri=true/);
  assert.ok(!lines[0]!.includes(callback.get('code')!));
});
