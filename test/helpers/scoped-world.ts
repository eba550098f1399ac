/**
 * scoped-world: an MCP server and authorization servers on tiny real HTTP servers (see
 * hostile-server.ts) whose tokens carry the scope the authorization request asked for, so a test
 * can script what the server demands per JSON-RPC method (a 401 challenge with a scope, a 403
 * insufficient_scope) and see exactly which scope each authorization request asked for, at which
 * AS, with which client_id. The MCP server's PRM can be moved to another AS mid-test (SEP-2352).
 * The "browser" approves at once: it follows the authorize URL by redirecting to its
 * redirect_uri with a code, the state and the AS's `iss`.
 *
 * Not for: realistic sign-ins (arena/testbed has oidc-provider for that).
 */
import type { TestContext } from 'node:test';
import {
  asMetadata,
  type HostileServer,
  type RecordedRequest,
  type Reply,
  startHostileServer,
} from './hostile-server.js';

export interface ScopedAs {
  server: HostileServer;
  issuer: string;
  /** client_id the AS hands out by DCR. */
  clientId: string;
  /** Access tokens issued, in order, with their scope and the client they were issued to. */
  issued: Array<{ token: string; scope: string; clientId: string }>;
}

export interface AuthorizeSeen {
  /** Issuer of the AS whose authorization endpoint was asked. */
  issuer: string;
  clientId: string;
  scope: string | undefined;
}

export interface ScopedWorld {
  mcp: HostileServer;
  mcpUrl: string;
  prmUrl: string;
  /** Every AS of this world; `ases[0]` is the one the PRM names at first. */
  ases: ScopedAs[];
  /** The PRM names this AS from now on (a migration). */
  moveTo(as: ScopedAs): void;
  /** The AS the PRM names now. */
  current(): ScopedAs;
  /** Authorization requests, in order. */
  authorizations: AuthorizeSeen[];
  /** An openAuthorizationUrl that approves at once. */
  open: (url: string) => Promise<void>;
  /** The issuer and scope of a token this world issued (at whichever AS), else undefined. */
  grantOf(token: string | undefined): Grant | undefined;
  /** The JSON-RPC methods the MCP server received, with the token each carried. */
  calls: Array<{ method: string; token: string | undefined }>;
}

/** What a token this world issued stands for. */
export interface Grant {
  issuer: string;
  scopes: string[];
}

/**
 * What the MCP server answers to a JSON-RPC `method` carrying `grant` (undefined: no or unknown
 * token). Return undefined to answer the call with an empty result.
 */
export type Policy = (method: string, grant: Grant | undefined, world: ScopedWorld) => Reply | undefined;

/** A 401 with a Bearer challenge naming `scope` (and the PRM). */
export function challenge401(world: ScopedWorld, scope?: string, error = 'invalid_token'): Reply {
  const params = [`error="${error}"`, `resource_metadata="${world.prmUrl}"`, ...(scope ? [`scope="${scope}"`] : [])];
  return { status: 401, headers: { 'www-authenticate': `Bearer ${params.join(', ')}` }, json: { error } };
}

/** A 403 insufficient_scope naming `scope`. */
export function forbidden403(world: ScopedWorld, scope: string): Reply {
  return {
    status: 403,
    headers: {
      'www-authenticate': `Bearer error="insufficient_scope", scope="${scope}", resource_metadata="${world.prmUrl}"`,
    },
    json: { error: 'insufficient_scope' },
  };
}

