/**
 * loopback-http: the `--allow-http` choice kept with a record. A sign-in made with http allowed for
 * a server on this machine (127.0.0.1, localhost, [::1]) is recorded as such, so refreshes,
 * revocation, a later sign-in and the proxy need not be told again. It only ever widens http to
 * loopback hosts: the server URL must be one, and the http rules (oauth/http.ts) still refuse
 * http for every other host.
 *
 * Not for: the https rule itself (oauth/http.ts assertSecureUrl).
 */
import { isLoopbackHost } from '../oauth/http.js';
import type { ServerRecord } from '../store/record.js';
import type { DiscoveredServer } from './discover-server.js';

/** Does `record` carry the choice, for a server on this machine? */
export function storedHttpChoice(record: Pick<ServerRecord, 'serverUrl' | 'allowHttpLoopback'> | undefined): boolean {
  if (record?.allowHttpLoopback !== true) return false;
  try {
    return isLoopbackHost(new URL(record.serverUrl).hostname);
  } catch {
    return false;
  }
}

/**
 * Should a sign-in to `server`, made with http allowed, record the choice? Yes when it was needed:
 * the server or its authorization server is reached over http (on loopback, or discovery would
 * have refused it).
 */
export function signInNeedsHttp(server: Pick<DiscoveredServer, 'serverUrl' | 'authorizationServer'>): boolean {
  const urls = [server.serverUrl, server.authorizationServer.issuer, server.authorizationServer.token_endpoint];
  return isLoopbackHost(new URL(server.serverUrl).hostname) && urls.some((url) => url.startsWith('http:'));
}
