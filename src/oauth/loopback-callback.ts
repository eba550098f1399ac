/**
 * loopback-callback: the one-shot HTTP server that receives the authorization response on a
 * loopback redirect URI (RFC 8252 section 7.3). It binds 127.0.0.1, and for a `localhost`
 * redirect URI also [::1] on the same port (browsers resolve localhost to either, ::1 often first:
 * left free, that port could be taken by another local process, which would receive the code);
 * it accepts exactly one request: the callback path carrying this login's state; shows the user a
 * short success or failure page; then closes. Wrong paths, wrong states and late requests get a 400 page and leave
 * the login untouched, so a stray or forged request can neither end nor poison it.
 *
 * Not for: validating the response (authorization-response.ts does that, for this server and for
 * a pasted redirect URL alike), redeeming the code, or opening the browser. The code is a secret:
 * it is never echoed into a page or a message.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { displayText } from '../display-text.js';
import { AuthkeepError } from '../errors.js';
import { checkIssuer } from './authorization-response.js';

export interface LoopbackCallbackOptions {
  /**
   * Host name written in the redirect URI. Default 127.0.0.1. The server binds 127.0.0.1 either
   * way; for `localhost` it also binds [::1] on the same port where the host has IPv6 loopback
   * (a port busy there is refused like a busy 127.0.0.1 port, or another is picked when port is 0).
   */
  host?: '127.0.0.1' | 'localhost';
  /** Port to listen on; 0 (the default) picks an ephemeral port. */
  port?: number;
  /** Path of the redirect URI. Default `/callback`. */
  path?: string;
  /** The state this login sent; only a request carrying exactly this state is accepted. */
  expectedState: string;
  /** How long to wait for the browser, in milliseconds. Default 5 minutes. */
  timeoutMs?: number;
  /** Shown on the success page ("Signed in to ..."). Default: "the server". */
  serverName?: string;
  /**
   * The issuer recorded for this sign-in and whether its metadata advertises
   * `authorization_response_iss_parameter_supported` (RFC 9207): the response's `iss` is checked
   * before anything it says is shown. An error response from elsewhere (an `iss` mismatch) is
   * neither acted on nor displayed (MCP "Authorization Response Validation"). Without it, an
   * error response is shown without the authorization server's words.
   */
  expectedIssuer?: { issuer: string; issParameterSupported: boolean };
}

export interface LoopbackCallback {
  /** The redirect URI to register and send: `http://<host>:<actual port><path>`. */
  readonly redirectUri: string;
  /** Where the server listens on 127.0.0.1, on the port in `redirectUri` (and [::1] for `localhost`). */
  readonly address: { readonly address: string; readonly port: number };
  /** The accepted request's query, unvalidated: pass it to validateAuthorizationResponse. */
  readonly result: Promise<URLSearchParams>;
  /** Stops waiting (rejecting `result` if nothing was accepted) and closes the server. */
  close(): Promise<void>;
}

const BIND_ADDRESS = '127.0.0.1';
const DEFAULT_TIMEOUT_MS = 5 * 60_000;

/**
 * Starts the loopback redirect server (RFC 8252 section 7.3) and resolves once it is listening,
 * with the redirect URI carrying the actual port. `result` resolves with the query of the first
 * request to `path` whose single `state` equals `expectedState`, or rejects with
 * `callback_timeout` after `timeoutMs` or on close().
 */
export async function startLoopbackCallback(options: LoopbackCallbackOptions): Promise<LoopbackCallback> {
  const { host, port, path, expectedState, timeoutMs, serverName } = checkedOptions(options);
  const { expectedIssuer } = options;
  // Loaded on the first sign-in, not with this module: `authkeep token` has no use for a server.
  const { createServer } = await import('node:http');
  let resolveResult!: (params: URLSearchParams) => void;
  let rejectResult!: (err: AuthkeepError) => void;
  const result = new Promise<URLSearchParams>((resolve, reject) => {
    resolveResult = resolve;
    rejectResult = reject;
  });
  result.catch(() => undefined); // the caller may never look at it; a rejection must not crash the process
  let settled = false;
  let timer: NodeJS.Timeout | undefined;
  /** Callbacks refused for carrying another state: a timeout then names `state` (RFC 6749 section 10.12). */
  let forgedStates = 0;

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const verdict = judgeRequest(req, { path, expectedState, expectedIssuer, settled });
    if (verdict.kind === 'refuse') {
      if (verdict.wrongState) forgedStates++;
      sendPage(res, verdict.status, verdict.page);
      return;
    }
    settled = true;
    clearTimeout(timer);
    res.once('finish', () => void shutdown());
    res.once('close', () => void shutdown());
    sendPage(
      res,
      verdict.failure ? 400 : 200,
      verdict.failure ? failurePage(verdict.failure) : successPage(serverName),
    );
    resolveResult(verdict.params);
  };
  const servers = await listenAll(() => createServer(handle), host, port);
  const closed = Promise.all(servers.map((srv) => new Promise<void>((resolve) => srv.once('close', () => resolve()))));
  let shuttingDown = false;
  async function shutdown(): Promise<void> {
    if (!shuttingDown) {
      shuttingDown = true;
      for (const srv of servers) {
        srv.close(); // refuses new connections and closes idle ones (Node >= 19)
        setTimeout(() => srv.closeAllConnections(), 1_000).unref(); // a stalled reader does not hold the port
      }
    }
    await closed;
  }

  const bound = (servers[0] as Server).address() as AddressInfo;
  const redirectUri = `http://${host}:${bound.port}${path}`;
  timer = setTimeout(() => {
    if (settled) return;
    settled = true;
    rejectResult(
      new AuthkeepError(
        'callback_timeout',
        forgedStates > 0
          ? `no authorization response with this sign-in's state reached ${redirectUri} within ${timeoutMs} ms (${forgedStates} with another state refused)`
          : `no authorization response reached ${redirectUri} within ${timeoutMs} ms`,
        {
          ...(forgedStates > 0 ? { field: 'state' } : {}),
          detail: { redirect_uri: redirectUri, timeout_ms: timeoutMs, refused_wrong_state: forgedStates },
        },
      ),
    );
    void shutdown();
  }, timeoutMs);

  return {
    redirectUri,
    address: Object.freeze({ address: bound.address, port: bound.port }),
    result,
    close(): Promise<void> {
      clearTimeout(timer);
      if (!settled) {
        settled = true;
        rejectResult(
          new AuthkeepError(
            'callback_timeout',
            `the callback at ${redirectUri} was closed before an authorization response arrived`,
            {
              detail: { redirect_uri: redirectUri, closed: true },
            },
          ),
        );
      }
      return shutdown();
    },
  };
}

