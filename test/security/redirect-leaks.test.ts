/**
 * Attack class: credentials leaking on redirect. An MCP server answers a request that carries the
 * user's bearer token or `--header` values (an API key) with a 307 to another origin, or a caller
 * hands keeper.fetch a URL on another origin. Fetch follows redirects by default and strips only
 * `Authorization` when it crosses origins, so the other origin would receive every other header.
 * What must NOT happen: any request carrying the token or a user header reaches an origin other
 * than the server's. Real hostile servers on two loopback origins: one redirects, the other
 * records whatever reaches it.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { IncomingHttpHeaders } from 'node:http';
import { PassThrough } from 'node:stream';
import { type TestContext, test } from 'node:test';
import { AuthKeeper, AuthkeepError } from '../../src/index.js';
import { runProxy } from '../../src/mcp/proxy.js';
import { tempHome } from '../helpers/bed.js';
import { asMetadata, type HostileServer, startHostileServer } from '../helpers/hostile-server.js';
import { type HostileWorld, hostileWorld } from '../helpers/hostile-world.js';

const API_KEY = 'api-key-must-stay-home';
const INIT = '{"jsonrpc":"2.0","id":1,"method":"ping"}';

/** Another loopback origin that answers 200 to anything and records what arrived. */
async function collector(t: TestContext): Promise<HostileServer> {
  const server = await startHostileServer();
  t.after(() => server.close());
  for (const method of ['GET', 'POST', 'DELETE']) {
    for (const pathname of ['/mcp', '/stolen', '/']) server.on(method, pathname, { json: {} });
  }
  return server;
}

/** Did any request at `server` carry the token or the API key? */
function credentialsReceived(server: HostileServer): IncomingHttpHeaders[] {
  return server.requests
    .map((r) => r.headers)
    .filter(
      (h) => h.authorization !== undefined || h['x-api-key'] !== undefined || JSON.stringify(h).includes(API_KEY),
    );
}

/** A signed-in keeper for a hostile world, and the world. */
async function signedIn(t: TestContext): Promise<{ w: HostileWorld; keeper: AuthKeeper }> {
  const w = await hostileWorld(t);
  const keeper = new AuthKeeper({ home: w.home, allowInsecureLoopback: true, openAuthorizationUrl: w.approve() });
  await keeper.login(w.mcpUrl);
  return { w, keeper };
}

test('keeper.fetch(serverUrl) handed a URL on another origin refuses it (origin_mismatch, field url) and sends nothing there', async (t) => {
  const { w, keeper } = await signedIn(t);
  const other = await collector(t);
  await assert.rejects(
    keeper.fetch(w.mcpUrl)(`${other.url}/mcp`, { method: 'POST', headers: { 'x-api-key': API_KEY }, body: INIT }),
    (err: unknown) => {
      assert.ok(err instanceof AuthkeepError, String(err));
      assert.equal(err.code, 'origin_mismatch');
      assert.equal(err.field, 'url');
      assert.ok(!err.message.includes('access-token-1'), 'the message carries no token');
      return true;
    },
  );
  assert.equal(other.requests.length, 0, 'the other origin received no request');
});

test('keeper.fetch: a 307 to another loopback origin is not followed; the token and the user header stay on the server', async (t) => {
  const { w, keeper } = await signedIn(t);
  const other = await collector(t);
  w.server.on('POST', '/mcp', { status: 307, headers: { location: `${other.url}/stolen` }, body: '' });
  w.server.on('GET', '/mcp', { status: 308, headers: { location: `${other.url}/stolen` }, body: '' });
  const fetchMcp = keeper.fetch(w.mcpUrl);
  const post = await fetchMcp(w.mcpUrl, { method: 'POST', headers: { 'x-api-key': API_KEY }, body: INIT });
  await post.body?.cancel();
  const get = await fetchMcp(new Request(w.mcpUrl, { headers: { 'x-api-key': API_KEY } }));
  await get.body?.cancel();
  assert.deepEqual(credentialsReceived(other), [], 'no token or user header reached the other origin');
  assert.equal(other.requests.length, 0, 'nothing followed the redirect');
  assert.equal(post.status, 307, 'the caller sees the redirect as the answer');
  assert.equal(get.status, 308);
  assert.equal(post.headers.get('location'), `${other.url}/stolen`);
});

test('keeper.fetch: a redirect chain that leaves the origin on its second hop stops before leaving', async (t) => {
  const { w, keeper } = await signedIn(t);
  const other = await collector(t);
  w.server.on('POST', '/mcp', { status: 307, headers: { location: '/mcp-moved' }, body: '' });
  w.server.on('POST', '/mcp-moved', { status: 307, headers: { location: `${other.url}/stolen` }, body: '' });
  const response = await keeper.fetch(w.mcpUrl)(w.mcpUrl, {
    method: 'POST',
    headers: { 'x-api-key': API_KEY },
    body: INIT,
  });
  await response.body?.cancel();
  assert.equal(response.status, 307);
  assert.equal(other.requests.length, 0, 'the second hop was not followed');
  const moved = w.server.requestsTo('POST', '/mcp-moved');
  assert.equal(moved.length, 1, 'the same-origin hop was followed');
  assert.equal(moved[0]?.headers.authorization, 'Bearer access-token-1', 'with the token, on the same origin');
  assert.equal(moved[0]?.body, INIT, 'and the body, re-sent on 307');
});

