/**
 * Tests for PKCE (pkce.ts) and the authorize URL (authorize-url.ts): the URL carries exactly the
 * parameters built from one frozen value, and every malformed request of the field report
 * (docs/DESIGN.md) is refused by the parse-back check with the field named.
 *
 * Not for: the authorization response (loopback-callback.test.ts covers it).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { AuthkeepError } from '../../src/errors.js';
import {
  type AuthorizationRequest,
  buildAuthorizationUrl,
  verifyAuthorizationUrl,
} from '../../src/oauth/authorize-url.js';
import { createPkcePair } from '../../src/oauth/pkce.js';

const CHALLENGE = 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM'; // RFC 7636 appendix B

function request(overrides: Partial<AuthorizationRequest> = {}): AuthorizationRequest {
  return {
    authorizationEndpoint: 'https://as.example/authorize',
    clientId: 'client-123',
    redirectUri: 'http://127.0.0.1:53682/callback',
    state: 'state-abc',
    codeChallenge: CHALLENGE,
    codeChallengeMethod: 'S256',
    resource: 'https://mcp.example/mcp',
    scope: 'files:read files:write',
    ...overrides,
  };
}

function assertMismatch(fn: () => unknown, field: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof AuthkeepError, `expected AuthkeepError, got ${String(err)}`);
    assert.equal(err.code, 'authorize_url_mismatch');
    assert.equal(err.field, field);
    assert.ok(err.message.includes(field), `message names ${field}: ${err.message}`);
    return true;
  });
}

/** The good URL for request(), with one textual edit applied to its query. */
function mangled(edit: (query: string) => string): string {
  const url = buildAuthorizationUrl(request());
  return `${url.origin}${url.pathname}?${edit(url.search.slice(1))}`;
}

