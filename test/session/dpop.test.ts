/**
 * DPoP (RFC 9449) end to end against the real oidc-provider with `features.dPoP` and a testbed MCP
 * server that verifies every proof itself (cnf.jkt, htm, htu, ath, iat, jti replay, its nonce):
 * sign-in binds the tokens to a key stored in the record, resource calls carry a fresh proof,
 * refreshes across expiries prove the same key, nonces from the AS and the server are honoured
 * with one retry, and a refresh token stolen from the store is refused by the AS without the key.
 */
import assert from 'node:assert/strict';
import { webcrypto } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { allowInsecureRequests, DPoP, None, refreshTokenGrantRequest } from 'oauth4webapi';
import { type AuthKeeper, NeedsAuthError } from '../../src/index.js';
import { callTool, jwtExpiresAt, startBed, untilPast } from '../helpers/bed.js';
import { assertNoSecrets } from '../helpers/secrets.js';

interface StoredRecord {
  tokens?: { accessToken: string; tokenType: string; refreshToken?: string; expiresAt?: number };
  dpop?: { alg: string; privateJwk: { d: string; x: string; y: string; crv: string; kty: string } };
  registration: { clientId: string };
  authorizationServer: { token_endpoint: string; issuer: string };
  resource: string;
}

async function storedRecord(home: string): Promise<StoredRecord> {
  const dir = path.join(home, 'servers');
  const files = (await readdir(dir)).filter((f) => f.endsWith('.json'));
  assert.equal(files.length, 1, 'one record');
  return JSON.parse(await readFile(path.join(dir, files[0] as string), 'utf8')) as StoredRecord;
}

function cnfJkt(token: string): unknown {
  const payload = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as {
    cnf?: { jkt?: unknown };
  };
  return payload.cnf?.jkt;
}

test('sign-in to a server that requires DPoP: an ES256 key in the record, DPoP-bound tokens, a verified proof per call; Bearer refused', async (t) => {
  const bed = await startBed(t, { as: { dpop: {} }, servers: [{ discovery: 'header', dpop: { required: true } }] });
  const server = bed.servers[0];
  assert.ok(server);
  const keeper = bed.keeper();
  t.after(() => keeper.close());

  await keeper.login(server.url);
  const record = await storedRecord(bed.home);
  assert.equal(record.dpop?.alg, 'ES256');
  assert.equal(record.dpop?.privateJwk.crv, 'P-256');
  assert.equal(record.tokens?.tokenType, 'DPoP');
  assert.equal(typeof cnfJkt(record.tokens?.accessToken ?? ''), 'string', 'the access token is bound (cnf.jkt)');

  const fetchFn = keeper.fetch(server.url);
  for (let i = 0; i < 3; i++) {
    const response = await callTool(fetchFn, server.url);
    assert.equal(response.status, 200, await response.clone().text());
    await response.body?.cancel();
  }
  const seen = server.dpopCounts();
  assert.equal(seen.dpopAccepted, 3, 'three proofs verified (a fresh jti each: replays are refused)');
  assert.deepEqual(seen.dpopRefused, {});
  assert.equal(server.toolCalls(), 3);

  // The same token without the key is worth nothing: as Bearer, and as DPoP without a proof.
  const token = await keeper.getAccessToken(server.url);
  const asBearer = await callTool(
    (url, init) => fetch(url, { ...init, headers: { ...init?.headers, authorization: `Bearer ${token}` } }),
    server.url,
  );
  assert.equal(asBearer.status, 401);
  await asBearer.body?.cancel();
  const noProof = await callTool(
    (url, init) => fetch(url, { ...init, headers: { ...init?.headers, authorization: `DPoP ${token}` } }),
    server.url,
  );
  assert.equal(noProof.status, 401);
  await noProof.body?.cancel();
  assert.equal(server.dpopCounts().dpopRefused.missing, 1);

  // The private key is never shown: not in status, not in the store's inspection, not in logs.
  const d = record.dpop?.privateJwk.d ?? '';
  assert.ok(d.length > 20);
  assertNoSecrets(
    [await keeper.status(), await keeper.store.inspect(), await keeper.storedServer(server.url), bed.logs],
    { 'DPoP private key d': d },
  );
});

