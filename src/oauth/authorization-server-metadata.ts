/**
 * authorization-server-metadata: finding and validating an authorization server's metadata
 * (RFC 8414, OpenID Connect Discovery 1.0) in the MCP authorization spec's order, and the
 * 2025-03-26 back-compat for servers without protected resource metadata. The well-known URLs are
 * built here (oauth4webapi builds its own, in another order); oauth4webapi's
 * processDiscoveryResponse then checks the document, and we add the MCP spec's stricter checks.
 *
 * Not for: protected resource metadata (protected-resource.ts), or registering a client.
 *
 * Rules applied to every document (MCP "Authorization Server Metadata Discovery" and "Authorization
 * Code Protection"):
 * - `issuer` must be identical, as a string, to the issuer the URL was built from (RFC 8414
 *   section 3.3); oauth4webapi compares parsed URLs, which lets `https://as/` pass for
 *   `https://as`, so the exact comparison is ours. Mismatch: issuer_mismatch naming `issuer`.
 * - every endpoint must be https, or http on loopback when allowed: insecure_url naming it.
 * - `code_challenge_methods_supported` must list S256; when the field is ABSENT the MCP spec says
 *   clients MUST refuse to proceed (for RFC 8414 and OIDC documents alike): pkce_unsupported.
 */
import { processDiscoveryResponse } from 'oauth4webapi';
import * as z from 'zod/mini';
import { AuthkeepError } from '../errors.js';
import {
  assertSecureUrl,
  classifyOauth4webapiError,
  describeRequest,
  fetchMetadataDocument,
  type HttpOptions,
  isJsonObject,
  safeUrl,
} from './http.js';
import type { AuthorizationServer } from './types.js';

const OAUTH_WELL_KNOWN = '/.well-known/oauth-authorization-server';
const OIDC_WELL_KNOWN = '/.well-known/openid-configuration';

/** The metadata members we use (RFC 8414 section 2, RFC 9207 section 3, CIMD). */
const MetadataSchema = z.object({
  issuer: z.string().check(z.minLength(1)),
  authorization_endpoint: z.string().check(z.minLength(1)),
  token_endpoint: z.string().check(z.minLength(1)),
  registration_endpoint: z.optional(z.string().check(z.minLength(1))),
  revocation_endpoint: z.optional(z.string().check(z.minLength(1))),
  scopes_supported: z.optional(z.array(z.string())),
  response_types_supported: z.optional(z.array(z.string())),
  code_challenge_methods_supported: z.optional(z.array(z.string())),
  token_endpoint_auth_methods_supported: z.optional(z.array(z.string())),
  client_id_metadata_document_supported: z.optional(z.boolean()),
  authorization_response_iss_parameter_supported: z.optional(z.boolean()),
  // Optional features: a malformed value disables the feature rather than failing discovery.
  device_authorization_endpoint: z.catch(z.optional(z.string().check(z.minLength(1))), undefined),
  grant_types_supported: z.catch(z.optional(z.array(z.string())), undefined),
  dpop_signing_alg_values_supported: z.catch(z.optional(z.array(z.string())), undefined),
  id_token_signing_alg_values_supported: z.catch(z.optional(z.array(z.string())), undefined),
});

/**
 * MCP "Authorization Server Metadata Discovery" priority order. With a path
 * (`https://as/tenant1`): OAuth path-inserted, OIDC path-inserted, OIDC path-appended. Without:
 * OAuth, then OIDC. A terminating "/" is removed before inserting (RFC 8414 section 3.1).
 */
export function authorizationServerMetadataUrls(issuer: URL): URL[] {
  const path = issuer.pathname.replace(/\/+$/, '');
  if (path === '') {
    return [new URL(OAUTH_WELL_KNOWN, issuer.origin), new URL(OIDC_WELL_KNOWN, issuer.origin)];
  }
  return [
    new URL(`${OAUTH_WELL_KNOWN}${path}`, issuer.origin),
    new URL(`${OIDC_WELL_KNOWN}${path}`, issuer.origin),
    new URL(`${path}${OIDC_WELL_KNOWN}`, issuer.origin),
  ];
}

function fieldOf(path: readonly PropertyKey[]): string {
  let out = '';
  for (const key of path) out += typeof key === 'number' ? `[${key}]` : out === '' ? String(key) : `.${String(key)}`;
  return out || 'body';
}

/**
 * Validate one metadata document fetched from `url` against the issuer it was built from
 * (RFC 8414 section 3.3; OIDC Discovery section 4.3; MCP PKCE and transport rules). Returns the
 * record shape the store keeps.
 */
