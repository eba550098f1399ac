/**
 * token-endpoint: the two token requests an MCP client makes, the authorization code exchange
 * (RFC 6749 section 4.1.3, RFC 7636 section 4.5) and the refresh (RFC 6749 section 6), both with
 * the RFC 8707 `resource`, and the classification of every failure into what the session layer
 * must do: sign in again (needs_auth), retry later (transient), or give up on a response it cannot
 * use (malformed). oauth4webapi builds the requests and validates 200 bodies; we read error bodies
 * ourselves (it would throw on a 401's WWW-Authenticate before reading the body's `error`).
 *
 * DPoP (RFC 9449 section 5): given a DPoPHandle, every token request carries a fresh proof signed
 * by oauth4webapi, which also remembers the AS's `DPoP-Nonce`; a `use_dpop_nonce` refusal (section
 * 8) is answered by sending the request once more, with a new proof carrying that nonce. The token
 * type is then `DPoP` (or `Bearer`, when the AS does not bind: the caller decides if that will do).
 *
 * Not for: deciding when to refresh or storing tokens (session/, store/). No message, detail or
 * cause of a TokenEndpointError carries a token, code, verifier or client secret; the AS's
 * error_description is scrubbed of them too.
 */
import {
  type ClientAuth,
  ClientSecretPost,
  type DPoPHandle,
  deviceCodeGrantRequest,
  genericTokenEndpointRequest,
  getValidatedIdTokenClaims,
  isDPoPNonceError,
  None,
  processAuthorizationCodeResponse,
  processDeviceCodeResponse,
  processRefreshTokenResponse,
  refreshTokenGrantRequest,
  type TokenEndpointResponse,
} from 'oauth4webapi';
import { AuthkeepError, type EnterpriseStep, type ErrorCode, type NeedsAuthReason } from '../errors.js';
import {
  assertSecureUrl,
  classifyOauth4webapiError,
  describeRequest,
  type HttpOptions,
  isJsonObject,
  oauthRequestOptions,
  readJsonBody,
} from './http.js';
import type { AuthorizationServer, Registration } from './types.js';

export interface TokenSet {
  accessToken: string;
  /** `Bearer`, or `DPoP` when the request carried a DPoP proof and the AS bound the token to its key. */
  tokenType: 'Bearer' | 'DPoP';
  /** Seconds, as the AS sent it (RFC 6749 section 5.1). */
  expiresIn?: number;
  /** Absent when the AS issued none (keep the old one on refresh). */
  refreshToken?: string;
  scope?: string;
  /**
   * OpenID Connect: the ID token, validated by oauth4webapi (OpenID Connect Core 1.0 section
   * 3.1.3.7: `iss` the issuer, `aud` the client_id, `exp`, `iat`, and the `nonce` of the sign-in),
   * with its `exp` (epoch ms) and `sub`. Present when the response carried one.
   */
  idToken?: IdToken;
}

/** A validated ID token and the claims the session keeps of it. */
export interface IdToken {
  token: string;
  /** Epoch milliseconds (the `exp` claim). */
  expiresAt: number;
  /** Epoch milliseconds (the `iat` claim). */
  issuedAt: number;
  subject: string;
}

export type TokenErrorKind = 'needs_auth' | 'transient' | 'malformed';

export interface TokenEndpointErrorInit {
  kind: TokenErrorKind;
  code: ErrorCode;
  request: string;
  field?: string;
  needsAuthReason?: NeedsAuthReason;
  oauthError?: string;
  oauthErrorDescription?: string;
  status?: number;
  /** Enterprise-managed authorization: the SEP-990 step this request was. */
  step?: EnterpriseStep;
}

/**
 * A token request failed. `kind`: needs_auth (invalid_grant, invalid_client, unauthorized_client
 * and other OAuth refusals a retry cannot fix), transient (network, timeout, 5xx, 429,
 * temporarily_unavailable), malformed (a 200 or error body we cannot use; `field` names what).
 */
export class TokenEndpointError extends AuthkeepError {
  readonly kind: TokenErrorKind;
  readonly needsAuthReason: NeedsAuthReason | undefined;
  readonly oauthError: string | undefined;
  readonly oauthErrorDescription: string | undefined;
  readonly status: number | undefined;
  /** e.g. `POST https://as.example/token (refresh_token)`. */
  readonly request: string;

