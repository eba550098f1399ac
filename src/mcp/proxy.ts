/**
 * proxy: `runProxy(options)`, the stdio MCP proxy behind `authkeep proxy <url>`. An MCP client
 * that only speaks stdio launches it instead of talking OAuth itself (as people do with
 * mcp-remote); it bridges the client's stdio JSON-RPC to the remote server's Streamable HTTP
 * transport, or to the older HTTP+SSE transport when the server only has that, and authenticates
 * every request with authkeep.
 *
 * - Auth: every remote request goes through `keeper.fetch(url)`: the access token comes from the
 *   single-flight token manager (refreshed ahead of expiry, adopted from other processes), a 401
 *   gets another token once and the same request is re-sent, a 403 insufficient_scope steps up. So
 *   a refresh mid-session never drops or fails a message. When only a sign-in helps (no
 *   credentials at start-up, a refresh token refused mid-session), the proxy runs keeper.login()
 *   (browser via $BROWSER; coordinated with every other authkeep process) and the request that
 *   needed it waits and is then sent. A server that does not ask for OAuth (no 401) is spoken to
 *   without it, and an `Authorization` given with `--header` disables authkeep's sign-in.
 * - Transport: 'http-first' (default) sends the client's first message (initialize) over
 *   Streamable HTTP and falls back to SSE on 400/404/405, as the MCP spec's backwards-compatibility
 *   section describes; 'sse-first' the other way round; '-only' never falls back.
 * - Messages: client -> server messages are sent in arrival order; while the remote is
 *   (re)connecting they are queued and flushed in order once it is back. Responses (correlated by
 *   id) and server -> client messages pass through untouched. A lost Streamable HTTP session (404)
 *   or a dropped SSE stream is reconnected, and the client's `initialize` is replayed to the new
 *   session (its answer is consumed here) before the queue is flushed. A request that can be
 *   proven not to have reached the server is re-sent; one whose outcome is unknown (the stream died
 *   before its answer) is answered with a JSON-RPC error, never left hanging.
 * - Output: stdout carries the protocol only. Logs go to stderr and to `<home>/logs/proxy-<pid>.log`
 *   (JSON lines, mode 0600); `debug` adds per-message lines (method and id, never params, tokens or
 *   header values).
 *
 * Not for: parsing command lines (src/cli/commands/proxy.ts, the one parser of the proxy's
 * arguments), the OAuth steps (session/).
 */
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport, StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
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
import { AuthkeepError, NeedsAuthError, type NeedsAuthReason } from '../errors.js';
import type { HttpOptions } from '../oauth/http.js';
import { probeServer } from '../oauth/protected-resource.js';
import { AuthKeeper, type AuthKeeperOptions } from '../session/auth-keeper.js';
import { canonicalServerUrl } from '../session/canonical-url.js';
import type { LogEvent, LogLevel, LogSink } from '../session/log.js';
import type { StaticClient } from '../session/sign-in.js';
import { defaultHome } from '../store/paths.js';
import { CURABLE, SignInGate } from './sign-in-gate.js';

export const TRANSPORT_STRATEGIES = ['http-first', 'sse-first', 'http-only', 'sse-only'] as const;
export type TransportStrategy = (typeof TRANSPORT_STRATEGIES)[number];

/** mcp-remote's `--static-oauth-client-info` (RFC 7591 names). */
export interface StaticOAuthClientInfo {
  client_id: string;
  client_secret?: string;
  token_endpoint_auth_method?: 'none' | 'client_secret_basic' | 'client_secret_post';
}

/**
 * What `runProxy` takes: mcp-remote's common arguments, resolved. The CLI (`authkeep proxy`)
 * parses command lines into this.
 */