describe('createPkcePair (RFC 7636 section 4.1-4.2)', () => {
  test('verifier 43-128 unreserved characters, challenge = BASE64URL(SHA256(verifier)), S256', async () => {
    const pair = await createPkcePair();
    assert.match(pair.verifier, /^[A-Za-z0-9\-._~]{43,128}$/);
    assert.match(pair.challenge, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(pair.challenge, createHash('sha256').update(pair.verifier).digest('base64url'));
    assert.equal(pair.method, 'S256');
    assert.ok(Object.isFrozen(pair));
  });

  test('each pair is fresh (no shared verifier slot)', async () => {
    const pairs = await Promise.all(Array.from({ length: 16 }, () => createPkcePair()));
    assert.equal(new Set(pairs.map((p) => p.verifier)).size, 16);
  });
});

describe('buildAuthorizationUrl', () => {
  test('sets exactly the intended parameters, once each', () => {
    const url = buildAuthorizationUrl(request());
    assert.equal(url.origin + url.pathname, 'https://as.example/authorize');
    assert.deepStrictEqual(
      [...url.searchParams],
      [
        ['response_type', 'code'],
        ['client_id', 'client-123'],
        ['redirect_uri', 'http://127.0.0.1:53682/callback'],
        ['state', 'state-abc'],
        ['code_challenge', CHALLENGE],
        ['code_challenge_method', 'S256'],
        ['resource', 'https://mcp.example/mcp'],
        ['scope', 'files:read files:write'],
      ],
    );
  });

  test('omits scope when it is not given or empty', () => {
    const { scope: _omitted, ...withoutScope } = request();
    for (const r of [withoutScope, request({ scope: '' })]) {
      const url = buildAuthorizationUrl(r);
      assert.equal(url.searchParams.has('scope'), false);
      assert.equal([...url.searchParams.keys()].length, 7);
    }
  });

  test('works with a real PKCE pair', async () => {
    const pair = await createPkcePair();
    const url = buildAuthorizationUrl(request({ codeChallenge: pair.challenge }));
    assert.equal(url.searchParams.get('code_challenge'), pair.challenge);
    assert.ok(!url.href.includes(pair.verifier));
  });

  test("keeps the endpoint's own query parameters (RFC 6749 section 3.1)", () => {
    const url = buildAuthorizationUrl(
      request({ authorizationEndpoint: 'https://as.example/oauth2/authorize?tenant=acme&p=B2C_1' }),
    );
    assert.deepStrictEqual([...url.searchParams].slice(0, 3), [
      ['tenant', 'acme'],
      ['p', 'B2C_1'],
      ['response_type', 'code'],
    ]);
    verifyAuthorizationUrl(
      url,
      request({ authorizationEndpoint: 'https://as.example/oauth2/authorize?tenant=acme&p=B2C_1' }),
    );
  });

  test('refuses an endpoint query parameter that collides with ours', () => {
    for (const name of ['client_id', 'scope', 'response_type', 'resource']) {
      assert.throws(
        () => buildAuthorizationUrl(request({ authorizationEndpoint: `https://as.example/authorize?${name}=x` })),
        (err: unknown) =>
          err instanceof AuthkeepError &&
          err.code === 'invalid_argument' &&
          err.field === 'authorization_endpoint' &&
          err.message.includes(name),
      );
    }
  });

  test('refuses an endpoint with a fragment, or http off loopback', () => {
    assert.throws(
      () => buildAuthorizationUrl(request({ authorizationEndpoint: 'https://as.example/authorize#x' })),
      /fragment/,
    );
    assert.throws(
      () => buildAuthorizationUrl(request({ authorizationEndpoint: 'http://as.example/authorize' })),
      (err: unknown) => err instanceof AuthkeepError && err.code === 'insecure_url',
    );
    buildAuthorizationUrl(request({ authorizationEndpoint: 'http://127.0.0.1:9000/authorize' }));
  });

  test('reads the request once: a value that changes under it cannot split the URL', () => {
    let reads = 0;
    const shifty = {
      ...request(),
      get state() {
        reads++;
        return `state-${reads}`;
      },
    };
    const url = buildAuthorizationUrl(shifty);
    assert.equal(url.searchParams.get('state'), 'state-1');
    assert.equal(reads, 1);
  });

  test('refuses to build from a malformed request, naming the field', () => {
    assertMismatch(() => buildAuthorizationUrl(request({ codeChallenge: 'abcdefgh' })), 'code_challenge');
    assertMismatch(() => buildAuthorizationUrl(request({ codeChallenge: `${CHALLENGE}=` })), 'code_challenge');
    assertMismatch(
      () => buildAuthorizationUrl(request({ codeChallengeMethod: 'plain' as 'S256' })),
      'code_challenge_method',
    );
    assertMismatch(() => buildAuthorizationUrl(request({ redirectUri: 'http://localhost/:' })), 'redirect_uri');
    assertMismatch(() => buildAuthorizationUrl(request({ redirectUri: 'http://127.0.0.1/callback' })), 'redirect_uri');
    assertMismatch(
      () => buildAuthorizationUrl(request({ redirectUri: 'http://app.example:8080/callback' })),
      'redirect_uri',
    );
    assertMismatch(
      () => buildAuthorizationUrl(request({ redirectUri: 'http://127.0.0.1:5000/cb#frag' })),
      'redirect_uri',
    );
    assertMismatch(() => buildAuthorizationUrl(request({ resource: 'https://mcp .example/mcp' })), 'resource');
    assertMismatch(() => buildAuthorizationUrl(request({ resource: 'https://mcp.example/mcp#x' })), 'resource');
    assertMismatch(() => buildAuthorizationUrl(request({ resource: '/mcp' })), 'resource');
    assertMismatch(() => buildAuthorizationUrl(request({ scope: 'a  b' })), 'scope');
    assertMismatch(() => buildAuthorizationUrl(request({ state: '' })), 'state');
    assertMismatch(() => buildAuthorizationUrl(request({ clientId: '' })), 'client_id');
  });

  test('accepts loopback redirect URIs with an explicit port, including a default one', () => {
    for (const redirectUri of [
      'http://localhost:8080/callback',
      'http://[::1]:8080/callback',
      'http://127.0.0.1:80/callback',
      'https://app.example/cb',
    ]) {
      buildAuthorizationUrl(request({ redirectUri }));
    }
  });
});

describe("verifyAuthorizationUrl refuses the field report's malformed URLs", () => {
  test('the good URL passes', () => {
    verifyAuthorizationUrl(buildAuthorizationUrl(request()).href, request());
  });

  test('code_challenge_method_method=S256', () => {
    assertMismatch(
      () =>
        verifyAuthorizationUrl(
          mangled((q) => q.replace('code_challenge_method=', 'code_challenge_method_method=')),
          request(),
        ),
      'code_challenge_method_method',
    );
  });

  test('code_challenge _method (a space in the name)', () => {
    assertMismatch(
      () =>
        verifyAuthorizationUrl(
          mangled((q) => q.replace('code_challenge_method=', 'code_challenge+_method=')),
          request(),
        ),
      'code_challenge _method',
    );
  });

  test('an 8-character code_challenge', () => {
    assertMismatch(
      () =>
        verifyAuthorizationUrl(
          mangled((q) => q.replace(CHALLENGE, CHALLENGE.slice(0, 8))),
          request(),
        ),
      'code_challenge',
    );
  });

  test('code_challenge_method=S', () => {
    assertMismatch(
      () =>
        verifyAuthorizationUrl(
          mangled((q) => q.replace('code_challenge_method=S256', 'code_challenge_method=S')),
          request(),
        ),
      'code_challenge_method',
    );
  });

  test('resource with a space in the hostname', () => {
    assertMismatch(
      () =>
        verifyAuthorizationUrl(
          mangled((q) => q.replace('mcp.example', 'mcp+.example')),
          request(),
        ),
      'resource',
    );
  });

  test('scope missing', () => {
    assertMismatch(
      () =>
        verifyAuthorizationUrl(
          mangled((q) => q.replace(/&scope=[^&]*/, '')),
          request(),
        ),
      'scope',
    );
  });

  test('redirect_uri=http://localhost/: (no port)', () => {
    assertMismatch(
      () =>
        verifyAuthorizationUrl(
          mangled((q) => q.replace(/redirect_uri=[^&]*/, `redirect_uri=${encodeURIComponent('http://localhost/:')}`)),
          request(),
        ),
      'redirect_uri',
    );
    assertMismatch(
      () =>
        verifyAuthorizationUrl(
          mangled((q) => q.replace(/redirect_uri=[^&]*/, 'redirect_uri=http://localhost/:')),
          request({ redirectUri: 'http://localhost/:' }),
        ),
      'redirect_uri',
    );
  });

  test('a repeated parameter', () => {
    assertMismatch(
      () =>
        verifyAuthorizationUrl(
          mangled((q) => `${q}&state=state-abc`),
          request(),
        ),
      'state',
    );
  });

  test('a missing parameter', () => {
    assertMismatch(
      () =>
        verifyAuthorizationUrl(
          mangled((q) => q.replace(/&resource=[^&]*/, '')),
          request(),
        ),
      'resource',
    );
  });

  test('an unexpected extra parameter', () => {
    assertMismatch(
      () =>
        verifyAuthorizationUrl(
          mangled((q) => `${q}&prompt=none`),
          request(),
        ),
      'prompt',
    );
  });

  test('a scope sent although none was requested', () => {
    const { scope: _omitted, ...withoutScope } = request();
    assertMismatch(() => verifyAuthorizationUrl(buildAuthorizationUrl(request()), withoutScope), 'scope');
  });

  test('another endpoint, or a fragment', () => {
    assertMismatch(
      () => verifyAuthorizationUrl(mangled((q) => q).replace('as.example', 'evil.example'), request()),
      'authorization_endpoint',
    );
    assertMismatch(
      () => verifyAuthorizationUrl(`${buildAuthorizationUrl(request()).href}#x`, request()),
      'authorization_endpoint',
    );
  });

  test("the endpoint's own query changed", () => {
    const endpoint = 'https://as.example/authorize?tenant=acme';
    const url = buildAuthorizationUrl(request({ authorizationEndpoint: endpoint })).href.replace(
      'tenant=acme',
      'tenant=other',
    );
    assertMismatch(
      () => verifyAuthorizationUrl(url, request({ authorizationEndpoint: endpoint })),
      'authorization_endpoint',
    );
  });

  test('each value compared: a different client_id or state', () => {
    assertMismatch(
      () =>
        verifyAuthorizationUrl(
          mangled((q) => q.replace('client-123', 'client-456')),
          request(),
        ),
      'client_id',
    );
    assertMismatch(
      () =>
        verifyAuthorizationUrl(
          mangled((q) => q.replace('state-abc', 'state-xyz')),
          request(),
        ),
      'state',
    );
  });
});

describe('an OpenID Connect sign-in at an enterprise IdP (SEP-990)', () => {
  const oidc = (): AuthorizationRequest => {
    const { resource: _resource, ...rest } = request({ scope: 'openid offline_access', nonce: 'nonce-xyz' });
    return rest;
  };

  test('carries the nonce and no resource, and parses back to exactly that', () => {
    const url = buildAuthorizationUrl(oidc());
    assert.equal(url.searchParams.get('nonce'), 'nonce-xyz');
    assert.equal(url.searchParams.has('resource'), false);
    assert.equal(url.searchParams.get('scope'), 'openid offline_access');
  });

  test('asks for offline_access with prompt=consent, checked on parse-back like every other parameter', () => {
    const request = { ...oidc(), prompt: 'consent' as const };
    const url = buildAuthorizationUrl(request);
    assert.equal(url.searchParams.get('prompt'), 'consent');
    const dropped = new URL(url.href);
    dropped.searchParams.delete('prompt');
    assertMismatch(() => verifyAuthorizationUrl(dropped, request), 'prompt');
    const other = new URL(url.href);
    other.searchParams.set('prompt', 'none');
    assertMismatch(() => verifyAuthorizationUrl(other, request), 'prompt');
  });

  test('a URL whose nonce was changed, dropped, or that gained a resource is refused by field', () => {
    const url = buildAuthorizationUrl(oidc());
    const changed = new URL(url.href);
    changed.searchParams.set('nonce', 'other');
    assertMismatch(() => verifyAuthorizationUrl(changed, oidc()), 'nonce');
    const dropped = new URL(url.href);
    dropped.searchParams.delete('nonce');
    assertMismatch(() => verifyAuthorizationUrl(dropped, oidc()), 'nonce');
    const withResource = new URL(url.href);
    withResource.searchParams.set('resource', 'https://mcp.example/mcp');
    assertMismatch(() => verifyAuthorizationUrl(withResource, oidc()), 'resource');
  });
});
