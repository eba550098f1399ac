/**
 * Several accounts per server (`--account NAME`, `$AUTHKEEP_ACCOUNT`): each account keeps its own
 * record, lock and client registration for the same server URL, `status` says which account it
 * shows and names the others, logout of one leaves the other signed in, and a bad account name
 * is a usage error that touches nothing. The real CLI as child processes against the real AS.
 */
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { startAuthorizationServer, startProtectedMcpServer } from '../../arena/testbed/index.js';
import { type CliResult, cliEnv, runCliProcess } from '../helpers/cli-run.js';

function ok(result: CliResult, what: string): void {
  assert.equal(result.code, 0, `${what} exits 0\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
}

async function clientIdIn(home: string): Promise<string> {
  const dir = path.join(home, 'servers');
  const [file] = (await readdir(dir)).filter((f) => f.endsWith('.json'));
  assert.ok(file, `a record in ${dir}`);
  return (JSON.parse(await readFile(path.join(dir, file), 'utf8')) as { registration: { clientId: string } })
    .registration.clientId;
}

test('--account keeps a second identity for one server: its own record and registration, shown by status', async (t) => {
  const as = await startAuthorizationServer({ accessTokenTtlSeconds: 3600 });
  t.after(() => as.close());
  const server = await startProtectedMcpServer({ authorizationServer: as, discovery: 'header' });
  t.after(() => server.close());
  const cli = await cliEnv(t);

  ok(await runCliProcess(cli, ['login', server.url, '--allow-http']), 'login (default account)');
  ok(await runCliProcess(cli, ['login', server.url, '--allow-http', '--account', 'work']), 'login --account work');

  const workHome = path.join(cli.home, 'accounts', 'work');
  const defaultClient = await clientIdIn(cli.home);
  const workClient = await clientIdIn(workHome);
  assert.notEqual(workClient, defaultClient, 'each account registered its own client');

  const personal = await runCliProcess(cli, ['token', server.url]);
  const work = await runCliProcess(cli, ['token', server.url], { env: { AUTHKEEP_ACCOUNT: 'work' } });
  ok(personal, 'token');
  ok(work, 'token with AUTHKEEP_ACCOUNT=work');
  assert.notEqual(work.stdout, personal.stdout, 'two grants, two tokens');

  const status = await runCliProcess(cli, ['status', '--account', 'work']);
  ok(status, 'status --account work');
  assert.match(status.stdout, /^Account: work$/m);
  assert.match(status.stdout, /Other accounts: default/);
  const json = JSON.parse((await runCliProcess(cli, ['status', '--json', '--account', 'work'])).stdout) as Array<{
    account: string;
    clientId: string;
  }>;
  assert.deepEqual(
    json.map((s) => s.account),
    ['work'],
  );
  const plain = await runCliProcess(cli, ['status']);
  assert.doesNotMatch(plain.stdout, /^Account:/m, 'the default account needs no label');
  assert.match(plain.stdout, /Other accounts: work/);

  ok(await runCliProcess(cli, ['logout', server.url, '--account', 'work']), 'logout --account work');
  ok(await runCliProcess(cli, ['token', server.url]), 'the default account is still signed in');
  const gone = await runCliProcess(cli, ['token', server.url, '--account', 'work']);
  assert.equal(gone.code, 4, `the work account needs a sign-in again\n${gone.stderr}`);
});

test('a bad account name is a usage error (exit 2) naming the rule, and creates nothing', async (t) => {
  const cli = await cliEnv(t);
  for (const bad of ['../escape', 'a/b', '.hidden', '']) {
    const result = await runCliProcess(cli, ['status', '--account', bad]);
    assert.equal(result.code, 2, `--account ${JSON.stringify(bad)} exits 2\n${result.stderr}`);
    assert.match(result.stderr, /account name/);
  }
  await assert.rejects(readdir(cli.home), { code: 'ENOENT' }, 'nothing was created under the home');
});
