/**
 * registration: obtaining a client_id at an authorization server, in the MCP spec's priority
 * ("Client Registration"): a pre-registered client, else a Client ID Metadata Document (when the
 * AS sets `client_id_metadata_document_supported`), else Dynamic Client Registration (RFC 7591),
 * else an error saying a client id must be configured. The result is bound to the AS's issuer
 * ("Authorization Server Binding").
 *
 * Not for: deciding when to re-register (the session layer keeps one registration per issuer),
 * or hosting the metadata document.
 *
 * oauth4webapi builds the DCR request. Its response processor is not used: it refuses a
 * `client_secret` without `client_secret_expires_at` (RFC 7591 section 3.2.1 says REQUIRED), which
 * common ASes and the MCP conformance suite omit, and it accepts only 201. We accept 200 or 201
 * and validate the members we use with zod; a missing expiry means "does not expire". The
 * `redirect_uris` it registered must be exactly those sent (checkedRedirectUris).
 */
import { dynamicClientRegistrationRequest } from 'oauth4webapi';
import * as z from 'zod/mini';
import { AuthkeepError } from '../errors.js';
import { assertClientMetadataUrl } from './client-metadata-document.js';
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
  safeUrl,
} from './http.js';
import type { AuthorizationServer, Registration, TokenEndpointAuthMethod } from './types.js';

export interface StaticClientCredentials {
  clientId: string;
  clientSecret?: string;
  tokenEndpointAuthMethod?: TokenEndpointAuthMethod;
}

export interface RegistrationRequest {
  clientName: string;
  redirectUris: string[];
  /** Sent in DCR; dropped on one retry if the AS answers invalid_client_metadata. */
  scope?: string;
  /** HTTPS URL (with a path) of this client's metadata document, used as client_id when supported. */
  clientMetadataUrl?: string;
  staticClient?: StaticClientCredentials;
  /** OIDC Registration `application_type`; default `native` (CLI tools, loopback redirects). */
  applicationType?: 'native' | 'web';
}

/** RFC 8628 section 3.4 grant type. */
export const DEVICE_CODE_GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:device_code';

/**
 * True when the AS offers the device authorization grant to clients that ask for it in DCR: it
 * publishes `device_authorization_endpoint` (RFC 8628 section 4) and lists the grant in
 * `grant_types_supported` (RFC 8414 section 2; absent means authorization_code and implicit only).
 */
export function offersDeviceGrant(as: AuthorizationServer): boolean {
  return (
    as.device_authorization_endpoint !== undefined &&
    as.grant_types_supported?.includes(DEVICE_CODE_GRANT_TYPE) === true
  );
}

const METHODS: readonly TokenEndpointAuthMethod[] = ['none', 'client_secret_basic', 'client_secret_post'];

function isKnownMethod(value: string): value is TokenEndpointAuthMethod {
  return (METHODS as readonly string[]).includes(value);
}

/**
 * The token endpoint auth method to ask for in DCR. A public native client prefers `none`; an AS
 * that lists `token_endpoint_auth_methods_supported` without it gets the first secret-based
 * method it lists that we support. An absent list lets us ask for `none` (the AS may still
 * assign another method in its answer, which we honour).
 */
export function chooseTokenEndpointAuthMethod(supported: readonly string[] | undefined): TokenEndpointAuthMethod {
  if (supported === undefined || supported.includes('none')) return 'none';
  if (supported.includes('client_secret_basic')) return 'client_secret_basic';
  if (supported.includes('client_secret_post')) return 'client_secret_post';
  throw new AuthkeepError(
    'registration_failed',
    `the authorization server supports no token endpoint auth method authkeep implements (it lists ${JSON.stringify(supported)}); configure a pre-registered client`,
    { field: 'token_endpoint_auth_methods_supported', detail: { supported: supported.join(' ') } },
  );
}

/**
 * MCP "Client Registration" priority: 1. pre-registered, 2. Client ID Metadata Document, 3. DCR
 * (RFC 7591 section 3.1), 4. otherwise registration_failed asking for a configured client id.
 */
