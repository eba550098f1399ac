/**
 * origin-bound-fetch: requests that carry credentials (a bearer token, the proxy's `--header`
 * values) stay on the MCP server's origin. `requireServerOrigin` refuses a URL outside it, and
 * `fetchWithinOrigin` follows a redirect only while it stays on the request's origin (RFC 9110
 * section 15.4: a 3xx is the server's answer; following it is the client's choice, and Fetch only
 * strips `Authorization` when it crosses origins, never other headers). A redirect elsewhere is
 * handed back unfollowed, as the 3xx it is.
 *
 * Not for: requests to authorization servers (oauth/http.ts never follows a redirect at all).
 */
import { AuthkeepError } from '../errors.js';
import { safeUrl } from '../oauth/http.js';

/** Redirects followed within one origin before the last 3xx is handed back. */
export const MAX_SAME_ORIGIN_REDIRECTS = 5;
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

/**
 * `url` parsed, when it is on the origin (scheme, host and port) of `serverUrl`; otherwise
 * AuthkeepError `origin_mismatch` naming `field`. Nothing is sent to a URL that fails.
 */
export function requireServerOrigin(url: string | URL, serverUrl: string, field = 'url'): URL {
  const server = new URL(serverUrl);
  let target: URL;
  try {
    target = new URL(String(url), server);
  } catch {
    throw new AuthkeepError('invalid_argument', `${field} is not a URL`, { field });
  }
  if (target.origin !== server.origin || target.username !== '' || target.password !== '') {
    throw new AuthkeepError(
      'origin_mismatch',
      `refused to send credentials for ${safeUrl(server)} to ${safeUrl(target)}: outside the server's origin ${server.origin}`,
      { field, detail: { url: safeUrl(target), origin: server.origin } },
    );
  }
  return target;
}

/**
 * A fetch over `base` that follows redirects only within the origin of each request's URL (at most
 * MAX_SAME_ORIGIN_REDIRECTS, and 301/302/303 only for GET and HEAD, which they leave unchanged);
 * a redirect to another origin, with userinfo, or past that bound is returned as the 3xx response.
 * `redirect: 'manual'` or `'error'` from the caller is passed on as is.
 */
export function fetchWithinOrigin(base: typeof fetch): typeof fetch {
  const bound = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    if (init?.redirect === 'manual' || init?.redirect === 'error') return base(input, init);
    const first = await asRequestInit(input, init);
    let url = first.url;
    let response = await base(url.href, { ...first.init, redirect: 'manual' });
    for (let followed = 0; followed < MAX_SAME_ORIGIN_REDIRECTS; followed++) {
      const target = sameOriginTarget(response, url, first.init.method ?? 'GET');
      if (target === undefined) return response;
      await response.body?.cancel().catch(() => undefined);
      url = target;
      response = await base(url.href, { ...first.init, redirect: 'manual' });
    }
    return response;
  };
  return bound as typeof fetch;
}

/** The URL and a replayable init of a fetch call (a Request's body read once). */
async function asRequestInit(
  input: string | URL | Request,
  init: RequestInit | undefined,
): Promise<{ url: URL; init: RequestInit }> {
  if (!(input instanceof Request)) return { url: new URL(String(input)), init: { ...init } };
  const headers = new Headers(input.headers);
  new Headers(init?.headers).forEach((value, key) => {
    headers.set(key, value);
  });
  const body = init?.body ?? (input.body ? await input.arrayBuffer() : undefined);
  return {
    url: new URL(input.url),
    init: { ...init, method: init?.method ?? input.method, headers, ...(body === undefined ? {} : { body }) },
  };
}

/** Where `response` redirects to, when that is to be followed (see fetchWithinOrigin). */
function sameOriginTarget(response: Response, from: URL, method: string): URL | undefined {
  if (!REDIRECT_STATUSES.has(response.status)) return undefined;
  const location = response.headers.get('location');
  if (location === null) return undefined;
  let target: URL;
  try {
    target = new URL(location, from);
  } catch {
    return undefined;
  }
  const keepsMethod =
    response.status === 307 || response.status === 308 || ['GET', 'HEAD'].includes(method.toUpperCase());
  if (!keepsMethod || target.origin !== from.origin || target.username !== '' || target.password !== '')
    return undefined;
  return target;
}
