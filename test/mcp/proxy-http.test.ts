/**
 * proxy-http: the proxy's node:http fetch against a real loopback HTTP server: what the proxy
 * relies on from fetch (headers and length sent, a streaming body, aborts, failures shaped as
 * undici's, undici's timeouts, 3xx not followed, null bodies, a decoded gzip body, a JSON answer
 * read once by any of a Response's ways), and that any other request goes to the fallback.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { nodeHttpFetch } from '../../src/mcp/proxy-http.js';

type Handler = (req: IncomingMessage, res: ServerResponse, body: string) => void;

async function serve(t: { after(fn: () => unknown): void }, handler: Handler): Promise<string> {
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (body += chunk));
    req.on('end', () => handler(req, res, body));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`;
}

const noFallback: typeof fetch = () => Promise.reject(new Error('the fallback was used'));

test('proxy-http: a POST carries its headers and length; the answer has status, headers, url and body', async (t) => {
  let seen: IncomingMessage | undefined;
  let seenBody = '';
  const url = await serve(t, (req, res, body) => {
    seen = req;
    seenBody = body;
    res.setHeader('content-type', 'application/json');
    res.setHeader('mcp-session-id', 'abc');
    res.appendHeader('set-cookie', ['a=1', 'b=2']);
    res.end('{"ok":true}');
  });
  const fetchFn = nodeHttpFetch(noFallback);
  const body = JSON.stringify({ text: 'héllo' });
  const response = await fetchFn(url, {
    method: 'POST',
    redirect: 'manual',
    headers: new Headers({ 'content-type': 'application/json', authorization: 'Bearer t0k' }),
    body,
  });
  assert.equal(response.status, 200);
  assert.equal(response.ok, true);
  assert.equal(response.url, url);
  assert.equal(response.headers.get('mcp-session-id'), 'abc');
  assert.deepEqual(response.headers.getSetCookie(), ['a=1', 'b=2']);
  assert.deepEqual(await response.json(), { ok: true });
  assert.equal(seen?.method, 'POST');
  assert.equal(seen?.headers.authorization, 'Bearer t0k');
  assert.equal(seen?.headers['content-type'], 'application/json');
  assert.equal(seen?.headers['content-length'], String(Buffer.byteLength(body)));
  assert.equal(seen?.headers.accept, '*/*');
  assert.equal(seenBody, body);
});

test('proxy-http: an event stream is read as it comes, and the caller aborting it ends it', async (t) => {
  let serverSawClose!: () => void;
  const closed = new Promise<void>((resolve) => (serverSawClose = resolve));
  const url = await serve(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write('event: endpoint\ndata: /messages\n\n');
    res.on('close', () => serverSawClose());
  });
  const controller = new AbortController();
  const response = await nodeHttpFetch(noFallback)(url, { redirect: 'manual', signal: controller.signal });
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  const first = await reader.read();
  assert.equal(new TextDecoder().decode(first.value), 'event: endpoint\ndata: /messages\n\n');
  const next = reader.read();
  controller.abort();
  await assert.rejects(next, { name: 'AbortError' });
  await closed;
});

test('proxy-http: aborted before the answer, it rejects with the signal reason', async (t) => {
  const url = await serve(t, () => {
    // never answers
  });
  const controller = new AbortController();
  const pending = nodeHttpFetch(noFallback)(url, {
    method: 'POST',
    body: '{}',
    redirect: 'manual',
    signal: controller.signal,
  });
  controller.abort();
  await assert.rejects(pending, { name: 'AbortError' });
  const already = AbortSignal.abort(new Error('gone'));
  await assert.rejects(nodeHttpFetch(noFallback)(url, { redirect: 'manual', signal: already }), { message: 'gone' });
});

test('proxy-http: a refused connection rejects like undici: TypeError fetch failed, cause ECONNREFUSED', async () => {
  const server = http.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  server.close();
  await once(server, 'close');
  await assert.rejects(
    nodeHttpFetch(noFallback)(`http://127.0.0.1:${port}/mcp`, { method: 'POST', body: '{}', redirect: 'manual' }),
    (err: unknown) =>
      err instanceof TypeError &&
      err.message === 'fetch failed' &&
      (err.cause as { code?: string } | undefined)?.code === 'ECONNREFUSED',
  );
});

test("proxy-http: no headers in time fails the fetch, a silent body errors, each with undici's timeout as the cause", async (t) => {
  const url = await serve(t, (req, res) => {
    if (req.method === 'POST') return; // never answers
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write('data: one\n\n'); // then silence
  });
  const quickHeaders = nodeHttpFetch(noFallback, { headersMs: 20, bodyIdleMs: 600_000 });
  await assert.rejects(
    quickHeaders(url, { method: 'POST', body: '{}', redirect: 'manual' }),
    (err: unknown) =>
      err instanceof TypeError &&
      err.message === 'fetch failed' &&
      (err.cause as { code?: string } | undefined)?.code === 'UND_ERR_HEADERS_TIMEOUT',
  );
  const quickBody = nodeHttpFetch(noFallback, { headersMs: 600_000, bodyIdleMs: 20 });
  const response = await quickBody(url, { redirect: 'manual' });
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  await reader.read().catch(() => undefined); // the first event, unless the silence already ended it
  await assert.rejects(
    (async () => {
      for (;;) if ((await reader.read()).done) return;
    })(),
    (err: unknown) =>
      err instanceof TypeError &&
      err.message === 'terminated' &&
      (err.cause as { code?: string } | undefined)?.code === 'UND_ERR_BODY_TIMEOUT',
  );
});

