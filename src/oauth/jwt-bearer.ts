/**
 * jwt-bearer: the JWT bearer authorization grant (RFC 7523 section 2.1), the token request of a
 * workload presenting a JWT its platform issued (workload identity federation, MCP SEP-1933; and
 * the ID-JAG of enterprise-managed authorization, SEP-990): `grant_type=urn:ietf:params:oauth:
 * grant-type:jwt-bearer`, the `assertion`, `scope`, and the RFC 8707 `resource`, with the
 * registration's client authentication (none: client_id in the body).
 *
 * Before sending, the assertion is checked to be a JWT naming the expected audience (RFC 7523
 * section 3, item 3: the AS's issuer unless configured otherwise) and not expired (item 4): an
 * assertion is a bearer credential, so one meant for another audience is never sent to this AS,
 * and one the AS must refuse is not sent at all. The signature is the AS's to check.
 *
 * Not for: where the assertion comes from (session/secret-source.ts).
 */
import { genericTokenEndpointRequest, processGenericTokenEndpointResponse } from 'oauth4webapi';
import { AuthkeepError } from '../errors.js';
import {
  type ClientCredential,
  credentialSecrets,
  machineClientAuthentication,
  withoutRefreshToken,
} from './client-credentials.js';
import { JWT_BEARER_GRANT_TYPE } from './grants.js';
import type { HttpOptions } from './http.js';
import { type TokenSet, tokenRequest } from './token-endpoint.js';
import type { AuthorizationServer, Registration } from './types.js';

/** The claims of `assertion` we check, or an error naming what is wrong (never quoting the token). */
function assertionClaims(assertion: string): { aud: string[]; exp: number | undefined } {
  const parts = assertion.split('.');
  const invalid = (why: string) =>
    new AuthkeepError('credential_unavailable', `the assertion ${why}`, { field: 'assertion' });
  if (parts.length !== 3) throw invalid('is not a JWT (RFC 7519: three base64url parts)');
  let payload: unknown;
  try {
    payload = JSON.parse(Buffer.from(parts[1] as string, 'base64url').toString('utf8'));
  } catch {
    throw invalid('has a payload that is not JSON');
  }
  if (!payload || typeof payload !== 'object') throw invalid('has a payload that is not a JSON object');
  const { aud, exp } = payload as { aud?: unknown; exp?: unknown };
  const audiences =
    typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud.filter((a) => typeof a === 'string') : [];
  return { aud: audiences, exp: typeof exp === 'number' ? exp : undefined };
}

/**
 * RFC 7523 section 3 items 3 and 4, as a client can check them: `aud` names `audience`; `exp`
 * (required there) is later than `now` (epoch ms).
 */
export function checkAssertion(assertion: string, audience: string, now: number): void {
  const claims = assertionClaims(assertion);
  const strip = (s: string) => s.replace(/\/+$/, '');
  if (!claims.aud.some((aud) => strip(aud) === strip(audience))) {
    throw new AuthkeepError(
      'credential_unavailable',
      `the assertion is for ${claims.aud.length ? claims.aud.map((a) => JSON.stringify(a.slice(0, 200))).join(', ') : 'no audience'}, not ${audience}: it is not sent`,
      { field: 'assertion.aud' },
    );
  }
  if (claims.exp === undefined) {
    throw new AuthkeepError('credential_unavailable', 'the assertion has no exp (RFC 7523 section 3, item 4)', {
      field: 'assertion.exp',
    });
  }
  if (claims.exp * 1000 <= now) {
    throw new AuthkeepError(
      'credential_unavailable',
      `the assertion expired at ${new Date(claims.exp * 1000).toISOString()}; its source has not been renewed`,
      { field: 'assertion.exp' },
    );
  }
}

/** RFC 7523 section 2.1 access token request, with RFC 8707 `resource` and `scope` when given. */
export async function requestJwtBearerToken(
  as: AuthorizationServer,
  registration: Registration,
  credential: ClientCredential,
  params: { assertion: string; resource: string; scope?: string | undefined },
  options: HttpOptions,
): Promise<TokenSet> {
  const client = { client_id: registration.clientId };
  const auth = machineClientAuthentication(registration, credential);
  const body: Record<string, string> = {
    assertion: params.assertion,
    resource: params.resource,
    ...(params.scope ? { scope: params.scope } : {}),
  };
  const tokens = await tokenRequest(
    as,
    {
      grant: 'jwt-bearer',
      send: (requestOptions) =>
        genericTokenEndpointRequest(as, client, auth, JWT_BEARER_GRANT_TYPE, body, requestOptions),
      process: (response) => processGenericTokenEndpointResponse(as, client, response),
      secrets: [params.assertion, ...credentialSecrets(credential)],
    },
    options,
  );
  return withoutRefreshToken(tokens);
}
