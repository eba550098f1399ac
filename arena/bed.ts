/**
 * One variant's world: fresh authorization servers (oidc-provider with the audit, compressed
 * lifetimes, rotation with reuse revocation) and M protected MCP servers varied as the real world
 * varies them. Every variant gets its own, so audits never mix.
 *
 * The server kinds cycle in this order (M = 5 by default):
 *   1. `header`: its PRM is named only in the 401's WWW-Authenticate (non-standard PRM path);
 *   2. `well-known`: no resource_metadata in the challenge; PRM only at the RFC 9728 path;
 *   3. `two-challenges`: two WWW-Authenticate fields (a DPoP challenge, then the Bearer one);
 *   4. `tenant`: its AS's issuer has a path (`/tenant`; metadata at the issuer's own path only,
 *      found through the OIDC path-appended form), PRM at the root well-known URL;
 *   5. `dpop`: takes DPoP-bound tokens only (RFC 9449: its PRM says
 *      `dpop_bound_access_tokens_required`, it challenges with `DPoP`, verifies every proof and
 *      demands its own nonce), behind an AS with DPoP on that also demands a nonce at its token
 *      endpoint. A client that sends Bearer tokens cannot use it at all.
 * The first three share one AS (each server its own resource and audience); the tenant servers
 * share a second AS instance, the DPoP servers a third.
 *
 * For: the arena runner and its tests. Not for: the testbed's own tests.
 */
import type { TimeScale } from './clock.js';
import {
  type AuthorizationServerOptions,
  type DiscoveryVariant,
  type McpServerCounts,
  type RunningAuthorizationServer,
  type RunningMcpServer,
  startAuthorizationServer,
  startProtectedMcpServer,
} from './testbed/index.js';

export interface ServerKind {
  name: 'header' | 'well-known' | 'two-challenges' | 'tenant' | 'dpop';
  discovery: DiscoveryVariant;
  tenant: boolean;
  /** DPoP-bound tokens only, from a DPoP AS (both demanding nonces). */
  dpop?: boolean;
  description: string;
}

export const SERVER_KINDS: readonly ServerKind[] = [
  { name: 'header', discovery: 'header', tenant: false, description: 'PRM named only in WWW-Authenticate' },
  { name: 'well-known', discovery: 'well-known-path', tenant: false, description: 'PRM only at the well-known path' },
  {
    name: 'two-challenges',
    discovery: 'two-challenges',
    tenant: false,
    description: 'two WWW-Authenticate fields (DPoP + Bearer)',
  },
  { name: 'tenant', discovery: 'well-known-root', tenant: true, description: 'issuer with a path (/tenant)' },
  {
    name: 'dpop',
    discovery: 'header',
    tenant: false,
    dpop: true,
    description: 'DPoP-bound tokens only (RFC 9449), nonces at the AS and the server',
  },
];

export interface ArenaServer {
  index: number;
  /** e.g. `header`, `tenant`, `header-2` when kinds repeat. */
  name: string;
  kind: ServerKind;
  url: string;
  resource: string;
  issuer: string;
}

export interface ArenaBed {
  servers: ArenaServer[];
  /** The authorization servers, root first (the tenant and DPoP ones only when such a server exists). */
  authorizationServers: RunningAuthorizationServer[];
  /** The AS that serves a server. */
  asFor(server: ArenaServer): RunningAuthorizationServer;
  /** What each MCP server saw (requests, 401s, 403s, tool calls), by server index. */
  mcpCounts(): McpServerCounts[];
  close(): Promise<void>;
}

/** What a scenario changes in the bed (arena/scenarios.ts); nothing: today's world. */
export interface BedOptions {
  /** The kinds to cycle through instead of SERVER_KINDS. */
  kinds?: readonly ServerKind[];
  /** Added to every authorization server's options (e.g. a static client for client credentials). */
  as?: Partial<AuthorizationServerOptions>;
  /** Added to the root (rotating) authorization server's options only (scenario chaos: the token-endpoint faults). */
  rootAs?: Partial<AuthorizationServerOptions>;
}

export async function startArenaBed(
  serverCount: number,
  scale: TimeScale,
  options: BedOptions = {},
): Promise<ArenaBed> {
  if (!Number.isSafeInteger(serverCount) || serverCount < 1)
    throw new RangeError('server count must be a positive integer');
  const lifetimes = {
    accessTokenTtlSeconds: scale.accessTokenTtlSeconds,
    refreshTokenTtlSeconds: scale.refreshTokenTtlSeconds,
    grantTtlSeconds: scale.grantTtlSeconds,
    preciseExpiry: true,
    ...options.as,
  };
  const cycle = options.kinds ?? SERVER_KINDS;
  const closers: Array<() => Promise<void>> = [];
  const close = async (): Promise<void> => {
    for (const fn of closers.reverse()) await fn().catch(() => {});
  };
  try {
    const root = await startAuthorizationServer({ ...lifetimes, ...options.rootAs });
    closers.push(() => root.close());
    const kinds = Array.from({ length: serverCount }, (_, i) => cycle[i % cycle.length] as ServerKind);
    let tenant: RunningAuthorizationServer | undefined;
    if (kinds.some((k) => k.tenant)) {
      tenant = await startAuthorizationServer({ ...lifetimes, issuerPath: '/tenant', pathInsertedMetadata: false });
      const t = tenant;
      closers.push(() => t.close());
    }
    let dpopAs: RunningAuthorizationServer | undefined;
    if (kinds.some((k) => k.dpop)) {
      dpopAs = await startAuthorizationServer({ ...lifetimes, dpop: { requireNonce: true } });
      const d = dpopAs;
      closers.push(() => d.close());
    }
    const servers: ArenaServer[] = [];
    const running = new Map<number, { as: RunningAuthorizationServer; mcp: RunningMcpServer }>();
    for (const [index, kind] of kinds.entries()) {
      const as = kind.dpop
        ? (dpopAs as RunningAuthorizationServer)
        : kind.tenant
          ? (tenant as RunningAuthorizationServer)
          : root;
      const round = Math.floor(index / cycle.length);
      const name = round === 0 ? kind.name : `${kind.name}-${round + 1}`;
      const mcp = await startProtectedMcpServer({
        authorizationServer: as,
        discovery: kind.discovery,
        name: `arena-${name}`,
        preciseExpiry: true,
        ...(kind.dpop ? { dpop: { required: true, nonce: true } } : {}),
      });
      closers.push(() => mcp.close());
      running.set(index, { as, mcp });
      servers.push({ index, name, kind, url: mcp.url, resource: mcp.resource, issuer: as.issuer });
    }
    return {
      servers,
      authorizationServers: [root, ...(tenant ? [tenant] : []), ...(dpopAs ? [dpopAs] : [])],
      asFor: (server) => (running.get(server.index) as { as: RunningAuthorizationServer }).as,
      mcpCounts: () => servers.map((s) => (running.get(s.index) as { mcp: RunningMcpServer }).mcp.counts()),
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