export async function validateAuthorizationServerMetadata(
  body: unknown,
  expectedIssuer: string,
  url: string,
  options: Pick<HttpOptions, 'allowInsecureLoopback'>,
): Promise<AuthorizationServer> {
  const where = safeUrl(url);
  if (!isJsonObject(body)) {
    throw new AuthkeepError('metadata_invalid', `authorization server metadata at ${where} is not a JSON object`, {
      field: 'body',
      detail: { url: where },
    });
  }
  // oauth4webapi's processor: `issuer` present, a string, and the same URL as expected.
  try {
    await processDiscoveryResponse(
      new URL(expectedIssuer),
      new Response(JSON.stringify(body), { status: 200, headers: { 'content-type': 'application/json' } }),
    );
  } catch (err) {
    const failure = classifyOauth4webapiError(err, describeRequest('GET', url));
    const actual = typeof body.issuer === 'string' ? body.issuer : undefined;
    if (actual !== undefined && failure.kind !== 'invalid_response') {
      // `new URL(issuer)` threw inside the processor: not a URL at all.
      throw new AuthkeepError(
        'metadata_invalid',
        `authorization server metadata at ${where} has an issuer that is not a URL`,
        {
          field: 'issuer',
          detail: { url: where, actual },
        },
      );
    }
    throw new AuthkeepError(
      actual === undefined ? 'metadata_invalid' : 'issuer_mismatch',
      actual === undefined
        ? `authorization server metadata at ${where} has no issuer`
        : `authorization server metadata at ${where} names issuer ${JSON.stringify(actual)}, expected ${JSON.stringify(expectedIssuer)}`,
      { field: 'issuer', detail: { url: where, expected: expectedIssuer, actual } },
    );
  }
  // The MCP spec's rule is stricter than a URL comparison: identical strings.
  if (body.issuer !== expectedIssuer) {
    throw new AuthkeepError(
      'issuer_mismatch',
      `authorization server metadata at ${where} names issuer ${JSON.stringify(body.issuer)}, expected exactly ${JSON.stringify(expectedIssuer)}`,
      { field: 'issuer', detail: { url: where, expected: expectedIssuer, actual: String(body.issuer) } },
    );
  }
  const parsed = MetadataSchema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field = issue ? fieldOf(issue.path) : 'body';
    throw new AuthkeepError(
      'metadata_invalid',
      `authorization server metadata at ${where} has a missing or invalid ${field}`,
      {
        field,
        detail: { url: where },
      },
    );
  }
  const m = parsed.data;
  for (const field of [
    'authorization_endpoint',
    'token_endpoint',
    'registration_endpoint',
    'revocation_endpoint',
  ] as const) {
    const value = m[field];
    if (value !== undefined) assertSecureUrl(value, field, options.allowInsecureLoopback, 'metadata_invalid');
  }
  if (m.device_authorization_endpoint !== undefined) {
    // RFC 8628 is optional for us: an endpoint we may not call (http off loopback) is ignored, not fatal.
    try {
      assertSecureUrl(
        m.device_authorization_endpoint,
        'device_authorization_endpoint',
        options.allowInsecureLoopback,
        'metadata_invalid',
      );
    } catch {
      m.device_authorization_endpoint = undefined;
    }
  }
  if (m.code_challenge_methods_supported === undefined) {
    throw new AuthkeepError(
      'pkce_unsupported',
      `authorization server ${m.issuer} does not publish code_challenge_methods_supported; the MCP spec requires refusing an AS that does not advertise PKCE`,
      { field: 'code_challenge_methods_supported', detail: { url: where } },
    );
  }
  if (!m.code_challenge_methods_supported.includes('S256')) {
    throw new AuthkeepError(
      'pkce_unsupported',
      `authorization server ${m.issuer} does not list S256 in code_challenge_methods_supported (got ${JSON.stringify(m.code_challenge_methods_supported)})`,
      {
        field: 'code_challenge_methods_supported',
        detail: { url: where, actual: m.code_challenge_methods_supported.join(' ') },
      },
    );
  }
  return toRecord(m);
}