  constructor(message: string, init: TokenEndpointErrorInit) {
    super(init.code, message, {
      ...(init.step !== undefined ? { step: init.step } : {}),
      ...(init.field !== undefined ? { field: init.field } : {}),
      detail: {
        kind: init.kind,
        request: init.request,
        status: init.status,
        error: init.oauthError,
        error_description: init.oauthErrorDescription,
      },
    });
    this.name = 'TokenEndpointError';
    this.kind = init.kind;
    this.needsAuthReason = init.needsAuthReason;
    this.oauthError = init.oauthError;
    this.oauthErrorDescription = init.oauthErrorDescription;
    this.status = init.status;
    this.request = init.request;
  }

  /** The same failure, naming the SEP-990 step it was (errors.ts atStep). */
  withStep(step: EnterpriseStep): TokenEndpointError {
    return new TokenEndpointError(this.message, {
      kind: this.kind,
      code: this.code,
      request: this.request,
      step,
      ...(this.field !== undefined ? { field: this.field } : {}),
      ...(this.needsAuthReason !== undefined ? { needsAuthReason: this.needsAuthReason } : {}),
      ...(this.oauthError !== undefined ? { oauthError: this.oauthError } : {}),
      ...(this.oauthErrorDescription !== undefined ? { oauthErrorDescription: this.oauthErrorDescription } : {}),
      ...(this.status !== undefined ? { status: this.status } : {}),
    });
  }
}

/** RFC 6749 section 2.3.1 / RFC 7591 section 2: client authentication per the registration. */
export function clientAuthentication(registration: Registration): ClientAuth {
  switch (registration.tokenEndpointAuthMethod) {
    case 'none':
      return None();
    case 'client_secret_basic':
    case 'client_secret_post':
      if (!registration.clientSecret) {
        throw new AuthkeepError(
          'invalid_argument',
          `the registration uses ${registration.tokenEndpointAuthMethod} but holds no client secret`,
          {
            field: 'registration.clientSecret',
          },
        );
      }
      return registration.tokenEndpointAuthMethod === 'client_secret_basic'
        ? clientSecretBasic(registration.clientSecret)
        : ClientSecretPost(registration.clientSecret);
    case 'private_key_jwt':
      // The key is a machine grant's (oauth/client-assertion.ts), read when its request is made.
      throw new AuthkeepError(
        'invalid_argument',
        'the registration uses private_key_jwt, which needs its signing key',
        {
          field: 'registration.tokenEndpointAuthMethod',
        },
      );
  }
}

/** application/x-www-form-urlencoded serialisation of one value (HTML's algorithm, as URLSearchParams does). */
function formUrlEncode(value: string): string {
  return new URLSearchParams({ v: value }).toString().slice(2);
}

/**
 * client_secret_basic (RFC 6749 section 2.3.1): client_id and secret form-urlencoded, joined by
 * ":" and base64-encoded. Ours rather than oauth4webapi's `ClientSecretBasic`, which also
 * percent-encodes `-`, `.`, `_`, `~` and friends; servers that decode literally (the MCP
 * conformance suite among them) then see `pre%2Dregistered` instead of `pre-registered`.
 */
function clientSecretBasic(clientSecret: string): ClientAuth {
  return (_as, client, _body, headers) => {
    const credentials = `${formUrlEncode(client.client_id)}:${formUrlEncode(clientSecret)}`;
    headers.set('authorization', `Basic ${Buffer.from(credentials).toString('base64')}`);
  };
}

/** How much of the AS's `error` / `error_description` is kept. */
const AS_TEXT_MAX = 300;

/**
 * Replace every occurrence of a secret in AS-supplied text (a hostile AS could echo one back),
 * then bound it. Redaction comes first: cutting first could split a secret at the cut and leave
 * its first part, which no longer matches, in messages and stored markers.
 */
function scrub(text: string | undefined, secrets: readonly (string | undefined)[]): string | undefined {
  if (text === undefined) return undefined;
  let out = text;
  for (const secret of secrets) {
    if (secret && secret.length >= 4) out = out.split(secret).join('[redacted]');
  }
  return Array.from(out).slice(0, AS_TEXT_MAX).join('');
}

/** One token request: what it is for (named in descriptions), how to send it, how to read a 200, its secrets. */
export interface Exchange {
  grant:
    | 'authorization_code'
    | 'refresh_token'
    | 'device_code'
    | 'client_credentials'
    | 'jwt-bearer'
    | 'token-exchange';
  send: (options: ReturnType<typeof oauthRequestOptions> & { DPoP?: DPoPHandle }) => Promise<Response>;
  /** Sign each request with this key (RFC 9449 section 5). */
  dpop?: DPoPHandle | undefined;
  process: (response: Response) => Promise<TokenEndpointResponse>;
  secrets: readonly (string | undefined)[];
  /** OpenID Connect: the answer must carry an ID token (the processor has validated it). */
  requireIdToken?: boolean | undefined;
}

