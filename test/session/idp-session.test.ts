/**
 * Enterprise-managed authorization (SEP-990) with the IdP session authkeep keeps: the enterprise
 * IdP is a real oidc-provider that serves the OpenID Connect sign-in (the robot browser, or the
 * robot user of the device grant) and the RFC 8693 exchange of the ID tokens it issued; the MCP
 * authorization server is another that redeems the ID-JAGs (RFC 7523). Shown: one browser visit
 * for three MCP servers (the IdP's audit counts its authorization requests), the ID token renewed
 * at the IdP with its refresh token once it is due (an injected clock, no sleeps), once for two
 * processes, and every failing step named (`idp_sign_in`, `token_exchange`, `jwt_bearer`); no
 * ID token, refresh token or secret in statuses, errors or logs.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { completeDeviceVerification } from '../../arena/testbed/robot-device.js';
import { AuthkeepError, NeedsAuthError } from '../../src/index.js';
import { systemClock } from '../../src/session/clock.js';
import type { MachineGrantOptions } from '../../src/session/machine-grant.js';
import { callTool, startBed } from '../helpers/bed.js';
import { jagKeyPair, jagRedeemingAs, startEnterpriseIdp, TOKEN_EXCHANGE } from '../helpers/enterprise-world.js';
import { expireStoredTokens, readRecord } from '../helpers/records.js';
import { allSecrets, assertNoSecrets, witnessSecrets } from '../helpers/secrets.js';

const SECRET = 'enterprise-mcp-client-secret-0123456789';
/** The ID tokens' lifetime at the IdP: due for renewal 30 s before `exp`. */
const ID_TOKEN_TTL_S = 120;

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  assert.fail('expected a rejection');
}

async function startWorld(
  t: import('node:test').TestContext,
  options: { deviceFlow?: boolean; onIdpRefresh?: () => void } = {},
) {
  const jagKeys = jagKeyPair();
  const denied = new Set<string>();
  const idp = await startEnterpriseIdp(t, jagKeys, {
    idTokenTtlSeconds: ID_TOKEN_TTL_S,
    // The IdP saw a refresh (recorded as its answer goes out, before the client reads it).
    auditSink: (entry) => {
      if (entry.kind === 'http' && entry.endpoint === 'token' && entry.grantType === 'refresh_token') {
        options.onIdpRefresh?.();
      }
    },
    ...(options.deviceFlow ? { deviceFlow: true } : {}),
    allowResource: (resource) => !denied.has(resource),
  });
  const bed = await startBed(t, {
    as: jagRedeemingAs(jagKeys, SECRET),
    servers: [{ discovery: 'header' }, { discovery: 'well-known-path' }, { discovery: 'header' }, {}],
  });
  const grant: MachineGrantOptions = {
    type: 'id_jag',
    clientId: 'mcp-client',
    clientSecret: { env: 'MCP_CLIENT_SECRET' },
    idp: { issuer: idp.issuer, clientId: 'agent' },
  };
  const http = () => idp.audit.http();
  const counts = {
    idpAuthorizations: () => http().filter((e) => e.endpoint === 'authorization').length,
    idpRefreshes: () => http().filter((e) => e.endpoint === 'token' && e.grantType === 'refresh_token').length,
    exchanges: () => http().filter((e) => e.endpoint === 'token' && e.grantType === TOKEN_EXCHANGE),
  };
  return { idp, bed, grant, counts, denied, http };
}

