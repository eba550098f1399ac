/**
 * Tidy `authkeep status` output (issue 14, item 7), as real processes after real sign-ins: the
 * table fits the terminal (80 columns when stdout is not a terminal, `$COLUMNS` when set, the
 * terminal's own width on a TTY), client IDs are shortened in the table and whole in `--json`, and
 * on a terminal the red of a needs-auth state closes on its own line.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { startAuthorizationServer, startProtectedMcpServer } from '../../arena/testbed/index.js';
import { BIN, type CliEnv, cliEnv, runCliProcess } from '../helpers/cli-run.js';
import { editRecord } from '../helpers/records.js';

/** `authkeep ...args` with its stdout on a pseudo-terminal `cols` wide (util-linux script). */
function runOnTerminal(cli: CliEnv, args: string[], cols: number): Promise<string> {
  const command = `stty cols ${cols} rows 40; exec "${process.execPath}" "${BIN}" ${args.map((a) => `'${a}'`).join(' ')}`;
  const child = spawn('script', ['-qec', command, '/dev/null'], {
    env: { ...cli.env, NO_COLOR: '', TERM: 'xterm' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve(out.replace(/\r\n/g, '\n')) : reject(new Error(out))));
  });
}

/** Colour codes: what is measured (`ANSI_ALL` to strip them, `ANSI` to look for one). */
const ANSI_ALL = /\u001b\[[0-9;]*m/g;
const ANSI = /\u001b\[[0-9;]*m/;

test('status fits the width, shortens client IDs in the table only, and keeps the red on its line', async (t) => {
  const as = await startAuthorizationServer();
  t.after(() => as.close());
  const servers = [];
  for (let i = 0; i < 2; i++) {
    const server = await startProtectedMcpServer({ authorizationServer: as, discovery: 'header' });
    t.after(() => server.close());
    servers.push(server);
  }
  const cli = await cliEnv(t);
  for (const server of servers) {
    const login = await runCliProcess(cli, ['login', server.url, '--allow-http']);
    assert.equal(login.code, 0, login.stderr);
  }
  const revoked = servers[1]?.url as string;
  await editRecord(cli.home, revoked, (record) => ({
    ...record,
    needsAuth: { reason: 'invalid_grant', error: 'invalid_grant', at: new Date().toISOString() },
  }));

  const json = await runCliProcess(cli, ['status', '--json']);
  assert.equal(json.code, 0, json.stderr);
  const statuses = JSON.parse(json.stdout) as Array<{ clientId: string; state: string }>;
  const clientId = statuses[0]?.clientId as string;
  assert.ok(clientId.length > 12, `the AS issued a long client ID (${clientId.length} characters), whole in --json`);

  // Not a terminal, no $COLUMNS: 80 columns.
  const narrow = await runCliProcess(cli, ['status']);
  assert.equal(narrow.code, 0, narrow.stderr);
  const table = narrow.stdout.split('\n\n')[0] as string;
  for (const line of table.split('\n')) assert.ok(line.length <= 80, `fits 80 columns: ${JSON.stringify(line)}`);
  assert.match(table, /^SERVER\s+ACCESS EXPIRES\s+STATE\n/);
  assert.match(table, /\(5 columns left out to fit 80; authkeep status --json shows all\)/);
  assert.match(table, /needs-auth \(invalid_grant\)/);

  // $COLUMNS wide enough for the client ID: shortened, never whole.
  const wider = await runCliProcess(cli, ['status'], { env: { COLUMNS: '130' } });
  const wideTable = wider.stdout.split('\n\n')[0] as string;
  for (const line of wideTable.split('\n')) assert.ok(line.length <= 130, `fits 130: ${JSON.stringify(line)}`);
  assert.match(wideTable, /CLIENT ID/);
  assert.ok(wideTable.includes(`${clientId.slice(0, 8)}…`), 'the client ID, shortened');
  assert.ok(!wider.stdout.includes(clientId), 'never whole in the table');

  if (spawnSync('script', ['--version']).status !== 0) {
    t.skip('no util-linux `script` for a pseudo-terminal');
    return;
  }
  const tty = await runOnTerminal(cli, ['status'], 100);
  assert.match(tty, /\u001b\[31mneeds-auth \(invalid_grant\)\u001b\[39m\n/, 'the red state closes on its line');
  const [ttyTable = '', details = ''] = tty.split('\n\n');
  for (const line of ttyTable.split('\n')) {
    assert.ok(line.replace(ANSI_ALL, '').length <= 100, `fits the 100-column terminal: ${JSON.stringify(line)}`);
  }
  for (const line of details.split('\n').slice(1)) {
    assert.doesNotMatch(line, ANSI, `detail lines are not coloured: ${JSON.stringify(line)}`);
  }
  assert.match(details, /^\u001b\[31mneeds-auth\u001b\[39m http:\/\/127\.0\.0\.1:\d+\/mcp: /);
});
