/**
 * revocation: asking the authorization server to revoke a token at logout (RFC 7009). The answer
 * is judged by its status; an error body is read with a size limit (MAX_ERROR_BODY_BYTES), never
 * whole: an AS that streams an endless error body is cut off.
 *
 * Not for: deleting the stored record (the session layer does that whatever the answer), or
 * revoking anything we were not issued. Errors never carry the token.
 */
import { type ClientAuth, revocationRequest } from 'oauth4webapi';
import { AuthkeepError } from '../errors.js';
import {
  assertSecureUrl,
  classifyOauth4webapiError,
  describeRequest,
  discardBody,
  failureMessage,
  type HttpOptions,
  isJsonObject,
  oauthRequestOptions,
  readJsonBody,
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
  let response: Response;
  try {
    response = await revocationRequest(as, { client_id: registration.clientId }, auth, token, {
      ...oauthRequestOptions(endpoint, options, purpose),
      additionalParameters: { token_type_hint: tokenTypeHint },
    });
  } catch (err) {
    const failure = classifyOauth4webapiError(err, request);
    if (failure.kind === 'unreachable') throw failure.error;
    if (err instanceof AuthkeepError) throw err;
    throw new AuthkeepError('as_error', `${request} could not be sent: ${failureMessage(failure)}`, {
      field: failure.kind === 'invalid_response' ? failure.field : 'request',
      detail: { request },
    });
  }
  // RFC 7009 section 2.2: 200 means revoked (the body, if any, is ignored).
  if (response.status === 200) {
    await discardBody(response);
    return 'revoked';
  }
  return refusal(response, request, token);
}

/** An error body of a revocation answer is read up to this many bytes (RFC 7009 section 2.2.1). */
export const MAX_ERROR_BODY_BYTES = 64 * 1024;

/**
 * RFC 7009 section 2.2.1: a refusal. `unsupported_token_type` is 'unsupported'; any other answer
 * is as_error naming the AS's `error` (and description, the token redacted) when its bounded body
 * carries one.
 */
async function refusal(response: Response, request: string, token: string): Promise<'unsupported'> {
  const status = response.status;
  const body =
    status >= 300 && status < 400
      ? undefined
      : await readJsonBody(response, request, MAX_ERROR_BODY_BYTES).catch((err: unknown) => {
          if (err instanceof AuthkeepError) throw err;
          return undefined;
        });
  if (body === undefined) await discardBody(response);
  const json = body?.ok && isJsonObject(body.value) ? body.value : undefined;
  const error = typeof json?.error === 'string' && json.error !== '' ? json.error : undefined;
  if (error === 'unsupported_token_type') return 'unsupported';
  const description =
    typeof json?.error_description === 'string' ? json.error_description.split(token).join('[redacted]') : undefined;
  const said = error
    ? `${error}${description ? `: ${description}` : ''}`
    : body?.ok === false && body.reason === 'too_large'
      ? `HTTP ${status} with an error body over ${MAX_ERROR_BODY_BYTES} bytes (not read further)`
      : `HTTP ${status}`;
  throw new AuthkeepError('as_error', `${request} failed: ${said}`, {
    field: error ? 'error' : 'status',
    detail: { request, status, error, error_description: description },
  });
}