test('SEP-990 with the IdP session: one browser visit for three servers, the ID token renewed at the IdP when due, each failing step named', async (t) => {
  // The keepers' clock runs 100 s ahead while `due` (the ID token within its last 30 s), until the
  // IdP has seen the refresh that renews it: time is moved by the test and put back by an event.
  let due = false;
  const clock = { now: () => Date.now() + (due ? (ID_TOKEN_TTL_S - 20) * 1000 : 0), setTimer: systemClock.setTimer };
  const { idp, bed, grant, counts, denied, http } = await startWorld(t, {
    onIdpRefresh: () => {
      due = false;
    },
  });
  const witness = witnessSecrets(bed.as);
  const idpWitness = witnessSecrets(idp);
  const env = { MCP_CLIENT_SECRET: SECRET, WRONG_SECRET: 'not-the-secret-of-mcp-client' };
  const reader = { env, readFile: async () => assert.fail('no file is read') };
  const keeper = bed.keeper({ secretReader: reader, clock });
  const [s1, s2, s3, s4] = bed.servers as [
    (typeof bed.servers)[0],
    (typeof bed.servers)[0],
    (typeof bed.servers)[0],
    (typeof bed.servers)[0],
  ];

  // One sign-in at the IdP (the first login starts it), then three exchanges: one browser visit.
  const statuses = [];
  for (const server of [s1, s2, s3]) {
    statuses.push(await keeper.login(server.url, { grant }));
    assert.equal((await callTool(keeper.fetch(server.url), server.url)).status, 200);
  }
  assert.equal(counts.idpAuthorizations(), 1, 'one authorization request at the IdP for three servers');
  const [authorize] = http().filter((e) => e.endpoint === 'authorization');
  assert.match(String(authorize?.query.scope?.[0]), /\boffline_access\b/, 'the IdP session asks to be renewable');
  assert.deepEqual(
    authorize?.query.prompt,
    ['consent'],
    'offline_access is asked for with prompt=consent (OIDC Core 11)',
  );
  assert.equal(bed.robotOpens(), 1, 'one browser visit');
  assert.equal(bed.as.audit.counts().authorizationRequests, 0, 'no browser at the MCP authorization server');
  assert.deepEqual(
    counts.exchanges().map((e) => e.body?.resource?.[0]),
    [s1.resource, s2.resource, s3.resource],
    'one exchange per server, each naming its server',
  );
  assert.equal(bed.as.audit.counts().jwtBearerGrants, 3);
  assert.match(statuses[0]?.grant?.description ?? '', /ID token from the IdP session at http:\/\/127\.0\.0\.1:\d+/);

  // The IdP session: its own record, keyed by the issuer, with an ID token for client `agent`.
  const session = await readRecord(bed.home, idp.issuer);
  assert.equal(session.registration.clientId, 'agent');
  assert.ok(session.idpSession && session.idpSession.expiresAt > Date.now());
  assert.ok(session.tokens?.refreshToken, 'the IdP gave a refresh token');
  const [idpStatus] = await keeper.status(idp.issuer);
  assert.equal(idpStatus?.idpSession?.subject, 'robot');
  assert.equal(idpStatus?.state, 'ok');

  // Due: two processes renewing two servers at once renew the ID token at the IdP once.
  due = true;
  await expireStoredTokens(bed.home, s1.url);
  await expireStoredTokens(bed.home, s2.url);
  const [a, b] = [bed.keeper({ secretReader: reader, clock }), bed.keeper({ secretReader: reader, clock })];
  await Promise.all([a.getAccessToken(s1.url), b.getAccessToken(s2.url)]);
  assert.equal(counts.idpRefreshes(), 1, 'one refresh at the IdP for two processes');
  const renewed = await readRecord(bed.home, idp.issuer);
  // The IdP's answer was stored (the ID token itself may be the same string: oidc-provider signs
  // the same claims, iat in whole seconds, when the refresh falls in the sign-in's second).
  assert.ok(renewed.generation > session.generation, 'the session record holds the IdP refresh answer');
  assert.ok(renewed.idpSession !== undefined && renewed.idpSession.expiresAt >= (session.idpSession?.expiresAt ?? 0));
  assert.equal(renewed.idpSession?.subject, session.idpSession?.subject);
  assert.equal(counts.exchanges().length, 5, 'each server exchanged the renewed ID token');
  assert.equal(counts.idpAuthorizations(), 1, 'no new sign-in at the IdP');
  assert.ok(bed.logs.filter((e) => e.event === 'idp.refreshed').length === 1);
  assert.equal(due, false);

  // token_exchange: the IdP's policy refuses a server.
  denied.add(s4.resource);
  const exchangeRefused = await rejection(keeper.login(s4.url, { grant }));
  assert.ok(exchangeRefused instanceof AuthkeepError, String(exchangeRefused));
  assert.equal(exchangeRefused.step, 'token_exchange');
  assert.match(exchangeRefused.message, /token-exchange/);
  denied.delete(s4.resource);

  // jwt_bearer: the MCP authorization server refuses the client.
  const redeemRefused = await rejection(
    keeper.login(s4.url, { grant: { ...grant, clientSecret: { env: 'WRONG_SECRET' } } }),
  );
  assert.ok(redeemRefused instanceof AuthkeepError, String(redeemRefused));
  assert.equal(redeemRefused.step, 'jwt_bearer');
  assert.match(redeemRefused.message, /jwt-bearer/);

  // idp_sign_in: the IdP session's refresh token is revoked there; the renewal says so, naming the IdP.
  const revoked = await fetch(idp.endpoints.revocation, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token: renewed.tokens?.refreshToken ?? '', client_id: 'agent' }),
  });
  assert.equal(revoked.status, 200);
  due = true;
  await expireStoredTokens(bed.home, s3.url);
  const c = bed.keeper({ secretReader: reader, clock, transientRetryDelaysMs: [] });
  const sessionEnded = await rejection(c.getAccessToken(s3.url));
  assert.ok(sessionEnded instanceof NeedsAuthError, String(sessionEnded));
  assert.equal(sessionEnded.step, 'idp_sign_in');
  assert.equal(sessionEnded.info.step, 'idp_sign_in');
  assert.equal(sessionEnded.reason, 'invalid_grant');
  assert.equal(sessionEnded.info.issuer, idp.issuer);
  assert.match(sessionEnded.info.request ?? '', /\/token \(refresh_token\)$/);
  assert.equal((await readRecord(bed.home, idp.issuer)).needsAuth?.step, 'idp_sign_in');
  const [endedStatus] = await c.status(idp.issuer);
  assert.equal(endedStatus?.state, 'needs-auth');
  assert.equal(due, false, 'the refused refresh was sent');

  // A login signs in to the IdP again (the second browser visit), and the server works again.
  await c.login(s3.url, { grant });
  assert.equal(counts.idpAuthorizations(), 2);
  assert.equal((await callTool(c.fetch(s3.url), s3.url)).status, 200);

  // idp_sign_in: the sign-in itself refused at the IdP (after a logout there ended the session).
  idp.behavior.denyConsent = true;
  await c.logout(idp.issuer);
  const signInRefused = await rejection(c.login(s4.url, { grant }));
  assert.ok(signInRefused instanceof AuthkeepError, String(signInRefused));
  assert.equal(signInRefused.step, 'idp_sign_in');
  assert.equal(signInRefused.code, 'authorization_denied');

  assertNoSecrets(
    [bed.logs, statuses, await keeper.status(), exchangeRefused, redeemRefused, sessionEnded, signInRefused],
    allSecrets(witness.secrets(), idpWitness.secrets(), {
      'the client secret': SECRET,
      'the ID token': session.idpSession?.token ?? '',
      'the renewed ID token': renewed.idpSession?.token ?? '',
      "the IdP's refresh token": session.tokens?.refreshToken ?? '',
    }),
  );
});

test('SEP-990 with the IdP session: the device grant signs in to the IdP where no browser can', async (t) => {
  const { bed, grant, counts } = await startWorld(t, { deviceFlow: true });
  const shown: string[] = [];
  const keeper = bed.keeper({
    secretReader: { env: { MCP_CLIENT_SECRET: SECRET }, readFile: async () => assert.fail('no file is read') },
    openAuthorizationUrl: () => assert.fail('no browser'),
    showDeviceCode: async (info) => {
      shown.push(info.userCode);
      await completeDeviceVerification(info.verificationUriComplete ?? info.verificationUri);
    },
  });
  const [s1, s2] = bed.servers as [(typeof bed.servers)[0], (typeof bed.servers)[0]];
  await keeper.login(s1.url, { grant, mode: 'device', requireDevice: true });
  await keeper.login(s2.url, { grant, mode: 'device', requireDevice: true });
  assert.equal(shown.length, 1, 'one device code for two servers');
  assert.equal(counts.idpAuthorizations(), 0, 'no browser');
  assert.equal(counts.exchanges().length, 2);
  assert.equal((await callTool(keeper.fetch(s2.url), s2.url)).status, 200);
});
