/**
 * bad-input tests: hostile and broken answers from a real HTTP server (malformed PRM, resource
 * mismatch, wrong issuer, no S256, http endpoints off loopback, unusable token and registration
 * responses, transient and needs-auth token errors). Each asserts the typed error's `code` and
 * `field`, and that no secret the test planted (refresh token, access token, code, verifier,
 * client secret) appears anywhere in the error (helpers/secrets.ts: message, stack, detail, every
 * own property, down the cause chain).
 *
 * Not for: the happy paths and request shapes (discovery/registration/token-endpoint tests).
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import type { AuthkeepError } from '../../src/errors.js';
import { discoverAuthorizationServer } from '../../src/oauth/authorization-server-metadata.js';
import { DpopKeyring, generateDpopKey } from '../../src/oauth/dpop.js';
import { discoverProtectedResource } from '../../src/oauth/protected-resource.js';
import { registerClient } from '../../src/oauth/registration.js';
import { exchangeAuthorizationCode, refreshAccessToken, TokenEndpointError } from '../../src/oauth/token-endpoint.js';
import type { AuthorizationServer, Registration } from '../../src/oauth/types.js';
import { asMetadata, asRecord, type HostileServer, type Reply, startHostileServer } from '../helpers/hostile-server.js';
import { assertNoSecrets } from '../helpers/secrets.js';

// A bound for a hung request, not a timing assumption (the servers answer at once; the timeout tests set their own).
const http = { allowInsecureLoopback: true, timeoutMs: 30_000 };

const REFRESH_TOKEN = 'rt-SECRET-4f1c9a7e2b';
const ACCESS_TOKEN = 'at-SECRET-88d2e1f0aa';
const CODE = 'code-SECRET-51b7c3';
const VERIFIER = `verifier-SECRET-${'x'.repeat(40)}`;
const CLIENT_SECRET = 'cs-SECRET-d00d';
const SECRETS = [REFRESH_TOKEN, ACCESS_TOKEN, CODE, VERIFIER, CLIENT_SECRET];

/** Assert code and field, and that no planted secret leaks anywhere in the error. */
function expectError(code: string, field: string | undefined, extra?: (err: AuthkeepError) => void) {
  return (err: unknown): boolean => {
    const e = err as AuthkeepError;
    assert.equal(e.code, code, `code (message: ${e.message})`);
    assert.equal(e.field, field, `field (message: ${e.message})`);
    assertNoSecrets(err, SECRETS, 'error');
    extra?.(e);
    return true;
  };
}

