/**
 * No secret reaches a log line, an error (its message, stack, detail, info, or anywhere down its
 * `cause` chain), or a status, over a whole life of a grant through AuthKeeper: sign-in, several
 * refresh-token rotations, a step-up, a refused refresh, a sign-in again and logout. The secrets
 * looked for are every one that existed during the test, as the real authorization server saw
 * them (witnessSecrets: codes, verifiers, access and refresh tokens of every rotation, client
 * secrets), not only the final record's. A hostile AS that echoes secrets back in its error
 * descriptions and bodies is checked the same way.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AuthKeeper, NeedsAuthError } from '../../src/index.js';
import { TokenEndpointError } from '../../src/oauth/token-endpoint.js';
import { callTool, startBed, tempHome } from '../helpers/bed.js';
import { asMetadata, startHostileServer } from '../helpers/hostile-server.js';
import { expireStoredTokens, readRecord } from '../helpers/records.js';
import { allSecrets, assertNoSecrets, witnessSecrets } from '../helpers/secrets.js';

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  assert.fail('expected a rejection');
}

async function revokeAtTheAs(endpoint: string, token: string, clientId: string): Promise<void> {
  const response = await fetch(endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token, client_id: clientId }),
  });
  assert.equal(response.status, 200);
  await response.arrayBuffer();
}

test('a whole grant life through AuthKeeper: no secret the AS issued or received reaches a log line, an error or a status', async (t) => {
  const bed = await startBed(t);
  const witness = witnessSecrets(bed.as);
  const server = bed.servers[0]!;
  const errors: unknown[] = [];
  const statuses: unknown[] = [];

  const keeper = bed.keeper();
  statuses.push(await keeper.login(server.url));
  assert.equal((await callTool(keeper.fetch(server.url), server.url)).status, 200);

  // Three rotations, each met by another AuthKeeper (another process's view).
  const seen = new Set<string>();
  for (let i = 0; i < 3; i++) {
    await expireStoredTokens(bed.home, server.url);
    const token = await bed.keeper().getAccessToken(server.url);
    assert.ok(!seen.has(token), 'a new access token each rotation');
    seen.add(token);
  }
  assert.equal(bed.as.audit.counts().refreshGrants, 3);

  // A step-up: another code, verifier and token pair.
  const stepped = bed.keeper();
  assert.equal((await callTool(stepped.fetch(server.url), server.url, 'admin_echo', { text: 'x' })).status, 200);
  statuses.push(...(await stepped.status()));

  // A refused refresh: the error's cause is the token endpoint's error.
  const record = await readRecord(bed.home, server.url);
  await revokeAtTheAs(bed.as.endpoints.revocation, record.tokens!.refreshToken!, record.registration.clientId);
  await expireStoredTokens(bed.home, server.url);
  const refused = await rejection(bed.keeper().getAccessToken(server.url));
  assert.ok(refused instanceof NeedsAuthError && refused.reason === 'invalid_grant', String(refused));
  assert.ok(refused.cause instanceof TokenEndpointError, 'the refusal wraps the token endpoint error');
  errors.push(refused, await rejection(bed.keeper().getAccessToken(server.url)));
  errors.push(await rejection(callTool(bed.keeper().fetch(server.url), server.url)));
  statuses.push(...(await keeper.status()));

  // Sign in again, then log out (revocation).
  statuses.push(await keeper.login(server.url));
  assert.deepEqual(await keeper.logout(server.url), { revoked: true, deleted: true, revocation: 'revoked' });
  statuses.push(...(await keeper.status()));

  const secrets = witness.secrets();
  // The witness saw every rotation, so the check below is not vacuous.
  assert.ok(witness.count('access_token issued') >= 6, `${witness.count('access_token issued')} access tokens`);
  assert.ok(witness.count('RefreshToken issued') >= 6, `${witness.count('RefreshToken issued')} refresh tokens`);
  assert.ok(witness.count('code_verifier received') >= 3, 'the verifiers of every sign-in');
  assert.ok(witness.count('AuthorizationCode issued') >= 3, 'the codes of every sign-in');
  assert.ok(witness.count('refresh_token received') >= 4, 'every refresh token presented, refused ones too');
  assert.ok(witness.count('token received') >= 2, 'the tokens presented for revocation');
  assert.ok(bed.logs.some((e) => e.event === 'refresh.ok'));
  assert.ok(bed.logs.some((e) => e.event === 'needs_auth'));

  const checked = assertNoSecrets([bed.logs, errors, statuses], secrets, 'logs, errors and statuses');
  assert.ok(checked > 50, `${checked} texts checked`);
});

test('a pre-registered confidential client: its secret and every token stay out of logs and errors', async (t) => {
  const clientSecret = 'preregistered-secret-value-0123456789';
  const bed = await startBed(t, {
    as: {
      staticClients: [
        {
          client_id: 'confidential',
          client_secret: clientSecret,
          token_endpoint_auth_method: 'client_secret_basic',
          redirect_uris: ['http://127.0.0.1/callback'],
          application_type: 'native',
          grant_types: ['authorization_code', 'refresh_token'],
        },
      ],
    },
  });
  const witness = witnessSecrets(bed.as);
  const server = bed.servers[0]!;
  const options = {
    staticClients: {
      [bed.as.issuer]: {
        clientId: 'confidential',
        clientSecret,
        tokenEndpointAuthMethod: 'client_secret_basic' as const,
      },
    },
  };
  await bed.keeper(options).login(server.url);
  await expireStoredTokens(bed.home, server.url);
  await bed.keeper(options).getAccessToken(server.url);
  const record = await readRecord(bed.home, server.url);
  // Revocation by a confidential client needs its authentication; revoke as the client would.
  const revoke = await fetch(bed.as.endpoints.revocation, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`confidential:${clientSecret}`).toString('base64')}`,
    },
    body: new URLSearchParams({ token: record.tokens!.refreshToken! }),
  });
  assert.equal(revoke.status, 200);
  await expireStoredTokens(bed.home, server.url);
  const refused = await rejection(bed.keeper(options).getAccessToken(server.url));
  assert.ok(refused instanceof NeedsAuthError, String(refused));

  assert.ok(witness.count('client_secret received') >= 1, 'the AS saw the client secret (Basic)');
  assertNoSecrets(
    [bed.logs, refused],
    allSecrets(witness.secrets(), { 'the client secret': clientSecret }),
    'logs and the refusal',
  );
});

test('a hostile AS that echoes secrets in its answers: scrubbed from every error, down the cause chain, and the log', async (t) => {
  const SECRETS = {
    code: 'code-SECRET-echo-0123456789',
    access: 'at-SECRET-echo-0123456789',
    refresh: 'rt-SECRET-echo-0123456789',
    access2: 'at2-SECRET-echo-0123456789',
    refresh2: 'rt2-SECRET-echo-0123456789',
    clientSecret: 'cs-SECRET-echo-0123456789',
  };
  const srv = await startHostileServer();
  t.after(() => srv.close());
  const origin = srv.url;
  const mcpUrl = `${origin}/mcp`;
  srv
    .on('POST', '/mcp', { status: 401, headers: { 'www-authenticate': `Bearer resource_metadata="${origin}/prm"` } })
    .json('/prm', { resource: mcpUrl, authorization_servers: [origin] })
    .json(
      '/.well-known/oauth-authorization-server',
      asMetadata(origin, origin, { token_endpoint_auth_methods_supported: ['client_secret_post'] }),
    )
    .on('POST', '/register', {
      status: 201,
      json: {
        client_id: 'client-1',
        client_secret: SECRETS.clientSecret,
        token_endpoint_auth_method: 'client_secret_post',
      },
    })
    .on('POST', '/token', {
      json: { access_token: SECRETS.access, token_type: 'Bearer', expires_in: 3600, refresh_token: SECRETS.refresh },
    });
  const home = await tempHome(t);
  const logs: unknown[] = [];
  const keeper = (): AuthKeeper =>
    new AuthKeeper({
      home,
      allowInsecureLoopback: true,
      loginTimeoutMs: 10_000,
      transientRetryDelaysMs: [1],
      log: (e) => logs.push(e),
      openAuthorizationUrl: async (url) => {
        const authorize = new URL(url);
        const redirect = new URL(authorize.searchParams.get('redirect_uri') as string);
        redirect.searchParams.set('code', SECRETS.code);
        redirect.searchParams.set('state', authorize.searchParams.get('state') as string);
        redirect.searchParams.set('iss', origin);
        await (await fetch(redirect)).text();
      },
    });
  await keeper().login(mcpUrl);
  // What the refresh request sent, echoed back (an AS quoting the token it refuses).
  const echo = `refresh token ${SECRETS.refresh} of client secret ${SECRETS.clientSecret}`;
  const answers = [
    { status: 400, json: { error: 'invalid_grant', error_description: echo } },
    { status: 200, json: { error: `invalid_request ${SECRETS.refresh}`, error_description: echo } },
    { status: 503, json: { error: 'temporarily_unavailable', error_description: echo } },
    { status: 200, json: { access_token: SECRETS.access2, token_type: 'N_A', refresh_token: SECRETS.refresh2 } },
    { status: 200, json: { access_token: SECRETS.access2, refresh_token: SECRETS.refresh2 } },
    {
      status: 200,
      body: `{"access_token":"${SECRETS.access2}","refresh_token":"${SECRETS.refresh2}"`,
      headers: { 'content-type': 'application/json' },
    },
  ];
  const errors: unknown[] = [];
  for (const answer of answers) {
    srv.on('POST', '/token', answer);
    // invalid_grant marks the record; sign in again for the next answer.
    if ((await readRecord(home, mcpUrl)).needsAuth) {
      srv.on('POST', '/token', {
        json: { access_token: SECRETS.access, token_type: 'Bearer', expires_in: 3600, refresh_token: SECRETS.refresh },
      });
      await keeper().login(mcpUrl);
      srv.on('POST', '/token', answer);
    }
    await expireStoredTokens(home, mcpUrl);
    const err = await rejection(keeper().getAccessToken(mcpUrl));
    assert.ok(err instanceof NeedsAuthError, String(err));
    assert.ok(err.cause instanceof Error, `${err.reason}: the cause chain is there to walk`);
    errors.push(err);
  }
  assert.deepEqual(
    errors.map((e) => (e as NeedsAuthError).reason),
    ['invalid_grant', 'as_error', 'as_unreachable', 'malformed_response', 'malformed_response', 'malformed_response'],
  );
  assertNoSecrets([logs, errors], SECRETS, 'logs and errors');
});
