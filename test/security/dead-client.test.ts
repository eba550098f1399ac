/**
 * Attack class: a dead client reused forever. Authorization servers purge idle dynamic clients,
 * refuse a client outright (invalid_client, unauthorized_client), and expire client secrets
 * (RFC 7591 client_secret_expires_at). What must NOT happen: the refused or expired registration
 * (in the server's record, in another server's record on the same issuer, or kept for the issuer
 * in registrations/) being used again, which locks the user out for good; or a registration
 * surviving the logout of the last server that used it. A real oidc-provider whose administrator
 * deletes the client, and a hostile HTTP server for what oidc-provider cannot be made to do.
 */
import assert from 'node:assert/strict';
import { type TestContext, test } from 'node:test';
import { AuthKeeper, AuthkeepError, NeedsAuthError } from '../../src/index.js';
import { startBed } from '../helpers/bed.js';
import { asMetadata } from '../helpers/hostile-server.js';
import { type HostileWorld, hostileWorld } from '../helpers/hostile-world.js';
import { editRecord, expireStoredTokens, readRecord } from '../helpers/records.js';

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => assert.fail('expected a rejection'),
    (err: unknown) => err,
  );
}

test('the AS deleted the client: the refresh drops the registration and the next sign-in registers a new client', async (t) => {
  const bed = await startBed(t, { servers: [{ discovery: 'header' }, { discovery: 'well-known-path' }] });
  const [one, two] = bed.servers as [(typeof bed.servers)[0], (typeof bed.servers)[0]];
  const keeper = () => bed.keeper({ loginTimeoutMs: 8_000 });
  await keeper().login(one.url);
  await keeper().login(two.url);
  const dead = (await readRecord(bed.home, one.url)).registration.clientId;
  assert.equal((await readRecord(bed.home, two.url)).registration.clientId, dead, 'one client per issuer');
  // The AS's administrator (or its idle-client purge) deletes the dynamically registered client.
  await (bed.as.provider.Client as unknown as { adapter: { destroy(id: string): Promise<void> } }).adapter.destroy(
    dead,
  );
  await expireStoredTokens(bed.home, one.url);
  const err = await rejection(keeper().getAccessToken(one.url));
  assert.ok(err instanceof NeedsAuthError && err.reason === 'client_mismatch', String(err));

  // Sign in again, to the server that met the refusal and to the other one on the same issuer
  // (whose record still holds the dead client): neither reuses it.
  const registrationsBefore = bed.as.audit.http().filter((e) => e.endpoint === 'registration').length;
  const authorizationsBefore = bed.as.audit.http().filter((e) => e.endpoint === 'authorization').length;
  const status = await keeper().login(one.url);
  assert.equal(status.state, 'ok');
  assert.notEqual(status.clientId, dead, 'a new client');
  const other = await keeper().login(two.url, { scope: 'mcp:read' });
  assert.notEqual(other.clientId, dead, 'the other server does not reuse the dead client either');
  assert.equal(other.clientId, status.clientId, 'it shares the new one');
  const registrations = bed.as.audit.http().filter((e) => e.endpoint === 'registration').length;
  assert.equal(registrations - registrationsBefore, 1, 'exactly one new registration');
  const authorizations = bed.as.audit
    .http()
    .filter((e) => e.endpoint === 'authorization')
    .slice(authorizationsBefore);
  assert.ok(authorizations.length >= 2, 'both signed in through the authorization endpoint');
  assert.deepEqual(
    authorizations.filter((e) => e.clientId === dead),
    [],
    'no authorization request carried the dead client_id',
  );
});

/** A hostile world whose token endpoint accepts only `accepted` clients (else invalid_client). */
function tokenEndpointAccepting(w: HostileWorld, accepted: Set<string>): void {
  w.server.on('POST', '/token', (req) => {
    const clientId =
      req.form.get('client_id') ??
      Buffer.from((req.headers.authorization ?? '').replace(/^Basic /, ''), 'base64')
        .toString()
        .split(':')[0];
    return accepted.has(clientId ?? '')
      ? {
          json: {
            access_token: `access-${clientId}`,
            token_type: 'Bearer',
            expires_in: 3600,
            refresh_token: `refresh-${clientId}`,
          },
        }
      : { status: 401, json: { error: 'invalid_client', error_description: 'unknown client' } };
  });
}

/** DCR answering client-1, client-2, ... in turn; `extra` is added to each answer. */
function numberedRegistrations(w: HostileWorld, extra: Record<string, unknown> = {}): () => number {
  let n = 0;
  w.server.on('POST', '/register', () => ({
    status: 201,
    json: { client_id: `client-${++n}`, token_endpoint_auth_method: 'none', ...extra },
  }));
  return () => n;
}

