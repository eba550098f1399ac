/**
 * Machine identities through the real `authkeep` command (child processes, --debug) against the
 * real oidc-provider: `login --client-credentials` with the secret in an environment variable,
 * `--private-key` with a PEM file, and `--assertion-file` (JWT bearer); `token` renews from the
 * grant when due; `status` and `doctor` say where the next token comes from, and doctor whether
 * each source is present here; no secret, key or assertion appears in any output (the token only
 * in `authkeep token`'s stdout); flag mistakes are usage errors (exit 2).
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { chmod, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { SignJWT } from 'jose';
import { startAuthorizationServer, startProtectedMcpServer } from '../../arena/testbed/index.js';
import { type CliResult, cliEnv, runCliProcess } from '../helpers/cli-run.js';
import { expireStoredTokens } from '../helpers/records.js';
import { allSecrets, assertNoSecrets, witnessSecrets } from '../helpers/secrets.js';

const SECRET = 'cli-machine-secret-0123456789abcdef';
const SCOPE = 'mcp:read mcp:write mcp:admin';

test('login --client-credentials / --private-key / --assertion-file, token, status, doctor: no browser, no secret in any output', async (t) => {
  const clientKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const platform = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const machine = { grant_types: [], response_types: [], redirect_uris: [], scope: SCOPE };
  const as = await startAuthorizationServer({
    clientCredentials: true,
    jwtBearer: { publicKey: platform.publicKey },
    staticClients: [
      { ...machine, client_id: 'ci-bot', client_secret: SECRET, grant_types: ['client_credentials'] },
      {
        ...machine,
        client_id: 'ci-key',
        token_endpoint_auth_method: 'private_key_jwt',
        jwks: { keys: [clientKey.publicKey.export({ format: 'jwk' })] },
        grant_types: ['client_credentials'],
      },
      {
        ...machine,
        client_id: 'workload',
        token_endpoint_auth_method: 'none',
        grant_types: ['urn:ietf:params:oauth:grant-type:jwt-bearer'],
      },
    ],
  });
  t.after(() => as.close());
  const witness = witnessSecrets(as);
  const servers = [];
  for (const discovery of ['header', 'well-known-path', 'two-challenges'] as const) {
    const server = await startProtectedMcpServer({ authorizationServer: as, discovery });
    t.after(() => server.close());
    servers.push(server);
  }
  const [bySecret, byKey, byAssertion] = servers as [(typeof servers)[0], (typeof servers)[0], (typeof servers)[0]];
  const cli = await cliEnv(t);
  const dir = path.dirname(cli.home);
  const keyFile = path.join(dir, 'ci-key.pem');
  const keyPem = clientKey.privateKey.export({ format: 'pem', type: 'pkcs8' }) as string;
  await writeFile(keyFile, keyPem, { mode: 0o600 });
  const assertionFile = path.join(dir, 'workload-token');
  const assertion = await new SignJWT({})
    .setProtectedHeader({ alg: 'ES256' })
    .setIssuer('https://platform.example')
    .setSubject('workload')
    .setAudience(as.issuer)
    .setIssuedAt()
    .setExpirationTime('10m')
    .sign(platform.privateKey);
  await writeFile(assertionFile, assertion, { mode: 0o600 });

  const outputs: Array<{ what: string; result: CliResult; printsToken?: boolean }> = [];
  const run = async (
    what: string,
    args: string[],
    expectCode: number,
    env: NodeJS.ProcessEnv = { CI_SECRET: SECRET },
    printsToken = false,
  ): Promise<CliResult> => {
    const result = await runCliProcess(cli, [...args, '--allow-http', '--debug'], { env }, 60_000);
    assert.equal(result.code, expectCode, `${what} exits ${expectCode}\nstderr: ${result.stderr}`);
    outputs.push({ what, result, printsToken });
    return result;
  };

  const secretLogin = await run(
    'login --client-credentials',
    ['login', bySecret.url, '--client-credentials', '--client-id', 'ci-bot', '--client-secret-env', 'CI_SECRET'],
    0,
  );
  assert.match(
    secretLogin.stdout,
    /grant {9}client credentials \(client_secret_basic, secret from environment variable CI_SECRET\)/,
  );
  assert.match(secretLogin.stdout, /next token {4}from the grant when this one is due/);
  await run(
    'login --private-key',
    ['login', byKey.url, '--client-credentials', '--client-id', 'ci-key', '--private-key', keyFile],
    0,
  );
  await run(
    'login --assertion-file',
    ['login', byAssertion.url, '--client-id', 'workload', '--assertion-file', assertionFile],
    0,
  );
  assert.equal(as.audit.counts().authorizationRequests, 0, 'no browser, no authorization request');
  assert.equal(as.audit.counts().clientCredentialsGrants, 2);
  assert.equal(as.audit.counts().jwtBearerGrants, 1);

  const first = (await run('token', ['token', bySecret.url], 0, undefined, true)).stdout.trim();
  await expireStoredTokens(cli.home, bySecret.url);
  const second = (await run('token when due', ['token', bySecret.url], 0, undefined, true)).stdout.trim();
  assert.notEqual(second, first, 'a new token from the grant');
  assert.equal(as.audit.counts().clientCredentialsGrants, 3);

  const status = await run('status', ['status'], 0);
  assert.match(
    status.stdout,
    new RegExp(
      `grant ${bySecret.url.replace(/[.?]/g, '\\$&')}: client credentials \\(client_secret_basic, secret from environment variable CI_SECRET\\)`,
    ),
  );
  assert.match(status.stdout, /grant .*: client credentials \(private_key_jwt, key from file .*ci-key\.pem\)/);
  assert.match(status.stdout, /grant .*: JWT bearer \(none\); assertion from file .*workload-token/);
  const json = JSON.parse((await run('status --json', ['status', bySecret.url, '--json'], 0)).stdout) as Array<{
    grant?: { type: string; sources: unknown[] };
  }>;
  assert.deepEqual(json[0]?.grant?.sources, [{ what: 'clientSecret', from: { env: 'CI_SECRET' } }]);

  const doctor = await run('doctor', ['doctor'], 0);
  assert.match(
    doctor.stdout,
    /credential .*the client secret comes from environment variable CI_SECRET, which is set here/,
  );
  assert.match(doctor.stdout, /the next token comes from client credentials/);
  const unset = await run('doctor without the variable', ['doctor', bySecret.url], 0, {});
  assert.match(unset.stdout, /! credential .*CI_SECRET, which is not set here/);

  // A key file other users can read: doctor warns with the chmod that fixes it.
  await chmod(keyFile, 0o644);
  const exposed = await run('doctor with a 0644 key', ['doctor', byKey.url], 0);
  assert.match(
    exposed.stdout,
    /! credential .*the private key comes from file .*ci-key\.pem, which other users can read \(0644\)/,
  );
  assert.match(exposed.stdout, /fix: chmod 600 .*ci-key\.pem/);
  await chmod(keyFile, 0o600);

  // Without the variable, a due token cannot be renewed: an error naming the variable, exit 1.
  await expireStoredTokens(cli.home, bySecret.url);
  const missing = await run('token without the variable', ['token', bySecret.url], 1, {});
  assert.match(missing.stderr, /environment variable CI_SECRET, which is not set/);

  // Mistakes with the flags are usage errors, before anything is sent.
  await run('no client id', ['login', bySecret.url, '--client-credentials', '--client-secret-env', 'CI_SECRET'], 2);
  await run('no credential', ['login', bySecret.url, '--client-credentials', '--client-id', 'ci-bot'], 2);
  await run(
    'a secret value instead of a name',
    ['login', bySecret.url, '--client-credentials', '--client-id', 'ci-bot', '--client-secret-env', 'not a name!'],
    2,
  );
  await run('a key without a grant', ['login', bySecret.url, '--private-key', keyFile], 2);

  const secrets = allSecrets(witness.secrets(), {
    'the client secret': SECRET,
    'the private key': keyPem,
    'the assertion': assertion,
  });
  for (const { what, result, printsToken } of outputs) {
    assertNoSecrets(result.stderr, secrets, `the stderr of ${what}`);
    const printed = printsToken ? result.stdout.trim() : undefined;
    assertNoSecrets(
      result.stdout,
      new Map([...secrets].filter(([, value]) => value !== printed)),
      `the stdout of ${what}`,
    );
  }
});
