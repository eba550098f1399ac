/**
 * registration tests: the MCP priority (pre-registered, client ID metadata document, DCR), the
 * RFC 7591 request we send, token endpoint auth method negotiation, and the one retry without
 * `scope` after invalid_client_metadata, against a real HTTP server.
 *
 * Not for: malformed registration responses' secret hygiene (bad-input.test.ts).
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import type { AuthkeepError } from '../../src/errors.js';
import { chooseTokenEndpointAuthMethod, registerClient } from '../../src/oauth/registration.js';
import type { AuthorizationServer } from '../../src/oauth/types.js';
import { asRecord, type HostileServer, startHostileServer } from '../helpers/hostile-server.js';

// A bound for a hung request, not a timing assumption (the servers answer at once; the timeout tests set their own).
const http = { allowInsecureLoopback: true, timeoutMs: 30_000 };
const redirectUris = ['http://127.0.0.1:33333/callback'];

describe('registerClient', () => {
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
      token_endpoint_auth_methods_supported: ['none', 'client_secret_basic'],
    });
  });

  test('a pre-registered client wins and makes no request', async () => {
    const reg = await registerClient(
      { ...as, client_id_metadata_document_supported: true },
      {
        clientName: 'authkeep',
        redirectUris,
        clientMetadataUrl: 'https://app.example/client.json',
        staticClient: { clientId: 'static-1', clientSecret: 's3cret' },
      },
      http,
    );
    assert.equal(reg.method, 'pre_registered');
    assert.equal(reg.clientId, 'static-1');
    assert.equal(reg.clientSecret, 's3cret');
    assert.equal(reg.tokenEndpointAuthMethod, 'client_secret_basic');
    assert.equal(reg.issuer, srv.url);
    assert.deepEqual(srv.requests, []);
  });

  test('pre-registered public client: none; secret-only AS methods: post when basic is not listed', async () => {
    const pub = await registerClient(as, { clientName: 'x', redirectUris, staticClient: { clientId: 'pub' } }, http);
    assert.equal(pub.tokenEndpointAuthMethod, 'none');
    assert.equal(pub.clientSecret, undefined);
    const post = await registerClient(
      { ...as, token_endpoint_auth_methods_supported: ['client_secret_post'] },
      { clientName: 'x', redirectUris, staticClient: { clientId: 'c', clientSecret: 's' } },
      http,
    );
    assert.equal(post.tokenEndpointAuthMethod, 'client_secret_post');
    await assert.rejects(
      registerClient(
        as,
        {
          clientName: 'x',
          redirectUris,
          staticClient: { clientId: 'c', tokenEndpointAuthMethod: 'client_secret_basic' },
        },
        http,
      ),
      { code: 'invalid_argument', field: 'staticClient.clientSecret' },
    );
  });

  test('client ID metadata document when the AS supports it and a URL is configured', async () => {
    const reg = await registerClient(
      { ...as, client_id_metadata_document_supported: true },
      { clientName: 'x', redirectUris, clientMetadataUrl: 'https://app.example/oauth/client.json' },
      http,
    );
    assert.equal(reg.method, 'client_id_metadata_document');
    assert.equal(reg.clientId, 'https://app.example/oauth/client.json');
    assert.equal(reg.tokenEndpointAuthMethod, 'none');
    assert.deepEqual(srv.requests, []);
    await assert.rejects(
      registerClient(
        { ...as, client_id_metadata_document_supported: true },
        { clientName: 'x', redirectUris, clientMetadataUrl: 'https://app.example/' },
        http,
      ),
      { code: 'invalid_argument', field: 'clientMetadataUrl' },
    );
    await assert.rejects(
      registerClient(
        { ...as, client_id_metadata_document_supported: true },
        { clientName: 'x', redirectUris, clientMetadataUrl: 'http://app.example/c.json' },
        http,
      ),
      { code: 'insecure_url', field: 'clientMetadataUrl' },
    );
  });

  test('without AS support for CIMD, DCR is used even if a URL is configured', async () => {
    srv.on('POST', '/register', { status: 201, json: { client_id: 'dyn-1' } });
    const reg = await registerClient(
      as,
      { clientName: 'x', redirectUris, clientMetadataUrl: 'https://app.example/c.json' },
      http,
    );
    assert.equal(reg.method, 'dynamic');
    assert.equal(reg.clientId, 'dyn-1');
  });

  test('DCR sends the RFC 7591 metadata with application_type native and prefers none', async () => {
    srv.on('POST', '/register', {
      status: 201,
      json: {
        client_id: 'dyn-2',
        client_secret: 'ignored-for-public',
        redirect_uris: redirectUris,
        token_endpoint_auth_method: 'none',
      },
    });
    const reg = await registerClient(
      as,
      { clientName: 'authkeep test', redirectUris, scope: 'mcp:read offline_access' },
      http,
    );
    const [req] = srv.requests;
    assert.ok(req);
    assert.equal(req.headers['content-type'], 'application/json');
    assert.deepEqual(req.json, {
      client_name: 'authkeep test',
      redirect_uris: redirectUris,
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      application_type: 'native',
      scope: 'mcp:read offline_access',
    });
    assert.deepEqual(reg, {
      issuer: srv.url,
      clientId: 'dyn-2',
      method: 'dynamic',
      tokenEndpointAuthMethod: 'none',
      redirectUris,
      registeredAt: reg.registeredAt,
    });
  });

  test('an AS that only allows client_secret_basic gets it, and its secret is kept', async () => {
    srv.on('POST', '/register', {
      status: 201,
      json: {
        client_id: 'dyn-3',
        client_secret: 'dcr-secret',
        client_secret_expires_at: 0,
        token_endpoint_auth_method: 'client_secret_basic',
      },
    });
    const reg = await registerClient(
      { ...as, token_endpoint_auth_methods_supported: ['client_secret_basic', 'private_key_jwt'] },
      { clientName: 'x', redirectUris },
      http,
    );
    assert.equal(
      (srv.requests[0]!.json as { token_endpoint_auth_method?: string }).token_endpoint_auth_method,
      'client_secret_basic',
    );
    assert.equal(reg.tokenEndpointAuthMethod, 'client_secret_basic');
    assert.equal(reg.clientSecret, 'dcr-secret');
  });

  test('client_secret_post, 200 instead of 201, no client_secret_expires_at: accepted', async () => {
    srv.on('POST', '/register', { status: 200, json: { client_id: 'dyn-4', client_secret: 'p' } });
    const reg = await registerClient(
      { ...as, token_endpoint_auth_methods_supported: ['client_secret_post'] },
      { clientName: 'x', redirectUris },
      http,
    );
    assert.equal(reg.tokenEndpointAuthMethod, 'client_secret_post');
    assert.equal(reg.clientSecret, 'p');
  });

  test('an AS with no method we implement is refused before any request', async () => {
    assert.throws(() => chooseTokenEndpointAuthMethod(['private_key_jwt']), {
      code: 'registration_failed',
      field: 'token_endpoint_auth_methods_supported',
    });
    await assert.rejects(
      registerClient(
        { ...as, token_endpoint_auth_methods_supported: ['tls_client_auth'] },
        { clientName: 'x', redirectUris },
        http,
      ),
      {
        code: 'registration_failed',
      },
    );
    assert.deepEqual(srv.requests, []);
  });

  test('a secret-based method without a client_secret in the answer is refused', async () => {
    srv.on('POST', '/register', {
      status: 201,
      json: { client_id: 'dyn-5', token_endpoint_auth_method: 'client_secret_basic' },
    });
    await assert.rejects(registerClient(as, { clientName: 'x', redirectUris }, http), {
      code: 'registration_failed',
      field: 'client_secret',
    });
  });

  test('invalid_client_metadata with scope: one retry without scope', async () => {
    srv.on(
      'POST',
      '/register',
      {
        status: 400,
        json: { error: 'invalid_client_metadata', error_description: 'scope must only contain supported scopes' },
      },
      { status: 201, json: { client_id: 'dyn-6' } },
    );
    const reg = await registerClient(as, { clientName: 'x', redirectUris, scope: 'mcp:read' }, http);
    assert.equal(reg.clientId, 'dyn-6');
    assert.equal(srv.requests.length, 2);
    assert.equal((srv.requests[0]!.json as { scope?: string }).scope, 'mcp:read');
    assert.equal('scope' in (srv.requests[1]!.json as object), false);
  });

  test('the retry happens once only, and not at all without scope', async () => {
    srv.on('POST', '/register', { status: 400, json: { error: 'invalid_client_metadata', error_description: 'nope' } });
    await assert.rejects(
      registerClient(as, { clientName: 'x', redirectUris, scope: 'mcp:read' }, http),
      (err: AuthkeepError) => {
        assert.equal(err.code, 'registration_failed');
        assert.equal(err.detail?.error, 'invalid_client_metadata');
        return true;
      },
    );
    assert.equal(srv.requests.length, 2);
    srv.reset();
    srv.on('POST', '/register', { status: 400, json: { error: 'invalid_client_metadata' } });
    await assert.rejects(registerClient(as, { clientName: 'x', redirectUris }, http), {
      code: 'registration_failed',
      field: 'client_metadata',
    });
    assert.equal(srv.requests.length, 1);
  });

  test('invalid_redirect_uri names redirect_uris and is not retried', async () => {
    srv.on('POST', '/register', { status: 400, json: { error: 'invalid_redirect_uri' } });
    await assert.rejects(registerClient(as, { clientName: 'x', redirectUris, scope: 'a' }, http), {
      code: 'registration_failed',
      field: 'redirect_uris',
    });
    assert.equal(srv.requests.length, 1);
  });

  test('no registration endpoint and nothing configured: a client id must be configured', async () => {
    const { registration_endpoint: _omit, ...noDcr } = as;
    await assert.rejects(registerClient(noDcr, { clientName: 'x', redirectUris }, http), (err: AuthkeepError) => {
      assert.equal(err.code, 'registration_failed');
      assert.equal(err.field, 'registration_endpoint');
      assert.match(err.message, /client id must be configured/);
      return true;
    });
  });

  test('a 5xx from the registration endpoint is registration_failed with the status', async () => {
    srv.on('POST', '/register', { status: 502, body: 'bad gateway' });
    await assert.rejects(registerClient(as, { clientName: 'x', redirectUris }, http), (err: AuthkeepError) => {
      assert.equal(err.code, 'registration_failed');
      assert.equal(err.detail?.status, 502);
      return true;
    });
  });
});