function checkedOptions(
  options: LoopbackCallbackOptions,
): Required<Omit<LoopbackCallbackOptions, 'serverName' | 'expectedIssuer'>> & { serverName: string } {
  const host = options.host ?? BIND_ADDRESS;
  const port = options.port ?? 0;
  const path = options.path ?? '/callback';
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  if (host !== '127.0.0.1' && host !== 'localhost') {
    throw new AuthkeepError(
      'invalid_argument',
      `callback host must be 127.0.0.1 or localhost, not ${JSON.stringify(host)}`,
      { field: 'callback.host' },
    );
  }
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new AuthkeepError('invalid_argument', `callback port must be an integer from 0 to 65535, not ${port}`, {
      field: 'callback.port',
    });
  }
  if (!/^\/[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*$/.test(path)) {
    throw new AuthkeepError(
      'invalid_argument',
      `callback path must start with "/" and hold no query, fragment or spaces: ${JSON.stringify(path)}`,
      {
        field: 'callback.path',
      },
    );
  }
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new AuthkeepError('invalid_argument', `callback timeoutMs must be a positive number, not ${timeoutMs}`, {
      field: 'callback.timeoutMs',
    });
  }
  if (options.expectedState === '') {
    throw new AuthkeepError('invalid_argument', 'callback expectedState must not be empty', { field: 'state' });
  }
  return {
    host,
    port,
    path,
    timeoutMs,
    expectedState: options.expectedState,
    serverName: options.serverName ?? 'the server',
  };
}

/** Attempts at a free ephemeral port on both 127.0.0.1 and [::1] (for `localhost`). */
const DUAL_STACK_ATTEMPTS = 5;

/** errno codes of a host without IPv6 loopback: no browser can reach [::1] there either. */
const NO_IPV6 = new Set(['EADDRNOTAVAIL', 'EAFNOSUPPORT', 'EPROTONOSUPPORT']);

/**
 * The listening servers: one on 127.0.0.1 (RFC 8252 section 8.3), and for `localhost` one on [::1]
 * with the same port, unless the host has no IPv6 loopback. With port 0, a port taken on [::1]
 * is given up for another ephemeral one; with a fixed port it is an error, as on 127.0.0.1.
 */
async function listenAll(make: () => Server, host: string, port: number): Promise<Server[]> {
  for (let attempt = 1; ; attempt++) {
    const v4 = make();
    const bound = await listen(v4, port, BIND_ADDRESS);
    if (host !== 'localhost') return [v4];
    const v6 = make();
    try {
      await listen(v6, bound.port, '::1');
      return [v4, v6];
    } catch (err) {
      const code = ((err as AuthkeepError).cause as NodeJS.ErrnoException | undefined)?.code ?? '';
      if (NO_IPV6.has(code)) return [v4];
      await new Promise<void>((resolve) => v4.close(() => resolve()));
      if (port !== 0 || attempt >= DUAL_STACK_ATTEMPTS) throw err;
    }
  }
}

/** Listens on `address` only and returns the address actually bound. */
function listen(server: Server, port: number, address: string): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    const onError = (cause: Error): void => {
      const where = address.includes(':') ? `[${address}]` : address;
      reject(
        new AuthkeepError('invalid_argument', `cannot listen for the callback on ${where}:${port}: ${cause.message}`, {
          field: 'callback.port',
          cause,
        }),
      );
    };
    server.once('error', onError);
    server.listen({ host: address, port, exclusive: true }, () => {
      server.off('error', onError);
      resolve(server.address() as AddressInfo);
    });
  });
}