export async function registerClient(
  as: AuthorizationServer,
  request: RegistrationRequest,
  options: HttpOptions,
): Promise<Registration> {
  if (request.staticClient) return preRegisteredClient(as, request.staticClient, request.redirectUris);
  if (as.client_id_metadata_document_supported === true && request.clientMetadataUrl) {
    return clientIdMetadataDocumentClient(as, request.clientMetadataUrl, request.redirectUris, options);
  }
  if (as.registration_endpoint) return dynamicClientRegistration(as, request, options);
  throw new AuthkeepError(
    'registration_failed',
    `authorization server ${as.issuer} offers no registration_endpoint${as.client_id_metadata_document_supported ? ' and no clientMetadataUrl was configured' : ' and no client ID metadata document support'}; a client id must be configured (staticClients) for it`,
    { field: 'registration_endpoint', detail: { issuer: as.issuer } },
  );
}

/** MCP "Pre-registration": client credentials configured for this issuer. */
export function preRegisteredClient(
  as: AuthorizationServer,
  client: StaticClientCredentials,
  redirectUris: string[],
): Registration {
  if (!client.clientId) {
    throw new AuthkeepError('invalid_argument', 'the pre-registered client has an empty clientId', {
      field: 'staticClient.clientId',
    });
  }
  const method =
    client.tokenEndpointAuthMethod ??
    (client.clientSecret
      ? as.token_endpoint_auth_methods_supported?.includes('client_secret_basic') === false &&
        as.token_endpoint_auth_methods_supported.includes('client_secret_post')
        ? 'client_secret_post'
        : 'client_secret_basic'
      : 'none');
  if (method !== 'none' && !client.clientSecret) {
    throw new AuthkeepError('invalid_argument', `the pre-registered client uses ${method} but has no clientSecret`, {
      field: 'staticClient.clientSecret',
    });
  }
  return {
    issuer: as.issuer,
    clientId: client.clientId,
    ...(method !== 'none' && client.clientSecret ? { clientSecret: client.clientSecret } : {}),
    method: 'pre_registered',
    tokenEndpointAuthMethod: method,
    redirectUris: [...redirectUris],
    registeredAt: new Date().toISOString(),
  };
}

/**
 * MCP "Client ID Metadata Documents" (draft-ietf-oauth-client-id-metadata-document): the client_id
 * is the HTTPS URL of our metadata document (client-metadata-document.ts: a path, no fragment);
 * no registration request is made; the client is public (`none`).
 */
export function clientIdMetadataDocumentClient(
  as: AuthorizationServer,
  clientMetadataUrl: string,
  redirectUris: string[],
  options: Pick<HttpOptions, 'allowInsecureLoopback'>,
): Registration {
  assertClientMetadataUrl(clientMetadataUrl, 'clientMetadataUrl', options.allowInsecureLoopback === true);
  return {
    issuer: as.issuer,
    clientId: clientMetadataUrl,
    method: 'client_id_metadata_document',
    tokenEndpointAuthMethod: 'none',
    redirectUris: [...redirectUris],
    registeredAt: new Date().toISOString(),
  };
}

/** The client metadata of RFC 7591 section 2 (plus OIDC `application_type`) that we send. */
export function registrationMetadata(
  request: RegistrationRequest,
  method: TokenEndpointAuthMethod,
  includeScope: boolean,
  deviceGrant = false,
): { [key: string]: string | string[] } {
  return {
    client_name: request.clientName,
    redirect_uris: [...request.redirectUris],
    // The device_code grant too when the AS offers it, so the one registration per issuer serves
    // both the browser and the device flow (RFC 8628).
    grant_types: ['authorization_code', 'refresh_token', ...(deviceGrant ? [DEVICE_CODE_GRANT_TYPE] : [])],
    response_types: ['code'],
    token_endpoint_auth_method: method,
    application_type: request.applicationType ?? 'native',
    ...(includeScope && request.scope ? { scope: request.scope } : {}),
  };
}

