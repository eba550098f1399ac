/**
 * One version, read from package.json, wherever authkeep prints or sends it: `authkeep --version`,
 * the User-Agent of its HTTP requests and the unauthenticated probe's MCP `clientInfo`, seen by a
 * real HTTP server on 127.0.0.1.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { runCli } from '../src/cli/program.js';
import { probeServer } from '../src/oauth/protected-resource.js';
import { USER_AGENT, VERSION } from '../src/version.js';
import { fakeDeps } from './helpers/cli-fakes.js';

const PACKAGE_VERSION = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

test("the version is package.json's, and `authkeep --version` prints it", async () => {
  assert.equal(VERSION, PACKAGE_VERSION);
  assert.equal(USER_AGENT, `authkeep/${PACKAGE_VERSION}`);
  const deps = fakeDeps();
  assert.equal(await runCli(['--version'], deps), 0);
  assert.equal(deps.stdout.text, `${PACKAGE_VERSION}\n`);
});

test('the probe sends the version in its User-Agent and its MCP clientInfo', async (t) => {
  const seen: Array<{ headers: IncomingHttpHeaders; body: string }> = [];
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (body += chunk));
    req.on('end', () => {
      seen.push({ headers: req.headers, body });
      res.writeHead(401, { 'www-authenticate': 'Bearer' }).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise((resolve) => server.close(resolve)));
  const { port } = server.address() as AddressInfo;

  const result = await probeServer(`http://127.0.0.1:${port}/mcp`, { allowInsecureLoopback: true });
  assert.equal(result.status, 401);
  assert.equal(seen.length, 1, 'a 401 to the modern request decides: no legacy retry');
  const [probe] = seen;
  assert.ok(probe, 'the server saw the probe');
  assert.equal(probe.headers['user-agent'], `authkeep/${PACKAGE_VERSION}`);
  const message = JSON.parse(probe.body) as {
    method: string;
    params: { _meta: Record<string, unknown> };
  };
  assert.equal(message.method, 'server/discover');
  assert.deepEqual(message.params._meta['io.modelcontextprotocol/clientInfo'], {
    name: 'authkeep',
    version: PACKAGE_VERSION,
  });
});

test('a legacy server refusing server/discover is asked with initialize, which carries the version too', async (t) => {
  const seen: Array<{ headers: IncomingHttpHeaders; body: string }> = [];
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (body += chunk));
    req.on('end', () => {
      seen.push({ headers: req.headers, body });
      const method = (JSON.parse(body) as { method: string }).method;
      if (method === 'initialize') res.writeHead(401, { 'www-authenticate': 'Bearer' }).end();
      else res.writeHead(400).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise((resolve) => server.close(resolve)));
  const { port } = server.address() as AddressInfo;

  const result = await probeServer(`http://127.0.0.1:${port}/mcp`, { allowInsecureLoopback: true });
  assert.equal(result.status, 401);
  assert.equal(seen.length, 2);
  const legacy = seen[1];
  assert.ok(legacy);
  assert.equal(legacy.headers['user-agent'], `authkeep/${PACKAGE_VERSION}`);
  const message = JSON.parse(legacy.body) as {
    method: string;
    params: { clientInfo: { name: string; version: string } };
  };
  assert.equal(message.method, 'initialize');
  assert.deepEqual(message.params.clientInfo, { name: 'authkeep', version: PACKAGE_VERSION });
});
