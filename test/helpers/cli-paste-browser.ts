/**
 * cli-paste-browser: a robot browser for `login --no-browser` tests. Like the testbed's robot it
 * follows the AS's redirects through the auto-approving login and consent with a cookie jar, but
 * it stops BEFORE requesting the loopback redirect URI and returns that URL: what a user on
 * another machine would copy from the address bar and paste into the CLI.
 */
import { CookieJar } from '../../arena/testbed/cookie-jar.js';

export async function redirectUrlToPaste(authorizeUrl: string, maxHops = 20): Promise<string> {
  const redirectUri = new URL(authorizeUrl).searchParams.get('redirect_uri');
  if (!redirectUri) throw new Error('authorize URL without redirect_uri');
  const jar = new CookieJar();
  let url = new URL(authorizeUrl);
  for (let hop = 0; hop < maxHops; hop++) {
    if (url.href.startsWith(`${redirectUri}?`)) return url.href;
    const cookie = jar.header(url);
    const response = await fetch(url, {
      redirect: 'manual',
      headers: { accept: 'text/html', ...(cookie ? { cookie } : {}) },
    });
    jar.store(url, response.headers.getSetCookie());
    const location = response.headers.get('location');
    await response.arrayBuffer();
    if (response.status < 300 || response.status >= 400 || !location)
      throw new Error(`stopped at HTTP ${response.status} before the redirect URI`);
    url = new URL(location, url);
  }
  throw new Error('too many redirects');
}