/** Why an accepted response is not a success, as the page tells it. */
type Failure =
  /** RFC 9207: `iss` is not the issuer of this sign-in; nothing else in it is looked at. */
  | { kind: 'iss' }
  /** RFC 6749 section 4.1.2.1, from the issuer checked; `said` is false when none was given to check. */
  | { kind: 'as_error'; error: string; description?: string; said: boolean }
  | { kind: 'no_code' };

type Verdict =
  | { kind: 'refuse'; status: number; page: string; wrongState?: boolean }
  | { kind: 'accept'; params: URLSearchParams; failure?: Failure };

/**
 * Decides what one request is: the authorization response of this login (the callback path, a
 * GET, exactly one `state` equal to the expected one, nothing accepted before) or anything else.
 * Of an accepted response, the issuer is checked before its error is read (RFC 9207 section 2.4).
 */
function judgeRequest(
  req: IncomingMessage,
  ctx: {
    path: string;
    expectedState: string;
    expectedIssuer: LoopbackCallbackOptions['expectedIssuer'];
    settled: boolean;
  },
): Verdict {
  if (req.method !== 'GET')
    return {
      kind: 'refuse',
      status: 405,
      page: refusalPage("This address only answers the browser's return from sign-in."),
    };
  let url: URL;
  try {
    url = new URL(req.url ?? '/', `http://${BIND_ADDRESS}`);
  } catch {
    return { kind: 'refuse', status: 400, page: refusalPage('This request could not be read.') };
  }
  if (ctx.settled)
    return {
      kind: 'refuse',
      status: 400,
      page: refusalPage('This sign-in has already finished. You can close this tab.'),
    };
  if (url.pathname !== ctx.path)
    return { kind: 'refuse', status: 400, page: refusalPage('This is not the sign-in return address.') };
  const states = url.searchParams.getAll('state');
  if (states.length !== 1 || states[0] !== ctx.expectedState) {
    return {
      kind: 'refuse',
      status: 400,
      wrongState: true,
      page: refusalPage(
        'This link does not belong to the sign-in in progress. Finish the sign-in in the tab it opened.',
      ),
    };
  }
  const params = url.searchParams;
  if (ctx.expectedIssuer !== undefined) {
    try {
      checkIssuer(params, ctx.expectedIssuer.issuer, ctx.expectedIssuer.issParameterSupported);
    } catch {
      // Settled all the same: the sign-in then fails with iss_mismatch (authorization-response.ts).
      return { kind: 'accept', params, failure: { kind: 'iss' } };
    }
  }
  const error = params.get('error');
  if (error !== null) {
    const description = params.get('error_description');
    const said = ctx.expectedIssuer !== undefined;
    return {
      kind: 'accept',
      params,
      failure:
        description === null ? { kind: 'as_error', error, said } : { kind: 'as_error', error, description, said },
    };
  }
  if (!params.get('code')) return { kind: 'accept', params, failure: { kind: 'no_code' } };
  return { kind: 'accept', params };
}

function sendPage(res: ServerResponse, status: number, html: string): void {
  res.writeHead(status, {
    'Content-Type': 'text/html; charset=utf-8',
    'Content-Length': Buffer.byteLength(html),
    'Cache-Control': 'no-store',
    'Referrer-Policy': 'no-referrer', // the URL holds the code
    'Content-Security-Policy': "default-src 'none'; style-src 'unsafe-inline'",
    'X-Content-Type-Options': 'nosniff',
    ...(status === 405 ? { Allow: 'GET' } : {}),
    Connection: 'close',
  });
  res.end(html);
}

function successPage(serverName: string): string {
  return page('Signed in', `Signed in to ${escapeHtml(serverName)}.`, 'You can close this tab.');
}

/**
 * Why the sign-in failed. The AS's error and description only from a response whose issuer was
 * checked: made safe to show (display-text.ts), then HTML-escaped. A response from another issuer
 * shows nothing of what it carries.
 */
function failurePage(failure: Failure): string {
  if (failure.kind === 'iss') {
    return page(
      'Sign-in failed',
      'Sign-in failed.',
      'This response did not come from the authorization server this sign-in was started with, so it was ignored. You can close this tab and try again.',
    );
  }
  if (failure.kind === 'no_code') {
    return page(
      'Sign-in failed',
      'Sign-in failed.',
      'The authorization server sent no authorization code. You can close this tab and try again.',
    );
  }
  if (!failure.said) {
    return page(
      'Sign-in failed',
      'Sign-in failed.',
      'The authorization server answered with an error. You can close this tab and try again.',
    );
  }
  const error = displayText(failure.error, 100);
  const reason = failure.description === undefined ? error : `${error}: ${displayText(failure.description)}`;
  return page(
    'Sign-in failed',
    'Sign-in failed.',
    `The authorization server answered: ${escapeHtml(reason)}. You can close this tab and try again.`,
  );
}

function refusalPage(text: string): string {
  return page('Not accepted', 'Request not accepted.', escapeHtml(text));
}

function page(title: string, heading: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)} - authkeep</title>
<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#222}</style></head>
<body><h1>${heading}</h1><p>${body}</p></body></html>
`;
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
