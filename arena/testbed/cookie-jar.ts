/**
 * A tiny RFC 6265 cookie jar for the robot browser: host-only cookies (port ignored, as browsers
 * do), path matching, Max-Age/Expires, deletion.
 *
 * For: carrying oidc-provider's session and interaction cookies across the redirects of one robot.
 * Not for: Domain= cookies across subdomains, the public suffix list, SameSite enforcement
 * (every request of the robot is a top-level navigation, which Lax allows).
 */

interface Cookie {
  name: string;
  value: string;
  host: string;
  path: string;
  /** epoch ms, or undefined for a session cookie */
  expires?: number;
  secure: boolean;
}

export class CookieJar {
  private cookies: Cookie[] = [];

  /** Store the Set-Cookie fields of a response to `url`. */
  store(url: URL, setCookies: readonly string[]): void {
    for (const header of setCookies) {
      const cookie = parseSetCookie(header, url);
      if (!cookie) continue;
      this.cookies = this.cookies.filter(
        (c) => !(c.name === cookie.name && c.host === cookie.host && c.path === cookie.path),
      );
      if (cookie.expires === undefined || cookie.expires > Date.now()) this.cookies.push(cookie);
    }
  }

  /** The Cookie header value for a request to `url`, or undefined when none match. */
  header(url: URL): string | undefined {
    const now = Date.now();
    this.cookies = this.cookies.filter((c) => c.expires === undefined || c.expires > now);
    const matching = this.cookies
      .filter((c) => c.host === url.hostname && pathMatches(url.pathname, c.path))
      .filter((c) => !c.secure || url.protocol === 'https:' || isLoopback(url.hostname))
      // Longer paths first (RFC 6265 section 5.4 step 2).
      .sort((a, b) => b.path.length - a.path.length);
    if (matching.length === 0) return undefined;
    return matching.map((c) => `${c.name}=${c.value}`).join('; ');
  }

  size(): number {
    return this.cookies.length;
  }
}

function parseSetCookie(header: string, url: URL): Cookie | undefined {
  const [pair, ...attributes] = header.split(';');
  if (!pair) return undefined;
  const eq = pair.indexOf('=');
  if (eq <= 0) return undefined;
  const cookie: Cookie = {
    name: pair.slice(0, eq).trim(),
    value: pair.slice(eq + 1).trim(),
    host: url.hostname,
    path: defaultPath(url.pathname),
    secure: false,
  };
  let maxAge: number | undefined;
  for (const attribute of attributes) {
    const [rawName = '', ...rest] = attribute.split('=');
    const name = rawName.trim().toLowerCase();
    const value = rest.join('=').trim();
    if (name === 'path' && value.startsWith('/')) cookie.path = value;
    else if (name === 'secure') cookie.secure = true;
    else if (name === 'max-age' && /^-?\d+$/.test(value)) maxAge = Number(value);
    else if (name === 'expires') {
      const time = Date.parse(value);
      if (!Number.isNaN(time)) cookie.expires = time;
    }
  }
  // Max-Age wins over Expires (RFC 6265 section 5.3 step 3).
  if (maxAge !== undefined) cookie.expires = maxAge <= 0 ? 0 : Date.now() + maxAge * 1000;
  return cookie;
}

function defaultPath(requestPath: string): string {
  if (!requestPath.startsWith('/')) return '/';
  const last = requestPath.lastIndexOf('/');
  return last <= 0 ? '/' : requestPath.slice(0, last);
}

function pathMatches(requestPath: string, cookiePath: string): boolean {
  if (requestPath === cookiePath) return true;
  if (!requestPath.startsWith(cookiePath)) return false;
  return cookiePath.endsWith('/') || requestPath[cookiePath.length] === '/';
}

function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || hostname.startsWith('127.');
}