export interface ProxyOptions {
  /** `<url>`: the remote MCP server. */
  serverUrl: string;
  /** `[callback-port]`: port of the loopback redirect URI for sign-in. */
  callbackPort?: number | undefined;
  /** `--header "Name: value"` (repeatable), `${ENV}` already expanded (see parseHeaderArgs). */
  headers?: Record<string, string> | undefined;
  /** `--static-oauth-client-info`: a pre-registered client instead of registration. */
  staticClientInfo?: StaticOAuthClientInfo | undefined;
  /** `--static-oauth-client-metadata`: `client_name` names the client in DCR, `scope` is asked for. */
  staticClientMetadata?: Record<string, unknown> | undefined;
  /** `--host`: host name of the loopback redirect URI. */
  host?: '127.0.0.1' | 'localhost' | undefined;
  /** `--transport`. Default 'http-first'. */
  transport?: TransportStrategy | undefined;
  /**
   * `--resource` (mcp-remote isolates sign-ins with it). authkeep always sends the RFC 8707
   * resource the server's protected resource metadata publishes and keys its one record by the
   * server URL; this value is accepted for compatibility and logged.
   */
  resource?: string | undefined;
  /** `--allow-http`: http for loopback servers (OAuth stays https-only elsewhere). */
  allowHttp?: boolean | undefined;
  /** `--debug`: per-message log lines, debug-level authkeep events. */
  debug?: boolean | undefined;
  /** Store home. Default `$AUTHKEEP_HOME` or the platform's data directory. */
  home?: string | undefined;
  /** Ready-made AuthKeeper options (the CLI's); they override what the fields above imply. */
  keeperOptions?: AuthKeeperOptions | undefined;
  /** An AuthKeeper to use instead of building one (embedding, tests). */
  keeper?: AuthKeeper | undefined;
  /** Streams (default the process's). */
  stdin?: Readable | undefined;
  stdout?: Writable | undefined;
  stderr?: Writable | undefined;
  /** Log file; false for none. Default `<home>/logs/proxy-<pid>.log`. */
  logFile?: string | false | undefined;
  /** Reconnection: attempts per outage and the first backoff delay. Default 6 attempts from 250 ms. */
  reconnect?: { attempts?: number; initialDelayMs?: number } | undefined;
}

/** Exit codes runProxy resolves with (the CLI's numbering). */
export const PROXY_EXIT = { ok: 0, error: 1, needsAuth: 4 } as const;

/**
 * `--header` values, mcp-remote style: `Name: value` (the value may contain colons; spaces around
 * it are trimmed), `${VAR}` replaced by the environment variable (empty, with a warning, when unset).
 * Throws `invalid_argument` for a malformed header or a value with a line break.
 */
export function parseHeaderArgs(
  values: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
  warn: (message: string) => void = () => undefined,
): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const raw of values) {
    const match = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*:\s*(.*)$/s.exec(raw);
    if (!match) {
      throw new AuthkeepError('invalid_argument', `--header ${JSON.stringify(raw)} is not "Name: value"`, {
        field: 'header',
      });
    }
    const name = match[1] as string;
    const value = (match[2] ?? '')
      .replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_all, variable: string) => {
        const found = env[variable];
        if (found === undefined) {
          warn(`environment variable ${variable} (in --header ${name}) is not set; using an empty value`);
          return '';
        }
        return found;
      })
      .trim();
    if (/[\r\n\0]/.test(value)) {
      throw new AuthkeepError('invalid_argument', `--header ${name}: the value contains a line break or NUL`, {
        field: 'header',
      });
    }
    headers[name] = value;
  }
  return headers;
}

/**
 * Run the proxy until the client closes stdin. Resolves with an exit code (PROXY_EXIT). Throws
 * (before touching stdout) when it cannot start: bad options, or a sign-in that failed.
 */
