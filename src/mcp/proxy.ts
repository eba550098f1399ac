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
 *   (coordinated with every other authkeep process) and the request that needed it waits and is
 *   then sent. The sign-in URL, or the device code, is written to stderr and the log file, and the
 *   browser is tried on top (proxy-sign-in.ts): where none can open, the device grant is used when
 *   the authorization server offers it. A server that does not ask for OAuth (no 401) is spoken to
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
 * The pieces: proxy-options.ts (what it takes), proxy-log.ts (stderr and the log file),
 * proxy-auth.ts (which fetch, when to sign in), proxy-http.ts (what sends the requests),
 * proxy-bridge.ts (the stdio <-> remote state machine), proxy-errors.ts (what a transport's
 * failure means). This file wires them.
 *
 * Not for: parsing command lines (src/cli/commands/proxy.ts, the one parser of the proxy's
 * arguments), the OAuth steps (session/).
 */
import { AuthkeepError } from '../errors.js';
import { describeNetworkFailure, type HttpOptions } from '../oauth/http.js';
import { canonicalServerUrl } from '../session/canonical-url.js';
import { storedHttpChoice } from '../session/loopback-http.js';
import { SessionKeeper } from '../session/session-keeper.js';
import { openStore } from '../store/open-store.js';
import { DEFAULT_ACCOUNT, defaultHome } from '../store/paths.js';
import { ProxyAuth } from './proxy-auth.js';
import { Bridge } from './proxy-bridge.js';
import { describeError } from './proxy-errors.js';
import { nodeHttpFetch } from './proxy-http.js';
import { ProxyLog } from './proxy-log.js';
import {
  keeperOptionsFor,
  logFilePath,
  type ProxyOptions,
  parseRemoteUrl,
  TRANSPORT_STRATEGIES,
} from './proxy-options.js';
import { proxySignInPrompts } from './proxy-sign-in.js';

/** Did the sign-in to this server keep the `--allow-http` choice (session/loopback-http.ts)? */
async function storedAllowsHttp(options: ProxyOptions, home: string): Promise<boolean> {
  let url: string;
  try {
    url = canonicalServerUrl(options.serverUrl);
  } catch {
    return false; // parseRemoteUrl says what is wrong with it
  }
  const chosen = options.keeperOptions?.store;
  const store =
    options.keeper?.store ??
    (typeof chosen === 'object'
      ? chosen
      : openStore({
          home,
          account: options.keeperOptions?.account ?? DEFAULT_ACCOUNT,
          ...(chosen !== undefined ? { store: chosen } : {}),
        }));
  const read = await store.read(url).catch(() => undefined);
  return read?.kind === 'ok' && storedHttpChoice(read.record);
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
  const home = options.home ?? options.keeperOptions?.home ?? options.keeper?.home ?? defaultHome();
  // A server signed in to with --allow-http keeps that choice (loopback hosts only).
  const keptHttp = options.allowHttp !== true && (await storedAllowsHttp(options, home));
  if (keptHttp) options = { ...options, allowHttp: true };
  const url = parseRemoteUrl(options.serverUrl, options.allowHttp === true);
  const log = new ProxyLog(
    options.stderr ?? process.stderr,
    logFilePath(options, home),
    options.debug === true,
    // The default log file is in the store: its home and logs/ must be the user's own.
    options.logFile === undefined ? home : undefined,
  );
  try {
    // The sign-in URL or device code goes to stderr and the log file whatever the browser does.
    const prompts = proxySignInPrompts(log, url.href);
    const keeper =
      options.keeper ??
      new SessionKeeper(
        keeperOptionsFor(options, home, (event) => log.event(event), {
          openAuthorizationUrl: prompts.openAuthorizationUrl,
          showDeviceCode: prompts.showDeviceCode,
        }),
      );
    log.info(`authkeep proxy for ${url.href} (${strategy}); log file ${log.file ?? 'none'}`);
    if (keptHttp) log.info('http allowed for this server on this machine: it was signed in to with --allow-http');
    if (options.resource !== undefined) {
      log.info(
        `--resource ${options.resource}: authkeep sends the resource the server's metadata publishes; the value is only recorded here`,
      );
    }
    const scope = options.staticClientMetadata?.scope || undefined;
    const http: HttpOptions = { allowInsecureLoopback: options.allowHttp === true };
    if (prompts.noBrowser !== undefined && options.keeper === undefined) {
      log.info(
        `no browser can be opened here (${prompts.noBrowser}): a sign-in uses a code entered on any device when the authorization server offers it, else prints the URL to open`,
      );
    }
    // Requests to the server go out through node:http (proxy-http.ts says why), unless the caller
    // brought its own keeper or fetch.
    const base =
      options.keeper === undefined && options.keeperOptions?.fetch === undefined ? nodeHttpFetch() : undefined;
    const auth = new ProxyAuth(keeper, url.href, options.headers ?? {}, log, http, scope, prompts.mode, base);
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
  } catch (caught) {
    // The SDK's transports fail with a bare `fetch failed`: name the server it could not reach.
    const network = caught instanceof AuthkeepError ? undefined : describeNetworkFailure(caught);
    const err =
      network === undefined
        ? caught
        : new AuthkeepError('server_unreachable', `could not reach the MCP server ${url.href}: ${network}`, {
            field: 'serverUrl',
            cause: caught,
          });
    log.error(`proxy stopped: ${describeError(err)}`);
    throw err;
  } finally {
    await log.close();
  }
}
