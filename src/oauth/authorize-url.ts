/**
 * authorize-url: builds the authorization request URL (RFC 6749 section 4.1.1, RFC 7636 section
 * 4.3, RFC 8707 section 2) once, from a frozen value, and parses it back and compares it field by
 * field before anyone sees it (docs/DESIGN.md invariant 1). The parse-back check is exported on
 * its own so that any URL, including the malformed ones of the field report in docs/DESIGN.md
 * (`code_challenge_method_method=S256`, an 8-character challenge, `redirect_uri=http://localhost/:`)
 * can be shown to be refused with the field named.
 *
 * Not for: choosing scope or resource (session/), creating the PKCE pair (pkce.ts), opening the
 * browser, or reading the authorization response (authorization-response.ts).
 */
import { AuthkeepError } from '../errors.js';
import { isS256CodeChallenge } from './pkce.js';

/** Everything one authorization request carries. One value per login, keyed by its state. */
export interface AuthorizationRequest {
  readonly authorizationEndpoint: string;
  readonly clientId: string;
  readonly redirectUri: string;
  readonly state: string;
  readonly codeChallenge: string;
  readonly codeChallengeMethod: 'S256';
  /** RFC 8707 resource; absent only for an OpenID Connect sign-in at an IdP itself (no resource server). */
  readonly resource?: string;
  readonly scope?: string;
  /** OpenID Connect Core 1.0 section 3.1.2.1 `nonce`, bound into the ID token (an IdP sign-in). */
  readonly nonce?: string;
  /**
   * OpenID Connect Core 1.0 section 3.1.2.1 `prompt`: `consent` when an IdP sign-in asks for
   * `offline_access` (section 11: the request MUST then carry prompt=consent).
   */
  readonly prompt?: 'consent';
}

/** The parameters this module sets; the authorization endpoint's own query may not use them. */
const OUR_PARAMETERS = [
  'response_type',
  'client_id',
  'redirect_uri',
  'state',
  'code_challenge',
  'code_challenge_method',
  'resource',
  'scope',
  'nonce',
  'prompt',
] as const;
type OurParameter = (typeof OUR_PARAMETERS)[number];

/**
 * Builds the authorization request URL: the authorization endpoint with its own query kept (RFC
 * 6749 section 3.1), plus exactly response_type=code, client_id, redirect_uri, state (RFC 6749
 * section 4.1.1), code_challenge and code_challenge_method=S256 (RFC 7636 section 4.3), resource
 * (RFC 8707 section 2; absent at an IdP's own sign-in), scope only when non-empty (RFC 6749 section
 * 3.3), and an OpenID Connect `nonce` and `prompt` when given. The result is parsed
 * back and verified before it is returned; a mismatch throws `authorize_url_mismatch`.
 */
export function buildAuthorizationUrl(request: AuthorizationRequest): URL {
  const frozen: AuthorizationRequest = Object.freeze({ ...request });
  const url = authorizationEndpointUrl(frozen.authorizationEndpoint);
  for (const [name, value] of intendedParameters(frozen)) url.searchParams.append(name, value);
  verifyAuthorizationUrl(url.href, frozen);
  return new URL(url.href);
}

/**
 * The authorization endpoint as a URL (RFC 6749 section 3.1): absolute http(s), http only on a
 * loopback host, no fragment, and no query parameter that collides with one this module sets.
 */
function authorizationEndpointUrl(endpoint: string): URL {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch (cause) {
    throw new AuthkeepError('invalid_argument', `authorization_endpoint is not an absolute URL: ${endpoint}`, {
      field: 'authorization_endpoint',
      cause,
    });
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new AuthkeepError('invalid_argument', `authorization_endpoint must be https: ${endpoint}`, {
      field: 'authorization_endpoint',
    });
  }
  if (url.protocol === 'http:' && !isLoopbackHost(url.hostname)) {
    throw new AuthkeepError('insecure_url', `authorization_endpoint must be https unless it is loopback: ${endpoint}`, {
      field: 'authorization_endpoint',
    });
  }
  if (endpoint.includes('#')) {
    throw new AuthkeepError(
      'invalid_argument',
      `authorization_endpoint must not include a fragment (RFC 6749 section 3.1): ${endpoint}`,
      {
        field: 'authorization_endpoint',
      },
    );
  }
  for (const name of OUR_PARAMETERS) {
    if (url.searchParams.has(name)) {
      throw new AuthkeepError(
        'invalid_argument',
        `authorization_endpoint already has a \`${name}\` query parameter, which the authorization request sets`,
        {
          field: 'authorization_endpoint',
          detail: { parameter: name },
        },
      );
    }
  }
  return url;
}