test('refresh across access-token expiries proves the same key; the refresh token stays bound', async (t) => {
  const bed = await startBed(t, {
    as: { dpop: {}, accessTokenTtlSeconds: 2 },
    servers: [{ discovery: 'header', dpop: { required: true } }],
  });
  const server = bed.servers[0];
  assert.ok(server);
  const keeper = bed.keeper();
  t.after(() => keeper.close());
  await keeper.login(server.url);
  const first = await storedRecord(bed.home);
  const jkt = cnfJkt(first.tokens?.accessToken ?? '');

  const fetchFn = keeper.fetch(server.url);
  const carried = new Set<string>();
  for (let expiry = 0; expiry < 3; expiry++) {
    const token = await keeper.getAccessToken(server.url);
    carried.add(token);
    const response = await callTool(fetchFn, server.url);
    assert.equal(response.status, 200);
    await response.body?.cancel();
    await untilPast(jwtExpiresAt(token));
  }
  const response = await callTool(fetchFn, server.url);
  assert.equal(response.status, 200);
  await response.body?.cancel();

  const after = await storedRecord(bed.home);
  assert.deepEqual(after.dpop, first.dpop, 'the key is the sign-in key');
  assert.equal(cnfJkt(after.tokens?.accessToken ?? ''), jkt, 'refreshed tokens are bound to the same key');
  assert.ok(carried.size >= 3, 'a new token per expiry');
  const counts = bed.as.audit.counts();
  assert.ok(counts.refreshGrants >= 3, `refreshed (${counts.refreshGrants})`);
  assert.equal(counts.refreshReuses, 0);
  assert.equal(counts.revokedGrants, 0);
  assert.equal(counts.invalidGrants, 0);
  assert.deepEqual(server.dpopCounts().dpopRefused, {});
});

test('nonces: the AS demands one (400 use_dpop_nonce) and the server demands its own (401 use_dpop_nonce); each is retried once with the new nonce', async (t) => {
  const bed = await startBed(t, {
    as: { dpop: { requireNonce: true }, accessTokenTtlSeconds: 2 },
    servers: [{ discovery: 'header', dpop: { required: true, nonce: true } }],
  });
  const server = bed.servers[0];
  assert.ok(server);
  const keeper = bed.keeper();
  t.after(() => keeper.close());
  await keeper.login(server.url);

  const tokenRequests = () => bed.as.audit.http().filter((e) => e.endpoint === 'token');
  const exchange = tokenRequests().filter((e) => e.grantType === 'authorization_code');
  assert.deepEqual(
    exchange.map((e) => [e.status, e.error]),
    [
      [400, 'use_dpop_nonce'],
      [200, undefined],
    ],
    'the code exchange: challenged once, then accepted with the nonce',
  );

  const fetchFn = keeper.fetch(server.url);
  const response = await callTool(fetchFn, server.url);
  assert.equal(response.status, 200);
  await response.body?.cancel();
  assert.equal(server.dpopCounts().dpopNonceChallenges, 1, 'the server challenged the first proof');
  const again = await callTool(fetchFn, server.url);
  assert.equal(again.status, 200);
  await again.body?.cancel();
  assert.equal(server.dpopCounts().dpopNonceChallenges, 1, 'its nonce is remembered for the next requests');

  server.rotateDpopNonce();
  const rotated = await callTool(fetchFn, server.url);
  assert.equal(rotated.status, 200, 'a rotated nonce is learnt again with one retry');
  await rotated.body?.cancel();
  assert.equal(server.dpopCounts().dpopNonceChallenges, 2);

  // A refresh against the AS that wants its nonce (remembered from the exchange, or learnt again).
  await untilPast(jwtExpiresAt(await keeper.getAccessToken(server.url)));
  const refreshed = await callTool(fetchFn, server.url);
  assert.equal(refreshed.status, 200);
  await refreshed.body?.cancel();
  const refreshes = tokenRequests().filter((e) => e.grantType === 'refresh_token');
  assert.ok(
    refreshes.some((e) => e.status === 200),
    'the refresh went through',
  );
  assert.ok(refreshes.length <= 2, 'at most one nonce retry');
  assert.equal(bed.as.audit.counts().revokedGrants, 0);
  assert.deepEqual(server.dpopCounts().dpopRefused, {});
});