/** RFC 6749 section 5.2 error codes that mean "this grant or client is not good here". */
function needsAuthReasonFor(error: string): NeedsAuthReason | undefined {
  if (error === 'invalid_grant') return 'invalid_grant';
  if (error === 'invalid_client' || error === 'unauthorized_client') return 'client_mismatch';
  return undefined;
}

/** What a non-200 token endpoint answer means (token-exchange.ts reads its own 200s, and this for the rest). */
export async function classifyErrorResponse(
  response: Response,
  request: string,
  secrets: Exchange['secrets'],
): Promise<TokenEndpointError> {
  const status = response.status;
  const body = status >= 300 && status < 400 ? undefined : await readJsonBody(response, request).catch(() => undefined);
  if (body === undefined) await response.body?.cancel().catch(() => undefined);
  const json = body?.ok && isJsonObject(body.value) ? body.value : undefined;
  const oauthError = typeof json?.error === 'string' && json.error !== '' ? scrub(json.error, secrets) : undefined;
  const oauthErrorDescription =
    typeof json?.error_description === 'string' ? scrub(json.error_description, secrets) : undefined;
  const said = oauthError
    ? `${oauthError}${oauthErrorDescription ? `: ${oauthErrorDescription}` : ''}`
    : `HTTP ${status}`;
  const base = {
    request,
    status,
    ...(oauthError ? { oauthError } : {}),
    ...(oauthErrorDescription ? { oauthErrorDescription } : {}),
  };

  if (
    oauthError === 'temporarily_unavailable' ||
    // RFC 9449 section 8: a nonce the AS changed again after the one retry; a later attempt signs with it.
    oauthError === 'use_dpop_nonce' ||
    status >= 500 ||
    status === 429 ||
    status === 408
  ) {
    return new TokenEndpointError(`${request} failed, retry later: ${said}`, {
      ...base,
      kind: 'transient',
      code: 'as_error',
    });
  }
  if (oauthError) {
    const reason = needsAuthReasonFor(oauthError);
    return new TokenEndpointError(`${request} was refused: ${said}`, {
      ...base,
      kind: 'needs_auth',
      code: reason ?? 'as_error',
      field: 'error',
      ...(reason ? { needsAuthReason: reason } : {}),
    });
  }
  if (status === 401) {
    // RFC 6749 section 5.2: 401 is the AS refusing the client's authentication.
    return new TokenEndpointError(`${request} was refused: HTTP 401 (client authentication failed)`, {
      ...base,
      kind: 'needs_auth',
      code: 'client_mismatch',
      needsAuthReason: 'client_mismatch',
    });
  }
  return new TokenEndpointError(`${request} answered HTTP ${status} without an OAuth error`, {
    ...base,
    kind: 'malformed',
    code: 'token_response_invalid',
    field: 'error',
  });
}

function malformed(request: string, field: string, why: string, status = 200): TokenEndpointError {
  return new TokenEndpointError(`${request} answered with an unusable ${field}: ${why}`, {
    kind: 'malformed',
    code: 'token_response_invalid',
    field,
    request,
    status,
  });
}

