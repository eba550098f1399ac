/**
 * http: the one way the oauth/ steps talk HTTP. It enforces https (http only for loopback, and
 * only when allowed), bounds every request with a timeout, turns network failures and timeouts
 * into AuthkeepError('as_unreachable'), reads JSON bodies with a size cap, describes requests for
 * diagnostics without their bodies, and adapts all of this to oauth4webapi's `customFetch` /
 * `allowInsecureRequests` options.
 *
 * Not for: deciding what a response means (each protocol step does that), or carrying tokens in any
 * message: descriptions name the method, the endpoint and the grant, never a body or a query.
 */
import {
  allowInsecureRequests,
  type CustomFetchOptions,
  customFetch,
  OperationProcessingError,
  ResponseBodyError,
  UnsupportedOperationError,
  WWWAuthenticateChallengeError,
} from 'oauth4webapi';
import { AuthkeepError, type AuthkeepErrorCode } from '../errors.js';
import { USER_AGENT } from '../version.js';

export interface HttpOptions {
  /** Allow http:// for 127.0.0.1, localhost and [::1] (tests, local servers). Never other hosts. */
  allowInsecureLoopback: boolean;
  /** Per-request bound, headers and body included. Default 15 s. */
  timeoutMs?: number;
  /**
   * An absolute bound (epoch milliseconds) on top of `timeoutMs`: no request starts after it and
   * none runs past it (a refresh under a lock that waiters may take over then; token-manager.ts).
   */
  deadline?: number;
  /** A fetch implementation (tests, proxies). Default: the global fetch. */
  fetch?: typeof fetch;
  userAgent?: string;
}

export const DEFAULT_TIMEOUT_MS = 15_000;
export const DEFAULT_USER_AGENT = USER_AGENT;
/** Metadata, registration and token responses are small; a hostile server gets cut off here. */
export const MAX_JSON_BYTES = 1024 * 1024;

const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);

export function isLoopbackHost(hostname: string): boolean {
  return LOOPBACK_HOSTS.has(hostname.toLowerCase());
}

/**
 * Parse `url` and require https, or http on a loopback host when `allowInsecureLoopback` is set
 * (OAuth 2.1 section 1.5; MCP authorization "Communication Security"). Throws insecure_url naming
 * `field`, or `invalidCode` (default invalid_argument) when `url` is not an absolute URL.
 */
export function assertSecureUrl(
  url: string | URL,
  field: string,
  allowInsecureLoopback: boolean,
  invalidCode: AuthkeepErrorCode = 'invalid_argument',
): URL {
  let parsed: URL;
  try {
    parsed = new URL(String(url));
  } catch {
    throw new AuthkeepError(invalidCode, `${field} is not an absolute URL`, {
      field,
      detail: { value: truncate(String(url)) },
    });
  }
  if (parsed.username || parsed.password) {
    throw new AuthkeepError(invalidCode, `${field} must not carry credentials`, { field });
  }
  if (parsed.protocol === 'https:') return parsed;
  if (parsed.protocol === 'http:' && isLoopbackHost(parsed.hostname)) {
    if (allowInsecureLoopback) return parsed;
    throw new AuthkeepError(
      'insecure_url',
      `${field} uses http (${parsed.host}), which is allowed only for a server on this machine when asked for`,
      { field, detail: { url: safeUrl(parsed) } },
    );
  }
  throw new AuthkeepError('insecure_url', `${field} must use https (got ${parsed.protocol}//${parsed.host})`, {
    field,
    detail: { url: safeUrl(parsed) },
  });
}

/** A URL fit for messages: no credentials, no query, no fragment. */
export function safeUrl(url: string | URL): string {
  try {
    const u = new URL(String(url));
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return truncate(String(url));
  }
}

/** `POST https://as.example/token (refresh_token)`: method, endpoint, and what it was for. Never a body. */
export function describeRequest(method: string, url: string | URL, purpose?: string): string {
  return `${method.toUpperCase()} ${safeUrl(url)}${purpose ? ` (${purpose})` : ''}`;
}

function truncate(s: string, max = 200): string {
  return s.length > max ? `${s.slice(0, max)}...` : s;
}

