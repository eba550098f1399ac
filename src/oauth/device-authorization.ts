/**
 * device-authorization: the OAuth 2.0 device authorization grant (RFC 8628) from the client's
 * side: the device authorization request and response (sections 3.1, 3.2) and polling the token
 * endpoint until the user approved, denied, or the code expired (sections 3.4, 3.5).
 * oauth4webapi builds the requests and validates 200 bodies; error bodies are read here (the
 * token poll's through token-endpoint.ts, which classifies them).
 *
 * Not for: showing the code to the user, registration, or storing tokens (session/). No message,
 * detail or cause carries the device_code, a token or a client secret; the user_code is shown to
 * the user by the caller and is not a credential on its own, but is kept out of messages too.
 */
import { type DPoPHandle, deviceAuthorizationRequest, processDeviceAuthorizationResponse } from 'oauth4webapi';
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
import { clientAuthentication, exchangeDeviceCode, TokenEndpointError, type TokenSet } from './token-endpoint.js';
import type { AuthorizationServer, Registration } from './types.js';

/** RFC 8628 section 3.2, validated. `deviceCode` is a credential: never log it. */
export interface DeviceAuthorization {
  deviceCode: string;
  userCode: string;
  verificationUri: string;
  verificationUriComplete?: string;
  /** Seconds the device code lives (section 3.2 `expires_in`). */
  expiresIn: number;
  /** Seconds between polls (section 3.2 `interval`; default 5). */
  intervalSeconds: number;
}

const DEFAULT_INTERVAL_SECONDS = 5;
/** RFC 8628 section 3.5: on slow_down the interval grows by 5 seconds, for this and all later polls. */
const SLOW_DOWN_SECONDS = 5;

/**
 * RFC 8628 section 3.1: ask the AS for a device code and a user code, with the RFC 8707
 * `resource` and the scope, authenticated per the registration.
 */
export async function requestDeviceAuthorization(
  as: AuthorizationServer,
  registration: Registration,
  params: { scope?: string | undefined; resource?: string | undefined },
  options: HttpOptions,
): Promise<DeviceAuthorization> {
  if (!as.device_authorization_endpoint) {
    throw new AuthkeepError(
      'device_flow_unavailable',
      `authorization server ${as.issuer} has no device_authorization_endpoint`,
      {
        field: 'device_authorization_endpoint',
      },
    );
  }
  const endpoint = assertSecureUrl(
    as.device_authorization_endpoint,
    'device_authorization_endpoint',
    options.allowInsecureLoopback,
    'metadata_invalid',
  );
  const purpose = 'device authorization';
  const request = describeRequest('POST', endpoint, purpose);
  const client = { client_id: registration.clientId };
  let response: Response;
  try {
    response = await deviceAuthorizationRequest(
      as,
      client,
      clientAuthentication(registration),
      {
        ...(params.resource !== undefined ? { resource: params.resource } : {}),
        ...(params.scope ? { scope: params.scope } : {}),
      },
      oauthRequestOptions(endpoint, options, purpose),
    );
  } catch (err) {
    const failure = classifyOauth4webapiError(err, request);
    if (failure.kind === 'unreachable') throw failure.error;
    if (err instanceof AuthkeepError) throw err;
    throw new AuthkeepError('as_error', `${request} could not be sent: ${failureMessage(failure)}`, {
      detail: { request },
    });
  }

  if (response.status !== 200) {
    const status = response.status;
    const body =
      status >= 400 && status < 500 ? await readJsonBody(response, request).catch(() => undefined) : undefined;
    if (body === undefined) await discardBody(response);
    const json = body?.ok && isJsonObject(body.value) ? body.value : undefined;
    const error = typeof json?.error === 'string' && json.error !== '' ? json.error.slice(0, 100) : undefined;
    const description = typeof json?.error_description === 'string' ? json.error_description.slice(0, 300) : undefined;
    const said = error ? `${error}${description ? `: ${description}` : ''}` : `HTTP ${status}`;
    // unauthorized_client: the registration may not use this grant (RFC 8628 section 3.2 / RFC 6749 section 5.2).
    const code = error === 'unauthorized_client' || error === 'invalid_client' ? 'device_flow_unavailable' : 'as_error';
    throw new AuthkeepError(code, `${request} was refused: ${said}`, {
      field: error ? 'error' : 'status',
      detail: { request, status, error, error_description: description },
    });
  }

  const body = await readJsonBody(response, request);
  if (!body.ok || !isJsonObject(body.value)) {
    throw new AuthkeepError('as_error', `${request} answered 200 with a body that is not a JSON object`, {
      field: 'body',
      detail: { request },
    });
  }
  let parsed: Awaited<ReturnType<typeof processDeviceAuthorizationResponse>>;
  try {
    parsed = await processDeviceAuthorizationResponse(
      as,
      client,
      new Response(JSON.stringify(body.value), { status: 200, headers: { 'content-type': 'application/json' } }),
    );
  } catch (err) {
    const failure = classifyOauth4webapiError(err, request);
    const field = 'field' in failure ? failure.field : 'body';
    throw new AuthkeepError('as_error', `${request} answered with an unusable ${field}: ${failureMessage(failure)}`, {
      field,
      detail: { request },
    });
  }
  const verificationUri = checkVerificationUri(parsed.verification_uri, 'verification_uri', options, request);
  const complete =
    typeof parsed.verification_uri_complete === 'string'
      ? optionalVerificationUri(parsed.verification_uri_complete, options)
      : undefined;
  if (!Number.isFinite(parsed.expires_in) || parsed.expires_in <= 0) {
    throw new AuthkeepError('as_error', `${request} answered with an unusable expires_in`, {
      field: 'expires_in',
      detail: { request },
    });
  }
  const interval =
    typeof parsed.interval === 'number' && Number.isFinite(parsed.interval) && parsed.interval > 0
      ? parsed.interval
      : DEFAULT_INTERVAL_SECONDS;
  return {
    deviceCode: parsed.device_code,
    userCode: parsed.user_code,
    verificationUri,
    ...(complete ? { verificationUriComplete: complete } : {}),
    expiresIn: parsed.expires_in,
    intervalSeconds: interval,
  };
}

