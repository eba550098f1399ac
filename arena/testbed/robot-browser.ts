/**
 * The robot "browser": opens an authorization URL and follows every redirect with its own cookie
 * jar, through the AS's auto-approving login and consent, until a response is not a redirect;
 * that last GET is normally the client's loopback redirect URI, which thereby receives the code.
 *
 * For: completing real authorization code flows in tests and the arena without a person.
 * Not for: running scripts or forms (the test AS needs neither), or anything off loopback.
 * The returned finalUrl carries the authorization code: never log it.
 */
import { CookieJar } from './cookie-jar.js';

export interface RobotVisit {
  /** The last URL requested (normally the redirect URI with code/state/iss, or error). */
  finalUrl: string;
  /** Status of the last response. */
  status: number;
  /** Number of requests made. */
  hops: number;
  /** True when the last URL carried `code` or `error` (the redirect URI was reached). */
  reachedRedirectUri: boolean;
}

export interface RobotBrowserOptions {
  /** Maximum number of requests per open() (default 20). */
  maxHops?: number;
  /** Per-request timeout in ms (default 10000). */
  timeoutMs?: number;
}

export interface RobotBrowser {
  open(url: string): Promise<RobotVisit>;
  /** How many times open() was called. */
  opened(): number;
}

export class RobotBrowserError extends Error {
  constructor(
    message: string,
    readonly hops: number,
  ) {
    super(message);
    this.name = 'RobotBrowserError';
  }
}

export function createRobotBrowser(options: RobotBrowserOptions = {}): RobotBrowser {
  const jar = new CookieJar();
  const maxHops = options.maxHops ?? 20;
  const timeoutMs = options.timeoutMs ?? 10_000;
  let opens = 0;

  async function open(start: string): Promise<RobotVisit> {
    opens += 1;
    let url = new URL(start);
    for (let hop = 1; hop <= maxHops; hop++) {
      const cookie = jar.header(url);
      const response = await fetch(url, {
        redirect: 'manual',
        headers: { accept: 'text/html,*/*', ...(cookie ? { cookie } : {}) },
        signal: AbortSignal.timeout(timeoutMs),
      });
      jar.store(url, response.headers.getSetCookie());
      const location = response.headers.get('location');
      if (response.status >= 300 && response.status < 400 && location) {
        await response.body?.cancel();
        url = new URL(location, url);
        continue;
      }
      await response.arrayBuffer();
      const reached = url.searchParams.has('code') || url.searchParams.has('error');
      return { finalUrl: url.href, status: response.status, hops: hop, reachedRedirectUri: reached };
    }
    throw new RobotBrowserError(`more than ${maxHops} redirects`, maxHops);
  }

  return { open, opened: () => opens };
}
