/**
 * static-client: which configured pre-registered client a sign-in at an issuer may use (MCP
 * "Client Registration", "Authorization Server Binding", SEP-2352). Pre-registered credentials
 * belong to the authorization server that issued them and are never presented to another:
 * - a client keyed by the issuer is used at that issuer only;
 * - a client keyed by the MCP server URL is bound to one issuer: the `issuer` it names, else the
 *   issuer it was first used at (the record's registration, while the record holds it); when the
 *   server's protected resource metadata now names another authorization server, the sign-in is
 *   refused with an error naming both ("SHOULD surface an error rather than silently attempting to
 *   use mismatched credentials"), before any request to the new one.
 *
 * Not for: registering (oauth/registration.ts) or choosing among stored registrations.
 */
import { AuthkeepError } from '../errors.js';
import type { Registration } from '../oauth/types.js';
import type { StaticClient } from './sign-in.js';

/**
 * The pre-registered client for a sign-in to `serverUrl` at `issuer`, or undefined when none is
 * configured for it. `current` is the server's stored registration, if any. Throws
 * registration_failed (field `issuer`) when the server-URL-keyed client belongs to another issuer.
 */
export function staticClientFor(
  staticClients: Readonly<Record<string, StaticClient>> | undefined,
  serverUrl: string,
  issuer: string,
  current: Registration | undefined,
): StaticClient | undefined {
  if (staticClients === undefined) return undefined;
  const byIssuer = staticClients[issuer];
  if (byIssuer !== undefined) return byIssuer;
  const byServer = staticClients[serverUrl];
  if (byServer === undefined) return undefined;
  const bound =
    byServer.issuer ??
    (current?.method === 'pre_registered' && current.clientId === byServer.clientId ? current.issuer : undefined);
  if (bound === undefined || bound === issuer) return byServer;
  throw new AuthkeepError(
    'registration_failed',
    `the pre-registered client ${byServer.clientId} configured for ${serverUrl} belongs to the authorization server ${bound}, but the server now names ${issuer}; a client is never presented to an authorization server other than the one that issued it: configure a client of ${issuer} (staticClients keyed by that issuer, or --client-id with a client of it), or remove the pre-registered client to register with ${issuer}`,
    { field: 'issuer', detail: { expected: bound, actual: issuer, clientId: byServer.clientId } },
  );
}
