/**
 * SEP-990 with the IdP session through the real `authkeep` command (child processes, the robot
 * browser as `$BROWSER`, --debug): `login URL --idp ISSUER --idp-client-id ID` without
 * `--id-token-*` signs in to the IdP once (one browser visit) and every later login on that IdP
 * uses the stored session; `status` shows the session record, `doctor` probes the IdP; a failing step is named in the
 * output; no ID token, refresh token or secret in any output.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { startAuthorizationServer, startProtectedMcpServer } from '../../arena/testbed/index.js';
import { type CliResult, cliEnv, runCliProcess } from '../helpers/cli-run.js';
import { jagKeyPair, jagRedeemingAs, startEnterpriseIdp } from '../helpers/enterprise-world.js';
import { readRecord } from '../helpers/records.js';
import { allSecrets, assertNoSecrets, witnessSecrets } from '../helpers/secrets.js';

const SECRET = 'cli-enterprise-secret-0123456789abcdef';

test('login --idp without --id-token-*: one browser visit at the IdP for two servers, status shows the session, a failing step named', async (t) => {
  const jagKeys = jagKeyPair();
  const idp = await startEnterpriseIdp(t, jagKeys);
  const as = await startAuthorizationServer(jagRedeemingAs(jagKeys, SECRET));
  t.after(() => as.close());
  const witness = witnessSecrets(as);
  const idpWitness = witnessSecrets(idp);
  const servers = [];
  for (const discovery of ['header', 'well-known-path'] as const) {
    const server = await startProtectedMcpServer({ authorizationServer: as, discovery });
    t.after(() => server.close());
    servers.push(server);
  }
  const [first, second] = servers as [(typeof servers)[0], (typeof servers)[0]];
  const cli = await cliEnv(t);
  const outputs: Array<{ what: string; result: CliResult }> = [];
  const run = async (what: string, args: string[], expectCode: number, env = { MCP_SECRET: SECRET }) => {
    const result = await runCliProcess(cli, [...args, '--allow-http', '--debug'], { env }, 60_000);
    assert.equal(result.code, expectCode, `${what} exits ${expectCode}\nstderr: ${result.stderr}`);
    outputs.push({ what, result });
    return result;
  };
  const flags = [
    '--idp',
    idp.issuer,
    '--idp-client-id',
    'agent',
    '--client-id',
    'mcp-client',
    '--client-secret-env',
    'MCP_SECRET',
  ];

  const login = await run('login (signs in to the IdP)', ['login', first.url, ...flags], 0);
  assert.match(login.stderr, /your session at http:\/\/127\.0\.0\.1:\d+/);
  assert.match(login.stdout, /grant {9}enterprise-managed \(ID-JAG\) .*ID token from the IdP session at /);
  await run('login (uses the session)', ['login', second.url, ...flags], 0);
  const opened = (await readFile(cli.browserLog, 'utf8')).split('\n').filter(Boolean);
  assert.equal(opened.length, 1, 'one browser visit for two servers');
  assert.equal(idp.audit.counts().authorizationRequests, 1);
  assert.equal(as.audit.counts().authorizationRequests, 0);
  assert.equal(as.audit.counts().jwtBearerGrants, 2);

  const status = await run('status', ['status'], 0);
  assert.match(
    status.stdout,
    new RegExp(
      `idp session ${idp.issuer.replace(/[.]/g, '\\.')}: ID token of robot, expires in .*renewed at the identity provider`,
    ),
  );
  const issuer = idp.issuer.replace(/[.]/g, '\\.');
  assert.match(status.stdout, new RegExp(`^${issuer}\\s+${issuer}\\s+in .*ok$`, 'm'), 'the session has its own row');
  const json = JSON.parse((await run('status --json', ['status', idp.issuer, '--json'], 0)).stdout) as Array<{
    idpSession?: { subject: string; renewable: boolean };
  }>;
  assert.deepEqual(
    { subject: json[0]?.idpSession?.subject, renewable: json[0]?.idpSession?.renewable },
    { subject: 'robot', renewable: true },
  );

  const doctor = await run('doctor', ['doctor'], 0);
  assert.match(doctor.stdout, /identity provider http:\/\/127\.0\.0\.1:\d+ answered HTTP \d+/);

  // The redemption at the MCP authorization server refused (a wrong secret): the step is named.
  const refused = await run('login with a wrong secret', ['login', second.url, ...flags], 1, {
    MCP_SECRET: 'not-the-secret',
  });
  assert.match(refused.stderr, /\[step jwt_bearer\]/);
  assert.match(refused.stderr, /the redemption of the ID-JAG at the authorization server \(RFC 7523\)/);

  const session = await readRecord(cli.home, idp.issuer);
  const secrets = allSecrets(witness.secrets(), idpWitness.secrets(), {
    'the client secret': SECRET,
    'the ID token': session.idpSession?.token ?? '',
    "the IdP's refresh token": session.tokens?.refreshToken ?? '',
  });
  for (const { what, result } of outputs) {
    assertNoSecrets(result.stderr, secrets, `the stderr of ${what}`);
    assertNoSecrets(result.stdout, secrets, `the stdout of ${what}`);
  }
});
