/**
 * `authkeep login --no-browser` / `--device` as real child processes against the real
 * oidc-provider: with `features.deviceFlow` on, --no-browser prints the verification URI and user
 * code, and completes when the robot user (arena/testbed/robot-device.ts) approves at that URI;
 * --device against an AS without the device grant fails with a clear message.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startAuthorizationServer, startProtectedMcpServer } from '../../arena/testbed/index.js';
import { completeDeviceVerification } from '../../arena/testbed/robot-device.js';
import { type CliResult, cliEnv, collect, runCliProcess, spawnCli, waitForOutput } from '../helpers/cli-run.js';
import { assertNoSecrets, witnessSecrets } from '../helpers/secrets.js';

async function startServers(t: { after(fn: () => unknown): void }, deviceFlow: boolean) {
  const as = await startAuthorizationServer({ deviceFlow });
  t.after(() => as.close());
  const server = await startProtectedMcpServer({ authorizationServer: as, discovery: 'header' });
  t.after(() => server.close());
  return { as, server };
}

function ok(result: CliResult, what: string): void {
  assert.equal(result.code, 0, `${what} exits 0\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
}

test('login --no-browser uses the device grant when the AS offers it and completes when the user approves', async (t) => {
  const { as, server } = await startServers(t, true);
  const witness = witnessSecrets(as);
  const cli = await cliEnv(t);
  // Neither $BROWSER nor stdin may be used.
  const child = spawnCli(cli, ['login', server.url, '--no-browser', '--allow-http'], { env: { BROWSER: 'false' } });
  const done = collect(child);
  const [, uri, code] = await waitForOutput(child.stderr, /\n {2}(http:\/\/\S+)\n\nand enter the code: {2}(\S+)\n/);
  assert.equal(uri, `${as.issuer}/device`);
  const robot = await completeDeviceVerification(uri as string, { userCode: code as string });
  assert.equal(robot.approved, true, `the robot approved (got ${robot.status} ${robot.title})`);
  const result = await done;
  ok(result, 'login --no-browser (device)');
  assert.match(result.stdout, /Signed in to /);
  assert.match(result.stderr, /Waiting for you to approve the sign-in/);
  assert.doesNotMatch(result.stderr, /Paste that whole address/);
  const token = await runCliProcess(cli, ['token', server.url, '--allow-http']);
  ok(token, 'token after the device login');
  // login prints the user code (it is shown to the user) and no secret: not the device code, not a token.
  assert.equal(witness.count('device_code received'), 1);
  assertNoSecrets([result.stdout, result.stderr], witness.secrets(), 'the login output');
});

test('login --device fails clearly when the AS does not offer the device grant', async (t) => {
  const { server } = await startServers(t, false);
  const cli = await cliEnv(t);
  const result = await runCliProcess(cli, ['login', server.url, '--device', '--allow-http'], {
    env: { BROWSER: 'false' },
  });
  assert.equal(result.code, 1, result.stderr);
  assert.match(
    result.stderr,
    /cannot use the device authorization grant: authorization server \S+ does not offer the device authorization grant/,
  );
  assert.match(result.stderr, /\[device_flow_unavailable/);
  assert.match(result.stderr, /hint: sign in with the browser instead/);
});
