/**
 * proxy-http: the fetch the proxy sends its MCP requests with: node:http/https over keep-alive
 * agents, returning a `Response`, for the one shape of request the proxy's fetch chain makes (a
 * string or URL, a string or bytes body or none, `redirect: 'manual'`, as origin-bound-fetch.ts
 * always asks). Any other request goes to the global fetch unchanged.
 *
 * Why not the global fetch (Node's bundled undici): a tool call through the proxy is one request,
 * and on Node 20 undici's fetch spends about 0.5 ms of CPU on it (WHATWG streams, its request and
 * response objects, header validation) against about 0.05 ms for node:http, measured with
 * bench/proxy.bench.ts and the proxy's CPU time per call (/proc/<pid>/stat). That was most of what
 * the proxy added to a call on loopback, whose goal is +0.3 ms. So this file keeps what the proxy
 * relies on from fetch and no more:
 *   - a network failure rejects as undici's does: TypeError `fetch failed` with the error (and its
 *     `code`, e.g. ECONNREFUSED) as `cause`, which proxy-errors.ts and oauth/http.ts read;
 *   - an abort (the caller's signal) rejects with the signal's reason, and errors a body still
 *     streaming; a body cut short errors as undici's does (TypeError `terminated`);
 *   - redirects are never followed (the caller asked for `manual`), 3xx come back as they are;
 *   - undici's default timeouts are kept: no answer's headers within 300 s fails the fetch, and a
 *     body silent for 300 s (an SSE stream over a connection that died without a word) errors,
 *     each with undici's error as the `cause`, so the transports give up and reconnect as before;
 *   - requests carry what fetch adds when the caller did not (`accept: *\/*`, a content type for a
 *     string body, a content length, `user-agent: node`); no body for HEAD, 204, 205 and 304; a
 *     gzip, deflate or br body (which the proxy does not ask for) is decoded;
 *   - a JSON answer (every tool call's, from a server that answers in JSON) is read whole before
 *     the Response is handed over, as a BytesResponse: its text(), json() and arrayBuffer() read
 *     the bytes directly, and a stream is made only if its `body` is asked for. On Node 20 that
 *     took the proxy's time from a tool call's answer arriving to its line on stdout from about
 *     0.23 ms (a standard Response over a stream) to 0.17 ms (timed inside the proxy, medians of
 *     1,000 calls). Any other answer (an SSE stream) is a standard Response whose body streams
 *     with back-pressure (the socket pauses while the reader does not read). A JSON body cut
 *     short therefore rejects the fetch itself (TypeError `terminated`), where undici would
 *     reject the read after it.
 *
 * Not for: requests to authorization servers (oauth/http.ts, the global fetch), or anything but
 * the proxy's own requests.
 */
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import type { Readable } from 'node:stream';
import zlib from 'node:zlib';

/**
 * Idle connections are closed after 4 s, or 1 s before the server's `Keep-Alive: timeout=` hint
 * if that is sooner (node:http reads it), as undici does: a request is then not sent on a
 * connection the server is closing. A connection in use (an SSE stream) is not timed out.
 */
const agentOptions = { keepAlive: true, timeout: 4_000 };
const agents = {
  'http:': new http.Agent(agentOptions),
  'https:': new https.Agent(agentOptions),
} as const;

const NULL_BODY_STATUS = new Set([101, 103, 204, 205, 304]);
/** application/json and application/<x>+json. */
const JSON_TYPE = /^\s*application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i;

/** How long an answer may take: its headers, and the silence between two pieces of its body. */
export interface HttpTimeouts {
  headersMs: number;
  bodyIdleMs: number;
}

/** undici's defaults (headersTimeout, bodyTimeout), which the proxy had with the global fetch. */
const UNDICI_TIMEOUTS: HttpTimeouts = { headersMs: 300_000, bodyIdleMs: 300_000 };

