/**
 * Enterprise-managed authorization (SEP-990) against two real oidc-provider instances: an
 * enterprise IdP that exchanges an ID token for an ID-JAG (RFC 8693, the testbed's token-exchange
 * grant) and the MCP authorization server that redeems it (RFC 7523). One ID token serves every
 * server on that IdP (no browser); the IdP's token endpoint comes from its OpenID configuration;
 * a failure says which step failed (`step`); no ID token, ID-JAG or secret in statuses, errors or logs.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { SignJWT } from 'jose';
import { startAuthorizationServer } from '../../arena/testbed/index.js';
import { NeedsAuthError } from '../../src/index.js';
import type { MachineGrantOptions } from '../../src/session/machine-grant.js';
import { callTool, startBed, tempHome } from '../helpers/bed.js';
import { jagKeyPair, jagRedeemingAs, TOKEN_EXCHANGE } from '../helpers/enterprise-world.js';
import { expireStoredTokens, readRecord } from '../helpers/records.js';
import { allSecrets, assertNoSecrets, witnessSecrets } from '../helpers/secrets.js';

const SECRET = 'enterprise-mcp-client-secret-0123456789';

async function idToken(key: KeyObject, issuer: string, audience: string, expiresIn: string): Promise<string> {
  return new SignJWT({ email: 'alice@example.com' })
    .setProtectedHeader({ alg: 'ES256' })
    .setIssuer(issuer)
    .setSubject('alice')
    .setAudience(audience)
    .setIssuedAt()
    .setExpirationTime(expiresIn)
    .sign(key);
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  assert.fail('expected a rejection');
}

test('SEP-990: one ID token, exchanged at the IdP for an ID-JAG per server, redeemed at the MCP AS; failures name their step', async (t) => {
  const idTokenKeys = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jagKeys = jagKeyPair();
  const idp = await startAuthorizationServer({
    tokenExchange: {
      subjectTokenKey: idTokenKeys.publicKey,
      signingKey: jagKeys.privateKey,
      clientIdAtAudience: 'mcp-client',
    },
    staticClients: [
      {
        client_id: 'idp-client',
        token_endpoint_auth_method: 'none',
        grant_types: [TOKEN_EXCHANGE],
        response_types: [],
        redirect_uris: [],
      },
    ],
  });
  t.after(() => idp.close());
  const bed = await startBed(t, {
    as: jagRedeemingAs(jagKeys, SECRET),
    servers: [{ discovery: 'header' }, { discovery: 'well-known-path' }],
  });
  const witness = witnessSecrets(bed.as);
  const idpWitness = witnessSecrets(idp);
  const file = path.join(await tempHome(t), 'id-token');
  const token = await idToken(idTokenKeys.privateKey, idp.issuer, 'idp-client', '10m');
  await writeFile(file, token, { mode: 0o600 });
  const env = { MCP_CLIENT_SECRET: SECRET };
  const keeper = bed.keeper({
    secretReader: { env, readFile: (f) => import('node:fs/promises').then((fs) => fs.readFile(f, 'utf8')) },
  });
  const grant: MachineGrantOptions = {
    type: 'id_jag',
    clientId: 'mcp-client',
    clientSecret: { env: 'MCP_CLIENT_SECRET' },
    idToken: { file },
    idp: { issuer: idp.issuer, clientId: 'idp-client' },
  };
  const exchanges = () => idp.audit.http().filter((e) => e.endpoint === 'token' && e.grantType === TOKEN_EXCHANGE);

  const statuses = [];
  for (const server of bed.servers) {
    const status = await keeper.login(server.url, { grant });
    statuses.push(status);
    assert.equal(status.grant?.type, 'id_jag');
    assert.equal((await callTool(keeper.fetch(server.url), server.url)).status, 200);
  }
  assert.equal(exchanges().length, 2, 'one exchange at the IdP per server');
  assert.deepEqual(
    exchanges().map((e) => e.body?.resource?.[0]),
    bed.servers.map((s) => s.resource),
    'each ID-JAG names its server as resource',
  );
  assert.equal(bed.as.audit.counts().jwtBearerGrants, 2);
  assert.equal(bed.as.audit.counts().authorizationRequests + idp.audit.counts().authorizationRequests, 0, 'no browser');
  assert.match(
    statuses[0]?.grant?.description ?? '',
    /ID token from file .*id-token, exchanged at http:\/\/127\.0\.0\.1:\d+ \(client idp-client\) for an ID-JAG/,
  );

  // A renewal goes through both steps again.
  await expireStoredTokens(bed.home, bed.servers[0]!.url);
  const renewer = bed.keeper({
    secretReader: { env, readFile: (f) => import('node:fs/promises').then((fs) => fs.readFile(f, 'utf8')) },
  });
  await renewer.getAccessToken(bed.servers[0]!.url);
  assert.equal(exchanges().length, 3);
  assert.equal(bed.as.audit.counts().jwtBearerGrants, 3);

  // The IdP refuses the ID token (issued to another client): needs-auth naming the IdP's exchange.
  await writeFile(file, await idToken(idTokenKeys.privateKey, idp.issuer, 'someone-else', '10m'));
  await expireStoredTokens(bed.home, bed.servers[1]!.url);
  const refused = await rejection(renewer.getAccessToken(bed.servers[1]!.url));
  assert.ok(refused instanceof NeedsAuthError, String(refused));
  assert.equal(refused.reason, 'invalid_grant');
  assert.match(refused.info.request ?? '', /^POST http:\/\/127\.0\.0\.1:\d+\/token \(token-exchange\)$/);
  assert.ok(refused.info.request?.includes(new URL(idp.issuer).host), 'the step that failed: the exchange at the IdP');
  assert.equal(refused.info.step, 'token_exchange');
  assert.equal(
    (await readRecord(bed.home, bed.servers[1]!.url)).needsAuth?.step,
    'token_exchange',
    'the marker keeps it',
  );

  // An expired ID token is not sent at all.
  const sent = exchanges().length;
  await writeFile(file, await idToken(idTokenKeys.privateKey, idp.issuer, 'idp-client', '-1m'));
  const expired = await rejection(renewer.login(bed.servers[1]!.url, { grant }));
  assert.equal((expired as { field?: string }).field, 'idToken.exp');
  assert.equal((expired as { step?: string }).step, 'idp_sign_in');
  assert.match((expired as Error).message, /sign in to the identity provider again/);
  assert.equal(exchanges().length, sent);

  assertNoSecrets(
    [bed.logs, statuses, refused, expired],
    allSecrets(witness.secrets(), idpWitness.secrets(), { 'the ID token': token, 'the client secret': SECRET }),
  );
});