test('a refresh token stolen from the store is refused by the AS without the key, and the owner keeps refreshing', async (t) => {
  const bed = await startBed(t, {
    as: { dpop: {}, accessTokenTtlSeconds: 2 },
    servers: [{ discovery: 'header', dpop: { required: true } }],
  });
  const server = bed.servers[0];
  assert.ok(server);
  const keeper = bed.keeper();
  t.after(() => keeper.close());
  await keeper.login(server.url);
  const record = await storedRecord(bed.home);
  const stolen = record.tokens?.refreshToken;
  assert.ok(stolen);
  const as = { issuer: record.authorizationServer.issuer, token_endpoint: record.authorizationServer.token_endpoint };
  const client = { client_id: record.registration.clientId };
  const refresh = async (dpop?: ReturnType<typeof DPoP>) => {
    const response = await refreshTokenGrantRequest(as, client, None(), stolen, {
      [allowInsecureRequests]: true,
      additionalParameters: { resource: record.resource },
      ...(dpop ? { DPoP: dpop } : {}),
    });
    return { status: response.status, body: (await response.json()) as { error?: string } };
  };

  // Without any proof, and with a proof of the thief's own key: both refused.
  const withoutProof = await refresh();
  assert.equal(withoutProof.status, 400);
  assert.match(withoutProof.body.error ?? '', /invalid_grant|invalid_dpop_proof/);
  const thiefKey = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, [
    'sign',
    'verify',
  ])) as CryptoKeyPair;
  const withOtherKey = await refresh(DPoP({}, thiefKey));
  assert.equal(withOtherKey.status, 400);
  assert.match(withOtherKey.body.error ?? '', /invalid_grant|invalid_dpop_proof/);

  // The owner, holding the key, still refreshes and calls.
  await untilPast(jwtExpiresAt(record.tokens?.accessToken ?? ''));
  const response = await callTool(keeper.fetch(server.url), server.url);
  assert.equal(response.status, 200);
  await response.body?.cancel();
  assert.ok(bed.as.audit.counts({ clientId: client.client_id }).refreshGrants >= 3);
  assert.equal(bed.as.audit.counts().revokedGrants, 0, 'the thief could not get the grant revoked either');
});

test('an AS that advertises DPoP binds the tokens even where the server does not require it; a server that does not ask gets Bearer only from ASes without DPoP', async (t) => {
  const bed = await startBed(t, { as: { dpop: {} }, servers: [{ discovery: 'header' }] });
  const server = bed.servers[0];
  assert.ok(server);
  const keeper = bed.keeper();
  t.after(() => keeper.close());
  await keeper.login(server.url);
  assert.equal((await storedRecord(bed.home)).tokens?.tokenType, 'DPoP');
  const response = await callTool(keeper.fetch(server.url), server.url);
  assert.equal(response.status, 200);
  await response.body?.cancel();
  assert.equal(server.dpopCounts().dpopAccepted, 1);

  const plain = await startBed(t, { servers: [{ discovery: 'header' }] });
  const plainServer = plain.servers[0];
  assert.ok(plainServer);
  const plainKeeper = plain.keeper();
  t.after(() => plainKeeper.close());
  await plainKeeper.login(plainServer.url);
  const plainRecord = await storedRecord(plain.home);
  assert.equal(plainRecord.tokens?.tokenType, 'Bearer');
  assert.equal(plainRecord.dpop, undefined);
});

