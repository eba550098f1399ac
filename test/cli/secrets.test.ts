/**
 * `--debug` never prints a secret: the real `authkeep` command as child processes, every command
 * with --debug (JSON log events, stack traces and the whole `caused by:` chain on stderr), over a
 * grant's life with a pre-registered confidential client against the real oidc-provider: sign-in,
 * token, a refresh-token rotation, status, doctor, a refused refresh (needs-auth, whose cause is the
 * token endpoint's error), a sign-in again, logout. Every secret that existed during the test is
 * looked for, as the AS saw them (helpers/secrets.ts witness: codes, verifiers, every rotation's
 * access and refresh tokens, the client secret), in every stderr, and in every stdout except the
 * one token `authkeep token` exists to print.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { startAuthorizationServer, startProtectedMcpServer } from '../../arena/testbed/index.js';
import { type CliResult, cliEnv, runCliProcess } from '../helpers/cli-run.js';
import { expireStoredTokens, readRecord } from '../helpers/records.js';
import { allSecrets, assertNoSecrets, witnessSecrets } from '../helpers/secrets.js';

const CLIENT_SECRET = 'cli-confidential-secret-0123456789abcdef';

test('every command with --debug, over a grant’s life: no secret in any stderr or stdout', async (t) => {
  const as = await startAuthorizationServer({
    staticClients: [
      {
        client_id: 'cli-confidential',
        client_secret: CLIENT_SECRET,
        token_endpoint_auth_method: 'client_secret_basic',
        redirect_uris: ['http://127.0.0.1/callback'],
        application_type: 'native',
        grant_types: ['authorization_code', 'refresh_token'],
      },
    ],
  });
  t.after(() => as.close());
  const witness = witnessSecrets(as);
  const server = await startProtectedMcpServer({ authorizationServer: as, discovery: 'header' });
  t.after(() => server.close());
  const cli = await cliEnv(t);
  const secretFile = path.join(path.dirname(cli.home), 'client-secret');
  await writeFile(secretFile, `${CLIENT_SECRET}\n`, { mode: 0o600 });

  const outputs: Array<{ what: string; result: CliResult; printsToken?: boolean }> = [];
  const run = async (what: string, args: string[], expectCode: number, printsToken = false): Promise<CliResult> => {
    const result = await runCliProcess(cli, [...args, '--allow-http', '--debug'], {}, 60_000);
    assert.equal(result.code, expectCode, `${what} exits ${expectCode}\nstderr: ${result.stderr}`);
    if (args[0] === 'login' || args[0] === 'token' || args[0] === 'logout')
      assert.match(result.stderr, /"event":"/, `${what}: --debug printed log events`);
    outputs.push({ what, result, printsToken });
    return result;
  };
  const login = ['login', server.url, '--client-id', 'cli-confidential', '--client-secret-file', secretFile];

  await run('login', login, 0);
  const first = (await run('token', ['token', server.url], 0, true)).stdout.trim();
  await expireStoredTokens(cli.home, server.url);
  const second = (await run('token after expiry', ['token', server.url], 0, true)).stdout.trim();
  assert.notEqual(second, first, 'the expired token was refreshed');
  await run('doctor', ['doctor', server.url], 0);

  // The refresh token is revoked behind the CLI's back: the next refresh is refused.
  const record = await readRecord(cli.home, server.url);
  const revoke = await fetch(as.endpoints.revocation, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`cli-confidential:${CLIENT_SECRET}`).toString('base64')}`,
    },
    body: new URLSearchParams({ token: record.tokens!.refreshToken! }),
  });
  assert.equal(revoke.status, 200);
  await expireStoredTokens(cli.home, server.url);
  const refused = await run('token refused', ['token', server.url], 4);
  assert.match(refused.stderr, /invalid_grant/);
  assert.match(refused.stderr, /\n {4}at /, 'the stack trace is printed');
  assert.match(refused.stderr, /caused by: TokenEndpointError: POST \S+ \(refresh_token\) was refused: invalid_grant/);
  await run('status after the refusal', ['status'], 0);
  await run('status --json after the refusal', ['status', server.url, '--json'], 0);
  await run('doctor after the refusal', ['doctor'], 1);

  await run('login again', login, 0);
  await run('logout', ['logout', server.url], 0);

  assert.ok(witness.count('RefreshToken issued') >= 3, 'every sign-in and rotation was witnessed');
  assert.ok(witness.count('client_secret received') === 1, 'the client secret reached the AS (Basic)');
  assert.ok(witness.count('code_verifier received') === 2);
  const secrets = allSecrets(witness.secrets(), { 'the client secret': CLIENT_SECRET });
  for (const { what, result, printsToken } of outputs) {
    assertNoSecrets(result.stderr, secrets, `the stderr of ${what}`);
    if (printsToken) {
      const printed = result.stdout.trim();
      assertNoSecrets(
        result.stdout,
        new Map([...secrets].filter(([, value]) => value !== printed)),
        `the stdout of ${what}`,
      );
    } else assertNoSecrets(result.stdout, secrets, `the stdout of ${what}`);
  }
});
