/**
 * proxy-errors: what a failure of the MCP SDK's client transports means to the proxy: the server
 * does not speak this transport (fall back), the message provably never reached it (send it
 * again), or no retry can help (give up); and the one-line description the proxy logs.
 *
 * Not for: deciding what to do next (proxy-bridge.ts) or authkeep's own errors (src/errors.ts).
 */
import { StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { AuthkeepError, NeedsAuthError } from '../errors.js';
import { describeNetworkFailure } from '../oauth/http.js';

/** The two MCP transports the proxy speaks to the remote server. */
export type TransportKind = 'http' | 'sse';

/** A failure in one line: its message and, for a network error, what failed in words. Never a body. */
export function describeError(err: unknown): string {
  if (err instanceof Error) {
    const network = describeNetworkFailure(err);
    return network === undefined || err.message.endsWith(network) ? err.message : `${err.message}: ${network}`;
  }
  return String(err);
}

/** The server answered "not this transport": fall back to the other one. */
export function wrongTransport(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  if (err instanceof StreamableHTTPError || (err instanceof Error && err.name !== 'AuthkeepError')) {
    if (code === 400 || code === 404 || code === 405) return true;
  }
  return err instanceof StreamableHTTPError && code === -1; // unexpected content type
}

/** The message certainly did not reach the server's MCP handling: safe to send again. */
export function notDelivered(err: unknown, kind: TransportKind | undefined): boolean {
  if (err instanceof StreamableHTTPError && err.code === 404 && kind === 'http') return true; // session expired
  if (err instanceof Error && err.message === 'Not connected') return true; // SSE endpoint not known yet
  // SSE: the message endpoint no longer knows the session (its stream is gone).
  if (kind === 'sse' && err instanceof Error && /^Error POSTing to endpoint \(HTTP 404\)/.test(err.message))
    return true;
  const cause = (err as { cause?: { code?: unknown } }).cause;
  return cause?.code === 'ECONNREFUSED';
}

export function isAbort(err: unknown): boolean {
  return err instanceof Error && (err.name === 'AbortError' || /operation was aborted/i.test(err.message));
}

/**
 * No point retrying the connection: authorization that failed, options that are wrong, a 4xx
 * answer, or a redirect the proxy does not follow (to another origin: credentials stay on the
 * server's; origin-bound-fetch.ts), which a retry would only get again.
 */
export function isFatal(err: unknown): boolean {
  if (err instanceof NeedsAuthError) return true;
  if (err instanceof AuthkeepError) return err.code !== 'as_unreachable' && err.code !== 'server_unreachable';
  const code = (err as { code?: unknown }).code;
  if (typeof code !== 'number') return false;
  return (code >= 300 && code < 400) || (code >= 400 && code < 500 && code !== 408 && code !== 429);
}
