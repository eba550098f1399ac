/**
 * token-exchange: the RFC 8693 token exchange request of enterprise-managed authorization (MCP
 * SEP-990, the identity assertion JWT authorization grant draft): at the enterprise IdP's token
 * endpoint, the user's ID token (`subject_token`, type `urn:ietf:params:oauth:token-type:id_token`)
 * is exchanged for an ID-JAG (`requested_token_type` `urn:ietf:params:oauth:token-type:id-jag`)
 * whose audience is the MCP authorization server's issuer and whose resource is the MCP server
 * (section 2.1 `audience` and `resource`). The answer (section 2.2.1) is not an access token:
 * `issued_token_type` must be the ID-JAG type and `access_token` holds it; `token_type` is `N_A`.
 * Errors are classified like every token endpoint's (token-endpoint.ts), the request description
 * naming the IdP's endpoint and `token-exchange`, so a failure says which step failed.
 *
 * Not for: redeeming the ID-JAG (jwt-bearer.ts) or where the ID token comes from (session/).
 */
import { genericTokenEndpointRequest } from 'oauth4webapi';
import * as z from 'zod/mini';
import { AuthkeepError } from '../errors.js';
import { type ClientCredential, credentialSecrets, machineClientAuthentication } from './client-credentials.js';
import {
  assertSecureUrl,
  classifyOauth4webapiError,
  describeRequest,
  type HttpOptions,
  oauthRequestOptions,
  readJsonBody,
} from './http.js';
import { classifyErrorResponse, TokenEndpointError } from './token-endpoint.js';
import type { Registration } from './types.js';

export const TOKEN_EXCHANGE_GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const ID_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:id_token';
export const ID_JAG_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:id-jag';

const ExchangeResponseSchema = z.object({
  access_token: z.string().check(z.minLength(1)),
  issued_token_type: z.string(),
});

/**
 * RFC 8693 section 2.1 request at the IdP (`idp`: its issuer and token endpoint; `registration`:
 * the MCP client's registration there). Returns the ID-JAG.
 */
export async function exchangeIdTokenForIdJag(
  idp: { issuer: string; token_endpoint: string },
  registration: Registration,
  credential: ClientCredential,
  params: { idToken: string; audience: string; resource: string; scope?: string | undefined },
  options: HttpOptions,
): Promise<string> {
  const endpoint = assertSecureUrl(idp.token_endpoint, 'idp.tokenEndpoint', options.allowInsecureLoopback);
  const request = describeRequest('POST', endpoint, 'token-exchange');
  const secrets = [params.idToken, ...credentialSecrets(credential)];
  const client = { client_id: registration.clientId };
  let response: Response;
  try {
    response = await genericTokenEndpointRequest(
      idp,
      client,
      machineClientAuthentication(registration, credential),
      TOKEN_EXCHANGE_GRANT_TYPE,
      {
        subject_token: params.idToken,
        subject_token_type: ID_TOKEN_TYPE,
        requested_token_type: ID_JAG_TOKEN_TYPE,
        audience: params.audience,
        resource: params.resource,
        ...(params.scope ? { scope: params.scope } : {}),
      },
      oauthRequestOptions(endpoint, options, 'token-exchange'),
    );
  } catch (err) {
    const failure = classifyOauth4webapiError(err, request);
    if (failure.kind === 'unreachable') {
      throw new TokenEndpointError(failure.error.message, { kind: 'transient', code: 'as_unreachable', request });
    }
    throw new TokenEndpointError(
      `${request} could not be sent: ${'message' in failure ? failure.message : failure.kind}`,
      {
        kind: 'malformed',
        code: 'token_response_invalid',
        request,
      },
    );
  }
  if (response.status !== 200) throw await classifyErrorResponse(response, request, secrets);
  const body = await readJsonBody(response, request);
  const parsed = body.ok ? ExchangeResponseSchema.safeParse(body.value) : undefined;
  if (!parsed?.success) {
    throw new TokenEndpointError(`${request} answered without an access_token and issued_token_type`, {
      kind: 'malformed',
      code: 'token_response_invalid',
      field: 'access_token',
      request,
      status: 200,
    });
  }
  if (parsed.data.issued_token_type !== ID_JAG_TOKEN_TYPE) {
    throw new AuthkeepError('token_response_invalid', `${request} issued another token type than an ID-JAG`, {
      field: 'issued_token_type',
    });
  }
  return parsed.data.access_token;
}