/** A `typeof fetch` over node:http (see the file's charter); anything else goes to `fallback`. */
export function nodeHttpFetch(
  fallback: typeof fetch = (input, init) => globalThis.fetch(input, init),
  timeouts: HttpTimeouts = UNDICI_TIMEOUTS,
): typeof fetch {
  const send = (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const body = init?.body;
    const simpleBody = body === undefined || body === null || typeof body === 'string' || body instanceof Uint8Array;
    if (input instanceof Request || init?.redirect !== 'manual' || !simpleBody) return fallback(input, init);
    let url: URL;
    try {
      url = new URL(String(input));
    } catch {
      return fallback(input, init);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return fallback(input, init);
    return request(url, init, body ?? undefined, timeouts);
  };
  return send as typeof fetch;
}

function request(
  url: URL,
  init: RequestInit,
  body: string | Uint8Array | undefined,
  timeouts: HttpTimeouts,
): Promise<Response> {
  const method = (init.method ?? 'GET').toUpperCase();
  const headers: Record<string, string> = {};
  new Headers(init.headers).forEach((value, name) => {
    headers[name] = value;
  });
  headers.accept ??= '*/*';
  headers['user-agent'] ??= 'node';
  if (typeof body === 'string') headers['content-type'] ??= 'text/plain;charset=UTF-8';
  if (body !== undefined) headers['content-length'] = String(Buffer.byteLength(body));
  const signal = init.signal ?? undefined;
  const lib = url.protocol === 'https:' ? https : http;
  const agent = url.protocol === 'https:' ? agents['https:'] : agents['http:'];

  return new Promise<Response>((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    let settled = false;
    /** Errors the response body once it is streaming. */
    let failBody: ((reason: unknown) => void) | undefined;
    const onAbort = (): void => {
      const reason = signal?.reason;
      if (!settled) {
        settled = true;
        reject(reason);
      }
      failBody?.(reason);
      req.destroy();
    };
    const req = lib.request(url, { method, headers, agent }, (res) => {
      clearTimeout(headersTimer);
      if (settled) {
        res.destroy();
        return;
      }
      // A body silent for longer than bodyIdleMs (an SSE stream on a connection that died
      // without a word) fails as undici's does, so the transport reconnects.
      const idle = setTimeout(
        () => res.destroy(timeoutError('BodyTimeoutError', 'UND_ERR_BODY_TIMEOUT', 'Body Timeout Error')),
        timeouts.bodyIdleMs,
      ).unref();
      res.on('data', () => idle.refresh());
      res.once('close', () => clearTimeout(idle));
      const status = res.statusCode ?? 0;
      const responseHeaders = new Headers();
      const raw = res.rawHeaders;
      for (let i = 0; i + 1 < raw.length; i += 2) responseHeaders.append(raw[i] as string, raw[i + 1] as string);
      const responseInit = { status, statusText: res.statusMessage ?? '', headers: responseHeaders };
      const answer = (make: () => Response): void => {
        if (settled) return;
        settled = true;
        let response: Response;
        try {
          response = make();
        } catch (err) {
          res.destroy();
          reject(new TypeError('fetch failed', { cause: err }));
          return;
        }
        Object.defineProperty(response, 'url', { value: url.href });
        resolve(response);
      };
      if (NULL_BODY_STATUS.has(status) || method === 'HEAD') {
        res.resume();
        answer(() => new Response(null, responseInit));
      } else if (JSON_TYPE.test(res.headers['content-type'] ?? '')) {
        readWhole(res, decoded(res)).then(
          (bytes) => answer(() => new BytesResponse(bytes, responseInit)),
          (err: unknown) => {
            if (settled) return;
            settled = true;
            reject(err);
          },
        );
      } else {
        const streamed = bodyStream(res, decoded(res));
        failBody = streamed.fail;
        answer(() => new Response(streamed.stream, responseInit));
      }
    });
    const headersTimer = setTimeout(
      () => req.destroy(timeoutError('HeadersTimeoutError', 'UND_ERR_HEADERS_TIMEOUT', 'Headers Timeout Error')),
      timeouts.headersMs,
    ).unref();
    signal?.addEventListener('abort', onAbort, { once: true });
    req.once('close', () => {
      clearTimeout(headersTimer);
      signal?.removeEventListener('abort', onAbort);
    });
    req.on('error', (err) => {
      if (settled) return;
      settled = true;
      reject(new TypeError('fetch failed', { cause: err }));
    });
    req.end(body);
  });
}

/** An error shaped as undici's timeouts (the `cause` of its TypeError). */
function timeoutError(name: string, code: string, message: string): Error {
  return Object.assign(new Error(message), { name, code });
}

/** The response's body stream, decoded when the server encoded it anyway. */
function decoded(res: IncomingMessage): Readable {
  const encoding = res.headers['content-encoding']?.trim().toLowerCase();
  const decoder =
    encoding === 'gzip' || encoding === 'x-gzip'
      ? zlib.createGunzip()
      : encoding === 'deflate'
        ? zlib.createInflate()
        : encoding === 'br'
          ? zlib.createBrotliDecompress()
          : undefined;
  if (decoder === undefined) return res;
  res.on('error', (err) => decoder.destroy(err));
  return res.pipe(decoder);
}

/** The whole body, as bytes; a body cut short rejects as undici's fetch reading it (TypeError `terminated`). */
function readWhole(res: IncomingMessage, source: Readable): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let done = false;
    const fail = (cause: unknown): void => {
      if (done) return;
      done = true;
      reject(new TypeError('terminated', { cause }));
    };
    source.on('data', (chunk: Buffer) => chunks.push(chunk));
    source.once('end', () => {
      if (done) return;
      done = true;
      resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks));
    });
    source.once('error', fail);
    res.once('close', () => {
      if (!res.complete) fail(new Error('the connection closed early'));
    });
  });
}

