/**
 * Machine identities against the real authorization server (oidc-provider): the client
 * credentials grant with client_secret_basic, client_secret_post and private_key_jwt (a PEM and a
 * JWK key file), and the RFC 7523 JWT bearer grant with a workload token read from a file. The AS's
 * own audit judges what was sent (grant type, client authentication); the MCP server judges the
 * token. Renewals read their sources again (a rotated workload token is what the next request
 * carries), and no secret, key or assertion reaches a status, an error or a log line.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { SignJWT } from 'jose';
import { fingerprint } from '../../arena/testbed/audit.js';
import { type AuthKeeper, NeedsAuthError } from '../../src/index.js';
import { callTool, startBed, tempHome } from '../helpers/bed.js';
import { expireStoredTokens, readRecord } from '../helpers/records.js';
import { allSecrets, assertNoSecrets, witnessSecrets } from '../helpers/secrets.js';

const SECRET = 'machine-secret-0123456789abcdef';
const SCOPES = ['mcp:read', 'mcp:write', 'mcp:admin'];

function ecKey(): { privateKey: KeyObject; publicJwk: Record<string, unknown> } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { privateKey, publicJwk: publicKey.export({ format: 'jwk' }) as Record<string, unknown> };
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  assert.fail('expected a rejection');
}

/** The last token request the AS saw: grant type, client authentication, and the body's fingerprints. */
function lastTokenRequest(bed: Awaited<ReturnType<typeof startBed>>) {
  const entry = bed.as.audit
    .http()
    .filter((e) => e.endpoint === 'token')
    .at(-1);
  assert.ok(entry, 'the AS saw a token request');
  return entry;
}