function isTimeout(err: unknown): boolean {
  return err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError');
}

/** System error codes of failed connections, as people say them. */
const NETWORK_FAILURES: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  EPIPE: 'connection closed',
  ETIMEDOUT: 'connection timed out',
  UND_ERR_CONNECT_TIMEOUT: 'connection timed out',
  UND_ERR_SOCKET: 'connection closed',
  ENOTFOUND: 'host name not found',
  EAI_AGAIN: 'host name lookup failed (temporary)',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ECONNABORTED: 'connection aborted',
  CERT_HAS_EXPIRED: 'TLS certificate expired',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'self-signed TLS certificate',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'TLS certificate not trusted',
  ERR_TLS_CERT_ALTNAME_INVALID: 'TLS certificate is for another host',
};

/** The system error code under a failed fetch (`fetch failed` with cause ECONNREFUSED, ...). */
export function networkErrorCode(err: unknown): string | undefined {
  const cause = (err as { cause?: { code?: unknown } } | undefined)?.cause;
  return cause && typeof cause.code === 'string' ? cause.code : undefined;
}

/**
 * The network-level reason of a failed fetch in words ("connection refused", "host name not
 * found", "timeout"), never a body; undefined when `err` is no network failure.
 */
export function describeNetworkFailure(err: unknown): string | undefined {
  if (isTimeout(err)) return 'timeout';
  const code = networkErrorCode(err);
  if (code !== undefined) return NETWORK_FAILURES[code] ?? code;
  // undici's own refusals (`fetch failed` with cause "bad port", ...) carry no code.
  const cause = (err as { cause?: unknown } | undefined)?.cause;
  if (err instanceof TypeError && err.message === 'fetch failed' && cause instanceof Error) return cause.message;
  return undefined;
}

function networkReason(err: unknown): string {
  return describeNetworkFailure(err) ?? (err instanceof Error ? err.message : 'network error');
}

/** Wrap a network failure or timeout as as_unreachable; pass AuthkeepErrors through. */
export function unreachable(err: unknown, description: string): AuthkeepError {
  if (err instanceof AuthkeepError) return err;
  const reason = networkReason(err);
  const code = networkErrorCode(err);
  return new AuthkeepError('as_unreachable', `${description} failed: ${reason}`, {
    detail: { request: description, reason, ...(code !== undefined ? { code } : {}) },
  });
}

export function isUnreachable(err: unknown): boolean {
  return err instanceof AuthkeepError && err.code === 'as_unreachable';
}

/**
 * fetch with a timeout (AbortSignal.timeout, bounded by `deadline`, combined with any caller signal), no automatic
 * redirects (`redirect: 'manual'`: a 3xx is an answer, not something to follow into another
 * origin), and a User-Agent. Network errors and timeouts become as_unreachable naming the request.
 */
export async function httpRequest(
  url: URL,
  init: RequestInit,
  options: HttpOptions,
  purpose?: string,
): Promise<Response> {
  const description = describeRequest(init.method ?? 'GET', url, purpose);
  const remaining = options.deadline === undefined ? Number.POSITIVE_INFINITY : options.deadline - Date.now();
  if (remaining <= 0) {
    throw new AuthkeepError('as_unreachable', `${description} not sent: its deadline has passed`, {
      detail: { request: description, reason: 'deadline' },
    });
  }
  const timeout = AbortSignal.timeout(Math.ceil(Math.min(options.timeoutMs ?? DEFAULT_TIMEOUT_MS, remaining)));
  const signal = init.signal ? AbortSignal.any([init.signal, timeout]) : timeout;
  const headers = new Headers(init.headers);
  if (!headers.has('user-agent')) headers.set('user-agent', options.userAgent ?? DEFAULT_USER_AGENT);
  const doFetch = options.fetch ?? fetch;
  try {
    return await doFetch(url.href, { ...init, headers, redirect: 'manual', signal });
  } catch (err) {
    throw unreachable(err, description);
  }
}

export type JsonBody = { ok: true; value: unknown } | { ok: false; reason: 'not_json' | 'too_large' | 'empty' };

