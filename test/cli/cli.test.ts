/**
 * The `authkeep` CLI as real child processes (bin/authkeep.cjs) against the real oidc-provider
 * (rotation with reuse revocation) and a protected MCP server, with the robot browser as $BROWSER
 * and a temp AUTHKEEP_HOME: login, token, status --json, doctor, proxy, logout; login --no-browser; and
 * 16 concurrent `authkeep token` processes at an expiry refreshing exactly once at the AS.
 */
import assert from 'node:assert/strict';
import { chmod, readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { startAuthorizationServer, startProtectedMcpServer } from '../../arena/testbed/index.js';
import { acquireLock } from '../../src/store/lock.js';
import { recordKey, storeLayout } from '../../src/store/paths.js';
import { callTool, untilPast } from '../helpers/bed.js';
import { bundledCli, spawnGatedCli } from '../helpers/cli-bundle.js';
import { redirectUrlToPaste } from '../helpers/cli-paste-browser.js';
import {
  BIN,
  type CliResult,
  cliEnv,
  collect,
  jwtPayload,
  runCliProcess,
  spawnCli,
  waitForOutput,
} from '../helpers/cli-run.js';
import { assertNoSecrets, witnessSecrets } from '../helpers/secrets.js';

async function startServers(t: { after(fn: () => unknown): void }, accessTokenTtlSeconds: number) {
  const as = await startAuthorizationServer({ accessTokenTtlSeconds });
  t.after(() => as.close());
  const server = await startProtectedMcpServer({ authorizationServer: as, discovery: 'header' });
  t.after(() => server.close());
  return { as, server };
}

function ok(result: CliResult, what: string): void {
  assert.equal(result.code, 0, `${what} exits 0\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
}

async function recordFile(home: string): Promise<string> {
  const dir = path.join(home, 'servers');
  const files = (await readdir(dir)).filter((f) => f.endsWith('.json'));
  assert.equal(files.length, 1, 'one record file');
  return path.join(dir, files[0] as string);
}

test('login, token, status --json, doctor, proxy, logout and token again, as real processes', async (t) => {
  const { as, server } = await startServers(t, 3600);
  // Every secret the AS issues or receives: none may appear in any output but `token`'s stdout.
  const witness = witnessSecrets(as);
  const cli = await cliEnv(t);

  const login = await runCliProcess(cli, ['login', server.url, '--allow-http']);
  ok(login, 'login');
  const file = await recordFile(cli.home);
  assert.match(login.stdout, /Signed in to /);
  assert.ok(login.stdout.includes(cli.home), 'says where it stored: the home');
  assert.ok(login.stdout.includes(file), 'and the record file');
  assert.ok(login.stdout.includes(as.issuer), 'the issuer');
  assert.match(login.stdout, /client_id\s+\S+ \(dynamic client registration\)/);
  assert.match(login.stdout, /scope\s+.*mcp:read/);
  assert.match(login.stdout, /access token\s+expires in /);
  assert.equal(
    (await readFile(cli.browserLog, 'utf8')).trim().split('\n').length,
    1,
    'the robot browser was opened once via $BROWSER',
  );
  assert.ok(witness.count('access_token issued') === 1 && witness.count('RefreshToken issued') === 1);
  assertNoSecrets([login.stdout, login.stderr], witness.secrets(), 'login');

  const token = await runCliProcess(cli, ['token', server.url, '--allow-http']);
  ok(token, 'token');
  assert.match(token.stdout, /^[\w-]+\.[\w-]+\.[\w-]+\n$/, 'stdout is a JWT and a newline, nothing else');
  assert.equal(token.stderr, '');
  const accessToken = token.stdout.trim();
  assert.equal(jwtPayload(accessToken).iss, as.issuer);
  const call = await callTool(
    (input, init) =>
      fetch(input, {
        ...init,
        headers: { ...(init?.headers as Record<string, string>), authorization: `Bearer ${accessToken}` },
      }),
    server.url,
  );
  assert.equal(call.status, 200, 'the printed token is accepted by the MCP server');
  await call.arrayBuffer();

  const status = await runCliProcess(cli, ['status', '--json', '--allow-http']);
  ok(status, 'status --json');
  const statuses = JSON.parse(status.stdout) as Array<{
    serverUrl: string;
    state: string;
    issuer: string;
    registration: string;
  }>;
  assert.equal(statuses.length, 1);
  assert.equal(statuses[0]?.state, 'ok');
  assert.equal(statuses[0]?.issuer, as.issuer);
  assert.equal(statuses[0]?.registration, 'dynamic');
  assertNoSecrets([status.stdout, status.stderr], witness.secrets(), 'status --json');

  const table = await runCliProcess(cli, ['status'], { env: { COLUMNS: '200' } }); // wide enough for every column
  ok(table, 'status');
  assert.match(
    table.stdout,
    /^SERVER\s+ISSUER\s+CLIENT ID\s+REGISTRATION\s+ACCESS EXPIRES\s+REFRESH AGE\s+LAST REFRESH\s+STATE\n/,
  );
  // The token lives 1 h: "in 59m 59s" a moment after sign-in, or "in 1h" when status runs within
  // half a second of it (the display rounds to the second).
  assert.match(table.stdout, /dynamic\s+in (?:\d+m(?: \d+s)?|1h)\s.*\bok\n/);
  assertNoSecrets([table.stdout, table.stderr], witness.secrets(), 'status');

  const doctor = await runCliProcess(cli, ['doctor']);
  ok(doctor, 'doctor');
  assert.match(doctor.stdout, /No problems found/);
  assert.match(doctor.stdout, /reachability\s+server http:\/\/127\.0\.0\.1:\d+ answered HTTP 401/);
  assert.match(doctor.stdout, /reachability\s+authorization server http:\/\/127\.0\.0\.1:\d+ answered HTTP 200/);
  assertNoSecrets([doctor.stdout, doctor.stderr], witness.secrets(), 'doctor');

  await chmod(file, 0o644);
  const sick = await runCliProcess(cli, ['doctor', server.url, '--json']);
  assert.equal(sick.code, 1, `doctor exits 1 on a problem\n${sick.stdout}${sick.stderr}`);
  const report = JSON.parse(sick.stdout) as {
    ok: boolean;
    checks: Array<{ check: string; status: string; subject: string; message: string; fix?: string }>;
  };
  assert.equal(report.ok, false);
  const bad = report.checks.filter((c) => c.status === 'fail');
  assert.equal(bad.length, 1, 'exactly the file mode problem');
  assert.equal(bad[0]?.check, 'file_mode');
  assert.equal(bad[0]?.subject, file);
  assert.match(bad[0]?.message ?? '', /0644/);
  assert.equal(bad[0]?.fix, `chmod 600 ${file}`);
  const human = await runCliProcess(cli, ['doctor']);
  assert.equal(human.code, 1);
  assert.ok(human.stdout.includes(`fix: chmod 600 ${file}`), 'the human report names the fix');
  await chmod(file, 0o600);

  // `authkeep proxy` bridges an SDK client on stdio to the server with the stored credentials.
  const client = new Client({ name: 'authkeep-cli-test', version: '0.0.0' });
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [BIN, 'proxy', server.url, '--allow-http'],
    env: cli.env as Record<string, string>,
    stderr: 'pipe',
  });
  await client.connect(transport);
  const echoed = await client.callTool({ name: 'echo', arguments: { text: 'through the proxy' } });
  assert.deepEqual(
    (echoed.content as Array<{ text?: string }>).map((c) => c.text),
    ['through the proxy'],
  );
  await client.close();

  const before = as.audit.counts().revocations;
  const logout = await runCliProcess(cli, ['logout', server.url, '--allow-http']);
  ok(logout, 'logout');
  assert.match(logout.stdout, /Revoked the tokens at .* and deleted the stored credentials/);
  assert.equal(as.audit.counts().revocations - before, 1, 'the AS audit shows the revocation');
  assertNoSecrets([logout.stdout, logout.stderr], witness.secrets(), 'logout');

  const after = await runCliProcess(cli, ['token', server.url, '--allow-http']);
  assert.equal(after.code, 4, 'needs-auth exits 4');
  assert.equal(after.stdout, '');
  assert.equal(
    after.stderr,
    `authkeep: needs-auth (no_credentials): no stored credentials. Run: authkeep login ${server.url}\n`,
  );
});

test('login --no-browser prints the URL and completes with the pasted redirect URL', async (t) => {
  const { server } = await startServers(t, 3600);
  const cli = await cliEnv(t);
  // $BROWSER must not be used: make it a command that fails loudly if it is.
  const child = spawnCli(cli, ['login', server.url, '--no-browser', '--allow-http'], {
    env: { BROWSER: 'false' },
    keepStdinOpen: true,
  });
  const done = collect(child);
  const [, authorizeUrl] = await waitForOutput(
    child.stderr,
    /\n {2}(http:\/\/\S+)\n[\s\S]*Paste that whole address here/,
  );
  const pasted = await redirectUrlToPaste(authorizeUrl as string);
  child.stdin.end(`${pasted}\n`);
  const result = await done;
  ok(result, 'login --no-browser');
  assert.match(result.stdout, /Signed in to /);
  assertNoSecrets(
    [result.stdout, result.stderr],
    { 'the pasted code': new URL(pasted).searchParams.get('code') as string },
    'the login output',
  );
  const token = await runCliProcess(cli, ['token', server.url, '--allow-http']);
  ok(token, 'token after --no-browser login');
});

test('16 concurrent `authkeep token` processes at an expiry refresh once at the AS and print the same token', async (t) => {
  const { as, server } = await startServers(t, 2);
  const cli = await cliEnv(t);
  ok(await runCliProcess(cli, ['login', server.url, '--allow-http']), 'login');
  const first = await runCliProcess(cli, ['token', server.url, '--allow-http']);
  ok(first, 'first token');

  // Wait until the access token is past its refresh point (indeed past its expiry).
  const [status] = JSON.parse((await runCliProcess(cli, ['status', server.url, '--json'])).stdout) as Array<{
    accessTokenExpiresAt: string;
  }>;
  await untilPast(Date.parse(status!.accessTokenExpiresAt));

  // Line the 16 processes up at the refresh lock: hold it until every one of them says it waits
  // for it (its `refresh.waiting` event), then release it. The token the first of them gets lives
  // an hour (the AS's TTL for this resource, raised now), so the 15 others, taking the lock in
  // turn, adopt it however long that takes.
  as.addResource({
    resource: server.resource,
    scopes: ['mcp:read', 'mcp:write', 'mcp:admin'],
    accessTokenTtlSeconds: 3600,
  });
  // Every child started and ready before any runs (a start barrier on their own word): the
  // bundled CLI, as it ships, loaded only at "go".
  const bin = await bundledCli();
  const gated = Array.from({ length: 16 }, () =>
    spawnGatedCli(cli, bin, ['token', server.url, '--allow-http', '--debug']),
  );
  const children = gated.map((g) => g.child);
  const results = children.map((child) => collect(child));
  await Promise.all(gated.map((g) => g.ready));
  const layout = storeLayout(cli.home);
  // Declared bounds at the most a waiter honours (4x its own): the test holds this lock for as long
  // as the 16 take to line up, which on a saturated machine is longer than a refresh ever takes.
  const barrier = await acquireLock(layout.locksDir, layout.lockName(recordKey(server.url), 'refresh'), {
    purpose: 'test-barrier',
    staleMs: 40_000,
    maxHoldMs: 480_000,
  });
  const countsBefore = as.audit.counts();
  try {
    const t0 = Date.now();
    for (const g of gated) g.go();
    await Promise.all(children.map((child) => waitForOutput(child.stderr, /"event":"refresh\.waiting"/)));
    t.diagnostic(`16 processes waiting at the refresh lock ${Date.now() - t0} ms after "go"`);
  } finally {
    await barrier.release();
  }
  const t1 = Date.now();
  const outs = await Promise.all(results);
  t.diagnostic(`all 16 done ${Date.now() - t1} ms after the release`);

  for (const [i, r] of outs.entries()) assert.equal(r.code, 0, `process ${i} exits 0\n${r.stderr}`);
  const tokens = new Set(outs.map((r) => r.stdout));
  assert.equal(tokens.size, 1, 'all 16 print the same token');
  const token = [...tokens][0] as string;
  assert.match(token, /^[\w-]+\.[\w-]+\.[\w-]+\n$/);
  assert.notEqual(token, first.stdout, 'a new token: the expired one was refreshed');
  const counts = as.audit.counts();
  assert.equal(counts.refreshGrants - countsBefore.refreshGrants, 1, 'exactly one refresh grant at the AS');
  assert.equal(counts.refreshReuses, 0, 'no refresh token was reused');
  assert.equal(counts.revokedGrants, 0, 'no grant was revoked');
  const call = await callTool(
    (input, init) =>
      fetch(input, {
        ...init,
        headers: { ...(init?.headers as Record<string, string>), authorization: `Bearer ${token.trim()}` },
      }),
    server.url,
  );
  assert.equal(call.status, 200, 'the token is valid at the MCP server');
  await call.arrayBuffer();
});
