/**
 * revocation: asking the authorization server to revoke a token at logout (RFC 7009).
 *
 * Not for: deleting the stored record (the session layer does that whatever the answer), or
 * revoking anything we were not issued. Errors never carry the token.
 */
import { type ClientAuth, processRevocationResponse, revocationRequest } from 'oauth4webapi';
import { AuthkeepError } from '../errors.js';
import {
  assertSecureUrl,
  classifyOauth4webapiError,
  describeRequest,
  failureMessage,
  type HttpOptions,
  oauthRequestOptions,
} from './http.js';
import { clientAuthentication } from './token-endpoint.js';
import type { AuthorizationServer, Registration } from './types.js';

/**
 * RFC 7009 section 2.1 revocation request (`token`, `token_type_hint`), authenticated like a token
 * request. 'revoked' on 200 (RFC 7009 section 2.2: also for an already invalid token);
 * 'unsupported' when the AS has no revocation_endpoint or answers unsupported_token_type
 * (section 2.2.1). Other refusals: as_error; network failures and timeouts: as_unreachable.
 */
export async function revokeToken(
  as: AuthorizationServer,
  registration: Registration,
  token: string,
  tokenTypeHint: 'refresh_token' | 'access_token',
  options: HttpOptions,
  /** The client's authentication, when not the registration's own (a machine grant's: machine-grant.ts). */
  auth: ClientAuth = clientAuthentication(registration),
): Promise<'revoked' | 'unsupported'> {
  if (!as.revocation_endpoint) return 'unsupported';
  const endpoint = assertSecureUrl(
    as.revocation_endpoint,
    'revocation_endpoint',
    options.allowInsecureLoopback,
    'metadata_invalid',
  );
  const request = describeRequest('POST', endpoint, `revoke ${tokenTypeHint}`);
  const purpose = `revoke ${tokenTypeHint}`;
  try {
    const response = await revocationRequest(as, { client_id: registration.clientId }, auth, token, {
      ...oauthRequestOptions(endpoint, options, purpose),
      additionalParameters: { token_type_hint: tokenTypeHint },
    });
    await processRevocationResponse(response);
    return 'revoked';
  } catch (err) {
    const failure = classifyOauth4webapiError(err, request);
    if (failure.kind === 'unreachable') throw failure.error;
    if (err instanceof AuthkeepError) throw err;
    if (failure.kind === 'oauth_error' && failure.error === 'unsupported_token_type') return 'unsupported';
    const status = failure.kind === 'oauth_error' || failure.kind === 'challenge' ? failure.status : undefined;
    const description =
      failure.kind === 'oauth_error' ? failure.errorDescription?.split(token).join('[redacted]') : undefined;
    throw new AuthkeepError(
      'as_error',
      `${request} failed: ${failure.kind === 'oauth_error' ? `${failure.error}${description ? `: ${description}` : ''}` : failureMessage(failure)}`,
      {
        field: failure.kind === 'invalid_response' ? failure.field : 'error',
        detail: {
          request,
          status,
          error: failure.kind === 'oauth_error' ? failure.error : undefined,
          error_description: description,
        },
      },
    );
  }
}