/** Send `exchange` to the token endpoint and read its answer (the machine grants use it too). */
export async function tokenRequest(
  as: AuthorizationServer,
  exchange: Exchange,
  options: HttpOptions,
): Promise<TokenSet> {
  const endpoint = assertSecureUrl(
    as.token_endpoint,
    'token_endpoint',
    options.allowInsecureLoopback,
    'metadata_invalid',
  );
  const request = describeRequest('POST', endpoint, exchange.grant);

  const send = () =>
    exchange.send({
      ...oauthRequestOptions(endpoint, options, exchange.grant),
      ...(exchange.dpop ? { DPoP: exchange.dpop } : {}),
    });
  let response: Response;
  try {
    response = await send();
    if (exchange.dpop && response.status !== 200) response = await withBoundedBody(response, request);
    if (exchange.dpop && (await demandsDpopNonce(response, exchange.process))) {
      // RFC 9449 section 8: oauth4webapi kept the DPoP-Nonce it sent; a new proof carries it.
      await response.body?.cancel().catch(() => undefined);
      response = await send();
    }
  } catch (err) {
    const failure = classifyOauth4webapiError(err, request);
    if (failure.kind === 'unreachable') {
      throw new TokenEndpointError(failure.error.message, { kind: 'transient', code: 'as_unreachable', request });
    }
    if (err instanceof AuthkeepError) throw err;
    throw new TokenEndpointError(
      `${request} could not be sent: ${'message' in failure ? failure.message : failure.kind}`,
      {
        kind: 'malformed',
        code: 'token_response_invalid',
        request,
      },
    );
  }

  if (response.status !== 200) throw await classifyErrorResponse(response, request, exchange.secrets);

  const body = await readJsonBody(response, request).catch((err: unknown) => {
    throw err instanceof AuthkeepError && err.code === 'as_unreachable'
      ? new TokenEndpointError(err.message, { kind: 'transient', code: 'as_unreachable', request })
      : err;
  });
  if (!body.ok) throw malformed(request, 'body', `the body is ${body.reason.replace('_', ' ')}`);
  if (!isJsonObject(body.value)) throw malformed(request, 'body', 'the body is not a JSON object');
  const json = body.value;
  if (json.access_token === undefined && typeof json.error === 'string' && json.error !== '') {
    // Some ASes answer 200 with an error body; classify it as the error it is.
    throw await classifyErrorResponse(
      new Response(JSON.stringify(json), { status: 400, headers: { 'content-type': 'application/json' } }),
      request,
      exchange.secrets,
    );
  }

  let result: TokenEndpointResponse;
  try {
    result = await exchange.process(
      new Response(JSON.stringify(json), { status: 200, headers: { 'content-type': 'application/json' } }),
    );
  } catch (err) {
    const failure = classifyOauth4webapiError(err, request);
    if (failure.kind === 'unsupported' || failure.kind === 'invalid_response') {
      throw malformed(request, failure.field, failure.message);
    }
    throw malformed(request, 'body', 'message' in failure ? failure.message : failure.kind);
  }
  // oauth4webapi lowercases token_type and admits Bearer and DPoP; DPoP only for a request that
  // carried a proof (RFC 9449 section 5: the token is bound to that proof's key).
  if (result.token_type !== 'bearer' && !(result.token_type === 'dpop' && exchange.dpop)) {
    const got = String(json.token_type);
    throw malformed(
      request,
      'token_type',
      `expected ${exchange.dpop ? 'DPoP or Bearer' : 'Bearer'}, got ${/^[A-Za-z_-]{1,20}$/.test(got) ? got : 'another value'}`,
    );
  }
  const claims = getValidatedIdTokenClaims(result);
  if (exchange.requireIdToken && (claims === undefined || result.id_token === undefined)) {
    throw malformed(request, 'id_token', 'an OpenID Connect answer without an ID token');
  }
  return {
    accessToken: result.access_token,
    tokenType: result.token_type === 'dpop' ? 'DPoP' : 'Bearer',
    ...(result.expires_in !== undefined ? { expiresIn: result.expires_in } : {}),
    ...(result.refresh_token !== undefined ? { refreshToken: result.refresh_token } : {}),
    ...(result.scope !== undefined ? { scope: result.scope } : {}),
    ...(claims !== undefined && result.id_token !== undefined
      ? {
          idToken: {
            token: result.id_token,
            expiresAt: claims.exp * 1000,
            issuedAt: claims.iat * 1000,
            subject: claims.sub,
          },
        }
      : {}),
  };
}

/**
 * The same answer with its body read at most MAX_JSON_BYTES (readJsonBody): what oauth4webapi's
 * processor reads to judge a refusal, which would otherwise read any length an AS sends. A body
 * that is too large or not JSON becomes an empty one; the status and headers (`DPoP-Nonce`,
 * `WWW-Authenticate`) stay.
 */
async function withBoundedBody(response: Response, request: string): Promise<Response> {
  const body = await readJsonBody(response, request).catch(() => undefined);
  const headers = new Headers(response.headers);
  headers.delete('content-length');
  headers.delete('content-encoding');
  return new Response(body?.ok ? JSON.stringify(body.value) : null, { status: response.status, headers });
}

/**
 * RFC 9449 section 8: the AS refused the proof for want of its nonce (400 `use_dpop_nonce`, or a
 * 401 `DPoP` challenge saying so), as oauth4webapi's own processor and isDPoPNonceError judge it;
 * the processor reads a clone, so the body stays for the error path.
 */
async function demandsDpopNonce(response: Response, process: Exchange['process']): Promise<boolean> {
  if (response.status === 200) return false;
  try {
    await process(response.clone());
    return false;
  } catch (err) {
    return isDPoPNonceError(err);
  }
}