/**
 * A Response over bytes already read, whose `text()`, `json()` and `arrayBuffer()` read them
 * directly (once, as a body is read once); its `body` stream and every other body method come
 * from a standard Response over the same bytes, made only when asked for (see the charter).
 */
class BytesResponse extends Response {
  #bytes: Uint8Array;
  #used = false;
  #init: ResponseInit;
  #full: Response | undefined;

  constructor(bytes: Uint8Array, init: ResponseInit) {
    super(null, init);
    this.#bytes = bytes;
    this.#init = init;
  }

  /** The standard Response over the bytes, for everything but the three fast reads. */
  #standard(): Response {
    this.#full ??= new Response(this.#used ? null : (this.#bytes as unknown as BodyInit), this.#init);
    return this.#full;
  }

  #take(): Uint8Array {
    if (this.#used) throw new TypeError('Body is unusable: Body has already been read');
    this.#used = true;
    return this.#bytes;
  }

  override get body(): Response['body'] {
    return this.#standard().body;
  }
  override get bodyUsed(): boolean {
    return this.#full ? this.#full.bodyUsed : this.#used;
  }
  override text(): Promise<string> {
    if (this.#full) return this.#full.text();
    try {
      return Promise.resolve(new TextDecoder().decode(this.#take()));
    } catch (err) {
      return Promise.reject(err);
    }
  }
  override json(): Promise<unknown> {
    return this.text().then((text) => JSON.parse(text));
  }
  override arrayBuffer(): Promise<ArrayBuffer> {
    if (this.#full) return this.#full.arrayBuffer();
    try {
      const bytes = this.#take();
      return Promise.resolve(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer);
    } catch (err) {
      return Promise.reject(err);
    }
  }
  override blob(): Promise<Blob> {
    return this.#standard().blob();
  }
  override formData(): Promise<FormData> {
    return this.#standard().formData();
  }
  override clone(): Response {
    if (this.bodyUsed) throw new TypeError('Response.clone: Body has already been consumed.');
    const copy = this.#full ? this.#full.clone() : new BytesResponse(this.#bytes, this.#init);
    Object.defineProperty(copy, 'url', { value: this.url });
    return copy;
  }
}

/**
 * A web stream over `source` that pauses the socket while the reader is not reading; a body cut
 * short (the connection closed before its end) errors it, as undici's fetch does.
 */
function bodyStream(
  res: IncomingMessage,
  source: Readable,
): { stream: ReadableStream<Uint8Array>; fail: (reason: unknown) => void } {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  let done = false;
  const fail = (reason: unknown): void => {
    if (done) return;
    done = true;
    controller.error(reason);
    res.destroy();
  };
  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
      source.on('data', (chunk: Buffer) => {
        if (done) return;
        controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
        if ((controller.desiredSize ?? 1) <= 0) source.pause();
      });
      source.once('end', () => {
        if (done) return;
        done = true;
        controller.close();
      });
      source.once('error', (err) => fail(new TypeError('terminated', { cause: err })));
      res.once('close', () => {
        if (!res.complete) fail(new TypeError('terminated', { cause: new Error('the connection closed early') }));
      });
    },
    pull() {
      source.resume();
    },
    cancel() {
      done = true;
      res.destroy();
    },
  });
  return { stream, fail };
}