/** The user opens this URI: https, or http on loopback when allowed (a phishing-resistant minimum). */
function checkVerificationUri(value: string, field: string, options: HttpOptions, request: string): string {
  try {
    return assertSecureUrl(value, field, options.allowInsecureLoopback, 'metadata_invalid').href;
  } catch {
    throw new AuthkeepError('as_error', `${request} answered with a ${field} that is not an https URL`, {
      field,
      detail: { request },
    });
  }
}

function optionalVerificationUri(value: string, options: HttpOptions): string | undefined {
  try {
    return assertSecureUrl(value, 'verification_uri_complete', options.allowInsecureLoopback, 'metadata_invalid').href;
  } catch {
    return undefined;
  }
}

export interface PollOptions {
  /** Seconds between polls, from the device authorization response. */
  intervalSeconds: number;
  /** Seconds until the device code expires, from the device authorization response. */
  expiresIn: number;
  /** RFC 8707; absent at an IdP's own OpenID Connect sign-in. */
  resource?: string | undefined;
  /** OpenID Connect: the answer must carry an ID token. */
  requireIdToken?: boolean;
  /** RFC 9449: sign each poll with this key (the tokens come bound to it). */
  dpop?: DPoPHandle;
  /** Stops polling early (the caller's own deadline, Ctrl-C). */
  signal?: AbortSignal;
  /** Test hook: how to wait. Default setTimeout. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

/**
 * RFC 8628 sections 3.4 and 3.5: poll the token endpoint every `interval` seconds until the user
 * approves (tokens), denies (`authorization_denied`), or the code expires (`device_code_expired`);
 * `slow_down` adds 5 seconds to the interval for good; a transient failure (network, 5xx) backs off
 * (section 3.5: exponential) and keeps polling until the code expires. Any other OAuth error is
 * thrown as the TokenEndpointError it is. `requestedAt`: when the successful poll was sent.
 */
export async function pollDeviceToken(
  as: AuthorizationServer,
  registration: Registration,
  deviceCode: string,
  poll: PollOptions,
  options: HttpOptions,
): Promise<TokenSet & { requestedAt: number }> {
  const sleep = poll.sleep ?? abortableSleep;
  const deadline = Date.now() + poll.expiresIn * 1000;
  let interval = Math.max(poll.intervalSeconds, 1);
  let backoff = 0;
  for (;;) {
    const wait = (interval + backoff) * 1000;
    if (Date.now() + wait >= deadline) throw expired(as);
    await sleep(wait, poll.signal);
    // When the successful request was sent: expires_in counts from no earlier than this.
    const requestedAt = Date.now();
    try {
      return {
        ...(await exchangeDeviceCode(
          as,
          registration,
          {
            deviceCode,
            resource: poll.resource,
            ...(poll.dpop ? { dpop: poll.dpop } : {}),
            ...(poll.requireIdToken ? { requireIdToken: true } : {}),
          },
          options,
        )),
        requestedAt,
      };
    } catch (err) {
      if (!(err instanceof TokenEndpointError)) throw err;
      if (err.kind === 'transient') {
        backoff = Math.min(Math.max(backoff * 2, interval), 60);
        continue;
      }
      backoff = 0;
      switch (err.oauthError) {
        case 'authorization_pending':
          continue;
        case 'slow_down':
          interval += SLOW_DOWN_SECONDS;
          continue;
        case 'access_denied':
          throw new AuthkeepError(
            'authorization_denied',
            `the sign-in at ${as.issuer} was denied${err.oauthErrorDescription ? `: ${err.oauthErrorDescription}` : ''}`,
            {
              field: 'error',
              detail: { error: 'access_denied', error_description: err.oauthErrorDescription, request: err.request },
            },
          );
        case 'expired_token':
          throw expired(as);
        default:
          throw err;
      }
    }
  }
}

function expired(as: AuthorizationServer): AuthkeepError {
  return new AuthkeepError(
    'device_code_expired',
    `the device code of ${as.issuer} expired before the sign-in was approved; run the sign-in again`,
    {
      field: 'expires_in',
    },
  );
}

function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