function clientOf(registration: Registration): { client_id: string } {
  return { client_id: registration.clientId };
}

/**
 * RFC 6749 section 4.1.3 access token request with RFC 7636 section 4.5 `code_verifier` and
 * RFC 8707 section 2.2 `resource`, authenticated per the registration. The code has already been
 * checked against state and `iss` (authorization-response.ts). Response: RFC 6749 section 5.1.
 */
export async function exchangeAuthorizationCode(
  as: AuthorizationServer,
  registration: Registration,
  params: {
    code: string;
    codeVerifier: string;
    redirectUri: string;
    /** RFC 8707; absent at an IdP's own OpenID Connect sign-in. */
    resource?: string | undefined;
    dpop?: DPoPHandle;
    /** OpenID Connect: the sign-in's nonce; the answer must carry an ID token bound to it. */
    nonce?: string | undefined;
  },
  options: HttpOptions,
): Promise<TokenSet> {
  const client = clientOf(registration);
  const auth = clientAuthentication(registration);
  return tokenRequest(
    as,
    {
      grant: 'authorization_code',
      send: (requestOptions) =>
        genericTokenEndpointRequest(
          as,
          client,
          auth,
          'authorization_code',
          {
            code: params.code,
            redirect_uri: params.redirectUri,
            code_verifier: params.codeVerifier,
            ...(params.resource !== undefined ? { resource: params.resource } : {}),
          },
          requestOptions,
        ),
      process: (response) =>
        processAuthorizationCodeResponse(
          as,
          client,
          response,
          params.nonce !== undefined ? { expectedNonce: params.nonce, requireIdToken: true } : undefined,
        ),
      secrets: [params.code, params.codeVerifier, registration.clientSecret],
      dpop: params.dpop,
      requireIdToken: params.nonce !== undefined,
    },
    options,
  );
}

/**
 * RFC 6749 section 6 refresh request with RFC 8707 section 2.2 `resource` (and `scope` when
 * given: it must not exceed the original grant), authenticated per the registration.
 */
export async function refreshAccessToken(
  as: AuthorizationServer,
  registration: Registration,
  params: {
    refreshToken: string;
    /** RFC 8707; absent for an IdP session's refresh (OpenID Connect Core 1.0 section 12). */
    resource?: string | undefined;
    scope?: string;
    dpop?: DPoPHandle;
    /** OpenID Connect Core 1.0 section 12.2: the answer must carry a new ID token (validated by oauth4webapi). */
    requireIdToken?: boolean;
  },
  options: HttpOptions,
): Promise<TokenSet> {
  const client = clientOf(registration);
  const auth = clientAuthentication(registration);
  return tokenRequest(
    as,
    {
      grant: 'refresh_token',
      send: (requestOptions) =>
        refreshTokenGrantRequest(as, client, auth, params.refreshToken, {
          ...requestOptions,
          additionalParameters: {
            ...(params.resource !== undefined ? { resource: params.resource } : {}),
            ...(params.scope ? { scope: params.scope } : {}),
          },
        }),
      process: (response) => processRefreshTokenResponse(as, client, response),
      secrets: [params.refreshToken, registration.clientSecret],
      dpop: params.dpop,
      requireIdToken: params.requireIdToken,
    },
    options,
  );
}

/**
 * RFC 8628 section 3.4 device access token request with RFC 8707 `resource`, authenticated per the
 * registration. Polling and the section 3.5 errors (authorization_pending, slow_down, ...) are the
 * caller's (oauth/device-authorization.ts): they surface here as TokenEndpointError with
 * `oauthError` set. The device code is scrubbed from every message.
 */
export async function exchangeDeviceCode(
  as: AuthorizationServer,
  registration: Registration,
  params: { deviceCode: string; resource?: string | undefined; dpop?: DPoPHandle; requireIdToken?: boolean },
  options: HttpOptions,
): Promise<TokenSet> {
  const client = clientOf(registration);
  const auth = clientAuthentication(registration);
  return tokenRequest(
    as,
    {
      grant: 'device_code',
      send: (requestOptions) =>
        deviceCodeGrantRequest(as, client, auth, params.deviceCode, {
          ...requestOptions,
          additionalParameters: params.resource !== undefined ? { resource: params.resource } : {},
        }),
      process: (response) => processDeviceCodeResponse(as, client, response),
      secrets: [params.deviceCode, registration.clientSecret],
      dpop: params.dpop,
      requireIdToken: params.requireIdToken,
    },
    options,
  );
}