test('client credentials: client_secret_basic from an environment variable, client_secret_post from a file; renewals use the grant, status names the sources only', async (t) => {
  const bed = await startBed(t, {
    as: {
      clientCredentials: true,
      staticClients: [
        {
          client_id: 'ci-basic',
          client_secret: SECRET,
          token_endpoint_auth_method: 'client_secret_basic',
          grant_types: ['client_credentials'],
          response_types: [],
          redirect_uris: [],
          scope: SCOPES.join(' '),
        },
        {
          client_id: 'ci-post',
          client_secret: `${SECRET}-post`,
          token_endpoint_auth_method: 'client_secret_post',
          grant_types: ['client_credentials'],
          response_types: [],
          redirect_uris: [],
          scope: SCOPES.join(' '),
        },
      ],
    },
    servers: [{ discovery: 'header' }, { discovery: 'well-known-path' }],
  });
  const witness = witnessSecrets(bed.as);
  const [basicServer, postServer] = bed.servers as [(typeof bed.servers)[0], (typeof bed.servers)[0]];
  const secretFile = path.join(await tempHome(t), 'post-secret');
  await writeFile(secretFile, `${SECRET}-post\n`, { mode: 0o600 });
  const env = { CI_SECRET: SECRET };
  const keeper = bed.keeper({
    secretReader: { env, readFile: (f) => import('node:fs/promises').then((fs) => fs.readFile(f, 'utf8')) },
  });

  const basic = await keeper.login(basicServer.url, {
    grant: { type: 'client_credentials', clientId: 'ci-basic', clientSecret: { env: 'CI_SECRET' } },
  });
  assert.equal(basic.state, 'ok');
  assert.equal(bed.robotOpens(), 0, 'no browser');
  assert.equal(lastTokenRequest(bed).grantType, 'client_credentials');
  assert.equal(lastTokenRequest(bed).clientAuth, 'client_secret_basic');
  assert.deepEqual(basic.grant, {
    type: 'client_credentials',
    description: 'client credentials (client_secret_basic, secret from environment variable CI_SECRET)',
    sources: [{ what: 'clientSecret', from: { env: 'CI_SECRET' } }],
  });
  assert.equal(basic.hasRefreshToken, false);
  assert.equal((await callTool(keeper.fetch(basicServer.url), basicServer.url)).status, 200);

  const post = await keeper.login(postServer.url, {
    grant: {
      type: 'client_credentials',
      clientId: 'ci-post',
      clientSecret: { file: secretFile },
      tokenEndpointAuthMethod: 'client_secret_post',
    },
  });
  assert.equal(lastTokenRequest(bed).clientAuth, 'client_secret_post');
  assert.match(post.grant?.description ?? '', /secret from file .*post-secret\)$/);
  assert.equal((await callTool(keeper.fetch(postServer.url), postServer.url)).status, 200);

  // The stored record holds the source, not the secret.
  const record = await readRecord(bed.home, basicServer.url);
  assert.deepEqual(record.grant, { type: 'client_credentials', clientSecret: { env: 'CI_SECRET' }, scope: 'mcp:read' }); // the server's challenge
  assert.equal(record.registration.clientSecret, undefined);

  // Due: another keeper (another process's view) gets the next token from the grant, not a sign-in.
  const before = bed.as.audit.counts().clientCredentialsGrants;
  await expireStoredTokens(bed.home, basicServer.url);
  const other = bed.keeper({ secretReader: { env, readFile: async () => '' } });
  const renewed = await other.getAccessToken(basicServer.url);
  assert.notEqual(renewed, record.tokens?.accessToken);
  assert.equal(bed.as.audit.counts().clientCredentialsGrants, before + 1);
  assert.equal(bed.as.audit.counts().authorizationRequests, 0);

  // Without the variable, a renewal says which source is missing, and stores nothing.
  await expireStoredTokens(bed.home, basicServer.url);
  const unset = await rejection(
    bed.keeper({ secretReader: { env: {}, readFile: async () => '' } }).getAccessToken(basicServer.url),
  );
  assert.ok(unset instanceof Error && 'code' in unset && unset.code === 'credential_unavailable', String(unset));
  assert.match((unset as Error).message, /environment variable CI_SECRET, which is not set/);
  assert.equal((await readRecord(bed.home, basicServer.url)).needsAuth, undefined, 'nothing marked');

  // A wrong secret: the AS refuses the client; needs-auth says so, and the fix names the flags.
  await expireStoredTokens(bed.home, basicServer.url);
  const wrong = await rejection(
    bed
      .keeper({ secretReader: { env: { CI_SECRET: 'wrong-secret-value-123' }, readFile: async () => '' } })
      .getAccessToken(basicServer.url),
  );
  assert.ok(wrong instanceof NeedsAuthError);
  assert.equal(wrong.reason, 'client_mismatch');
  const [status] = await keeper.status(basicServer.url);
  assert.equal(
    status?.needsAuth?.fix,
    `authkeep login ${basicServer.url} --client-credentials --client-id ci-basic --client-secret-env CI_SECRET`,
  );

  assertNoSecrets([bed.logs, statuses(basic, post, status), unset, wrong], allSecrets(witness.secrets(), [SECRET]));
});

function statuses(...values: unknown[]): unknown[] {
  return values;
}