describe('bad input: protected resource metadata', () => {
  let rs: HostileServer;
  before(async () => {
    rs = await startHostileServer();
  });
  after(async () => rs.close());
  beforeEach(() => rs.reset());

  const PRM = '/.well-known/oauth-protected-resource/mcp';
  const cases: Array<[string, Reply, string, string]> = [
    [
      'not JSON',
      { body: 'this is not json', headers: { 'content-type': 'application/json' } },
      'metadata_invalid',
      'body',
    ],
    ['a JSON array', { json: [1, 2] }, 'metadata_invalid', 'body'],
    ['no authorization_servers', { json: { resource: 'RS/mcp' } }, 'metadata_invalid', 'authorization_servers'],
    [
      'empty authorization_servers',
      { json: { resource: 'RS/mcp', authorization_servers: [] } },
      'metadata_invalid',
      'authorization_servers',
    ],
    [
      'a non-string authorization server',
      { json: { resource: 'RS/mcp', authorization_servers: [42] } },
      'metadata_invalid',
      'authorization_servers[0]',
    ],
    ['resource missing', { json: { authorization_servers: ['https://as.example'] } }, 'metadata_invalid', 'resource'],
    [
      'scopes_supported not an array',
      { json: { resource: 'RS/mcp', authorization_servers: ['https://as.example'], scopes_supported: 'a b' } },
      'metadata_invalid',
      'scopes_supported',
    ],
    [
      'resource on another origin',
      { json: { resource: 'https://evil.example.com/mcp', authorization_servers: ['https://as.example'] } },
      'resource_mismatch',
      'resource',
    ],
    [
      'resource on another path',
      { json: { resource: 'RS/other', authorization_servers: ['https://as.example'] } },
      'resource_mismatch',
      'resource',
    ],
    [
      'an http authorization server off loopback',
      { json: { resource: 'RS/mcp', authorization_servers: ['https://ok.example', 'http://as.example'] } },
      'insecure_url',
      'authorization_servers[1]',
    ],
    [
      'an authorization server that is not a URL',
      { json: { resource: 'RS/mcp', authorization_servers: ['as.example'] } },
      'metadata_invalid',
      'authorization_servers[0]',
    ],
  ];
  for (const [name, reply, code, field] of cases) {
    test(`PRM with ${name}: ${code} naming ${field}`, async () => {
      const fixed: Reply =
        reply.json === undefined
          ? reply
          : { ...reply, json: JSON.parse(JSON.stringify(reply.json).replaceAll('RS/', `${rs.url}/`)) };
      rs.on('GET', PRM, fixed);
      await assert.rejects(discoverProtectedResource(`${rs.url}/mcp`, http), expectError(code, field));
    });
  }

  test('http on loopback without allowInsecureLoopback: insecure_url naming serverUrl', async () => {
    await assert.rejects(
      discoverProtectedResource(`${rs.url}/mcp`, { allowInsecureLoopback: false }),
      expectError('insecure_url', 'serverUrl'),
    );
    assert.deepEqual(rs.requests, []);
  });

  test('a challenge resource_metadata URL over http off loopback is refused before any request', async () => {
    await assert.rejects(
      discoverProtectedResource(`${rs.url}/mcp`, { ...http, resourceMetadataUrl: 'http://attacker.example/prm' }),
      expectError('insecure_url', 'resource_metadata'),
    );
    assert.deepEqual(rs.requests, []);
  });

  test('a huge body is cut off: metadata_invalid', async () => {
    rs.on('GET', PRM, {
      body: `{"resource":"${'a'.repeat(2 * 1024 * 1024)}"}`,
      headers: { 'content-type': 'application/json' },
    });
    await assert.rejects(
      discoverProtectedResource(`${rs.url}/mcp`, http),
      expectError('metadata_invalid', 'body', (e) => assert.equal(e.detail?.reason, 'too_large')),
    );
  });
});

describe('bad input: authorization server metadata', () => {
  let as: HostileServer;
  before(async () => {
    as = await startHostileServer();
  });
  after(async () => as.close());
  beforeEach(() => as.reset());

  const WK = '/.well-known/oauth-authorization-server';

  test('issuer mismatch (another host): issuer_mismatch naming issuer, not used', async () => {
    as.json(WK, asMetadata('https://honest.example', as.url));
    await assert.rejects(
      discoverAuthorizationServer(as.url, http),
      expectError('issuer_mismatch', 'issuer', (e) => {
        assert.equal(e.detail?.expected, as.url);
        assert.equal(e.detail?.actual, 'https://honest.example');
      }),
    );
    assert.deepEqual(as.lines(), [`GET ${WK}`]);
  });

  test('issuer differing only by a trailing slash is still a mismatch (identical strings)', async () => {
    as.json(WK, asMetadata(`${as.url}/`, as.url));
    await assert.rejects(discoverAuthorizationServer(as.url, http), expectError('issuer_mismatch', 'issuer'));
  });

  test('issuer of another tenant on the same host: mismatch', async () => {
    as.json(`${WK}/tenant1`, asMetadata(`${as.url}/tenant2`, as.url));
    await assert.rejects(
      discoverAuthorizationServer(`${as.url}/tenant1`, http),
      expectError('issuer_mismatch', 'issuer'),
    );
  });

  test('no issuer at all: metadata_invalid naming issuer', async () => {
    const { issuer: _drop, ...rest } = asMetadata(as.url, as.url);
    as.json(WK, rest);
    await assert.rejects(discoverAuthorizationServer(as.url, http), expectError('metadata_invalid', 'issuer'));
  });

  test('S256 not listed: pkce_unsupported', async () => {
    as.json(WK, asMetadata(as.url, as.url, { code_challenge_methods_supported: ['plain'] }));
    await assert.rejects(
      discoverAuthorizationServer(as.url, http),
      expectError('pkce_unsupported', 'code_challenge_methods_supported'),
    );
  });

  test('code_challenge_methods_supported absent: pkce_unsupported (MCP: MUST refuse)', async () => {
    const { code_challenge_methods_supported: _drop, ...rest } = asMetadata(as.url, as.url);
    as.json(WK, rest);
    await assert.rejects(
      discoverAuthorizationServer(as.url, http),
      expectError('pkce_unsupported', 'code_challenge_methods_supported'),
    );
  });

  for (const field of ['token_endpoint', 'authorization_endpoint', 'registration_endpoint', 'revocation_endpoint']) {
    test(`${field} over http off loopback: insecure_url naming ${field}`, async () => {
      as.json(WK, asMetadata(as.url, as.url, { [field]: `http://as.example/${field}` }));
      await assert.rejects(discoverAuthorizationServer(as.url, http), expectError('insecure_url', field));
    });
  }

  test('token_endpoint missing: metadata_invalid naming token_endpoint', async () => {
    const { token_endpoint: _drop, ...rest } = asMetadata(as.url, as.url);
    as.json(WK, rest);
    await assert.rejects(discoverAuthorizationServer(as.url, http), expectError('metadata_invalid', 'token_endpoint'));
  });

  test('wrong member type: metadata_invalid naming it', async () => {
    as.json(WK, asMetadata(as.url, as.url, { client_id_metadata_document_supported: 'yes' }));
    await assert.rejects(
      discoverAuthorizationServer(as.url, http),
      expectError('metadata_invalid', 'client_id_metadata_document_supported'),
    );
  });

  test('an http issuer off loopback is refused before any request', async () => {
    await assert.rejects(discoverAuthorizationServer('http://as.example', http), expectError('insecure_url', 'issuer'));
  });
});