/** The parameters we intend to send, in order; scope only when given and non-empty. */
function intendedParameters(request: AuthorizationRequest): Array<[OurParameter, string]> {
  const parameters: Array<[OurParameter, string]> = [
    ['response_type', 'code'],
    ['client_id', request.clientId],
    ['redirect_uri', request.redirectUri],
    ['state', request.state],
    ['code_challenge', request.codeChallenge],
    ['code_challenge_method', request.codeChallengeMethod],
  ];
  if (request.resource !== undefined) parameters.push(['resource', request.resource]);
  if (request.scope !== undefined && request.scope !== '') parameters.push(['scope', request.scope]);
  if (request.nonce !== undefined) parameters.push(['nonce', request.nonce]);
  if (request.prompt !== undefined) parameters.push(['prompt', request.prompt]);
  return parameters;
}

/**
 * Parses `url` back and checks it carries exactly `request` (docs/DESIGN.md invariant 1): the same
 * endpoint and its own query unchanged, exactly our parameter names (no unknown, missing or
 * repeated one), each value equal to the request's, and each value well-formed: response_type
 * `code`, code_challenge 43 base64url characters and method S256 (RFC 7636 section 4.2-4.3),
 * redirect_uri an http(s) URL with an explicit port when loopback (RFC 8252 section 7.3), resource
 * an absolute URI without fragment or spaces (RFC 8707 section 2), scope a space-separated list of
 * scope-tokens (RFC 6749 section 3.3). Throws `authorize_url_mismatch` naming the field.
 */
export function verifyAuthorizationUrl(url: URL | string, request: AuthorizationRequest): void {
  const href = typeof url === 'string' ? url : url.href;
  let parsed: URL;
  try {
    parsed = new URL(href);
  } catch (cause) {
    throw mismatch('url', 'the authorize URL does not parse', cause);
  }
  const endpoint = endpointForComparison(request.authorizationEndpoint);
  verifyEndpoint(parsed, endpoint);
  verifyParameterNames(parsed.searchParams, endpoint.searchParams, request);
  verifyEndpointQuery(parsed.searchParams, endpoint.searchParams);
  verifyParameterValues(parsed.searchParams, request);
}

function endpointForComparison(endpoint: string): URL {
  try {
    return new URL(endpoint);
  } catch (cause) {
    throw mismatch('authorization_endpoint', "the request's authorization_endpoint does not parse", cause);
  }
}

/** The URL is the authorization endpoint (same origin and path) and carries no fragment. */
function verifyEndpoint(url: URL, endpoint: URL): void {
  if (url.origin !== endpoint.origin || url.pathname !== endpoint.pathname) {
    throw mismatch(
      'authorization_endpoint',
      `the URL points at ${url.origin}${url.pathname}, not ${endpoint.origin}${endpoint.pathname}`,
    );
  }
  if (url.hash !== '' || url.href.includes('#')) throw mismatch('authorization_endpoint', 'the URL has a fragment');
}

/** Every parameter name is either ours or the endpoint's own; each of ours occurs exactly once. */
function verifyParameterNames(
  params: URLSearchParams,
  endpointParams: URLSearchParams,
  request: AuthorizationRequest,
): void {
  const intended = new Set<string>(intendedParameters(request).map(([name]) => name));
  for (const name of new Set(params.keys())) {
    if (!intended.has(name) && !endpointParams.has(name))
      throw mismatch(name, `unexpected parameter ${JSON.stringify(name)}`);
  }
  for (const name of OUR_PARAMETERS) {
    const count = params.getAll(name).length;
    if (intended.has(name) && count === 0) throw mismatch(name, `parameter ${name} is missing`);
    if (count > 1) throw mismatch(name, `parameter ${name} appears ${count} times`);
  }
}

/** The endpoint's own query parameters (RFC 6749 section 3.1) are all there, unchanged and in order. */
function verifyEndpointQuery(params: URLSearchParams, endpointParams: URLSearchParams): void {
  const ours = new Set<string>(OUR_PARAMETERS);
  const kept = [...params].filter(([name]) => !ours.has(name));
  const expected = [...endpointParams];
  if (
    kept.length !== expected.length ||
    kept.some(([name, value], i) => expected[i]?.[0] !== name || expected[i]?.[1] !== value)
  ) {
    throw mismatch(
      'authorization_endpoint',
      "the authorization endpoint's own query parameters were not kept unchanged",
    );
  }
}

