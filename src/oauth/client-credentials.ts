/**
 * client-credentials: the client credentials grant (RFC 6749 section 4.4; OAuth 2.1 section 4.2;
 * MCP SEP-1046), the token request of a client acting on its own behalf: section 4.4.2's
 * `grant_type=client_credentials` with `scope` and the RFC 8707 section 2.2 `resource`,
 * authenticated by client_secret_basic, client_secret_post (RFC 6749 section 2.3.1) or
 * private_key_jwt (RFC 7523 section 2.2). The section 4.4.3 response is read like any other
 * (token-endpoint.ts), its failures classified the same way. A refresh token is not expected
 * (section 4.4.3: it SHOULD NOT be included) and is dropped: the next token comes from this grant.
 *
 * Not for: when to ask (session/token-manager.ts) or where the secrets come from (session/).
 */
import { type ClientAuth, clientCredentialsGrantRequest, processClientCredentialsResponse } from 'oauth4webapi';
import { type ClientSigningKey, privateKeyJwt } from './client-assertion.js';
import type { HttpOptions } from './http.js';
import { clientAuthentication, type TokenSet, tokenRequest } from './token-endpoint.js';
import type { AuthorizationServer, Registration } from './types.js';

/** The client's credential for this request, read just before it (session/secret-source.ts). */
export type ClientCredential = { clientSecret: string } | { signingKey: ClientSigningKey } | { none: true };

/** RFC 6749 section 2.3 client authentication of a machine grant: the registration's method, this credential. */
export function machineClientAuthentication(registration: Registration, credential: ClientCredential): ClientAuth {
  if ('signingKey' in credential) return privateKeyJwt(credential.signingKey);
  if ('clientSecret' in credential)
    return clientAuthentication({ ...registration, clientSecret: credential.clientSecret });
  return clientAuthentication(registration);
}

/** The secrets of a request (scrubbed from anything the AS echoes back). */
export function credentialSecrets(credential: ClientCredential): string[] {
  return 'clientSecret' in credential ? [credential.clientSecret] : [];
}

/** A token response of a machine grant, without the refresh token it should not carry. */
export function withoutRefreshToken(tokens: TokenSet): TokenSet {
  const { refreshToken: _dropped, ...rest } = tokens;
  return rest;
}

/** RFC 6749 section 4.4.2 access token request, with RFC 8707 `resource` and `scope` when given. */
export async function requestClientCredentialsToken(
  as: AuthorizationServer,
  registration: Registration,
  credential: ClientCredential,
  params: { resource: string; scope?: string | undefined },
  options: HttpOptions,
): Promise<TokenSet> {
  const client = { client_id: registration.clientId };
  const auth = machineClientAuthentication(registration, credential);
  const body: Record<string, string> = { resource: params.resource, ...(params.scope ? { scope: params.scope } : {}) };
  const tokens = await tokenRequest(
    as,
    {
      grant: 'client_credentials',
      send: (requestOptions) => clientCredentialsGrantRequest(as, client, auth, body, requestOptions),
      process: (response) => processClientCredentialsResponse(as, client, response),
      secrets: credentialSecrets(credential),
    },
    options,
  );
  return withoutRefreshToken(tokens);
}