test('keeper.dpopFetch (the SDK adapter fetch): a DPoP-bound token and its proof do not follow a 307 to another origin', async (t) => {
  const w = await hostileWorld(t);
  // The AS binds tokens to a DPoP key (RFC 9449): its metadata offers ES256, its tokens say DPoP.
  w.server
    .json(
      '/.well-known/oauth-authorization-server',
      asMetadata(w.origin, w.origin, { revocation_endpoint: undefined, dpop_signing_alg_values_supported: ['ES256'] }),
    )
    .on('POST', '/token', (req) => ({
      json: {
        access_token: 'dpop-access-1',
        token_type: req.headers.dpop ? 'DPoP' : 'Bearer',
        expires_in: 3600,
        refresh_token: 'refresh-token-1',
      },
    }));
  const keeper = new AuthKeeper({ home: w.home, allowInsecureLoopback: true, openAuthorizationUrl: w.approve() });
  await keeper.login(w.mcpUrl);
  assert.equal((await keeper.getToken(w.mcpUrl)).tokenType, 'DPoP', 'the token is DPoP-bound');
  const other = await collector(t);
  w.server.on('POST', '/mcp', { status: 307, headers: { location: `${other.url}/stolen` }, body: '' });
  // As the SDK transport writes it: Bearer <token>, its own headers, redirects left to the fetch.
  const response = await keeper.dpopFetch(w.mcpUrl)(w.mcpUrl, {
    method: 'POST',
    headers: { authorization: 'Bearer dpop-access-1', 'x-api-key': API_KEY },
    body: INIT,
  });
  await response.body?.cancel();
  assert.ok(
    w.server.requestsTo('POST', '/mcp').some((r) => r.headers.dpop !== undefined),
    'sent with a proof',
  );
  assert.equal(response.status, 307, 'the redirect is handed back');
  assert.deepEqual(
    other.requests.filter(
      (r) =>
        r.headers.dpop !== undefined || r.headers.authorization !== undefined || r.headers['x-api-key'] !== undefined,
    ),
    [],
    'no token, proof or user header reached the other origin',
  );
  assert.equal(other.requests.length, 0);
});

/**
 * A real proxy (runProxy, the code behind `authkeep proxy`) in front of a server that redirects
 * every request (the probe, the transports' POST, GET and DELETE) to `other`; an MCP client's
 * `initialize` on its stdin. Resolves once the proxy answered it (with an error: the server never
 * answered) and stopped.
 */
async function proxyThroughRedirects(
  t: TestContext,
  other: HostileServer,
  headers: Record<string, string>,
  reconnectAttempts = 1,
) {
  const server = await startHostileServer();
  t.after(() => server.close());
  const away = { status: 307, headers: { location: `${other.url}/mcp` }, body: '' };
  server.on('POST', '/mcp', away).on('GET', '/mcp', away).on('DELETE', '/mcp', away);
  const home = await tempHome(t);
  const stdin = new PassThrough();
  const stdout = new PassThrough();
  const answered = once(stdout, 'data');
  const running = runProxy({
    serverUrl: `${server.url}/mcp`,
    allowHttp: true,
    headers,
    home,
    keeperOptions: { home, allowInsecureLoopback: true },
    stdin,
    stdout,
    stderr: new PassThrough(),
    logFile: false,
    reconnect: { attempts: reconnectAttempts, initialDelayMs: 1 },
  }).catch((err: unknown) => err);
  stdin.write(
    `${JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'test', version: '0' } } })}\n`,
  );
  const [line] = (await answered) as [Buffer];
  stdin.end();
  await running;
  return { server, answer: JSON.parse(line.toString()) as { error?: unknown } };
}

test('proxy --header x-api-key: a server redirecting the probe and the transport to another origin gets no header there', async (t) => {
  const other = await collector(t);
  const { server, answer } = await proxyThroughRedirects(t, other, { 'x-api-key': API_KEY });
  assert.ok(answer.error, 'the client gets an error, the redirect was not followed');
  assert.ok(server.requests.length > 1, 'the proxy probed the server and tried a transport');
  assert.ok(
    server.requests.every((r) => r.headers['x-api-key'] === API_KEY),
    'the server itself received the header',
  );
  assert.deepEqual(credentialsReceived(other), [], 'the other origin received neither the API key nor a token');
  assert.equal(other.requests.length, 0);
});

test('proxy: a redirect to another origin is not retried (a retry would get the same answer)', async (t) => {
  const other = await collector(t);
  const once = await proxyThroughRedirects(t, other, { 'x-api-key': API_KEY }, 1);
  const allowedSix = await proxyThroughRedirects(t, other, { 'x-api-key': API_KEY }, 6);
  assert.ok(allowedSix.answer.error, 'the client gets an error');
  assert.equal(
    allowedSix.server.requests.length,
    once.server.requests.length,
    'with six connection attempts allowed, the proxy sent what one attempt sends',
  );
  assert.equal(other.requests.length, 0);
});

test('proxy --header Authorization (authkeep does not sign in): a 307 to another origin does not carry it there', async (t) => {
  const other = await collector(t);
  const { server, answer } = await proxyThroughRedirects(t, other, {
    Authorization: `Bearer ${API_KEY}`,
    'x-api-key': API_KEY,
  });
  assert.ok(answer.error, 'the client gets an error, the redirect was not followed');
  assert.ok(server.requests.length > 0, 'the proxy talked to the server');
  assert.deepEqual(credentialsReceived(other), [], 'the other origin received neither header');
  assert.equal(other.requests.length, 0);
});
