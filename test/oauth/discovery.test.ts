/**
 * discovery tests: the well-known URL builders, the exact request order of protected resource and
 * authorization server metadata discovery against a real HTTP server (first success stops the
 * search), the 2025-03-26 back-compat, the unauthenticated probe, and scope selection.
 *
 * Not for: malformed and hostile documents (bad-input.test.ts).
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import type { AuthkeepError } from '../../src/errors.js';
import {
  authorizationServerMetadataUrls,
  discoverAuthorizationServer,
  legacyAuthorizationServer,
} from '../../src/oauth/authorization-server-metadata.js';
import { assertSecureUrl, describeRequest } from '../../src/oauth/http.js';
import {
  discoverProtectedResource,
  expectedResources,
  type MetadataSource,
  probeServer,
  protectedResourceMetadataUrls,
  resourceIdentical,
} from '../../src/oauth/protected-resource.js';
import { scopeCovers, selectScope, unionScopes, withOfflineAccess } from '../../src/oauth/scope.js';
import { asMetadata, type HostileServer, startHostileServer } from '../helpers/hostile-server.js';

// A bound for a hung request, not a timing assumption (the servers answer at once; the timeout tests set their own).
const http = { allowInsecureLoopback: true, timeoutMs: 30_000 };

describe('well-known URL builders', () => {
  test('PRM: path-based then root; root-only for a server at the root', () => {
    assert.deepEqual(protectedResourceMetadataUrls(new URL('https://mcp.example.com/public/mcp')).map(String), [
      'https://mcp.example.com/.well-known/oauth-protected-resource/public/mcp',
      'https://mcp.example.com/.well-known/oauth-protected-resource',
    ]);
    assert.deepEqual(protectedResourceMetadataUrls(new URL('https://mcp.example.com/mcp/')).map(String), [
      'https://mcp.example.com/.well-known/oauth-protected-resource/mcp',
      'https://mcp.example.com/.well-known/oauth-protected-resource',
    ]);
    assert.deepEqual(protectedResourceMetadataUrls(new URL('https://mcp.example.com')).map(String), [
      'https://mcp.example.com/.well-known/oauth-protected-resource',
    ]);
  });

  test('AS metadata: issuer with a path tries three URLs in the MCP order', () => {
    assert.deepEqual(authorizationServerMetadataUrls(new URL('https://auth.example.com/tenant1')).map(String), [
      'https://auth.example.com/.well-known/oauth-authorization-server/tenant1',
      'https://auth.example.com/.well-known/openid-configuration/tenant1',
      'https://auth.example.com/tenant1/.well-known/openid-configuration',
    ]);
    assert.deepEqual(authorizationServerMetadataUrls(new URL('https://auth.example.com/tenant1/')).map(String), [
      'https://auth.example.com/.well-known/oauth-authorization-server/tenant1',
      'https://auth.example.com/.well-known/openid-configuration/tenant1',
      'https://auth.example.com/tenant1/.well-known/openid-configuration',
    ]);
  });

  test('AS metadata: issuer without a path tries two URLs', () => {
    for (const issuer of ['https://auth.example.com', 'https://auth.example.com/']) {
      assert.deepEqual(authorizationServerMetadataUrls(new URL(issuer)).map(String), [
        'https://auth.example.com/.well-known/oauth-authorization-server',
        'https://auth.example.com/.well-known/openid-configuration',
      ]);
    }
  });
});

describe('resource match rule (RFC 9728 section 3.3: identical to the identifier the URL was built from)', () => {
  const cases: Array<[string, string, MetadataSource, boolean]> = [
    ['https://h.example/mcp', 'https://h.example/mcp', 'path', true],
    ['https://h.example/mcp', 'https://h.example/mcp', 'resource_metadata', true],
    ['https://h.example', 'https://h.example/mcp', 'root', true], // root well-known of a server with a path
    ['https://h.example/', 'https://h.example/mcp', 'root', true],
    ['https://h.example', 'https://h.example', 'root', true], // a server at the root
    ['https://H.EXAMPLE/mcp', 'https://h.example/mcp', 'path', true], // case-insensitive scheme/host (MCP)
    ['HTTPS://h.example/mcp', 'https://h.example/mcp', 'resource_metadata', true],
    ['https://h.example:443/mcp', 'https://h.example/mcp', 'path', true],
    ['https://h.example/mcp?tenant=a', 'https://h.example/mcp?tenant=a', 'path', true],
    // not identical: a prefix, the origin where the server URL is expected, a trailing slash
    ['https://h.example/public', 'https://h.example/public/mcp', 'path', false],
    ['https://h.example/public', 'https://h.example/public/mcp', 'resource_metadata', false],
    ['https://h.example', 'https://h.example/mcp', 'resource_metadata', false],
    ['https://h.example', 'https://h.example/mcp', 'path', false],
    ['https://h.example/mcp', 'https://h.example/mcp', 'root', true], // or exactly the server URL
    ['https://h.example/public', 'https://h.example/public/mcp', 'root', false],
    ['https://h.example/mcp/', 'https://h.example/mcp', 'path', false],
    ['https://h.example/MCP', 'https://h.example/mcp', 'path', false], // the path is case-sensitive
    ['https://h.example/mcp', 'https://h.example/mcp?tenant=a', 'path', false],
    ['https://h.example/other', 'https://h.example/mcp', 'path', false],
    ['https://h.example/mcp/deeper', 'https://h.example/mcp', 'path', false],
    ['https://evil.example.com/mcp', 'https://h.example/mcp', 'resource_metadata', false],
    ['http://h.example/mcp', 'https://h.example/mcp', 'path', false],
    ['https://h.example:8443/mcp', 'https://h.example/mcp', 'path', false],
    ['https://h.example/mcp#frag', 'https://h.example/mcp', 'path', false],
    ['https://user@h.example/mcp', 'https://h.example/mcp', 'path', false],
    ['not a url', 'https://h.example/mcp', 'path', false],
  ];
  for (const [resource, server, source, expected] of cases) {
    test(`found via ${source}: ${resource} ${expected ? 'is' : 'is not'} the resource of ${server}`, () => {
      assert.equal(
        expectedResources(server, source).some((identifier) => resourceIdentical(resource, identifier)),
        expected,
      );
    });
  }
});

describe('assertSecureUrl and describeRequest', () => {
  test('https passes; loopback http only when allowed; others refused naming the field', () => {
    assert.equal(assertSecureUrl('https://as.example/token', 'token_endpoint', false).href, 'https://as.example/token');
    for (const host of ['127.0.0.1:8080', 'localhost:1', '[::1]:9']) {
      assert.equal(assertSecureUrl(`http://${host}/x`, 'f', true).protocol, 'http:');
      assert.throws(() => assertSecureUrl(`http://${host}/x`, 'f', false), { code: 'insecure_url', field: 'f' });
    }
    assert.throws(() => assertSecureUrl('http://as.example/token', 'token_endpoint', true), {
      code: 'insecure_url',
      field: 'token_endpoint',
    });
    assert.throws(() => assertSecureUrl('http://127.0.0.2/x', 'f', true), { code: 'insecure_url' });
    assert.throws(() => assertSecureUrl('not a url', 'f', true), { code: 'invalid_argument', field: 'f' });
  });

  test('describeRequest drops query and credentials', () => {
    assert.equal(
      describeRequest('post', 'https://u:p@as.example/token?x=secret', 'refresh_token'),
      'POST https://as.example/token (refresh_token)',
    );
  });
});

describe('protected resource metadata discovery (real HTTP)', () => {
  let rs: HostileServer;
  before(async () => {
    rs = await startHostileServer();
  });
  after(async () => rs.close());
  beforeEach(() => rs.reset());

  const prm = (resource: string) => ({
    resource,
    authorization_servers: ['https://auth.example.com'],
    scopes_supported: ['mcp:read'],
  });

  test('without a challenge: path-based first, then root; root success ends it', async () => {
    rs.json('/.well-known/oauth-protected-resource', prm(rs.url));
    const found = await discoverProtectedResource(`${rs.url}/mcp`, http);
    assert.ok(found);
    assert.equal(found.url, `${rs.url}/.well-known/oauth-protected-resource`);
    assert.equal(found.metadata.resource, rs.url);
    assert.deepEqual(rs.lines(), [
      'GET /.well-known/oauth-protected-resource/mcp',
      'GET /.well-known/oauth-protected-resource',
    ]);
  });

  test('path-based success stops the search (root is never asked)', async () => {
    rs.json('/.well-known/oauth-protected-resource/mcp', prm(`${rs.url}/mcp`));
    rs.json('/.well-known/oauth-protected-resource', prm(rs.url));
    const found = await discoverProtectedResource(`${rs.url}/mcp`, http);
    assert.equal(found?.metadata.resource, `${rs.url}/mcp`);
    assert.deepEqual(rs.lines(), ['GET /.well-known/oauth-protected-resource/mcp']);
  });

  test("the challenge's resource_metadata URL is tried first and wins", async () => {
    rs.json('/custom/metadata.json', prm(`${rs.url}/mcp`));
    rs.json('/.well-known/oauth-protected-resource/mcp', prm(`${rs.url}/mcp`));
    const found = await discoverProtectedResource(`${rs.url}/mcp`, {
      ...http,
      resourceMetadataUrl: `${rs.url}/custom/metadata.json`,
    });
    assert.equal(found?.url, `${rs.url}/custom/metadata.json`);
    assert.deepEqual(rs.lines(), ['GET /custom/metadata.json']);
  });

  test('a 404 at the challenge URL falls back to the well-known URIs in order', async () => {
    const found = await discoverProtectedResource(`${rs.url}/mcp`, {
      ...http,
      resourceMetadataUrl: `${rs.url}/gone.json`,
    });
    assert.equal(found, undefined);
    assert.deepEqual(rs.lines(), [
      'GET /gone.json',
      'GET /.well-known/oauth-protected-resource/mcp',
      'GET /.well-known/oauth-protected-resource',
    ]);
  });

  test('a resource that is only a prefix of the server URL is refused, wherever the document was found', async () => {
    rs.json('/custom/prm.json', prm(rs.url));
    rs.json('/.well-known/oauth-protected-resource/mcp', prm(rs.url));
    await assert.rejects(
      discoverProtectedResource(`${rs.url}/mcp`, { ...http, resourceMetadataUrl: `${rs.url}/custom/prm.json` }),
      (err: AuthkeepError) => {
        assert.equal(err.code, 'resource_mismatch');
        assert.equal(err.field, 'resource');
        assert.equal(err.detail?.expected, `${rs.url}/mcp`);
        assert.equal(err.detail?.actual, rs.url);
        assert.equal(err.detail?.source, 'resource_metadata', 'the first mismatch is reported');
        return true;
      },
    );
    assert.deepEqual(
      rs.lines(),
      [
        'GET /custom/prm.json',
        'GET /.well-known/oauth-protected-resource/mcp',
        'GET /.well-known/oauth-protected-resource',
      ],
      'each candidate was asked once; none had a usable document',
    );
  });

  test('the challenge names the root document (resource = origin): not usable for that URL, used as the root one', async () => {
    rs.json('/.well-known/oauth-protected-resource', prm(rs.url));
    const found = await discoverProtectedResource(`${rs.url}/mcp`, {
      ...http,
      resourceMetadataUrl: `${rs.url}/.well-known/oauth-protected-resource`,
    });
    assert.equal(found?.metadata.resource, rs.url);
    assert.equal(found?.url, `${rs.url}/.well-known/oauth-protected-resource`);
    assert.deepEqual(
      rs.lines(),
      ['GET /.well-known/oauth-protected-resource', 'GET /.well-known/oauth-protected-resource/mcp'],
      'the root document was fetched once',
    );
  });

  test('undefined only when every candidate is absent; a 5xx is discovery_failed', async () => {
    assert.equal(await discoverProtectedResource(`${rs.url}/mcp`, http), undefined);
    rs.reset();
    rs.on('GET', '/.well-known/oauth-protected-resource/mcp', { status: 503, body: 'busy' });
    await assert.rejects(discoverProtectedResource(`${rs.url}/mcp`, http), (err: AuthkeepError) => {
      assert.equal(err.code, 'discovery_failed');
      assert.equal(err.detail?.status, 503);
      return true;
    });
  });

  test('a server at the root asks only the root URI', async () => {
    rs.json('/.well-known/oauth-protected-resource', prm(rs.url));
    await discoverProtectedResource(rs.url, http);
    assert.deepEqual(rs.lines(), ['GET /.well-known/oauth-protected-resource']);
  });

  test('network failure is as_unreachable', async () => {
    const dead = await startHostileServer();
    const url = dead.url;
    await dead.close();
    await assert.rejects(discoverProtectedResource(`${url}/mcp`, http), { code: 'as_unreachable' });
  });
});

describe('authorization server metadata discovery (real HTTP)', () => {
  let as: HostileServer;
  before(async () => {
    as = await startHostileServer();
  });
  after(async () => as.close());
  beforeEach(() => as.reset());

  test('issuer with a path: the exact order, all three tried when absent', async () => {
    await assert.rejects(discoverAuthorizationServer(`${as.url}/tenant1`, http), {
      code: 'discovery_failed',
      field: 'issuer',
    });
    assert.deepEqual(as.lines(), [
      'GET /.well-known/oauth-authorization-server/tenant1',
      'GET /.well-known/openid-configuration/tenant1',
      'GET /tenant1/.well-known/openid-configuration',
    ]);
  });

  test('issuer without a path: the exact order', async () => {
    await assert.rejects(discoverAuthorizationServer(as.url, http), { code: 'discovery_failed' });
    assert.deepEqual(as.lines(), [
      'GET /.well-known/oauth-authorization-server',
      'GET /.well-known/openid-configuration',
    ]);
  });

  test('first success stops the search (OIDC path-inserted)', async () => {
    const issuer = `${as.url}/tenant1`;
    as.json('/.well-known/openid-configuration/tenant1', asMetadata(issuer, as.url));
    as.json('/tenant1/.well-known/openid-configuration', asMetadata(issuer, as.url));
    const record = await discoverAuthorizationServer(issuer, http);
    assert.equal(record.issuer, issuer);
    assert.deepEqual(as.lines(), [
      'GET /.well-known/oauth-authorization-server/tenant1',
      'GET /.well-known/openid-configuration/tenant1',
    ]);
  });

  test('path-appended OIDC (oidc-provider style) is found third', async () => {
    const issuer = `${as.url}/tenant1`;
    as.json(
      '/tenant1/.well-known/openid-configuration',
      asMetadata(issuer, as.url, { scopes_supported: ['openid', 'offline_access'] }),
    );
    const record = await discoverAuthorizationServer(issuer, http);
    assert.deepEqual(record, {
      issuer,
      authorization_endpoint: `${as.url}/authorize`,
      token_endpoint: `${as.url}/token`,
      registration_endpoint: `${as.url}/register`,
      revocation_endpoint: `${as.url}/revoke`,
      scopes_supported: ['openid', 'offline_access'],
      code_challenge_methods_supported: ['S256'],
      token_endpoint_auth_methods_supported: ['none'],
    });
  });

  test('first URL of a pathless issuer wins alone', async () => {
    as.json(
      '/.well-known/oauth-authorization-server',
      asMetadata(as.url, as.url, {
        client_id_metadata_document_supported: true,
        authorization_response_iss_parameter_supported: true,
      }),
    );
    const record = await discoverAuthorizationServer(as.url, http);
    assert.equal(record.client_id_metadata_document_supported, true);
    assert.equal(record.authorization_response_iss_parameter_supported, true);
    assert.deepEqual(as.lines(), ['GET /.well-known/oauth-authorization-server']);
  });

  test('a non-JSON 200 is passed over; a later JSON 200 wins', async () => {
    as.on('GET', '/.well-known/oauth-authorization-server', {
      body: '<html>spa</html>',
      headers: { 'content-type': 'text/html' },
    });
    as.json('/.well-known/openid-configuration', asMetadata(as.url, as.url));
    const record = await discoverAuthorizationServer(as.url, http);
    assert.equal(record.issuer, as.url);
  });

  test('a 5xx is passed over but reported when nothing wins', async () => {
    as.on('GET', '/.well-known/oauth-authorization-server', { status: 500 });
    await assert.rejects(discoverAuthorizationServer(as.url, http), (err: AuthkeepError) => {
      assert.equal(err.code, 'discovery_failed');
      assert.equal(err.detail?.status, 500);
      return true;
    });
  });
});

describe('2025-03-26 back-compat', () => {
  let srv: HostileServer;
  before(async () => {
    srv = await startHostileServer();
  });
  after(async () => srv.close());
  beforeEach(() => srv.reset());

  test('metadata at the origin, path discarded', async () => {
    srv.json('/.well-known/oauth-authorization-server', asMetadata(srv.url, srv.url));
    const record = await legacyAuthorizationServer(`${srv.url}/v1/mcp`, http);
    assert.equal(record.issuer, srv.url);
    assert.deepEqual(srv.lines(), ['GET /.well-known/oauth-authorization-server']);
  });

  test('no metadata: default endpoints at the origin, and no PKCE support claimed for it', async () => {
    const record = await legacyAuthorizationServer(`${srv.url}/v1/mcp`, http);
    assert.deepEqual(record, {
      issuer: srv.url,
      authorization_endpoint: `${srv.url}/authorize`,
      token_endpoint: `${srv.url}/token`,
      registration_endpoint: `${srv.url}/register`,
    });
  });

  test('legacy metadata with a foreign issuer is refused', async () => {
    srv.json('/.well-known/oauth-authorization-server', asMetadata('https://other.example', srv.url));
    await assert.rejects(legacyAuthorizationServer(`${srv.url}/mcp`, http), {
      code: 'issuer_mismatch',
      field: 'issuer',
    });
  });

  for (const issuer of ['ORIGIN/oauth', 'ORIGIN/']) {
    test(`legacy metadata naming another issuer on the same origin (${issuer.replace('ORIGIN', 'origin')}) is refused`, async () => {
      const named = issuer.replace('ORIGIN', srv.url);
      srv.json('/.well-known/oauth-authorization-server', asMetadata(named, srv.url));
      await assert.rejects(legacyAuthorizationServer(`${srv.url}/mcp`, http), (err: AuthkeepError) => {
        assert.equal(err.code, 'issuer_mismatch');
        assert.equal(err.field, 'issuer');
        assert.equal(err.detail?.expected, srv.url);
        assert.equal(err.detail?.actual, named);
        return true;
      });
    });
  }

  test('legacy metadata that does not advertise PKCE is refused (pkce_unsupported), not completed with S256', async () => {
    srv.json(
      '/.well-known/oauth-authorization-server',
      asMetadata(srv.url, srv.url, { code_challenge_methods_supported: undefined }),
    );
    await assert.rejects(legacyAuthorizationServer(`${srv.url}/mcp`, http), {
      code: 'pkce_unsupported',
      field: 'code_challenge_methods_supported',
    });
  });
});

describe('probeServer', () => {
  let srv: HostileServer;
  before(async () => {
    srv = await startHostileServer();
  });
  after(async () => srv.close());
  beforeEach(() => srv.reset());

  test('sends an unauthenticated 2026-07-28 server/discover and reads the Bearer challenge', async () => {
    srv.on('POST', '/mcp', {
      status: 401,
      headers: {
        'www-authenticate': `Basic realm="x", Bearer resource_metadata="${srv.url}/.well-known/oauth-protected-resource/mcp", scope="files:read files:write"`,
      },
      json: { error: 'invalid_token' },
    });
    const probe = await probeServer(`${srv.url}/mcp`, http);
    assert.equal(probe.status, 401);
    assert.deepEqual(probe.challenge, {
      resourceMetadata: `${srv.url}/.well-known/oauth-protected-resource/mcp`,
      scope: 'files:read files:write',
    });
    assert.deepEqual(srv.lines(), ['POST /mcp'], 'one request: the 401 decides');
    const [req] = srv.requests;
    assert.ok(req);
    assert.equal(req.headers.authorization, undefined);
    assert.match(String(req.headers.accept), /application\/json/);
    assert.match(String(req.headers.accept), /text\/event-stream/);
    assert.equal(req.headers['mcp-protocol-version'], '2026-07-28');
    assert.equal(req.headers['mcp-method'], 'server/discover');
    const body = req.json as { method?: string; params?: { _meta?: Record<string, unknown> } };
    assert.equal(body.method, 'server/discover');
    assert.equal(body.params?._meta?.['io.modelcontextprotocol/protocolVersion'], '2026-07-28');
  });

  test('a 2026-07-28 server (initialize is refused with 400, server/discover needs a token): the challenge is found', async () => {
    // The "Legacy client, Modern server" row of the 2026-07-28 compatibility matrix: a request
    // without the revision's headers and _meta is refused with 400 before any auth check.
    srv.on('POST', '/mcp', (req) =>
      req.headers['mcp-protocol-version'] === '2026-07-28' &&
      (req.json as { method?: string }).method === 'server/discover'
        ? {
            status: 401,
            headers: { 'www-authenticate': `Bearer resource_metadata="${srv.url}/custom/prm.json", scope="mcp:basic"` },
            body: '',
          }
        : { status: 400, json: { jsonrpc: '2.0', id: null, error: { code: -32600, message: 'HeaderMismatch' } } },
    );
    const probe = await probeServer(`${srv.url}/mcp`, http);
    assert.equal(probe.status, 401);
    assert.deepEqual(probe.challenge, { resourceMetadata: `${srv.url}/custom/prm.json`, scope: 'mcp:basic' });
  });

  test('a legacy server refusing server/discover (400) is asked again with initialize', async () => {
    srv.on('POST', '/mcp', (req) =>
      (req.json as { method?: string }).method === 'initialize'
        ? { status: 401, headers: { 'www-authenticate': 'Bearer scope="legacy:read"' }, body: '' }
        : {
            status: 400,
            json: { jsonrpc: '2.0', id: null, error: { code: -32000, message: 'Bad Request: no session' } },
          },
    );
    const probe = await probeServer(`${srv.url}/mcp`, http);
    assert.equal(probe.status, 401);
    assert.deepEqual(probe.challenge, { scope: 'legacy:read' });
    assert.deepEqual(
      srv.requests.map((r) => (r.json as { method?: string }).method),
      ['server/discover', 'initialize'],
    );
    assert.equal(srv.requests[1]?.headers['mcp-method'], undefined, 'the legacy request carries no 2026-07-28 headers');
  });

  test('a 200 without challenge; a session it opened is closed', async () => {
    srv.on('POST', '/mcp', {
      status: 200,
      headers: { 'mcp-session-id': 'sess-1' },
      json: { jsonrpc: '2.0', id: 0, result: {} },
    });
    srv.on('DELETE', '/mcp', { status: 204 });
    const probe = await probeServer(`${srv.url}/mcp`, http);
    assert.deepEqual(probe, { status: 200 });
    assert.deepEqual(srv.lines(), ['POST /mcp', 'DELETE /mcp']);
    assert.equal(srv.requests[1]?.headers['mcp-session-id'], 'sess-1');
  });

  test('a malformed challenge is reported, not thrown', async () => {
    srv.on('POST', '/mcp', { status: 401, headers: { 'www-authenticate': 'Bearer realm="unterminated' } });
    const probe = await probeServer(`${srv.url}/mcp`, http);
    assert.equal(probe.status, 401);
    assert.equal(probe.challengeMalformed, true);
  });
});

describe('scope selection (MCP "Scope Selection Strategy", SEP-2207)', () => {
  test('challenge scope first, then PRM scopes_supported, else omitted', () => {
    assert.equal(selectScope({ challengeScope: 'mcp:basic', resourceScopesSupported: ['a', 'b'] }), 'mcp:basic');
    assert.equal(
      selectScope({ resourceScopesSupported: ['mcp:basic', 'mcp:read', 'mcp:write'] }),
      'mcp:basic mcp:read mcp:write',
    );
    assert.equal(selectScope({ challengeScope: '', resourceScopesSupported: ['a'] }), 'a');
    assert.equal(selectScope({ asScopesSupported: ['openid', 'offline_access'] }), undefined);
    assert.equal(selectScope({ resourceScopesSupported: [] }), undefined);
    assert.equal(selectScope({ challengeScope: 'a  a b' }), 'a b');
  });

  test('offline_access only when the AS lists it (auth/offline-access-scope, -not-supported)', () => {
    assert.equal(withOfflineAccess('mcp:basic', ['mcp:basic', 'offline_access']), 'mcp:basic offline_access');
    assert.equal(
      withOfflineAccess('mcp:basic offline_access', ['mcp:basic', 'offline_access']),
      'mcp:basic offline_access',
    );
    assert.equal(withOfflineAccess('mcp:basic mcp:read', ['mcp:basic', 'mcp:read']), 'mcp:basic mcp:read');
    assert.equal(withOfflineAccess('mcp:basic offline_access', ['mcp:basic']), 'mcp:basic');
    assert.equal(withOfflineAccess('mcp:basic', undefined), 'mcp:basic');
    assert.equal(withOfflineAccess(undefined, ['offline_access']), undefined);
    assert.equal(withOfflineAccess('offline_access', undefined), undefined);
  });

  test('step-up union keeps previous scopes and adds the challenge', () => {
    assert.equal(unionScopes('mcp:basic', 'mcp:basic mcp:write'), 'mcp:basic mcp:write');
    assert.equal(unionScopes(undefined, 'x'), 'x');
    assert.equal(unionScopes('a b', undefined), 'a b');
    assert.equal(unionScopes(undefined, undefined), undefined);
  });

  test('scopeCovers', () => {
    assert.equal(scopeCovers('a b', 'a'), true);
    assert.equal(scopeCovers('a', 'a b'), false);
    assert.equal(scopeCovers(undefined, 'a'), true);
    assert.equal(scopeCovers('a', undefined), true);
    assert.equal(scopeCovers('a', 'a offline_access'), true);
  });
});
