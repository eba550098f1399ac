/**
 * The right exit code and the right culprit (issue 14, item 5), as real `authkeep` processes
 * against the real oidc-provider and MCP server, one of them then stopped: an authorization server
 * that is merely down makes `token` exit 1 (not 4: a sign-in could not succeed, and the stored
 * grant is still good), naming the authorization server; a stopped MCP server is named as such by
 * `login` and by the proxy; "connection refused" reads as words, never as ECONNREFUSED, "fetch
 * failed" or an "unexpected error ... report it".
 */
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { startAuthorizationServer, startProtectedMcpServer } from '../../arena/testbed/index.js';
import { type CliResult, cliEnv, runCliProcess } from '../helpers/cli-run.js';
import { expireStoredTokens } from '../helpers/records.js';

async function start(t: { after(fn: () => unknown): void }) {
  const as = await startAuthorizationServer();
  t.after(() => as.close().catch(() => undefined));
  const server = await startProtectedMcpServer({ authorizationServer: as, discovery: 'header' });
  t.after(() => server.close().catch(() => undefined));
  return { as, server };
}

function plainWords(result: CliResult, what: string): void {
  const all = result.stdout + result.stderr;
  assert.match(all, /connection refused/, `${what}: says "connection refused"`);
  for (const bad of [/ECONNREFUSED/, /fetch failed/, /unexpected error/, /report it/]) {
    assert.doesNotMatch(all, bad, `${what}: no ${bad}`);
  }
}

test('token with the authorization server down exits 1 naming it; status still says ok', async (t) => {
  const { as, server } = await start(t);
  const cli = await cliEnv(t);
  const login = await runCliProcess(cli, ['login', server.url, '--allow-http']);
  assert.equal(login.code, 0, login.stderr);
  await expireStoredTokens(cli.home, server.url);
  await as.close();

  const token = await runCliProcess(cli, ['token', server.url, '--allow-http']);
  assert.equal(token.code, 1, `exit 1, not 4 (needs-auth)\n${token.stderr}`);
  assert.equal(token.stdout, '');
  assert.ok(
    token.stderr.includes(`could not reach the authorization server ${as.issuer}: `),
    `names the authorization server\n${token.stderr}`,
  );
  assert.doesNotMatch(token.stderr, /needs-auth|Run: authkeep login/, 'no sign-in suggested');
  assert.match(token.stderr, /\nhint: .*no login needed/);
  plainWords(token, 'token');

  const status = await runCliProcess(cli, ['status', server.url, '--json']);
  assert.equal(status.code, 0, status.stderr);
  assert.equal((JSON.parse(status.stdout) as Array<{ state: string }>)[0]?.state, 'ok', 'the sign-in is kept');
});

test('login with the MCP server down names the MCP server; with its AS down, the AS', async (t) => {
  const { as, server } = await start(t);
  const cli = await cliEnv(t);
  await as.close();
  const asDown = await runCliProcess(cli, ['login', server.url, '--allow-http']);
  assert.equal(asDown.code, 1, asDown.stderr);
  assert.ok(
    asDown.stderr.includes(`could not reach the authorization server ${as.issuer}: `),
    `names the AS\n${asDown.stderr}`,
  );
  plainWords(asDown, 'login, AS down');

  await server.close();
  const serverDown = await runCliProcess(cli, ['login', server.url, '--allow-http']);
  assert.equal(serverDown.code, 1, serverDown.stderr);
  assert.ok(
    serverDown.stderr.includes(`could not reach the MCP server ${server.url}: `),
    `names the MCP server\n${serverDown.stderr}`,
  );
  assert.match(serverDown.stderr, /\[server_unreachable at serverUrl\]\nhint: check that the MCP server is up/);
  plainWords(serverDown, 'login, MCP server down');
});

test('proxy with the MCP server down stops naming it, on stderr and in its log', async (t) => {
  const { server } = await start(t);
  const cli = await cliEnv(t);
  await server.close();
  const proxy = await runCliProcess(cli, ['proxy', server.url, '--allow-http']);
  assert.equal(proxy.code, 1, proxy.stderr);
  assert.ok(proxy.stderr.includes(`authkeep: could not reach the MCP server ${server.url}: `), proxy.stderr);
  plainWords(proxy, 'proxy');
  const logs = path.join(cli.home, 'logs');
  const [file] = (await readdir(logs)).filter((f) => f.startsWith('proxy-'));
  const log = await readFile(path.join(logs, file as string), 'utf8');
  assert.match(log, /proxy stopped: could not reach the MCP server .*: connection refused/);
  assert.doesNotMatch(log, /ECONNREFUSED|fetch failed/);
});