/** Each value equals the request's and has the shape its RFC requires. */
function verifyParameterValues(params: URLSearchParams, request: AuthorizationRequest): void {
  for (const [name, intended] of intendedParameters(request)) {
    if (params.get(name) !== intended) throw mismatch(name, `parameter ${name} does not carry the intended value`);
  }
  if (params.get('response_type') !== 'code') throw mismatch('response_type', 'response_type must be code');
  requireNonEmpty('client_id', request.clientId);
  requireNonEmpty('state', request.state);
  if (!isS256CodeChallenge(request.codeChallenge)) {
    throw mismatch(
      'code_challenge',
      `code_challenge must be 43 base64url characters (got ${request.codeChallenge.length})`,
    );
  }
  if (request.codeChallengeMethod !== 'S256') {
    throw mismatch(
      'code_challenge_method',
      `code_challenge_method must be S256, not ${JSON.stringify(request.codeChallengeMethod)}`,
    );
  }
  const redirectProblem = redirectUriProblem(request.redirectUri);
  if (redirectProblem !== undefined)
    throw mismatch('redirect_uri', `redirect_uri ${JSON.stringify(request.redirectUri)} ${redirectProblem}`);
  const resourceProblem = request.resource === undefined ? undefined : resourceIndicatorProblem(request.resource);
  if (resourceProblem !== undefined)
    throw mismatch('resource', `resource ${JSON.stringify(request.resource)} ${resourceProblem}`);
  if (request.nonce !== undefined) requireNonEmpty('nonce', request.nonce);
  if (request.prompt !== undefined && request.prompt !== 'consent')
    throw mismatch('prompt', `prompt must be consent, not ${JSON.stringify(request.prompt)}`);
  if (request.scope !== undefined && request.scope !== '' && !SCOPE.test(request.scope)) {
    throw mismatch('scope', `scope ${JSON.stringify(request.scope)} is not a space-separated list of scope-tokens`);
  }
}

/** scope = scope-token *( SP scope-token ); scope-token = 1*( %x21 / %x23-5B / %x5D-7E ) (RFC 6749 section 3.3). */
const SCOPE = /^[\x21\x23-\x5b\x5d-\x7e]+(?: [\x21\x23-\x5b\x5d-\x7e]+)*$/;

function requireNonEmpty(field: OurParameter, value: string): void {
  if (value === '') throw mismatch(field, `parameter ${field} is empty`);
}

/**
 * Why a redirect URI is unusable, or undefined: it must be an absolute http(s) URL without
 * fragment, userinfo or whitespace (RFC 6749 section 3.1.2); http only on a loopback host, and a
 * loopback redirect names its port explicitly (RFC 8252 section 7.3), so `http://localhost/:` fails.
 */
export function redirectUriProblem(redirectUri: string): string | undefined {
  if (/\s/.test(redirectUri)) return 'contains whitespace';
  let url: URL;
  try {
    url = new URL(redirectUri);
  } catch {
    return 'is not an absolute URL';
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return 'must be http or https';
  if (redirectUri.includes('#')) return 'must not have a fragment';
  if (url.username !== '' || url.password !== '') return 'must not have userinfo';
  if (url.hostname === '') return 'has no host';
  const loopback = isLoopbackHost(url.hostname);
  if (url.protocol === 'http:' && !loopback) return 'must be https unless it is a loopback redirect';
  if (loopback) {
    const port = explicitPort(redirectUri);
    if (port === undefined) return 'must name its port explicitly (RFC 8252 section 7.3)';
    if (port < 1 || port > 65535) return 'has an invalid port';
  }
  return undefined;
}

/**
 * Why a resource indicator is unusable, or undefined: an absolute URI without fragment (RFC 8707
 * section 2), here an http(s) URL whose host has no spaces (the field report's `resource`).
 */
export function resourceIndicatorProblem(resource: string): string | undefined {
  if (/\s/.test(resource)) return 'contains whitespace';
  let url: URL;
  try {
    url = new URL(resource);
  } catch {
    return 'is not an absolute URI';
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return 'must be an http(s) URL';
  if (url.hostname === '' || /%20|\s/i.test(url.hostname)) return 'has no usable host';
  if (resource.includes('#')) return 'must not have a fragment (RFC 8707 section 2)';
  return undefined;
}

/** The port written in the authority of `uri`, read from the text itself (URL drops default ports). */
function explicitPort(uri: string): number | undefined {
  const authority = /^[a-z][a-z0-9+.-]*:\/\/([^/?#]*)/i.exec(uri)?.[1];
  if (authority === undefined) return undefined;
  const match = /:(\d+)$/.exec(authority.slice(authority.lastIndexOf('@') + 1).replace(/^\[[^\]]*\]/, ''));
  return match?.[1] === undefined ? undefined : Number(match[1]);
}

/** Loopback hosts (RFC 8252 section 7.3; `localhost` as RFC 8252 section 8.3 tolerates it). */
export function isLoopbackHost(hostname: string): boolean {
  return hostname === '127.0.0.1' || hostname === '[::1]' || hostname === 'localhost';
}

function mismatch(field: string, message: string, cause?: unknown): AuthkeepError {
  return new AuthkeepError('authorize_url_mismatch', `authorize URL check failed at ${field}: ${message}`, {
    field,
    cause,
  });
}