function toRecord(m: z.infer<typeof MetadataSchema>): AuthorizationServer {
  const record: AuthorizationServer = {
    issuer: m.issuer,
    authorization_endpoint: m.authorization_endpoint,
    token_endpoint: m.token_endpoint,
  };
  if (m.registration_endpoint !== undefined) record.registration_endpoint = m.registration_endpoint;
  if (m.revocation_endpoint !== undefined) record.revocation_endpoint = m.revocation_endpoint;
  if (m.scopes_supported !== undefined) record.scopes_supported = m.scopes_supported;
  if (m.code_challenge_methods_supported !== undefined)
    record.code_challenge_methods_supported = m.code_challenge_methods_supported;
  if (m.token_endpoint_auth_methods_supported !== undefined) {
    record.token_endpoint_auth_methods_supported = m.token_endpoint_auth_methods_supported;
  }
  if (m.client_id_metadata_document_supported !== undefined) {
    record.client_id_metadata_document_supported = m.client_id_metadata_document_supported;
  }
  if (m.authorization_response_iss_parameter_supported !== undefined) {
    record.authorization_response_iss_parameter_supported = m.authorization_response_iss_parameter_supported;
  }
  if (m.device_authorization_endpoint !== undefined)
    record.device_authorization_endpoint = m.device_authorization_endpoint;
  if (m.grant_types_supported !== undefined) record.grant_types_supported = m.grant_types_supported;
  if (m.dpop_signing_alg_values_supported !== undefined)
    record.dpop_signing_alg_values_supported = m.dpop_signing_alg_values_supported;
  if (m.id_token_signing_alg_values_supported !== undefined)
    record.id_token_signing_alg_values_supported = m.id_token_signing_alg_values_supported;
  return record;
}

/**
 * RFC 8414 section 3 / OIDC Discovery section 4, in the MCP spec's order: the first URL that
 * answers 200 with JSON wins and is validated (a wrong issuer there is thrown, not skipped). URLs
 * that answer 404 (and the like), a 5xx, or a non-JSON 200 are passed over; when none wins, the
 * first such failure is thrown, else discovery_failed.
 */
export async function discoverAuthorizationServer(issuer: string, options: HttpOptions): Promise<AuthorizationServer> {
  const issuerUrl = assertSecureUrl(issuer, 'issuer', options.allowInsecureLoopback);
  if (issuerUrl.search !== '' || issuerUrl.hash !== '' || issuer.includes('#') || issuer.includes('?')) {
    throw new AuthkeepError(
      'invalid_argument',
      `issuer ${JSON.stringify(issuer)} must not have a query or fragment (RFC 8414 section 2)`,
      {
        field: 'issuer',
      },
    );
  }
  const urls = authorizationServerMetadataUrls(issuerUrl);
  let deferred: AuthkeepError | undefined;
  for (const url of urls) {
    const fetched = await fetchMetadataDocument(url, options, 'authorization server metadata');
    if (fetched.kind === 'json') return validateAuthorizationServerMetadata(fetched.body, issuer, url.href, options);
    if (fetched.kind === 'failed') deferred ??= fetched.error;
  }
  throw (
    deferred ??
    new AuthkeepError(
      'discovery_failed',
      `no authorization server metadata for ${issuer} at ${urls.map((u) => u.pathname).join(', ')}`,
      {
        field: 'issuer',
        detail: { issuer, tried: urls.map((u) => safeUrl(u)).join(' ') },
      },
    )
  );
}

/**
 * The 2025-03-26 back-compat (that revision's "Server Metadata Discovery" and "Fallbacks for
 * Servers without Metadata Discovery"), for a server without protected resource metadata: the
 * authorization base URL is the server URL with its path discarded, and its metadata is at
 * `<origin>/.well-known/oauth-authorization-server`.
 * - Metadata there is held to every rule above, with the origin as the issuer it was built from
 *   (RFC 8414 section 3.3: identical, so no other issuer, not even one on the same origin) and
 *   PKCE advertised (`code_challenge_methods_supported` with S256, else pkce_unsupported).
 * - No metadata there (404 and the like): the default endpoints `/authorize`, `/token` and
 *   `/register` at the origin. Nothing then advertises PKCE, and nothing is claimed: the record
 *   carries no `code_challenge_methods_supported`. The sign-in still uses S256, as it always does
 *   (that revision requires PKCE of every client and defines no way to advertise it without
 *   metadata); the MCP rule "refuse when PKCE support is not advertised" is about a metadata
 *   document that omits it, and there is none.
 */
export async function legacyAuthorizationServer(serverUrl: string, options: HttpOptions): Promise<AuthorizationServer> {
  const server = assertSecureUrl(serverUrl, 'serverUrl', options.allowInsecureLoopback);
  const origin = server.origin;
  const url = new URL(OAUTH_WELL_KNOWN, origin);
  const fetched = await fetchMetadataDocument(url, options, 'authorization server metadata');
  if (fetched.kind === 'failed') throw fetched.error;
  if (fetched.kind === 'json') return validateAuthorizationServerMetadata(fetched.body, origin, url.href, options);
  return {
    issuer: origin,
    authorization_endpoint: `${origin}/authorize`,
    token_endpoint: `${origin}/token`,
    registration_endpoint: `${origin}/register`,
  };
}