/**
 * Read a response body as JSON, at most MAX_JSON_BYTES. A body that is cut off, empty or not JSON is
 * reported, not thrown; a network failure or timeout while reading throws as_unreachable.
 */
export async function readJsonBody(
  response: Response,
  description: string,
  maxBytes = MAX_JSON_BYTES,
): Promise<JsonBody> {
  let text: string;
  try {
    const reader = response.body?.getReader();
    if (!reader) return { ok: false, reason: 'empty' };
    const chunks: Uint8Array[] = [];
    let size = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > maxBytes) {
        await reader.cancel().catch(() => undefined);
        return { ok: false, reason: 'too_large' };
      }
      chunks.push(value);
    }
    text = Buffer.concat(chunks).toString('utf8');
  } catch (err) {
    throw unreachable(err, description);
  }
  if (text.trim() === '') return { ok: false, reason: 'empty' };
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch {
    return { ok: false, reason: 'not_json' };
  }
}

/** Statuses that mean "no metadata document at this URL" (the next candidate is tried). */
function isAbsent(status: number): boolean {
  return (status >= 300 && status < 400) || [400, 401, 403, 404, 405, 406, 410].includes(status);
}

export type MetadataDocument =
  | { kind: 'json'; body: unknown }
  | { kind: 'absent'; status: number }
  | { kind: 'failed'; error: AuthkeepError };

/**
 * GET one candidate URL of a well-known metadata document (RFC 9728, RFC 8414, OIDC Discovery): a
 * JSON 200, nothing there (404 and the like, a redirect), or a failure to report if no later
 * candidate succeeds (discovery_failed for another status, metadata_invalid for a 200 that is not
 * JSON). Validating the document is the caller's.
 */
export async function fetchMetadataDocument(
  url: URL,
  options: HttpOptions,
  purpose: string,
): Promise<MetadataDocument> {
  const description = describeRequest('GET', url, purpose);
  const response = await httpRequest(url, { method: 'GET', headers: { accept: 'application/json' } }, options, purpose);
  if (response.status !== 200) {
    await discardBody(response);
    if (isAbsent(response.status)) return { kind: 'absent', status: response.status };
    return {
      kind: 'failed',
      error: new AuthkeepError('discovery_failed', `${description} answered HTTP ${response.status}`, {
        field: 'status',
        detail: { url: safeUrl(url), status: response.status, request: description },
      }),
    };
  }
  const body = await readJsonBody(response, description);
  if (!body.ok) {
    return {
      kind: 'failed',
      error: new AuthkeepError(
        'metadata_invalid',
        `${description} answered 200 with a body that is ${body.reason.replace('_', ' ')}`,
        { field: 'body', detail: { url: safeUrl(url), reason: body.reason } },
      ),
    };
  }
  return { kind: 'json', body: body.value };
}

/** Discard a body we will not read, so the connection is released. */
export async function discardBody(response: Response): Promise<void> {
  await response.body?.cancel().catch(() => undefined);
}

export function isJsonObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * The options oauth4webapi request functions take: our fetch (timeout, as_unreachable mapping,
 * User-Agent) as `customFetch`, and `allowInsecureRequests` only when `endpoint` is http on a
 * loopback host and that is allowed (call assertSecureUrl on it first).
 */
export function oauthRequestOptions(
  endpoint: URL,
  options: HttpOptions,
  purpose?: string,
): {
  [customFetch]: (url: string, init: CustomFetchOptions<string, unknown>) => Promise<Response>;
  [allowInsecureRequests]?: boolean;
} {
  const fetchFn = (url: string, init: CustomFetchOptions<string, unknown>): Promise<Response> => {
    // oauth4webapi sets its own User-Agent; ours names the client.
    const headers = Object.fromEntries(Object.entries(init.headers).filter(([k]) => k.toLowerCase() !== 'user-agent'));
    return httpRequest(new URL(url), { ...(init as RequestInit), headers }, options, purpose);
  };
  const insecure = endpoint.protocol === 'http:' && options.allowInsecureLoopback && isLoopbackHost(endpoint.hostname);
  return insecure ? { [customFetch]: fetchFn, [allowInsecureRequests]: true } : { [customFetch]: fetchFn };
}