const RegistrationResponseSchema = z.object({
  client_id: z.string().check(z.minLength(1)),
  client_secret: z.optional(z.string().check(z.minLength(1))),
  client_secret_expires_at: z.optional(z.number()),
  token_endpoint_auth_method: z.optional(z.string()),
  redirect_uris: z.optional(z.array(z.string())),
  grant_types: z.catch(z.optional(z.array(z.string())), undefined),
});

const ERROR_FIELDS: Record<string, string> = {
  invalid_redirect_uri: 'redirect_uris',
  invalid_client_metadata: 'client_metadata',
  invalid_software_statement: 'software_statement',
  unapproved_software_statement: 'software_statement',
};

type Attempt =
  | { kind: 'ok'; registration: Registration }
  | { kind: 'oauth_error'; error: AuthkeepError; oauthError: string };

/**
 * RFC 7591 section 3.1 request, section 3.2 response. If the AS answers invalid_client_metadata to
 * a request that carried `scope`, retry once without it (strict IdPs, e.g. oidc-provider, reject
 * a registration naming a scope they do not list).
 */
export async function dynamicClientRegistration(
  as: AuthorizationServer,
  request: RegistrationRequest,
  options: HttpOptions,
): Promise<Registration> {
  const method = chooseTokenEndpointAuthMethod(as.token_endpoint_auth_methods_supported);
  const first = await registrationAttempt(as, request, method, true, options);
  if (first.kind === 'ok') return first.registration;
  if (first.oauthError === 'invalid_client_metadata' && request.scope) {
    const second = await registrationAttempt(as, request, method, false, options);
    if (second.kind === 'ok') return second.registration;
    throw second.error;
  }
  throw first.error;
}