describe('bad input: token responses', () => {
  let srv: HostileServer;
  let as: AuthorizationServer;
  let reg: Registration;
  before(async () => {
    srv = await startHostileServer();
  });
  after(async () => srv.close());
  beforeEach(() => {
    srv.reset();
    as = asRecord(srv.url);
    reg = {
      issuer: srv.url,
      clientId: 'client-1',
      clientSecret: CLIENT_SECRET,
      method: 'dynamic',
      tokenEndpointAuthMethod: 'client_secret_post',
      redirectUris: ['http://127.0.0.1:4000/cb'],
      registeredAt: new Date(0).toISOString(),
    };
  });

  const refresh = () =>
    refreshAccessToken(as, reg, { refreshToken: REFRESH_TOKEN, resource: 'https://mcp.example.com' }, http);
  const exchange = () =>
    exchangeAuthorizationCode(
      as,
      reg,
      {
        code: CODE,
        codeVerifier: VERIFIER,
        redirectUri: 'http://127.0.0.1:4000/cb',
        resource: 'https://mcp.example.com',
      },
      http,
    );

  const malformedCases: Array<[string, Reply, string]> = [
    ['missing access_token', { json: { token_type: 'Bearer', refresh_token: REFRESH_TOKEN } }, 'access_token'],
    ['empty access_token', { json: { access_token: '', token_type: 'Bearer' } }, 'access_token'],
    ['missing token_type', { json: { access_token: ACCESS_TOKEN } }, 'token_type'],
    [
      'token_type mac',
      { json: { access_token: ACCESS_TOKEN, token_type: 'mac', refresh_token: REFRESH_TOKEN } },
      'token_type',
    ],
    ['token_type DPoP', { json: { access_token: ACCESS_TOKEN, token_type: 'DPoP' } }, 'token_type'],
    [
      'a token_type that echoes a secret',
      { json: { access_token: ACCESS_TOKEN, token_type: REFRESH_TOKEN } },
      'token_type',
    ],
    [
      'non-JSON body',
      {
        body: `access_token=${ACCESS_TOKEN}&token_type=bearer`,
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
      },
      'body',
    ],
    [
      'non-JSON body claiming JSON',
      { body: `{"access_token":"${ACCESS_TOKEN}"`, headers: { 'content-type': 'application/json' } },
      'body',
    ],
    ['empty body', { body: '' }, 'body'],
    ['a JSON array', { json: [ACCESS_TOKEN] }, 'body'],
    [
      'negative expires_in',
      { json: { access_token: ACCESS_TOKEN, token_type: 'Bearer', expires_in: -5 } },
      'expires_in',
    ],
    [
      'non-numeric expires_in',
      { json: { access_token: ACCESS_TOKEN, token_type: 'Bearer', expires_in: 'soon' } },
      'expires_in',
    ],
    [
      'refresh_token not a string',
      { json: { access_token: ACCESS_TOKEN, token_type: 'Bearer', refresh_token: 12345 } },
      'refresh_token',
    ],
    ['scope not a string', { json: { access_token: ACCESS_TOKEN, token_type: 'Bearer', scope: ['a'] } }, 'scope'],
  ];
  for (const [name, reply, field] of malformedCases) {
    test(`200 with ${name}: malformed naming ${field}`, async () => {
      srv.on('POST', '/token', reply);
      await assert.rejects(
        refresh(),
        expectError('token_response_invalid', field, (e) => {
          assert.ok(e instanceof TokenEndpointError);
          assert.equal(e.kind, 'malformed');
          assert.equal(e.request, `POST ${srv.url}/token (refresh_token)`);
        }),
      );
    });
  }

  test('code exchange with a malformed answer: malformed naming access_token, code and verifier not leaked', async () => {
    srv.on('POST', '/token', { json: { token_type: 'Bearer', echoed_code: CODE, echoed_verifier: VERIFIER } });
    await assert.rejects(exchange(), expectError('token_response_invalid', 'access_token'));
  });

  test('an OAuth error member that echoes a secret: scrubbed', async () => {
    srv.on('POST', '/token', {
      status: 400,
      json: { error: REFRESH_TOKEN, error_description: `${CLIENT_SECRET} ${REFRESH_TOKEN}` },
    });
    await assert.rejects(
      refresh(),
      expectError('as_error', 'error', (e) => {
        assert.ok(e instanceof TokenEndpointError);
        assert.equal(e.kind, 'needs_auth');
        assert.equal(e.oauthError, '[redacted]');
      }),
    );
  });

  test('503 on token: transient', async () => {
    srv.on('POST', '/token', { status: 503, body: `maintenance; your token ${REFRESH_TOKEN}` });
    await assert.rejects(
      refresh(),
      expectError('as_error', undefined, (e) => {
        assert.ok(e instanceof TokenEndpointError);
        assert.equal(e.kind, 'transient');
        assert.equal(e.status, 503);
      }),
    );
  });

  test('invalid_grant: needs_auth with reason invalid_grant; an echoed secret is scrubbed', async () => {
    srv.on('POST', '/token', {
      status: 400,
      json: {
        error: 'invalid_grant',
        error_description: `refresh token ${REFRESH_TOKEN} was already used by client ${CLIENT_SECRET}`,
      },
    });
    await assert.rejects(
      refresh(),
      expectError('invalid_grant', 'error', (e) => {
        assert.ok(e instanceof TokenEndpointError);
        assert.equal(e.kind, 'needs_auth');
        assert.equal(e.needsAuthReason, 'invalid_grant');
        assert.equal(e.oauthError, 'invalid_grant');
        assert.match(e.oauthErrorDescription ?? '', /\[redacted\]/);
      }),
    );
  });

  test('invalid_client on code exchange: needs_auth client_mismatch; code and verifier never shown', async () => {
    srv.on('POST', '/token', {
      status: 401,
      json: { error: 'invalid_client', error_description: `code ${CODE} verifier ${VERIFIER}` },
    });
    await assert.rejects(
      exchange(),
      expectError('client_mismatch', 'error', (e) => {
        assert.ok(e instanceof TokenEndpointError);
        assert.equal(e.needsAuthReason, 'client_mismatch');
      }),
    );
  });

  test('an http token endpoint off loopback is refused before anything is sent', async () => {
    await assert.rejects(
      refreshAccessToken(
        { ...as, token_endpoint: 'http://as.example/token' },
        reg,
        { refreshToken: REFRESH_TOKEN, resource: 'https://r' },
        http,
      ),
      expectError('insecure_url', 'token_endpoint'),
    );
    assert.deepEqual(srv.requests, []);
  });
  test('a DPoP token request refused with a body that never ends is cut off, not read to the end', async () => {
    // oauth4webapi judges a refusal (use_dpop_nonce?) by reading the body: it gets a bounded copy.
    const key = await generateDpopKey('ES256');
    const handle = await new DpopKeyring().handle(key);
    srv.on('POST', '/token', {
      status: 400,
      body: '{"error":"invalid_grant","error_description":"',
      headers: { 'content-type': 'application/json' },
      endless: true,
    });
    await assert.rejects(
      refreshAccessToken(
        as,
        reg,
        { refreshToken: REFRESH_TOKEN, resource: 'https://mcp.example.com', dpop: handle },
        http,
      ),
      (err: unknown) => {
        assert.ok(err instanceof TokenEndpointError, String(err));
        assertNoSecrets(err, SECRETS, 'error');
        return true;
      },
    );
    assert.equal(srv.requestsTo('POST', '/token').length, 1, 'no second proof: the refusal was no nonce demand');
    assert.ok(srv.endlessBytes < 16 * 1024 * 1024, `read at most a bounded prefix (${srv.endlessBytes} bytes sent)`);
  });
});