test('client credentials with private_key_jwt: a PEM key and a JWK key file; the AS verifies the assertion', async (t) => {
  const pem = ecKey();
  const jwk = ecKey();
  const bed = await startBed(t, {
    as: {
      clientCredentials: true,
      staticClients: [
        {
          client_id: 'ci-pem',
          token_endpoint_auth_method: 'private_key_jwt',
          token_endpoint_auth_signing_alg: 'ES256',
          jwks: { keys: [{ ...pem.publicJwk, kid: 'pem-key' }] },
          grant_types: ['client_credentials'],
          response_types: [],
          redirect_uris: [],
          scope: SCOPES.join(' '),
        },
        {
          client_id: 'ci-jwk',
          token_endpoint_auth_method: 'private_key_jwt',
          jwks: { keys: [{ ...jwk.publicJwk, kid: 'jwk-key' }] },
          grant_types: ['client_credentials'],
          response_types: [],
          redirect_uris: [],
          scope: SCOPES.join(' '),
        },
      ],
    },
    servers: [{ discovery: 'header' }, { discovery: 'well-known-path' }],
  });
  const dir = await tempHome(t);
  const pemFile = path.join(dir, 'key.pem');
  const jwkFile = path.join(dir, 'key.jwk');
  const pemText = pem.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string;
  const jwkText = JSON.stringify({ ...(jwk.privateKey.export({ format: 'jwk' }) as object), kid: 'jwk-key' });
  await writeFile(pemFile, pemText, { mode: 0o600 });
  await writeFile(jwkFile, jwkText, { mode: 0o600 });
  const witness = witnessSecrets(bed.as);
  const keeper = bed.keeper();
  const [a, b] = bed.servers as [(typeof bed.servers)[0], (typeof bed.servers)[0]];

  const viaPem = await keeper.login(a.url, {
    grant: { type: 'client_credentials', clientId: 'ci-pem', privateKey: { file: pemFile } },
  });
  assert.equal(lastTokenRequest(bed).clientAuth, 'private_key_jwt');
  assert.equal(lastTokenRequest(bed).status, 200);
  assert.match(viaPem.grant?.description ?? '', /^client credentials \(private_key_jwt, key from file .*key\.pem\)$/);
  assert.equal((await callTool(keeper.fetch(a.url), a.url)).status, 200);

  await keeper.login(b.url, {
    grant: { type: 'client_credentials', clientId: 'ci-jwk', privateKey: { file: jwkFile } },
  });
  assert.equal(lastTokenRequest(bed).status, 200);
  assert.equal((await callTool(keeper.fetch(b.url), b.url)).status, 200);

  // A renewal signs a fresh assertion with the same key file.
  await expireStoredTokens(bed.home, a.url);
  await bed.keeper().getAccessToken(a.url);
  assert.equal(lastTokenRequest(bed).status, 200);
  assert.equal(bed.as.audit.counts().clientCredentialsGrants, 3);

  // A key the AS does not know: invalid_client, nothing else.
  const stranger = path.join(dir, 'stranger.pem');
  await writeFile(stranger, ecKey().privateKey.export({ format: 'pem', type: 'pkcs8' }) as string);
  const refused = await rejection(
    bed
      .keeper()
      .login(a.url, { grant: { type: 'client_credentials', clientId: 'ci-pem', privateKey: { file: stranger } } }),
  );
  assert.ok(refused instanceof Error && 'code' in refused, String(refused));
  assert.equal((refused as { code: string }).code, 'client_mismatch');

  assertNoSecrets([bed.logs, viaPem, refused], allSecrets(witness.secrets(), { pem: pemText, jwk: jwkText }));
});

async function workloadToken(key: KeyObject, audience: string, jti: string): Promise<string> {
  return new SignJWT({})
    .setProtectedHeader({ alg: 'ES256' })
    .setIssuer('https://platform.example')
    .setSubject('system:serviceaccount:ci:worker')
    .setAudience(audience)
    .setIssuedAt()
    .setExpirationTime('10m')
    .setJti(jti)
    .sign(key);
}