test('keeper option dpop: "when-required" keeps Bearer tokens where the server does not require DPoP', async (t) => {
  const bed = await startBed(t, { as: { dpop: {} }, servers: [{ discovery: 'header' }] });
  const server = bed.servers[0];
  assert.ok(server);
  const keeper: AuthKeeper = bed.keeper({ dpop: 'when-required' });
  t.after(() => keeper.close());
  await keeper.login(server.url);
  const record = await storedRecord(bed.home);
  assert.equal(record.tokens?.tokenType, 'Bearer');
  assert.equal(record.dpop, undefined);
});

test('a server that starts requiring DPoP after a Bearer sign-in: its DPoP challenge leads to needs-auth revoked (no refresh), and the next sign-in binds the tokens', async (t) => {
  const bed = await startBed(t, { as: { dpop: {} }, servers: [{ discovery: 'header' }] });
  const server = bed.servers[0];
  assert.ok(server);
  const keeper = bed.keeper({ dpop: 'when-required' });
  t.after(() => keeper.close());
  await keeper.login(server.url);
  assert.equal((await storedRecord(bed.home)).tokens?.tokenType, 'Bearer');
  const fetchFn = keeper.fetch(server.url);
  const before = await callTool(fetchFn, server.url);
  assert.equal(before.status, 200);
  await before.body?.cancel();

  server.setDpopRequired(true);
  const refreshesBefore = bed.as.audit.counts().refreshGrants;
  await assert.rejects(callTool(fetchFn, server.url), (err: unknown) => {
    assert.ok(err instanceof NeedsAuthError, String(err));
    assert.equal(err.reason, 'revoked');
    assert.match(err.info.errorDescription ?? '', /DPoP-bound tokens only/);
    return true;
  });
  assert.equal(bed.as.audit.counts().refreshGrants, refreshesBefore, 'no refresh: it would bring another Bearer token');

  await keeper.login(server.url);
  const record = await storedRecord(bed.home);
  assert.equal(record.tokens?.tokenType, 'DPoP');
  assert.ok(record.dpop);
  const after = await callTool(fetchFn, server.url);
  assert.equal(after.status, 200);
  await after.body?.cancel();
  assert.equal(server.dpopCounts().dpopAccepted, 1);
});

test('a server that does not take the DPoP scheme, behind an AS that offers DPoP: after a fresh DPoP-bound token is refused with a Bearer-only challenge, needs-auth revoked, and the next sign-in asks for Bearer tokens', async (t) => {
  const bed = await startBed(t, { as: { dpop: {} }, servers: [{ discovery: 'header', dpop: { unsupported: true } }] });
  const server = bed.servers[0];
  assert.ok(server);
  const keeper = bed.keeper();
  t.after(() => keeper.close());
  await keeper.login(server.url);
  assert.equal((await storedRecord(bed.home)).tokens?.tokenType, 'DPoP');

  const fetchFn = keeper.fetch(server.url);
  await assert.rejects(callTool(fetchFn, server.url), (err: unknown) => {
    assert.ok(err instanceof NeedsAuthError, String(err));
    assert.equal(err.reason, 'revoked');
    assert.match(err.info.errorDescription ?? '', /refuses DPoP-bound tokens/);
    return true;
  });
  assert.equal(bed.as.audit.counts().refreshGrants, 1, 'one refresh: the refusal of a fresh token decides');

  await keeper.login(server.url);
  const record = (await storedRecord(bed.home)) as StoredRecord & { dpopRefused?: boolean };
  assert.equal(record.tokens?.tokenType, 'Bearer');
  assert.equal(record.dpop, undefined);
  assert.equal(record.dpopRefused, true, 'remembered for the sign-ins after this one');
  const after = await callTool(fetchFn, server.url);
  assert.equal(after.status, 200);
  await after.body?.cancel();
});
