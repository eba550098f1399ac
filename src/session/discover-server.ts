/**
 * discover-server: everything a sign-in needs to know about an MCP server before it starts, in
 * the MCP authorization spec's order: probe the server unauthenticated for its challenge, find
 * its protected resource metadata (RFC 9728), then its authorization server's metadata (RFC 8414 /
 * OIDC Discovery); without PRM, the 2025-03-26 back-compat paths at the server's origin.
 *
 * Not for: registration or the authorization request (sign-in.ts).
 */
import { AuthkeepError, unreachableParty } from '../errors.js';
import { discoverAuthorizationServer, legacyAuthorizationServer } from '../oauth/authorization-server-metadata.js';
import type { HttpOptions } from '../oauth/http.js';
import { discoverProtectedResource, probeServer } from '../oauth/protected-resource.js';
import { selectScope } from '../oauth/scope.js';
import type { AuthorizationServer } from '../oauth/types.js';
import type { BearerChallenge } from '../oauth/www-authenticate.js';

/** Answers to the probe that mean no MCP endpoint is at the URL (not found, method not allowed, gone). */
const NOT_AN_ENDPOINT = new Set([404, 405, 410]);

export interface DiscoveredServer {
  serverUrl: string;
  /** RFC 8707 resource exactly as the PRM publishes it (the server URL without PRM). */
  resource: string;
  resourceMetadataUrl?: string;
  authorizationServer: AuthorizationServer;
  /** Scope chosen by the spec's strategy (challenge, else PRM scopes_supported), if any. */
  scope?: string;
  /** Every scope the PRM says the resource uses: registered up front so step-up stays possible. */
  resourceScopes?: string[];
  /**
   * The server takes DPoP-bound tokens only (RFC 9449): its PRM says
   * `dpop_bound_access_tokens_required` (RFC 9728 section 2), or its 401 challenged with `DPoP`
   * and not `Bearer` (RFC 9449 section 7.1).
   */
  dpopRequired?: boolean;
  /** Reached over http on loopback, as allowed: the record keeps the choice (loopback-http.ts). */
  allowHttpLoopback?: true;
}

/**
 * Discovery from scratch. `challenge` is the Bearer challenge of a 401 the server just answered
 * (authenticated-fetch's rediscovery): it stands in for the probe, so no unauthenticated request
 * is sent to learn what the server already said.
 */
export async function discoverServer(
  serverUrl: string,
  http: HttpOptions,
  challenge?: BearerChallenge & { scheme?: 'bearer' | 'dpop' },
): Promise<DiscoveredServer> {
  // A network failure says whom it failed to reach: the MCP server here, its AS further down.
  const atServer = (err: unknown) => {
    throw unreachableParty(err, { serverUrl });
  };
  const probe =
    challenge === undefined
      ? await probeServer(serverUrl, http).catch(atServer)
      : { challenge, dpopOnly: challenge.scheme === 'dpop' };
  const prm = await discoverProtectedResource(serverUrl, {
    ...http,
    ...(probe.challenge?.resourceMetadata ? { resourceMetadataUrl: probe.challenge.resourceMetadata } : {}),
  }).catch(atServer);
  if (prm) {
    const issuer = prm.metadata.authorization_servers?.[0];
    if (!issuer) {
      throw new AuthkeepError(
        'metadata_invalid',
        `protected resource metadata at ${prm.url} names no authorization server`,
        {
          field: 'authorization_servers',
        },
      );
    }
    const authorizationServer = await discoverAuthorizationServer(issuer, http).catch((err: unknown) => {
      throw unreachableParty(err, { issuer });
    });
    const scope = selectScope({
      challengeScope: probe.challenge?.scope,
      resourceScopesSupported: prm.metadata.scopes_supported,
    });
    return {
      serverUrl,
      resource: prm.metadata.resource,
      resourceMetadataUrl: prm.url,
      authorizationServer,
      ...(scope ? { scope } : {}),
      ...(prm.metadata.scopes_supported?.length ? { resourceScopes: [...prm.metadata.scopes_supported] } : {}),
      ...(prm.metadata.dpop_bound_access_tokens_required === true || probe.dpopOnly === true
        ? { dpopRequired: true }
        : {}),
    };
  }
  // Not found (or no such method) and no metadata: this URL is not an MCP endpoint. Going on to
  // the 2025-03-26 default endpoints would only end in a registration refused with 404.
  if ('status' in probe && NOT_AN_ENDPOINT.has(probe.status)) {
    throw new AuthkeepError(
      'discovery_failed',
      `${serverUrl} is not an MCP server: it answered HTTP ${probe.status} to an MCP request and publishes no protected resource metadata (RFC 9728)`,
      { field: 'serverUrl', detail: { status: probe.status } },
    );
  }
  // 2025-03-26 back-compat: no PRM; the server's origin is the authorization base URL.
  const authorizationServer = await legacyAuthorizationServer(serverUrl, http).catch((err: unknown) => {
    throw unreachableParty(err, { issuer: new URL(serverUrl).origin });
  });
  const scope = selectScope({ challengeScope: probe.challenge?.scope });
  return {
    serverUrl,
    resource: serverUrl,
    authorizationServer,
    ...(scope ? { scope } : {}),
    ...(probe.dpopOnly === true ? { dpopRequired: true } : {}),
  };
}
