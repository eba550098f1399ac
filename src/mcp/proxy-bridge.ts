/**
 * proxy-bridge: the proxy's state machine between the local stdio transport and the remote
 * server's Streamable HTTP or HTTP+SSE transport (idle, connecting, open, closing). Client ->
 * server messages go out in arrival order and are queued while the remote (re)connects; the
 * transport is chosen by the strategy and the server's answers (fall back on 400/404/405); a lost
 * session is reconnected and the client's `initialize` replayed; a request that provably never
 * reached the server is re-sent, one whose outcome is unknown is answered with a JSON-RPC error.
 *
 * Not for: authentication (proxy-auth.ts hands in the fetch) or classifying transport errors
 * (proxy-errors.ts).
 */
import type { Readable, Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import {
  isJSONRPCErrorResponse,
  isJSONRPCRequest,
  isJSONRPCResultResponse,
  type JSONRPCMessage,
  type JSONRPCRequest,
  type RequestId,
} from '@modelcontextprotocol/sdk/types.js';
import { describeError, isAbort, isFatal, notDelivered, type TransportKind, wrongTransport } from './proxy-errors.js';
import type { ProxyLog } from './proxy-log.js';
import { PROXY_EXIT, type TransportStrategy } from './proxy-options.js';

export interface BridgeDeps {
  url: URL;
  strategy: TransportStrategy;
  headers: Record<string, string>;
  fetch: typeof fetch;
  log: ProxyLog;
  stdin: Readable;
  stdout: Writable;
  reconnectAttempts: number;
  reconnectDelayMs: number;
}

interface InFlight {
  request: JSONRPCRequest;
  transport: Transport;
  /** The transport took it (the POST was accepted): its answer can now only come from that connection. */
  accepted: boolean;
}

/** JSON-RPC error codes we answer with (MCP uses -32000..-32099 for implementation errors). */
const PROXY_ERROR = -32000;
/** A message the server provably did not process is re-sent at most this often. */
const MAX_RESENDS = 2;

export class Bridge {
  private readonly local: StdioServerTransport;
  private remote: Transport | undefined;
  private kind: TransportKind | undefined;
  /** The transport kind the server proved to speak (the first connection decides). */
  private confirmed: TransportKind | undefined;
  private state: 'idle' | 'connecting' | 'open' | 'closing' = 'idle';
  private readonly queue: JSONRPCMessage[] = [];
  private readonly inflight = new Map<string, InFlight>();
  /** Requests the proxy itself sent (initialize replays), by id. */
  private readonly internal = new Map<string, (message: JSONRPCMessage) => void>();
  private initialize: JSONRPCRequest | undefined;
  private initialized = false;
  private protocolVersion: string | undefined;
  private connecting: Promise<void> | undefined;
  private replays = 0;
  private finish: ((code: number) => void) | undefined;
  /** Transports closed on purpose (their onclose is not an outage). */
  private readonly retired = new WeakSet<Transport>();
  /** How often each message was re-sent after a connection loss. */
  private readonly resends = new WeakMap<JSONRPCMessage, number>();

  constructor(private readonly deps: BridgeDeps) {
    this.local = new StdioServerTransport(deps.stdin, deps.stdout);
  }

  async run(): Promise<number> {
    const done = new Promise<number>((resolve) => {
      this.finish = resolve;
    });
    this.local.onmessage = (message) => this.fromClient(message);
    this.local.onerror = (error) => this.deps.log.warn(`stdio: ${describeError(error)}`);
    this.local.onclose = () => void this.shutdown(PROXY_EXIT.ok);
    const ended = () => void this.shutdown(PROXY_EXIT.ok);
    this.deps.stdin.once('end', ended);
    this.deps.stdin.once('close', ended);
    // The client went away mid-write (EPIPE): nobody is left to answer.
    const broken = (error: Error) => {
      this.deps.log.warn(`stdout: ${describeError(error)}`);
      void this.shutdown(PROXY_EXIT.ok);
    };
    this.deps.stdout.once('error', broken);
    await this.local.start();
    const code = await done;
    this.deps.stdin.off('end', ended);
    this.deps.stdin.off('close', ended);
    this.deps.stdout.off('error', broken);
    return code;
  }

  // --- client -> server ---------------------------------------------------------------------------

  private fromClient(message: JSONRPCMessage): void {
    if (this.state === 'closing') return;
    if (isJSONRPCRequest(message) && message.method === 'initialize') this.initialize = message;
    if (!isJSONRPCRequest(message) && 'method' in message && message.method === 'notifications/initialized')
      this.initialized = true;
    this.deps.log.debug(`client -> server ${describeMessage(message)}`);
    if (this.state === 'open' && this.remote) {
      this.dispatch(message, this.remote);
      return;
    }
    this.queue.push(message);
    void this.ensureConnected();
  }

  private dispatch(message: JSONRPCMessage, transport: Transport): void {
    const entry: InFlight | undefined = isJSONRPCRequest(message)
      ? { request: message, transport, accepted: false }
      : undefined;
    if (entry) this.inflight.set(idKey(entry.request.id), entry);
    transport.send(message).then(
      () => {
        if (!entry || this.inflight.get(idKey(entry.request.id)) !== entry) return;
        entry.accepted = true;
        // Accepted by a connection that has been lost meanwhile: its answer cannot come.
        if (transport !== this.remote && this.retired.has(transport)) this.abandon(entry);
      },
      (err: unknown) => this.sendFailed(message, transport, err),
    );
  }

  private abandon(entry: InFlight): void {
    this.inflight.delete(idKey(entry.request.id));
    this.answerWithError(
      entry.request,
      'authkeep proxy: the connection to the server was lost before the answer arrived; retry the request',
    );
  }

  private sendFailed(message: JSONRPCMessage, transport: Transport, err: unknown): void {
    if (this.state === 'closing') return;
    if (isJSONRPCRequest(message)) {
      const entry = this.inflight.get(idKey(message.id));
      if (entry?.transport === transport) this.inflight.delete(idKey(message.id));
    }
    // We closed that connection because its session was lost (a 404, or the SSE stream that IS the
    // session dropped): a request we aborted on it can no longer have been processed there.
    const abortedByUs = this.retired.has(transport) && isAbort(err);
    const resends = this.resends.get(message) ?? 0;
    if ((abortedByUs || notDelivered(err, this.kind)) && resends < MAX_RESENDS) {
      this.resends.set(message, resends + 1);
      // Provably not processed by the server: queue it again and reconnect.
      this.deps.log.warn(
        `remote refused ${describeMessage(message)} (${describeError(err)}); reconnecting and re-sending`,
      );
      this.queue.push(message);
      this.loseRemote(transport);
      return;
    }
    this.deps.log.warn(`sending ${describeMessage(message)} failed: ${describeError(err)}`);
    this.answerWithError(message, `authkeep proxy: the request could not be sent to the server: ${describeError(err)}`);
  }

  // --- server -> client ---------------------------------------------------------------------------

  private fromServer(message: JSONRPCMessage, transport: Transport): void {
    if ((isJSONRPCResultResponse(message) || isJSONRPCErrorResponse(message)) && message.id !== undefined) {
      const waiter = this.internal.get(idKey(message.id));
      if (waiter) {
        this.internal.delete(idKey(message.id));
        waiter(message);
        return;
      }
      const entry = this.inflight.get(idKey(message.id));
      this.inflight.delete(idKey(message.id));
      if (entry?.request.method === 'initialize' && isJSONRPCResultResponse(message)) {
        const version = (message.result as { protocolVersion?: unknown }).protocolVersion;
        if (typeof version === 'string') {
          this.protocolVersion = version;
          transport.setProtocolVersion?.(version);
        }
      }
    }
    this.deps.log.debug(`server -> client ${describeMessage(message)}`);
    this.local.send(message).catch((err: unknown) => this.deps.log.warn(`stdout: ${describeError(err)}`));
  }

  // --- connecting ---------------------------------------------------------------------------------

  private ensureConnected(): Promise<void> {
    this.connecting ??= this.connectLoop().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private async connectLoop(): Promise<void> {
    this.state = 'connecting';
    let delay = this.deps.reconnectDelayMs;
    let lastError: unknown;
    for (let attempt = 0; attempt < this.deps.reconnectAttempts; attempt++) {
      if (attempt > 0) {
        await sleep(delay);
        delay = Math.min(delay * 2, 5_000);
      }
      if (this.closing()) return;
      try {
        await this.open();
        if (this.closing() || !this.remote) return;
        this.state = 'open';
        const pending = this.queue.splice(0);
        for (const message of pending) this.dispatch(message, this.remote);
        return;
      } catch (err) {
        lastError = err;
        if (isFatal(err)) break;
        this.deps.log.warn(
          `connecting to ${this.deps.url.href} failed (attempt ${attempt + 1}): ${describeError(err)}`,
        );
      }
    }
    // Give up on this outage: answer what waits, stay alive; the next message tries again.
    if (this.closing()) return;
    this.state = 'idle';
    this.deps.log.error(`cannot reach ${this.deps.url.href}: ${describeError(lastError)}`);
    for (const message of this.queue.splice(0)) {
      this.answerWithError(message, `authkeep proxy: cannot reach the server: ${describeError(lastError)}`);
    }
  }

  /** Open a transport; the first time, find which kind the server speaks using the first queued message. */
  private async open(): Promise<void> {
    const kinds: TransportKind[] = this.confirmed
      ? [this.confirmed]
      : (
          {
            'http-first': ['http', 'sse'],
            'sse-first': ['sse', 'http'],
            'http-only': ['http'],
            'sse-only': ['sse'],
          } as const
        )[this.deps.strategy].slice();
    const reconnect = this.confirmed !== undefined;
    for (const [index, kind] of kinds.entries()) {
      const last = index === kinds.length - 1;
      const transport = this.create(kind);
      try {
        await transport.start();
        if (!this.confirmed && kind === 'http' && this.queue[0]) {
          // Streamable HTTP has no handshake of its own: the first message is the probe.
          const first = this.queue[0];
          const entry: InFlight | undefined = isJSONRPCRequest(first)
            ? { request: first, transport, accepted: false }
            : undefined;
          if (entry) this.inflight.set(idKey(entry.request.id), entry);
          try {
            await transport.send(first);
          } catch (err) {
            if (entry) this.inflight.delete(idKey(entry.request.id));
            throw err;
          }
          if (entry) entry.accepted = true;
          this.queue.shift();
        }
      } catch (err) {
        await this.retire(transport);
        if (!last && !this.confirmed && wrongTransport(err)) {
          this.deps.log.info(
            `${kind === 'http' ? 'Streamable HTTP' : 'SSE'} not offered (${describeError(err)}); trying ${kinds[index + 1] === 'http' ? 'Streamable HTTP' : 'SSE'}`,
          );
          continue;
        }
        throw err;
      }
      this.remote = transport;
      this.kind = kind;
      if (!this.confirmed) this.deps.log.info(`connected over ${kind === 'http' ? 'Streamable HTTP' : 'SSE'}`);
      this.confirmed = kind;
      if (reconnect && this.initialize) await this.replayInitialize(transport);
      return;
    }
  }

  private create(kind: TransportKind): Transport {
    const requestInit: RequestInit = { headers: this.deps.headers };
    const transport: Transport =
      kind === 'http'
        ? new StreamableHTTPClientTransport(this.deps.url, { fetch: this.deps.fetch, requestInit })
        : new SSEClientTransport(this.deps.url, { fetch: this.deps.fetch, requestInit });
    transport.onmessage = (message) => this.fromServer(message, transport);
    transport.onerror = (error) => this.remoteError(transport, kind, error);
    transport.onclose = () => {
      if (!this.retired.has(transport)) this.loseRemote(transport);
    };
    return transport;
  }

  private remoteError(transport: Transport, kind: TransportKind, error: Error): void {
    if (this.retired.has(transport) || this.state === 'closing') return;
    this.deps.log.debug(`remote transport: ${describeError(error)}`);
    // A dropped SSE stream takes its session (and any answer still to come) with it.
    if (kind === 'sse' && transport === this.remote && this.state === 'open' && /SSE error/.test(error.message)) {
      this.deps.log.warn(`SSE stream lost: ${describeError(error)}; reconnecting`);
      this.loseRemote(transport);
    }
  }

  /** The remote connection is gone: answer requests whose answers cannot come, reconnect. */
  private loseRemote(transport: Transport): void {
    if (this.closing()) return;
    if (transport === this.remote) {
      this.remote = undefined;
      this.state = 'idle';
      void this.retire(transport);
      // Requests the lost connection had accepted cannot be answered any more; those still being
      // sent settle by themselves (re-sent if the server never got them, see sendFailed).
      for (const entry of [...this.inflight.values()]) {
        if (entry.transport === transport && entry.accepted) this.abandon(entry);
      }
    }
    if (this.state === 'open' && this.remote) {
      // Already reconnected (an older transport failed late): send what was queued again.
      const remote = this.remote;
      for (const message of this.queue.splice(0)) this.dispatch(message, remote);
      return;
    }
    void this.ensureConnected();
  }

  private async replayInitialize(transport: Transport): Promise<void> {
    const init = this.initialize as JSONRPCRequest;
    const id = `authkeep-proxy-reinit-${++this.replays}`;
    const answer = new Promise<JSONRPCMessage>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.internal.delete(idKey(id));
        reject(new Error('the server did not answer the replayed initialize within 30 s'));
      }, 30_000);
      this.internal.set(idKey(id), (message) => {
        clearTimeout(timer);
        resolve(message);
      });
    });
    await transport.send({ ...init, id });
    const message = await answer;
    if (isJSONRPCErrorResponse(message))
      throw new Error(`the server refused the replayed initialize: ${message.error.message}`);
    const version = isJSONRPCResultResponse(message)
      ? (message.result as { protocolVersion?: unknown }).protocolVersion
      : undefined;
    if (typeof version === 'string') transport.setProtocolVersion?.(version);
    else if (this.protocolVersion) transport.setProtocolVersion?.(this.protocolVersion);
    if (this.initialized) await transport.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
    this.deps.log.info('reconnected; the session was initialized again');
  }

  private async retire(transport: Transport): Promise<void> {
    if (this.retired.has(transport)) return;
    this.retired.add(transport);
    await transport.close().catch(() => undefined);
  }

  // --- errors and shutdown ----------------------------------------------------------------------------

  /** A method, so TypeScript does not narrow the state across awaits. */
  private closing(): boolean {
    return this.state === 'closing';
  }

  private answerWithError(message: JSONRPCMessage, text: string): void {
    if (!isJSONRPCRequest(message)) return;
    this.local
      .send({ jsonrpc: '2.0', id: message.id, error: { code: PROXY_ERROR, message: text } })
      .catch((err: unknown) => this.deps.log.warn(`stdout: ${describeError(err)}`));
  }

  private async shutdown(code: number): Promise<void> {
    if (this.state === 'closing') return;
    this.state = 'closing';
    this.deps.log.info('the client closed the connection; shutting down');
    const remote = this.remote;
    this.remote = undefined;
    if (remote) {
      this.retired.add(remote);
      if (remote instanceof StreamableHTTPClientTransport && remote.sessionId) {
        await withTimeout(remote.terminateSession(), 3_000).catch(() => undefined);
      }
      await withTimeout(remote.close(), 3_000).catch(() => undefined);
    }
    await this.local.close().catch(() => undefined);
    this.finish?.(code);
  }
}

function idKey(id: RequestId): string {
  return `${typeof id}:${String(id)}`;
}

function describeMessage(message: JSONRPCMessage): string {
  if ('method' in message) return 'id' in message ? `${message.method} #${String(message.id)}` : message.method;
  return 'id' in message ? `response #${String(message.id)}` : 'message';
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  return Promise.race([promise, new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), ms).unref())]);
}