test('proxy-http: a body cut short errors with TypeError terminated: the read of a stream, the fetch of a JSON answer', async (t) => {
  const url = await serve(t, (req, res) => {
    const type = req.url === '/mcp' ? 'application/json' : 'text/event-stream';
    res.writeHead(200, { 'content-type': type, 'content-length': '100' });
    res.write('{"partial":', () => res.socket?.destroy());
  });
  const fetchFn = nodeHttpFetch(noFallback);
  await assert.rejects(fetchFn(url, { method: 'POST', body: '{}', redirect: 'manual' }), {
    name: 'TypeError',
    message: 'terminated',
  });
  const streamed = await fetchFn(`${url}/stream`, { redirect: 'manual' });
  await assert.rejects(streamed.text(), { name: 'TypeError', message: 'terminated' });
});

test('proxy-http: a JSON answer reads like a Response: once, by any method, through body or a clone too', async (t) => {
  const url = await serve(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'mcp-session-id': 's1' });
    res.end('{"jsonrpc":"2.0","id":1,"result":{"text":"héllo"}}');
  });
  const fetchFn = nodeHttpFetch(noFallback);
  const post = () => fetchFn(url, { method: 'POST', body: '{}', redirect: 'manual' });
  const expected = { jsonrpc: '2.0', id: 1, result: { text: 'héllo' } };

  const first = await post();
  assert.ok(first instanceof Response);
  assert.equal(first.status, 200);
  assert.equal(first.url, url);
  assert.equal(first.headers.get('mcp-session-id'), 's1');
  assert.equal(first.bodyUsed, false);
  const copy = first.clone();
  assert.deepEqual(await first.json(), expected);
  assert.equal(first.bodyUsed, true);
  await assert.rejects(first.text(), TypeError);
  assert.throws(() => first.clone(), TypeError);
  assert.equal(copy.url, url);
  assert.equal(new TextDecoder().decode(await copy.arrayBuffer()), JSON.stringify(expected));

  const viaStream = await post();
  const body = viaStream.body as ReadableStream<Uint8Array>;
  assert.deepEqual(JSON.parse(await new Response(body).text()), expected);
  assert.equal(viaStream.bodyUsed, true);
  await assert.rejects(viaStream.json(), TypeError);

  const cancelled = await post();
  await cancelled.body?.cancel();
  assert.deepEqual(await (await post()).json(), expected);
  assert.equal((await (await post()).blob()).size, Buffer.byteLength(JSON.stringify(expected)));
});

test('proxy-http: a redirect comes back as it is; 204 and HEAD have no body; gzip is decoded', async (t) => {
  const url = await serve(t, (req, res) => {
    if (req.url === '/mcp' && req.method === 'GET') {
      res.writeHead(302, { location: '/elsewhere' });
      res.end('moved');
    } else if (req.method === 'DELETE') {
      res.writeHead(204);
      res.end();
    } else if (req.method === 'HEAD') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end();
    } else {
      res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
      res.end(gzipSync('{"zipped":true}'));
    }
  });
  const fetchFn = nodeHttpFetch(noFallback);
  const redirect = await fetchFn(url, { redirect: 'manual' });
  assert.equal(redirect.status, 302);
  assert.equal(redirect.headers.get('location'), '/elsewhere');
  assert.equal(await redirect.text(), 'moved');
  const deleted = await fetchFn(url, { method: 'DELETE', redirect: 'manual' });
  assert.equal(deleted.status, 204);
  assert.equal(deleted.body, null);
  const head = await fetchFn(url, { method: 'HEAD', redirect: 'manual' });
  assert.equal(head.body, null);
  const zipped = await fetchFn(url, { method: 'POST', body: '{}', redirect: 'manual' });
  assert.deepEqual(await zipped.json(), { zipped: true });
});

test('proxy-http: a Request, a redirect to follow, or another kind of body goes to the fallback', async () => {
  const calls: unknown[] = [];
  const fallback: typeof fetch = async (input) => {
    calls.push(input);
    return new Response('fallback');
  };
  const fetchFn = nodeHttpFetch(fallback);
  await fetchFn(new Request('http://127.0.0.1:1/a'));
  await fetchFn('http://127.0.0.1:1/b');
  await fetchFn('http://127.0.0.1:1/c', { method: 'POST', body: new URLSearchParams({ a: '1' }), redirect: 'manual' });
  await fetchFn('data:text/plain,x', { redirect: 'manual' });
  assert.equal(calls.length, 4);
});