/** What an oauth4webapi failure means, with the values that are safe to show (never its `cause`,
 * which can hold a whole response body, tokens included). */
export type Oauth4webapiFailure =
  | { kind: 'oauth_error'; error: string; errorDescription: string | undefined; status: number }
  | { kind: 'challenge'; status: number }
  | { kind: 'invalid_response'; field: string; message: string; status?: number }
  | { kind: 'unsupported'; field: string; message: string }
  | { kind: 'insecure'; message: string }
  | { kind: 'unreachable'; error: AuthkeepError }
  | { kind: 'other'; message: string };

function quotedField(message: string): string | undefined {
  return /"response" body "([^"]+)" property/.exec(message)?.[1];
}

function safeDescription(value: unknown): string | undefined {
  return typeof value === 'string' ? truncate(value, 300) : undefined;
}

/**
 * Classify an error thrown by an oauth4webapi request or processor. ResponseBodyError carries the
 * AS's `error`/`error_description`/status; OperationProcessingError carries a `code` and a
 * message that names the offending property (oauth4webapi messages hold names, not values).
 */
export function classifyOauth4webapiError(err: unknown, description: string): Oauth4webapiFailure {
  if (err instanceof AuthkeepError) {
    return err.code === 'as_unreachable'
      ? { kind: 'unreachable', error: err }
      : { kind: 'other', message: err.message };
  }
  if (err instanceof ResponseBodyError) {
    return {
      kind: 'oauth_error',
      error: String(err.error),
      errorDescription: safeDescription(err.error_description),
      status: err.status,
    };
  }
  if (err instanceof WWWAuthenticateChallengeError) {
    return { kind: 'challenge', status: err.status };
  }
  if (err instanceof UnsupportedOperationError) {
    const field = /`([a-z_]+)`/.exec(err.message)?.[1] ?? 'response';
    return { kind: 'unsupported', field, message: err.message };
  }
  if (err instanceof OperationProcessingError) {
    const cause = err.cause as { attribute?: unknown; status?: unknown } | undefined;
    switch (err.code) {
      case 'OAUTH_HTTP_REQUEST_FORBIDDEN':
      case 'OAUTH_REQUEST_PROTOCOL_FORBIDDEN':
        return { kind: 'insecure', message: err.message };
      case 'OAUTH_PARSE_ERROR':
        return { kind: 'invalid_response', field: 'body', message: 'the response body is not JSON' };
      case 'OAUTH_RESPONSE_IS_NOT_JSON':
        return { kind: 'invalid_response', field: 'content-type', message: 'the response is not application/json' };
      case 'OAUTH_RESPONSE_IS_NOT_CONFORM': {
        const status = cause instanceof Response ? cause.status : undefined;
        return {
          kind: 'invalid_response',
          field: 'status',
          message: `unexpected HTTP status ${status ?? ''}`.trim(),
          ...(status === undefined ? {} : { status }),
        };
      }
      case 'OAUTH_MISSING_SERVER_METADATA':
      case 'OAUTH_INVALID_SERVER_METADATA':
      case 'OAUTH_JSON_ATTRIBUTE_COMPARISON_FAILED':
        return {
          kind: 'invalid_response',
          field: typeof cause?.attribute === 'string' ? cause.attribute : (quotedField(err.message) ?? 'metadata'),
          message: err.message,
        };
      default:
        return { kind: 'invalid_response', field: quotedField(err.message) ?? 'response', message: err.message };
    }
  }
  if (isTimeout(err)) {
    return { kind: 'unreachable', error: unreachable(err, description) };
  }
  return { kind: 'other', message: err instanceof Error ? err.message : String(err) };
}

/** A short, secret-free description of a classified oauth4webapi failure. */
export function failureMessage(failure: Oauth4webapiFailure): string {
  switch (failure.kind) {
    case 'oauth_error':
      return `${failure.error}${failure.errorDescription ? `: ${failure.errorDescription}` : ''} (HTTP ${failure.status})`;
    case 'challenge':
      return `HTTP ${failure.status} with a WWW-Authenticate challenge`;
    case 'unreachable':
      return failure.error.message;
    default:
      return failure.message;
  }
}