export async function runProxy(options: ProxyOptions): Promise<number> {
  const strategy = options.transport ?? 'http-first';
  if (!TRANSPORT_STRATEGIES.includes(strategy)) {
    throw new AuthkeepError('invalid_argument', `transport must be one of ${TRANSPORT_STRATEGIES.join(', ')}`, {
      field: 'transport',
    });
  }
  const url = parseRemoteUrl(options.serverUrl, options.allowHttp === true);
  const home = options.home ?? options.keeperOptions?.home ?? options.keeper?.home ?? defaultHome();
  const log = new ProxyLog(options.stderr ?? process.stderr, logFilePath(options, home), options.debug === true);
  try {
    const keeper = options.keeper ?? new AuthKeeper(keeperOptionsFor(options, home, log));
    log.info(`authkeep proxy for ${url.href} (${strategy}); log file ${log.file ?? 'none'}`);
    if (options.resource !== undefined) {
      log.info(
        `--resource ${options.resource}: authkeep sends the resource the server's metadata publishes; the value is only recorded here`,
      );
    }
    const scope =
      typeof options.staticClientMetadata?.scope === 'string'
        ? (options.staticClientMetadata.scope as string)
        : undefined;
    const http: HttpOptions = { allowInsecureLoopback: options.allowHttp === true };
    const auth = new ProxyAuth(keeper, url.href, options.headers ?? {}, log, http, scope);
    await auth.prepare();
    const bridge = new Bridge({
      url,
      strategy,
      headers: options.headers ?? {},
      fetch: auth.fetch,
      log,
      stdin: options.stdin ?? process.stdin,
      stdout: options.stdout ?? process.stdout,
      reconnectAttempts: options.reconnect?.attempts ?? 6,
      reconnectDelayMs: options.reconnect?.initialDelayMs ?? 250,
    });
    return await bridge.run();
  } catch (err) {
    log.error(`proxy stopped: ${describeError(err)}`);
    throw err;
  } finally {
    await log.close();
  }
}

// -------------------------------------------------------------------------------------------------
// Options

function parseRemoteUrl(serverUrl: string, allowHttp: boolean): URL {
  let url: URL;
  try {
    url = new URL(serverUrl);
  } catch {
    throw new AuthkeepError('invalid_argument', `server URL is not an absolute URL: ${JSON.stringify(serverUrl)}`, {
      field: 'serverUrl',
    });
  }
  if (url.protocol === 'https:') return url;
  if (url.protocol === 'http:') {
    if (allowHttp) return url;
    throw new AuthkeepError('insecure_url', `${url.href} is http: pass --allow-http for a local development server`, {
      field: 'serverUrl',
    });
  }
  throw new AuthkeepError(
    'invalid_argument',
    `server URL must be https (or http with --allow-http), got ${url.protocol}`,
    { field: 'serverUrl' },
  );
}

function logFilePath(options: ProxyOptions, home: string): string | undefined {
  if (options.logFile === false) return undefined;
  return options.logFile ?? path.join(home, 'logs', `proxy-${process.pid}.log`);
}

function keeperOptionsFor(options: ProxyOptions, home: string, log: ProxyLog): AuthKeeperOptions {
  const info = options.staticClientInfo;
  const staticClient: StaticClient | undefined = info && {
    clientId: info.client_id,
    ...(info.client_secret ? { clientSecret: info.client_secret } : {}),
    ...(info.token_endpoint_auth_method ? { tokenEndpointAuthMethod: info.token_endpoint_auth_method } : {}),
  };
  const clientName = options.staticClientMetadata?.client_name;
  const callback = {
    ...(options.callbackPort !== undefined ? { port: options.callbackPort } : {}),
    ...(options.host !== undefined ? { host: options.host } : {}),
  };
  const given = options.keeperOptions ?? {};
  const theirLog = given.log;
  const sink: LogSink = (event) => {
    log.event(event);
    theirLog?.(event);
  };
  return {
    home,
    allowInsecureLoopback: options.allowHttp === true,
    ...(Object.keys(callback).length ? { callback } : {}),
    ...(staticClient ? { staticClients: { [canonicalServerUrl(options.serverUrl)]: staticClient } } : {}),
    ...(typeof clientName === 'string' ? { clientName } : {}),
    ...given,
    log: sink,
  };
}

// -------------------------------------------------------------------------------------------------
// Logging: stderr and a file, never stdout

class ProxyLog {
  readonly file: string | undefined;
  private stream: WriteStream | undefined;

  constructor(
    private readonly stderr: Writable,
    file: string | undefined,
    private readonly debugEnabled: boolean,
  ) {
    if (file !== undefined) {
      try {
        mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
        this.stream = createWriteStream(file, { flags: 'a', mode: 0o600 });
        this.stream.on('error', () => {
          this.stream = undefined;
        });
        this.file = file;
      } catch {
        this.file = undefined;
      }
    }
  }