test('JWT bearer (workload identity federation): the assertion is read from its file at every renewal, checked for audience before it is sent', async (t) => {
  const platform = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const bed = await startBed(t, {
    as: {
      jwtBearer: { publicKey: platform.publicKey },
      staticClients: [
        {
          client_id: 'workload',
          token_endpoint_auth_method: 'none',
          grant_types: ['urn:ietf:params:oauth:grant-type:jwt-bearer'],
          response_types: [],
          redirect_uris: [],
          scope: SCOPES.join(' '),
        },
      ],
    },
  });
  const server = bed.servers[0]!;
  const witness = witnessSecrets(bed.as);
  const file = path.join(await tempHome(t), 'token');
  const first = await workloadToken(platform.privateKey, bed.as.issuer, 'first');
  await writeFile(file, first);
  const keeper = bed.keeper();

  const status = await keeper.login(server.url, {
    grant: { type: 'jwt_bearer', clientId: 'workload', assertion: { file } },
  });
  assert.equal(lastTokenRequest(bed).grantType, 'urn:ietf:params:oauth:grant-type:jwt-bearer');
  assert.deepEqual(lastTokenRequest(bed).body?.assertion, [`[redacted ${fingerprint(first)}]`]);
  assert.equal(status.grant?.description, `JWT bearer (none); assertion from file ${file} (audience ${bed.as.issuer})`);
  assert.equal((await callTool(keeper.fetch(server.url), server.url)).status, 200);

  // The platform rotates the token: the next renewal carries the new one.
  const second = await workloadToken(platform.privateKey, bed.as.issuer, 'second');
  await writeFile(file, `${second}\n`);
  await expireStoredTokens(bed.home, server.url);
  await bed.keeper().getAccessToken(server.url);
  assert.deepEqual(lastTokenRequest(bed).body?.assertion, [`[redacted ${fingerprint(second)}]`]);

  // A token for another audience is never sent.
  const requests = bed.as.audit.counts().jwtBearerGrants;
  await writeFile(file, await workloadToken(platform.privateKey, 'https://elsewhere.example', 'third'));
  await expireStoredTokens(bed.home, server.url);
  const refused = await rejection(bed.keeper().getAccessToken(server.url));
  assert.equal((refused as { code?: string }).code, 'credential_unavailable');
  assert.equal((refused as { field?: string }).field, 'assertion.aud');
  assert.equal(bed.as.audit.counts().jwtBearerGrants, requests, 'not sent');

  assertNoSecrets([bed.logs, status, refused], allSecrets(witness.secrets(), [first, second]));
});

export type { AuthKeeper };

test("a machine client is never offered to an interactive sign-in at the same issuer; logout asks the AS to revoke with the grant's credential", async (t) => {
  const bed = await startBed(t, {
    as: {
      clientCredentials: true,
      staticClients: [
        {
          client_id: 'ci-only',
          client_secret: SECRET,
          grant_types: ['client_credentials'],
          response_types: [],
          redirect_uris: [],
          scope: SCOPES.join(' '),
        },
      ],
    },
    servers: [{ discovery: 'header' }, { discovery: 'well-known-path' }],
  });
  const [machineServer, personServer] = bed.servers as [(typeof bed.servers)[0], (typeof bed.servers)[0]];
  const keeper = bed.keeper({ secretReader: { env: { CI_SECRET: SECRET }, readFile: async () => '' } });
  await keeper.login(machineServer.url, {
    grant: { type: 'client_credentials', clientId: 'ci-only', clientSecret: { env: 'CI_SECRET' } },
  });
  const person = await keeper.login(personServer.url);
  assert.equal(person.registration, 'dynamic', 'the interactive sign-in registered its own client');
  assert.notEqual(person.clientId, 'ci-only');
  assert.equal(bed.robotOpens(), 1);

  // Logout asks the AS to revoke the access token, authenticated with the credential the grant
  // names (oidc-provider cannot revoke its JWT access tokens: it answers unsupported_token_type).
  const out = await keeper.logout(machineServer.url);
  assert.equal(out.deleted, true);
  assert.equal(out.revocation, 'unsupported');
  const revocation = bed.as.audit.http().filter((e) => e.endpoint === 'revocation');
  assert.deepEqual(
    revocation.map((e) => [e.clientId, e.clientAuth]),
    [['ci-only', 'client_secret_basic']],
  );
  assert.ok(!bed.logs.some((e) => e.event === 'logout.revoke_failed'));
  assert.equal((await keeper.status(personServer.url))[0]?.state, 'ok', 'the other server is untouched');
});