function keeperFor(w: HostileWorld): AuthKeeper {
  return new AuthKeeper({ home: w.home, allowInsecureLoopback: true, openAuthorizationUrl: w.approve() });
}

test('invalid_client at the code exchange drops the registration: the next sign-in registers again and succeeds', async (t: TestContext) => {
  const w = await hostileWorld(t);
  const registered = numberedRegistrations(w);
  const accepted = new Set<string>();
  tokenEndpointAccepting(w, accepted); // client-1 is refused: the AS purged it between the two steps
  const err = await rejection(keeperFor(w).login(w.mcpUrl));
  assert.ok(err instanceof AuthkeepError && err.code === 'client_mismatch', String(err));
  accepted.add('client-2');
  const status = await keeperFor(w).login(w.mcpUrl);
  assert.equal(registered(), 2, 'registered again');
  assert.equal(status.clientId, 'client-2');
  const exchanged = w.server.requestsTo('POST', '/token').map((r) => r.form.get('client_id'));
  assert.deepEqual(exchanged, ['client-1', 'client-2'], 'the refused client was never sent again');
});

test('unauthorized_client on refresh drops the registration too', async (t) => {
  const w = await hostileWorld(t);
  numberedRegistrations(w);
  await keeperFor(w).login(w.mcpUrl);
  w.server.on('POST', '/token', { status: 400, json: { error: 'unauthorized_client' } });
  await expireStoredTokens(w.home, w.mcpUrl);
  const err = await rejection(keeperFor(w).getAccessToken(w.mcpUrl));
  assert.ok(err instanceof NeedsAuthError && err.reason === 'client_mismatch', String(err));
  tokenEndpointAccepting(w, new Set(['client-2']));
  assert.equal((await keeperFor(w).login(w.mcpUrl)).clientId, 'client-2');
});

test('client_secret_expires_at passed: no refresh is sent with the expired secret; needs-auth client_expired; the next sign-in registers again', async (t) => {
  const w = await hostileWorld(t);
  w.server.json(
    '/.well-known/oauth-authorization-server',
    asMetadata(w.origin, w.origin, {
      revocation_endpoint: undefined,
      token_endpoint_auth_methods_supported: ['client_secret_basic'],
    }),
  );
  const expiresAt = Math.floor(Date.now() / 1000) + 3600;
  let n = 0;
  w.server.on('POST', '/register', () => ({
    status: 201,
    json: {
      client_id: `client-${++n}`,
      client_secret: `secret-${n}-0123456789abcdef`,
      client_secret_expires_at: expiresAt,
      token_endpoint_auth_method: 'client_secret_basic',
    },
  }));
  await keeperFor(w).login(w.mcpUrl);
  const stored = await readRecord(w.home, w.mcpUrl);
  assert.equal(stored.registration.clientSecretExpiresAt, expiresAt * 1000, 'the expiry is kept');
  // An hour later: the secret has expired (and so has the access token).
  await editRecord(w.home, w.mcpUrl, (record) => ({
    ...record,
    registration: { ...record.registration, clientSecretExpiresAt: Date.now() - 1 },
  }));
  await expireStoredTokens(w.home, w.mcpUrl);
  const tokenRequests = w.server.requestsTo('POST', '/token').length;
  const err = await rejection(keeperFor(w).getAccessToken(w.mcpUrl));
  assert.ok(err instanceof NeedsAuthError && err.reason === 'client_expired', String(err));
  assert.equal(w.server.requestsTo('POST', '/token').length, tokenRequests, 'no request with the expired secret');
  const [status] = await keeperFor(w).status(w.mcpUrl);
  assert.equal(status?.needsAuth?.reason, 'client_expired', 'status says which happened');
  assert.equal((await keeperFor(w).login(w.mcpUrl)).clientId, 'client-2', 'registered again');
});

test('logout of the last server using a registration forgets it; logout of one of two keeps it', async (t) => {
  const w = await hostileWorld(t);
  const registered = numberedRegistrations(w);
  const second = `${w.origin}/mcp2`;
  w.server
    .on('POST', '/mcp2', {
      status: 401,
      headers: { 'www-authenticate': `Bearer resource_metadata="${w.origin}/prm2"` },
      body: '',
    })
    .json('/prm2', { resource: second, authorization_servers: [w.origin] });
  await keeperFor(w).login(w.mcpUrl);
  await keeperFor(w).login(second);
  assert.equal(registered(), 1, 'one client per issuer');

  await keeperFor(w).logout(second);
  await keeperFor(w).login(second);
  assert.equal(registered(), 1, 'still used by the first server: kept and reused');

  await keeperFor(w).logout(w.mcpUrl);
  await keeperFor(w).logout(second);
  const status = await keeperFor(w).login(w.mcpUrl);
  assert.equal(registered(), 2, 'the last logout forgot the registration: a new one');
  assert.equal(status.clientId, 'client-2');
});