  debug(message: string, fields?: Record<string, unknown>): void {
    this.write('debug', message, fields);
  }
  info(message: string, fields?: Record<string, unknown>): void {
    this.write('info', message, fields);
  }
  warn(message: string, fields?: Record<string, unknown>): void {
    this.write('warn', message, fields);
  }
  error(message: string, fields?: Record<string, unknown>): void {
    this.write('error', message, fields);
  }

  /** An authkeep LogEvent (already free of secrets). */
  event(event: LogEvent): void {
    const { level, message, at: _at, ...fields } = event;
    this.write(level, message, fields);
  }

  private write(level: LogLevel, message: string, fields: Record<string, unknown> = {}): void {
    if (level === 'debug' && !this.debugEnabled) return;
    const at = new Date().toISOString();
    this.stream?.write(`${JSON.stringify({ at, pid: process.pid, level, message, ...fields })}\n`);
    const event = typeof fields.event === 'string' ? ` [${fields.event}]` : '';
    this.stderr.write(`[authkeep proxy ${process.pid}] ${level}: ${message}${event}\n`);
  }

  close(): Promise<void> {
    const stream = this.stream;
    this.stream = undefined;
    if (!stream) return Promise.resolve();
    return new Promise((resolve) => stream.end(resolve));
  }
}

// -------------------------------------------------------------------------------------------------
// Auth: which fetch the transports use

class ProxyAuth {
  /** 'oauth': keeper.fetch; 'none': the server did not ask (yet); 'headers': the user's Authorization. */
  private mode: 'oauth' | 'none' | 'headers' = 'none';
  private readonly keeperFetch: typeof fetch;
  private readonly gate: SignInGate;
  private reason: string = 'no_credentials';

  constructor(
    private readonly keeper: AuthKeeper,
    private readonly url: string,
    private readonly headers: Record<string, string>,
    private readonly log: ProxyLog,
    private readonly http: HttpOptions,
    scope: string | undefined,
  ) {
    this.keeperFetch = keeper.fetch(url);
    this.gate = new SignInGate(async () => {
      this.log.info(`authorization needed (${this.reason}): opening the browser to sign in to ${this.url}`);
      try {
        const status = await this.keeper.login(this.url, scope ? { scope } : {});
        this.log.info(`signed in (issuer ${status.issuer ?? '?'}, client ${status.clientId ?? '?'})`);
      } catch (err) {
        this.log.error(`sign-in failed: ${describeError(err)}`);
        throw err;
      }
    });
  }

  /** Before connecting: make sure we hold a token, signing in if the server needs it. */
  async prepare(): Promise<void> {
    if (Object.keys(this.headers).some((name) => name.toLowerCase() === 'authorization')) {
      this.mode = 'headers';
      this.log.info('an Authorization header was given with --header: authkeep does not sign in for this server');
      return;
    }
    try {
      await this.keeper.getAccessToken(this.url);
      this.mode = 'oauth';
      this.log.info('using stored credentials');
      return;
    } catch (err) {
      if (!(err instanceof NeedsAuthError)) throw err;
      if (err.reason === 'no_credentials' && !(await this.serverAsksForAuth())) {
        this.log.info('the server did not ask for authorization; connecting without OAuth');
        return;
      }
      if (err.reason === 'as_unreachable') {
        // The access token has expired and the AS cannot be reached now: start anyway; every request
        // tries again (and the client gets an error, not a hang, while the AS is down).
        this.log.warn(`the authorization server is unreachable (${err.message}); starting, requests will retry`);
        this.mode = 'oauth';
        return;
      }
      if (!CURABLE.has(err.reason)) throw err;
      await this.signIn(err.reason);
      this.mode = 'oauth';
    }
  }

  /**
   * Does the server answer an unauthenticated request with 401? The one probe (POST like an
   * initialize, then GET like an SSE client), with the user's --header values.
   */
  private async serverAsksForAuth(): Promise<boolean> {
    const probe = await probeServer(this.url, { ...this.http, headers: this.headers, sseFallback: true });
    return probe.status === 401;
  }