describe('bad input: registration responses', () => {
  let srv: HostileServer;
  let as: AuthorizationServer;
  before(async () => {
    srv = await startHostileServer();
  });
  after(async () => srv.close());
  beforeEach(() => {
    srv.reset();
    as = asRecord(srv.url, {
      registration_endpoint: `${srv.url}/register`,
      token_endpoint_auth_methods_supported: ['client_secret_basic'],
    });
  });
  const request = { clientName: 'authkeep', redirectUris: ['http://127.0.0.1:4000/cb'], scope: 'mcp:read' };

  test('missing client_id: registration_failed naming client_id, the secret not shown', async () => {
    srv.on('POST', '/register', { status: 201, json: { client_secret: CLIENT_SECRET, client_secret_expires_at: 0 } });
    await assert.rejects(registerClient(as, request, http), expectError('registration_failed', 'client_id'));
  });

  test('client_id of the wrong type: registration_failed naming client_id', async () => {
    srv.on('POST', '/register', { status: 201, json: { client_id: 7, client_secret: CLIENT_SECRET } });
    await assert.rejects(registerClient(as, request, http), expectError('registration_failed', 'client_id'));
  });

  test('non-JSON registration answer: registration_failed naming body', async () => {
    srv.on('POST', '/register', { status: 201, body: `client_id=x&client_secret=${CLIENT_SECRET}` });
    await assert.rejects(registerClient(as, request, http), expectError('registration_failed', 'body'));
  });

  test('an unknown token_endpoint_auth_method assigned: registration_failed naming it', async () => {
    srv.on('POST', '/register', {
      status: 201,
      json: { client_id: 'c', client_secret: CLIENT_SECRET, token_endpoint_auth_method: 'private_key_jwt' },
    });
    await assert.rejects(
      registerClient(as, request, http),
      expectError('registration_failed', 'token_endpoint_auth_method'),
    );
  });

  test('invalid_client_metadata then success: the retry dropped scope', async () => {
    srv.on(
      'POST',
      '/register',
      {
        status: 400,
        json: {
          error: 'invalid_client_metadata',
          error_description: 'scope must only contain Authorization Server supported scope values',
        },
      },
      {
        status: 201,
        json: {
          client_id: 'client-ok',
          client_secret: CLIENT_SECRET,
          client_secret_expires_at: 0,
          token_endpoint_auth_method: 'client_secret_basic',
        },
      },
    );
    const reg = await registerClient(as, request, http);
    assert.equal(reg.clientId, 'client-ok');
    assert.equal(reg.clientSecret, CLIENT_SECRET);
    const bodies = srv.requestsTo('POST', '/register').map((r) => r.json as Record<string, unknown>);
    assert.equal(bodies.length, 2);
    assert.equal(bodies[0]?.scope, 'mcp:read');
    assert.equal(Object.hasOwn(bodies[1] ?? {}, 'scope'), false);
    // Everything else identical.
    const { scope: _s, ...first } = bodies[0] ?? {};
    assert.deepEqual(first, bodies[1]);
  });

  test('an http registration endpoint off loopback: insecure_url before any request', async () => {
    await assert.rejects(
      registerClient({ ...as, registration_endpoint: 'http://as.example/register' }, request, http),
      expectError('insecure_url', 'registration_endpoint'),
    );
    assert.deepEqual(srv.requests, []);
  });
});
