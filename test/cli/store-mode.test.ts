/**
 * `--store` / AUTHKEEP_STORE through the real `authkeep` command: redis:// selects the fleet store,
 * which refuses to start without a sealing key (test/cli/fleet-store.test.ts covers it running),
 * an unknown mode is a usage error, `auto` without a keychain keeps plaintext files with a
 * one-time notice and a doctor warning; and on Linux with a real Secret Service (gnome-keyring on a
 * private D-Bus), `--store keychain` seals the record, doctor says where the key lives and lists a
 * plaintext record left, which the next `token` seals in place with no sign-in.
 */
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { startAuthorizationServer, startProtectedMcpServer } from '../../arena/testbed/index.js';
import { type CliResult, cliEnv, runCliProcess } from '../helpers/cli-run.js';
import { startSecretService, unavailableReason } from '../helpers/secret-service.js';

async function startServers(t: { after(fn: () => unknown): void }) {
  const as = await startAuthorizationServer({ accessTokenTtlSeconds: 3600 });
  t.after(() => as.close());
  const server = await startProtectedMcpServer({ authorizationServer: as, discovery: 'header' });
  t.after(() => server.close());
  return { as, server };
}

function ok(result: CliResult, what: string): void {
  assert.equal(result.code, 0, `${what} exits 0\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
}

async function recordFile(home: string): Promise<string> {
  const files = (await readdir(path.join(home, 'servers'))).filter((f) => f.endsWith('.json'));
  assert.equal(files.length, 1, 'one record file');
  return path.join(home, 'servers', files[0] as string);
}

interface DoctorJson {
  checks: Array<{ check: string; status: string; subject: string; message: string }>;
}

test('--store redis://... is the fleet store: refused without a sealing key, saying how to make one; an unknown AUTHKEEP_STORE is a usage error', async (t) => {
  const cli = await cliEnv(t);
  const redis = await runCliProcess(cli, ['status', '--store', 'redis://fleet.example:6379'], {
    env: { AUTHKEEP_STORE_KEY: '', AUTHKEEP_STORE_KEY_FILE: '' },
  });
  assert.notEqual(redis.code, 0, redis.stderr);
  assert.match(redis.stderr, /the fleet store needs a sealing key: make one with `openssl rand -base64 32`/);
  const bogus = await runCliProcess(cli, ['status'], { env: { AUTHKEEP_STORE: 'vault' } });
  assert.equal(bogus.code, 2, bogus.stderr);
  assert.match(bogus.stderr, /AUTHKEEP_STORE must be auto, keychain or file/);
});

test('auto with no keychain: plaintext files, a notice once, and a doctor warning', async (t) => {
  const { server } = await startServers(t);
  const cli = await cliEnv(t);
  // No session bus: no Secret Service can answer (on Linux; elsewhere the OS keychain may).
  const env = { AUTHKEEP_STORE: 'auto', DBUS_SESSION_BUS_ADDRESS: '' };
  if (process.platform !== 'linux') t.skip('Linux only: elsewhere the OS keychain does not need a session bus');
  else {
    const first = await runCliProcess(cli, ['login', server.url, '--allow-http'], { env });
    ok(first, 'login');
    assert.match(first.stderr, /note: no persistent OS keychain here .*plaintext files/);
    assert.equal(JSON.parse(await readFile(await recordFile(cli.home), 'utf8')).serverUrl, server.url);
    const second = await runCliProcess(cli, ['login', server.url, '--allow-http'], { env });
    ok(second, 'second login');
    assert.doesNotMatch(second.stderr, /note:/, 'the notice is shown once');
    const doctor = await runCliProcess(cli, ['doctor', '--json'], { env });
    const atRest = (JSON.parse(doctor.stdout) as DoctorJson).checks.filter((c) => c.check === 'at_rest');
    assert.equal(atRest.length, 1);
    assert.equal(atRest[0]?.status, 'warn');
    assert.match(atRest[0]?.message ?? '', /plaintext files.*DBUS_SESSION_BUS_ADDRESS/);
    const asked = await runCliProcess(cli, ['doctor', '--json', '--store', 'file'], { env });
    const fileMode = (JSON.parse(asked.stdout) as DoctorJson).checks.find((c) => c.check === 'at_rest');
    assert.equal(fileMode?.status, 'ok', 'plaintext on purpose is no warning');
  }
});

test('--store keychain with a real Secret Service: sealed record, key location in doctor, a plaintext record sealed by the next token', {
  skip: unavailableReason() ?? false,
}, async (t) => {
  const service = await startSecretService();
  t.after(() => service.stop());
  const { server } = await startServers(t);
  const cli = await cliEnv(t);
  const env = { DBUS_SESSION_BUS_ADDRESS: service.env.DBUS_SESSION_BUS_ADDRESS };

  ok(await runCliProcess(cli, ['login', server.url, '--allow-http', '--store', 'file'], { env }), 'plaintext login');
  const file = await recordFile(cli.home);
  assert.equal(JSON.parse(await readFile(file, 'utf8')).serverUrl, server.url, 'plaintext to begin with');

  const before = await runCliProcess(cli, ['doctor', '--json', '--store', 'keychain'], { env });
  const checks = (JSON.parse(before.stdout) as DoctorJson).checks.filter((c) => c.check === 'at_rest');
  assert.match(
    checks[0]?.message ?? '',
    /store mode keychain: .*Secret Service.*service "authkeep", account "home-[0-9a-f]{32}"/,
  );
  assert.ok(
    checks.some((c) => c.status === 'warn' && c.subject === file),
    'doctor lists the plaintext record',
  );

  const token = await runCliProcess(cli, ['token', server.url, '--store', 'keychain'], {
    env: { ...env, AUTHKEEP_STORE: '' },
  });
  ok(token, 'token');
  const sealed = await readFile(file, 'utf8');
  assert.equal(JSON.parse(sealed).sealed, 'authkeep', 'sealed in place by token');
  assert.equal(sealed.includes(token.stdout.trim()), false, 'the token is not in the file');

  const status = await runCliProcess(cli, ['status', '--json'], { env: { ...env, AUTHKEEP_STORE: 'keychain' } });
  ok(status, 'status');
  assert.equal((JSON.parse(status.stdout) as Array<{ serverUrl: string }>)[0]?.serverUrl, server.url);
  const plain = await runCliProcess(cli, ['status'], { env: { ...env, AUTHKEEP_STORE: 'file' } });
  assert.notEqual(plain.code, 0, 'file mode cannot read a sealed record');
  assert.match(plain.stderr, /keychain_unavailable/);
});
