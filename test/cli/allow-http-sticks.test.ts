/**
 * `--allow-http` that sticks (issue 14, item 3), as real `authkeep` processes against the real
 * oidc-provider and an MCP server on 127.0.0.1 over http: a sign-in made with the flag is recorded
 * with the choice, so `token` (also when a refresh is due), `status`, the proxy and `logout`
 * (which then really revokes at the AS) need no flag; no output names the library's option; a
 * logout whose revocation fails says so, keeps the credentials and exits 1, unless `--force`.
 */
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { startAuthorizationServer, startProtectedMcpServer } from '../../arena/testbed/index.js';
import { BIN, type CliResult, cliEnv, runCliProcess } from '../helpers/cli-run.js';
import { expireStoredTokens } from '../helpers/records.js';

async function start(t: { after(fn: () => unknown): void }) {
  const as = await startAuthorizationServer();
  t.after(() => as.close().catch(() => undefined));
  const server = await startProtectedMcpServer({ authorizationServer: as, discovery: 'header' });
  t.after(() => server.close().catch(() => undefined));
  return { as, server };
}

async function storedRecord(home: string): Promise<Record<string, unknown>> {
  const dir = path.join(home, 'servers');
  const [file] = (await readdir(dir)).filter((f) => f.endsWith('.json'));
  return JSON.parse(await readFile(path.join(dir, file as string), 'utf8')) as Record<string, unknown>;
}

function ok(result: CliResult, what: string): void {
  assert.equal(result.code, 0, `${what} exits 0\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
  assert.doesNotMatch(result.stdout + result.stderr, /allowInsecureLoopback/, `${what}: no library option names`);
}

test('signed in with --allow-http: token, a due refresh, status, proxy and logout need no flag', async (t) => {
  const { as, server } = await start(t);
  const cli = await cliEnv(t);
  ok(await runCliProcess(cli, ['login', server.url, '--allow-http']), 'login --allow-http');
  assert.equal((await storedRecord(cli.home)).allowHttpLoopback, true, 'the record keeps the choice');

  ok(await runCliProcess(cli, ['token', server.url]), 'token without the flag');
  await expireStoredTokens(cli.home, server.url);
  const refreshesBefore = as.audit.counts().refreshGrants;
  const refreshed = await runCliProcess(cli, ['token', server.url]);
  ok(refreshed, 'token without the flag, refresh due');
  assert.equal(as.audit.counts().refreshGrants, refreshesBefore + 1, 'it refreshed at the AS');
  assert.equal((await storedRecord(cli.home)).allowHttpLoopback, true, 'the refresh kept the choice');

  const status = await runCliProcess(cli, ['status', server.url, '--json']);
  ok(status, 'status');
  assert.equal((JSON.parse(status.stdout) as Array<{ state: string }>)[0]?.state, 'ok');

  const client = new Client({ name: 'allow-http-sticks', version: '1.0.0' });
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [BIN, 'proxy', server.url],
    env: cli.env as Record<string, string>,
    stderr: 'pipe',
  });
  await client.connect(transport);
  const echoed = await client.callTool({ name: 'echo', arguments: { text: 'no flag' } });
  assert.deepEqual(
    (echoed.content as Array<{ text?: string }>).map((c) => c.text),
    ['no flag'],
  );
  await client.close();

  const revocations = as.audit.counts().revocations;
  const logout = await runCliProcess(cli, ['logout', server.url]);
  ok(logout, 'logout without the flag');
  assert.match(logout.stdout, /Revoked the tokens at .* and deleted the stored credentials/);
  assert.equal(as.audit.counts().revocations, revocations + 1, 'revoked at the AS');
  const token = await runCliProcess(cli, ['token', server.url]);
  assert.equal(token.code, 4, 'nothing stored any more');
});

test('without the flag, a first sign-in over http is refused naming --allow-http, not the library option', async (t) => {
  const { server } = await start(t);
  const cli = await cliEnv(t);
  const login = await runCliProcess(cli, ['login', server.url]);
  assert.equal(login.code, 1, login.stderr);
  assert.match(login.stderr, /\[insecure_url at serverUrl\]\nhint: .*pass --allow-http/);
  assert.doesNotMatch(login.stderr, /allowInsecureLoopback/);
});

test('a logout whose revocation fails keeps the credentials and exits 1; --force deletes them', async (t) => {
  const { as, server } = await start(t);
  const cli = await cliEnv(t);
  ok(await runCliProcess(cli, ['login', server.url, '--allow-http']), 'login');
  await as.close();

  const refused = await runCliProcess(cli, ['logout', server.url]);
  assert.equal(refused.code, 1, `exit 1\n${refused.stdout}${refused.stderr}`);
  assert.match(refused.stderr, new RegExp(`could not revoke the tokens at ${as.issuer}: .*connection refused`));
  assert.match(refused.stderr, /Nothing was deleted/);
  assert.match(refused.stderr, /authkeep logout \S+ --force/);
  assert.doesNotMatch(refused.stdout, /✓/, 'no check mark');
  const kept = await runCliProcess(cli, ['status', server.url, '--json']);
  assert.equal((JSON.parse(kept.stdout) as Array<{ state: string }>)[0]?.state, 'ok', 'still stored');

  const json = await runCliProcess(cli, ['logout', server.url, '--json']);
  assert.equal(json.code, 1);
  const parsed = JSON.parse(json.stdout) as { revoked: boolean; deleted: boolean; revocation: string };
  assert.deepEqual([parsed.revoked, parsed.deleted, parsed.revocation], [false, false, 'failed']);

  const forced = await runCliProcess(cli, ['logout', server.url, '--force']);
  ok(forced, 'logout --force');
  assert.match(forced.stdout, /Deleted the stored credentials for \S+ \(--force\) without revoking them/);
  assert.match(forced.stdout, /revocation failed at .*connection refused/);
  assert.deepEqual(await readdir(path.join(cli.home, 'servers')).then((f) => f.filter((n) => n.endsWith('.json'))), []);
});