async function registrationAttempt(
  as: AuthorizationServer,
  request: RegistrationRequest,
  method: TokenEndpointAuthMethod,
  includeScope: boolean,
  options: HttpOptions,
): Promise<Attempt> {
  if (!as.registration_endpoint)
    throw new AuthkeepError('registration_failed', 'no registration_endpoint', { field: 'registration_endpoint' });
  const endpoint = assertSecureUrl(
    as.registration_endpoint,
    'registration_endpoint',
    options.allowInsecureLoopback,
    'metadata_invalid',
  );
  const purpose = 'dynamic client registration';
  const description = describeRequest('POST', endpoint, purpose);
  let response: Response;
  try {
    response = await dynamicClientRegistrationRequest(
      as,
      registrationMetadata(request, method, includeScope, offersDeviceGrant(as)),
      oauthRequestOptions(endpoint, options, purpose),
    );
  } catch (err) {
    const failure = classifyOauth4webapiError(err, description);
    if (failure.kind === 'unreachable') throw failure.error;
    throw new AuthkeepError('registration_failed', `${description} could not be sent: ${failureMessage(failure)}`, {
      field: 'registration_endpoint',
      detail: { request: description },
    });
  }

  if (response.status !== 200 && response.status !== 201) {
    const body =
      response.status >= 400 && response.status < 500 ? await readJsonBody(response, description) : undefined;
    if (body === undefined) await discardBody(response);
    if (body?.ok && isJsonObject(body.value) && typeof body.value.error === 'string' && body.value.error !== '') {
      const oauthError = body.value.error;
      const errorDescription =
        typeof body.value.error_description === 'string' ? body.value.error_description.slice(0, 300) : undefined;
      return {
        kind: 'oauth_error',
        oauthError,
        error: new AuthkeepError(
          'registration_failed',
          `${description} was refused: ${oauthError}${errorDescription ? `: ${errorDescription}` : ''}${includeScope ? '' : ' (retried without scope)'}`,
          {
            field: ERROR_FIELDS[oauthError] ?? 'client_metadata',
            detail: {
              error: oauthError,
              error_description: errorDescription,
              status: response.status,
              request: description,
              scopeSent: includeScope && !!request.scope,
            },
          },
        ),
      };
    }
    throw new AuthkeepError('registration_failed', `${description} answered HTTP ${response.status}`, {
      field: 'status',
      detail: { status: response.status, request: description },
    });
  }

  const body = await readJsonBody(response, description);
  if (!body.ok || !isJsonObject(body.value)) {
    throw new AuthkeepError(
      'registration_failed',
      `${description} answered ${response.status} with a body that is not a JSON object`,
      {
        field: 'body',
        detail: { status: response.status, request: description },
      },
    );
  }
  const parsed = RegistrationResponseSchema.safeParse(body.value);
  if (!parsed.success) {
    const field = String(parsed.error.issues[0]?.path[0] ?? 'body');
    throw new AuthkeepError('registration_failed', `${description} answered with a missing or invalid ${field}`, {
      field,
      detail: { status: response.status, request: description },
    });
  }
  const r = parsed.data;
  const assigned = r.token_endpoint_auth_method ?? method;
  if (!isKnownMethod(assigned)) {
    throw new AuthkeepError(
      'registration_failed',
      `${description} assigned token_endpoint_auth_method ${JSON.stringify(assigned)}, which authkeep does not implement`,
      {
        field: 'token_endpoint_auth_method',
        detail: { assigned, request: description },
      },
    );
  }
  if (assigned !== 'none' && r.client_secret === undefined) {
    throw new AuthkeepError(
      'registration_failed',
      `${description} assigned ${assigned} but returned no client_secret`,
      {
        field: 'client_secret',
        detail: { assigned, request: description },
      },
    );
  }
  return {
    kind: 'ok',
    registration: {
      issuer: as.issuer,
      clientId: r.client_id,
      ...(assigned !== 'none' && r.client_secret ? { clientSecret: r.client_secret } : {}),
      // RFC 7591 section 3.2.1: seconds since the epoch; 0 means the secret does not expire.
      ...(assigned !== 'none' && r.client_secret && r.client_secret_expires_at && r.client_secret_expires_at > 0
        ? { clientSecretExpiresAt: r.client_secret_expires_at * 1000 }
        : {}),
      method: 'dynamic',
      tokenEndpointAuthMethod: assigned,
      redirectUris: checkedRedirectUris(r.redirect_uris, request.redirectUris, description),
      // Recorded when the device grant was asked for (what the AS granted, else what we asked);
      // absent otherwise, which the session reads as "no device grant" for a dynamic client.
      ...(offersDeviceGrant(as)
        ? { grantTypes: r.grant_types ?? (registrationMetadata(request, method, false, true).grant_types as string[]) }
        : {}),
      registeredAt: new Date().toISOString(),
    },
  };
}

/** A redirect URI as WHATWG URL serialises it, or the string itself when it does not parse. */
function serialised(uri: string): string {
  try {
    return new URL(uri).href;
  } catch {
    return uri;
  }
}

/**
 * RFC 7591 section 3.2.1: the answer holds the registered metadata, which the AS may have
 * replaced. Redirect URIs are where authorization codes are sent, so those registered must be
 * exactly those sent (compared as parsed URLs): one the AS added or swapped in (another host, a
 * port someone else may own) is refused with nothing kept, and one it dropped would fail the
 * sign-in. What is kept is what was sent.
 */
function checkedRedirectUris(returned: string[] | undefined, sent: readonly string[], description: string): string[] {
  if (returned === undefined) return [...sent];
  const ours = new Set(sent.map(serialised));
  const theirs = new Set(returned.map(serialised));
  const foreign = [...theirs].filter((uri) => !ours.has(uri));
  const missing = [...ours].filter((uri) => !theirs.has(uri));
  if (foreign.length > 0 || missing.length > 0) {
    throw new AuthkeepError(
      'registration_failed',
      foreign.length > 0
        ? `${description} registered redirect_uris that were not sent (${foreign.map((uri) => safeUrl(uri)).join(', ')})`
        : `${description} did not register the redirect_uris sent (${missing.join(', ')})`,
      {
        field: 'redirect_uris',
        detail: { request: description, sent: sent.length, returned: returned.length, foreign: foreign.length },
      },
    );
  }
  return [...sent];
}