  /** keeper.login(), one at a time; the request that needed it waits (see SignInGate). */
  signIn(reason: NeedsAuthReason | 'challenged'): Promise<void> {
    this.reason = reason;
    return this.gate.signIn();
  }

  /** The transports' fetch. Never throws for a curable needs-auth before one sign-in was tried. */
  readonly fetch: typeof fetch = async (input, init) => {
    if (this.mode === 'oauth') {
      try {
        return await this.keeperFetch(input, init);
      } catch (err) {
        if (!(err instanceof NeedsAuthError) || !CURABLE.has(err.reason)) throw err;
        await this.signIn(err.reason);
        return await this.keeperFetch(input, init);
      }
    }
    const response = await fetch(input, init);
    if (response.status !== 401 || this.mode !== 'none') return response;
    // The server asks for authorization after all (e.g. it did not at start-up): sign in, resend.
    await response.body?.cancel().catch(() => undefined);
    await this.signIn('challenged');
    this.mode = 'oauth';
    return await this.keeperFetch(input, init);
  };
}

// -------------------------------------------------------------------------------------------------
// The bridge: local stdio <-> remote transport

type Kind = 'http' | 'sse';

interface BridgeDeps {
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

class Bridge {
  private readonly local: StdioServerTransport;
  private remote: Transport | undefined;
  private kind: Kind | undefined;
  /** The transport kind the server proved to speak (the first connection decides). */
  private confirmed: Kind | undefined;
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
    const kinds: Kind[] = this.confirmed
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

  private create(kind: Kind): Transport {
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

  private remoteError(transport: Transport, kind: Kind, error: Error): void {
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

// -------------------------------------------------------------------------------------------------
// Helpers

function idKey(id: RequestId): string {
  return `${typeof id}:${String(id)}`;
}

function describeMessage(message: JSONRPCMessage): string {
  if ('method' in message) return 'id' in message ? `${message.method} #${String(message.id)}` : message.method;
  return 'id' in message ? `response #${String(message.id)}` : 'message';
}

export function describeError(err: unknown): string {
  if (err instanceof Error) {
    const cause = (err as { cause?: { code?: unknown } }).cause;
    const code = cause && typeof cause.code === 'string' ? ` (${cause.code})` : '';
    return `${err.message}${code}`;
  }
  return String(err);
}

/** The server answered "not this transport": fall back to the other one. */
function wrongTransport(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  if (err instanceof StreamableHTTPError || (err instanceof Error && err.name !== 'AuthkeepError')) {
    if (code === 400 || code === 404 || code === 405) return true;
  }
  return err instanceof StreamableHTTPError && code === -1; // unexpected content type
}

/** The message certainly did not reach the server's MCP handling: safe to send again. */
function notDelivered(err: unknown, kind: Kind | undefined): boolean {
  if (err instanceof StreamableHTTPError && err.code === 404 && kind === 'http') return true; // session expired
  if (err instanceof Error && err.message === 'Not connected') return true; // SSE endpoint not known yet
  // SSE: the message endpoint no longer knows the session (its stream is gone).
  if (kind === 'sse' && err instanceof Error && /^Error POSTing to endpoint \(HTTP 404\)/.test(err.message))
    return true;
  const cause = (err as { cause?: { code?: unknown } }).cause;
  return cause?.code === 'ECONNREFUSED';
}

function isAbort(err: unknown): boolean {
  return err instanceof Error && (err.name === 'AbortError' || /operation was aborted/i.test(err.message));
}

/** No point retrying the connection: authorization that failed, options that are wrong, or a 4xx answer. */
function isFatal(err: unknown): boolean {
  if (err instanceof NeedsAuthError) return true;
  if (err instanceof AuthkeepError) return err.code !== 'as_unreachable';
  const code = (err as { code?: unknown }).code;
  return typeof code === 'number' && code >= 400 && code < 500 && code !== 408 && code !== 429;
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  return Promise.race([promise, new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), ms).unref())]);
}