async function startAs(
  t: TestContext,
  name: string,
  metadataOverrides: Record<string, unknown>,
  codes: Map<string, { scope: string; clientId: string }>,
): Promise<ScopedAs> {
  const server = await startHostileServer();
  t.after(() => server.close());
  const as: ScopedAs = { server, issuer: server.url, clientId: `${name}-client`, issued: [] };
  server
    .json(
      '/.well-known/oauth-authorization-server',
      asMetadata(server.url, server.url, {
        revocation_endpoint: undefined,
        authorization_response_iss_parameter_supported: true,
        ...metadataOverrides,
      }),
    )
    .on('POST', '/register', () => ({
      status: 201,
      json: { client_id: as.clientId, token_endpoint_auth_method: 'none' },
    }))
    .on('POST', '/token', (req: RecordedRequest) => {
      const grant = codes.get(req.form.get('code') ?? '');
      if (!grant || req.form.get('grant_type') !== 'authorization_code') {
        return { status: 400, json: { error: 'invalid_grant' } };
      }
      if (req.form.get('client_id') !== grant.clientId) return { status: 400, json: { error: 'invalid_client' } };
      const token = `${name}-at-${as.issued.length + 1}`;
      as.issued.push({ token, scope: grant.scope, clientId: grant.clientId });
      return { json: { access_token: token, token_type: 'Bearer', expires_in: 3600, scope: grant.scope } };
    });
  return as;
}

/**
 * Starts the world: the MCP server at `/mcp` answering by `policy`, its PRM (named in every
 * challenge) at `/prm`, and `asCount` authorization servers.
 */
export async function scopedWorld(
  t: TestContext,
  policy: Policy,
  options: { asCount?: number; scopesSupported?: string[]; asMetadata?: Record<string, unknown> } = {},
): Promise<ScopedWorld> {
  const mcp = await startHostileServer();
  t.after(() => mcp.close());
  const codes = new Map<string, { scope: string; clientId: string }>();
  const ases: ScopedAs[] = [];
  for (let i = 0; i < (options.asCount ?? 1); i++)
    ases.push(await startAs(t, `as${i + 1}`, options.asMetadata ?? {}, codes));
  let current = ases[0] as ScopedAs;
  const world: ScopedWorld = {
    mcp,
    mcpUrl: `${mcp.url}/mcp`,
    prmUrl: `${mcp.url}/prm`,
    ases,
    moveTo: (as) => {
      current = as;
    },
    current: () => current,
    authorizations: [],
    calls: [],
    grantOf: (token) => {
      for (const as of ases) {
        const found = as.issued.find((i) => i.token === token);
        if (found) return { issuer: as.issuer, scopes: found.scope.split(' ').filter(Boolean) };
      }
      return undefined;
    },
    open: async (url) => {
      const authorize = new URL(url);
      const as = ases.find((a) => url.startsWith(`${a.issuer}/`));
      if (!as) throw new Error(`authorize URL at an unknown AS: ${authorize.origin}`);
      const clientId = authorize.searchParams.get('client_id') ?? '';
      const scope = authorize.searchParams.get('scope') ?? undefined;
      world.authorizations.push({ issuer: as.issuer, clientId, scope });
      const code = `code-${codes.size + 1}`;
      codes.set(code, { scope: scope ?? '', clientId });
      const redirect = new URL(authorize.searchParams.get('redirect_uri') as string);
      redirect.searchParams.set('code', code);
      redirect.searchParams.set('state', authorize.searchParams.get('state') as string);
      redirect.searchParams.set('iss', as.issuer);
      await (await fetch(redirect)).text();
    },
  };
  mcp
    .on('GET', '/prm', () => ({
      json: {
        resource: world.mcpUrl,
        authorization_servers: [current.issuer],
        ...(options.scopesSupported ? { scopes_supported: options.scopesSupported } : {}),
      },
    }))
    .on('POST', '/mcp', (req) => {
      const body = req.json as { id?: number | string; method?: string } | undefined;
      const method = body?.method ?? '';
      const header = req.headers.authorization;
      const token = header?.startsWith('Bearer ') ? header.slice('Bearer '.length) : undefined;
      world.calls.push({ method, token });
      const reply = policy(method, world.grantOf(token), world);
      if (reply) return reply;
      if (body?.id === undefined) return { status: 202, body: '' };
      return { json: { jsonrpc: '2.0', id: body.id, result: {} } };
    });
  return world;
}

/** A JSON-RPC request to the world's MCP server through `fetchFn`. */
export function rpc(fetchFn: typeof fetch, url: string, method: string, id = 1): Promise<Response> {
  return fetchFn(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id, method, params: {} }),
  });
}
