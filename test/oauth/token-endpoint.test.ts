/**
 * token-endpoint tests: the exact parameters of the code exchange and the refresh (RFC 6749,
 * RFC 7636, RFC 8707), client authentication per registration, the classification of failures
 * (needs_auth / transient / malformed), and revocation (RFC 7009), against a real HTTP server.
 *
 * Not for: hostile bodies and secret hygiene in depth (bad-input.test.ts).
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import { revokeToken } from '../../src/oauth/revocation.js';
import { exchangeAuthorizationCode, refreshAccessToken, TokenEndpointError } from '../../src/oauth/token-endpoint.js';
import type { AuthorizationServer, Registration } from '../../src/oauth/types.js';
import { asRecord, type HostileServer, startHostileServer } from '../helpers/hostile-server.js';
import { assertNoSecrets } from '../helpers/secrets.js';

// A bound for a hung request, not a timing assumption (the servers answer at once; the timeout tests set their own).
const http = { allowInsecureLoopback: true, timeoutMs: 30_000 };
const VERIFIER = 'v'.repeat(43);

function registration(issuer: string, over: Partial<Registration> = {}): Registration {
  return {
    issuer,
    clientId: 'client-1',
    method: 'dynamic',
    tokenEndpointAuthMethod: 'none',
    redirectUris: ['http://127.0.0.1:4000/cb'],
    registeredAt: new Date(0).toISOString(),
    ...over,
  };
}

function isTokenError(check: (err: TokenEndpointError) => void) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof TokenEndpointError, `expected TokenEndpointError, got ${String(err)}`);
    check(err);
    return true;
  };
}

describe('token endpoint', () => {
  let srv: HostileServer;
  let as: AuthorizationServer;
  before(async () => {
    srv = await startHostileServer();
  });
  after(async () => srv.close());
  beforeEach(() => {
    srv.reset();
    as = asRecord(srv.url, { revocation_endpoint: `${srv.url}/revoke` });
  });

  test('code exchange sends exactly grant_type, code, redirect_uri, code_verifier, resource, client_id', async () => {
    srv.on('POST', '/token', {
      json: { access_token: 'at-1', token_type: 'Bearer', expires_in: 3600, refresh_token: 'rt-1', scope: 'mcp:read' },
    });
    const tokens = await exchangeAuthorizationCode(
      as,
      registration(srv.url),
      {
        code: 'code-1',
        codeVerifier: VERIFIER,
        redirectUri: 'http://127.0.0.1:4000/cb',
        resource: 'https://mcp.example.com',
      },
      http,
    );
    assert.deepEqual(tokens, {
      accessToken: 'at-1',
      tokenType: 'Bearer',
      expiresIn: 3600,
      refreshToken: 'rt-1',
      scope: 'mcp:read',
    });
    const [req] = srv.requests;
    assert.ok(req);
    assert.match(String(req.headers['content-type']), /^application\/x-www-form-urlencoded/);
    assert.equal(req.headers.authorization, undefined);
    assert.deepEqual(Object.fromEntries(req.form), {
      grant_type: 'authorization_code',
      code: 'code-1',
      redirect_uri: 'http://127.0.0.1:4000/cb',
      code_verifier: VERIFIER,
      resource: 'https://mcp.example.com', // exactly as given: no trailing slash added
      client_id: 'client-1',
    });
    assert.deepEqual([...req.form.keys()].sort(), [
      'client_id',
      'code',
      'code_verifier',
      'grant_type',
      'redirect_uri',
      'resource',
    ]);
  });

  test('OpenID Connect (an IdP sign-in): the ID token validated with the nonce; another nonce, or none, is refused', async () => {
    const now = Math.floor(Date.now() / 1000);
    const segment = (part: object) => Buffer.from(JSON.stringify(part)).toString('base64url');
    // Unsigned in effect: a token endpoint's ID token is taken over TLS (OIDC Core 3.1.3.7 item 6).
    const jwt = (claims: Record<string, unknown>) => `${segment({ alg: 'RS256', typ: 'JWT' })}.${segment(claims)}.c2ln`;
    const idToken = (nonce: string) =>
      jwt({ iss: srv.url, aud: 'client-1', sub: 'alice', iat: now, exp: now + 600, nonce });
    const exchange = () =>
      exchangeAuthorizationCode(
        as,
        registration(srv.url),
        { code: 'code-1', codeVerifier: VERIFIER, redirectUri: 'http://127.0.0.1:4000/cb', nonce: 'nonce-1' },
        http,
      );
    const answer = (extra: Record<string, unknown>) =>
      srv.on('POST', '/token', { json: { access_token: 'at-1', token_type: 'Bearer', expires_in: 3600, ...extra } });

    answer({ id_token: idToken('nonce-1') });
    const tokens = await exchange();
    assert.deepEqual(tokens.idToken && { ...tokens.idToken, token: tokens.idToken.token === idToken('nonce-1') }, {
      token: true,
      subject: 'alice',
      issuedAt: now * 1000,
      expiresAt: (now + 600) * 1000,
    });
    assert.equal(srv.requests.at(-1)?.form.has('resource'), false, 'no resource at the IdP');

    answer({ id_token: idToken('another-nonce') });
    await assert.rejects(
      exchange(),
      isTokenError((err) => assert.equal(err.code, 'token_response_invalid')),
    );
    answer({});
    await assert.rejects(
      exchange(),
      isTokenError((err) => {
        assert.equal(err.code, 'token_response_invalid');
      }),
    );
  });

  test('refresh sends grant_type, refresh_token, resource, scope; a missing refresh_token stays missing', async () => {
    srv.on('POST', '/token', { json: { access_token: 'at-2', token_type: 'bearer', expires_in: '60' } });
    const tokens = await refreshAccessToken(
      as,
      registration(srv.url),
      { refreshToken: 'rt-1', resource: 'https://mcp.example.com/mcp', scope: 'a b' },
      http,
    );
    assert.deepEqual(tokens, { accessToken: 'at-2', tokenType: 'Bearer', expiresIn: 60 });
    assert.deepEqual(Object.fromEntries(srv.requests[0]?.form ?? []), {
      grant_type: 'refresh_token',
      refresh_token: 'rt-1',
      resource: 'https://mcp.example.com/mcp',
      scope: 'a b',
      client_id: 'client-1',
    });
  });

  test('client_secret_basic puts the credentials in the Authorization header only', async () => {
    srv.on('POST', '/token', { json: { access_token: 'at', token_type: 'Bearer' } });
    await refreshAccessToken(
      as,
      registration(srv.url, {
        clientId: 'c:1',
        clientSecret: 's&cret',
        tokenEndpointAuthMethod: 'client_secret_basic',
      }),
      { refreshToken: 'rt', resource: 'https://r.example' },
      http,
    );
    const req = srv.requests[0];
    assert.ok(req);
    const basic = String(req.headers.authorization);
    assert.match(basic, /^Basic /);
    // RFC 6749 section 2.3.1: form-urlencoded id and secret.
    assert.equal(Buffer.from(basic.slice(6), 'base64').toString(), 'c%3A1:s%26cret');
    assert.equal(req.form.has('client_secret'), false);
    assert.equal(req.form.has('client_id'), false);
  });

  test('client_secret_post puts client_id and client_secret in the body', async () => {
    srv.on('POST', '/token', { json: { access_token: 'at', token_type: 'Bearer' } });
    await refreshAccessToken(
      as,
      registration(srv.url, { clientSecret: 'sec', tokenEndpointAuthMethod: 'client_secret_post' }),
      { refreshToken: 'rt', resource: 'https://r.example' },
      http,
    );
    const req = srv.requests[0];
    assert.equal(req?.headers.authorization, undefined);
    assert.equal(req?.form.get('client_id'), 'client-1');
    assert.equal(req?.form.get('client_secret'), 'sec');
  });

  test('the request description names method, endpoint and grant', async () => {
    srv.on('POST', '/token', {
      status: 400,
      json: { error: 'invalid_grant', error_description: 'grant request is invalid' },
    });
    await assert.rejects(
      refreshAccessToken(as, registration(srv.url), { refreshToken: 'rt', resource: 'https://r.example' }, http),
      isTokenError((err) => {
        assert.equal(err.request, `POST ${srv.url}/token (refresh_token)`);
        assert.equal(err.kind, 'needs_auth');
        assert.equal(err.needsAuthReason, 'invalid_grant');
        assert.equal(err.code, 'invalid_grant');
        assert.equal(err.oauthError, 'invalid_grant');
        assert.equal(err.oauthErrorDescription, 'grant request is invalid');
        assert.equal(err.status, 400);
      }),
    );
  });

  const classify: Array<[string, Parameters<HostileServer['on']>[2], Partial<TokenEndpointError>]> = [
    [
      'invalid_client (401 + Basic challenge)',
      { status: 401, headers: { 'www-authenticate': 'Basic realm="as"' }, json: { error: 'invalid_client' } },
      { kind: 'needs_auth', needsAuthReason: 'client_mismatch', code: 'client_mismatch' },
    ],
    [
      'unauthorized_client',
      { status: 400, json: { error: 'unauthorized_client' } },
      { kind: 'needs_auth', needsAuthReason: 'client_mismatch' },
    ],
    ['bare 401', { status: 401, body: '' }, { kind: 'needs_auth', needsAuthReason: 'client_mismatch' }],
    [
      'invalid_scope',
      { status: 400, json: { error: 'invalid_scope' } },
      { kind: 'needs_auth', needsAuthReason: undefined, code: 'as_error', oauthError: 'invalid_scope' },
    ],
    [
      'temporarily_unavailable (400)',
      { status: 400, json: { error: 'temporarily_unavailable' } },
      { kind: 'transient', code: 'as_error' },
    ],
    ['503', { status: 503, body: 'down' }, { kind: 'transient', status: 503 }],
    [
      '500 with JSON error',
      { status: 500, json: { error: 'server_error' } },
      { kind: 'transient', oauthError: 'server_error' },
    ],
    ['429', { status: 429, headers: { 'retry-after': '1' } }, { kind: 'transient', status: 429 }],
    [
      '400 without an error member',
      { status: 400, json: { nope: true } },
      { kind: 'malformed', code: 'token_response_invalid', field: 'error' },
    ],
    [
      '302 redirect',
      { status: 302, headers: { location: 'https://elsewhere.example/' } },
      { kind: 'malformed', status: 302 },
    ],
    [
      '200 with an error body',
      { status: 200, json: { error: 'invalid_grant' } },
      { kind: 'needs_auth', needsAuthReason: 'invalid_grant' },
    ],
  ];
  for (const [name, reply, expected] of classify) {
    test(`classifies ${name}`, async () => {
      srv.on('POST', '/token', reply);
      await assert.rejects(
        refreshAccessToken(as, registration(srv.url), { refreshToken: 'rt', resource: 'https://r.example' }, http),
        isTokenError((err) => {
          for (const [k, v] of Object.entries(expected)) assert.equal(err[k as keyof TokenEndpointError], v, k);
        }),
      );
    });
  }

  test('a timeout is transient as_unreachable', async () => {
    srv.on('POST', '/token', { hang: true });
    await assert.rejects(
      refreshAccessToken(
        as,
        registration(srv.url),
        { refreshToken: 'rt', resource: 'https://r.example' },
        { ...http, timeoutMs: 150 },
      ),
      isTokenError((err) => {
        assert.equal(err.kind, 'transient');
        assert.equal(err.code, 'as_unreachable');
        assert.match(err.message, /timeout/);
      }),
    );
  });

  test('a dropped connection and a refused connection are transient as_unreachable', async () => {
    srv.on('POST', '/token', { drop: true });
    await assert.rejects(
      refreshAccessToken(as, registration(srv.url), { refreshToken: 'rt', resource: 'https://r.example' }, http),
      isTokenError((err) => assert.equal(err.code, 'as_unreachable')),
    );
    const dead = await startHostileServer();
    const url = dead.url;
    await dead.close();
    await assert.rejects(
      refreshAccessToken(
        { ...as, token_endpoint: `${url}/token` },
        registration(srv.url),
        { refreshToken: 'rt', resource: 'https://r.example' },
        http,
      ),
      isTokenError((err) => {
        assert.equal(err.kind, 'transient');
        assert.equal(err.code, 'as_unreachable');
      }),
    );
  });

  test('a registration needing a secret it lacks is refused before sending', async () => {
    await assert.rejects(
      refreshAccessToken(
        as,
        registration(srv.url, { tokenEndpointAuthMethod: 'client_secret_basic' }),
        { refreshToken: 'rt', resource: 'https://r.example' },
        http,
      ),
      { code: 'invalid_argument', field: 'registration.clientSecret' },
    );
    assert.deepEqual(srv.requests, []);
  });
});

describe('revocation', () => {
  let srv: HostileServer;
  let as: AuthorizationServer;
  before(async () => {
    srv = await startHostileServer();
  });
  after(async () => srv.close());
  beforeEach(() => {
    srv.reset();
    as = { issuer: srv.url, token_endpoint: `${srv.url}/token`, revocation_endpoint: `${srv.url}/revoke` };
  });

  test('RFC 7009 request: token and token_type_hint, client authentication', async () => {
    srv.on('POST', '/revoke', { status: 200, body: '' });
    assert.equal(await revokeToken(as, registration(srv.url), 'rt-9', 'refresh_token', http), 'revoked');
    assert.deepEqual(Object.fromEntries(srv.requests[0]?.form ?? []), {
      token: 'rt-9',
      token_type_hint: 'refresh_token',
      client_id: 'client-1',
    });
  });

  test('no revocation endpoint: unsupported, no request', async () => {
    const { revocation_endpoint: _omit, ...noRevoke } = as;
    assert.equal(await revokeToken(noRevoke, registration(srv.url), 'rt', 'refresh_token', http), 'unsupported');
    assert.deepEqual(srv.requests, []);
  });

  test('unsupported_token_type: unsupported; other errors: as_error without the token', async () => {
    srv.on('POST', '/revoke', { status: 400, json: { error: 'unsupported_token_type' } });
    assert.equal(await revokeToken(as, registration(srv.url), 'at-1', 'access_token', http), 'unsupported');
    srv.reset();
    srv.on('POST', '/revoke', {
      status: 400,
      json: { error: 'invalid_request', error_description: 'bad token rt-SECRET-77' },
    });
    await assert.rejects(
      revokeToken(as, registration(srv.url), 'rt-SECRET-77', 'refresh_token', http),
      (err: Error & { code?: string; detail?: unknown }) => {
        assert.equal(err.code, 'as_error');
        assertNoSecrets(err, ['rt-SECRET-77'], 'error');
        return true;
      },
    );
    srv.reset();
    srv.on('POST', '/revoke', { status: 503, body: 'down' });
    await assert.rejects(revokeToken(as, registration(srv.url), 'rt', 'refresh_token', http), { code: 'as_error' });
  });

  test('unreachable revocation endpoint: as_unreachable', async () => {
    srv.on('POST', '/revoke', { hang: true });
    await assert.rejects(revokeToken(as, registration(srv.url), 'rt', 'refresh_token', { ...http, timeoutMs: 150 }), {
      code: 'as_unreachable',
    });
  });
});
