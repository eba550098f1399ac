/**
 * A real protected MCP server (@modelcontextprotocol/sdk McpServer over the stateless Streamable
 * HTTP transport) on 127.0.0.1:0, accepting only JWT access tokens from the test AS, with the
 * discovery variants MCP clients meet in the wild.
 *
 * For: integration tests and the arena. Access tokens are verified with jose against the AS's
 * jwks_uri: signature (ES256), `iss` = the AS issuer, `aud` = this server's resource, `exp`, typ
 * at+jwt. Every MCP request needs scope `mcp:read`; tool `echo` needs `mcp:read`, `admin_echo`
 * needs `mcp:admin`. The scope check is done at the HTTP layer BEFORE the SDK sees the request: the
 * JSON-RPC body is parsed here, and a tools/call of admin_echo without mcp:admin is answered
 * `403` with `WWW-Authenticate: Bearer error="insufficient_scope", scope="mcp:read mcp:admin"`
 * (plus resource_metadata where the variant names it), so clients can step up. The tools check
 * the scopes again (defense in depth).
 *
 * Discovery variants (`discovery`):
 * - 'header': PRM at a non-standard path (/prm<path>), named only in the 401's resource_metadata;
 *   every /.well-known/ path is 404.
 * - 'well-known-path': no resource_metadata in the challenge; PRM only at
 *   /.well-known/oauth-protected-resource<path>.
 * - 'well-known-root': no resource_metadata; PRM only at /.well-known/oauth-protected-resource.
 * - 'two-challenges': two WWW-Authenticate fields: `DPoP algs="ES256", error="invalid_token"`,
 *   then the Bearer one with resource_metadata (PRM at the non-standard path, as 'header').
 * - 'legacy-as-on-origin' (2025-03-26): no PRM; the MCP server's origin IS the authorization
 *   server: an oidc-provider embedded in this server (issuer = this origin) serves
 *   /.well-known/oauth-authorization-server and its endpoints here. `authorizationServer` on the
 *   result is that embedded AS (its own audit); the `authorizationServer` option is not used.
 * - 'legacy-default-endpoints' (2025-03-26): no PRM and no metadata at all; the embedded AS
 *   answers /authorize, /token, /register (and /token/revocation, /jwks) at this origin.
 *
 * DPoP (RFC 9449): a token bound to a key (`cnf.jkt`) is accepted only as `Authorization: DPoP`
 * with a valid proof (section 7.1; checked here with jose, independently of any client library):
 * typ dpop+jwt, an asymmetric alg, a public `jwk` whose thumbprint is the token's `cnf.jkt`, the
 * signature, htm = the method, htu = this endpoint (no query or fragment), `ath` = the token's
 * hash, `iat` within a minute, a `jti` never seen before (replays are refused), and with
 * `dpop.nonce` the server's current nonce (else 401 `use_dpop_nonce` with a `DPoP-Nonce`, section
 * 9). A bound token presented as Bearer is refused. `dpop.required`: Bearer tokens are refused
 * altogether, the PRM says `dpop_bound_access_tokens_required`, and challenges use `DPoP`.
 *
 * Not for: the SDK's mcpAuthMetadataRouter (it copies AS metadata onto the resource origin and
 * would hide discovery bugs); sessions (stateless: GET/DELETE on the MCP path answer 405).
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import {
  calculateJwkThumbprint,
  createRemoteJWKSet,
  decodeProtectedHeader,
  importJWK,
  type JWK,
  type JWTPayload,
  jwtVerify,
} from 'jose';
import { z } from 'zod';

import {
  type AuthorizationServerOptions,
  createAuthorizationServer,
  type RunningAuthorizationServer,
} from './authorization-server.js';
import { closeServer, listenEphemeral, readBody, sendJson, sendText } from './http-util.js';

export type DiscoveryVariant =
  | 'header'
  | 'well-known-path'
  | 'well-known-root'
  | 'two-challenges'
  | 'legacy-as-on-origin'
  | 'legacy-default-endpoints';

export const DISCOVERY_VARIANTS: readonly DiscoveryVariant[] = [
  'header',
  'well-known-path',
  'well-known-root',
  'two-challenges',
  'legacy-as-on-origin',
  'legacy-default-endpoints',
];

export interface ProtectedMcpServerOptions {
  /** The AS whose tokens are accepted (required except for the legacy variants). */
  authorizationServer?: RunningAuthorizationServer;
  /** Default 'header'. */
  discovery?: DiscoveryVariant;
  /** MCP endpoint path (default '/mcp'). */
  path?: string;
  /** PRM scopes_supported and the resource's scopes at the AS (default mcp:read mcp:write mcp:admin). */
  scopesSupported?: string[];
  /** Publish this `resource` in the PRM instead of the real one (negative tests). */
  resourceOverride?: string;
  /** Register the resource with the AS (default true). */
  registerResource?: boolean;
  /** Access token TTL for this resource (seconds), when registering it with the AS. */
  accessTokenTtlSeconds?: number;
  /** Server name (serverInfo and PRM resource_name). */
  name?: string;
  /** Options for the embedded AS of the legacy variants (resources/routes are set here). */
  legacyAuthorizationServer?: AuthorizationServerOptions;
  /**
   * Check `exp` to the millisecond (for an AS started with `preciseExpiry`, whose `exp` is a
   * non-integer NumericDate): a token is expired from that instant on. jose compares `exp` with
   * whole seconds, which could accept a 1-second token for up to a second too long. Default false.
   */
  preciseExpiry?: boolean;
  /**
   * DPoP-bound tokens (see the header): `required` refuses Bearer, `nonce` demands the server's
   * nonce; `unsupported`: a server that knows only Bearer (the DPoP scheme is a malformed
   * Authorization header to it, answered with a Bearer challenge).
   */
  dpop?: { required?: boolean; nonce?: boolean; unsupported?: boolean };
}

export interface McpServerCounts {
  /** Requests to the MCP path. */
  requests: number;
  /** 401 answers (no/invalid token). */
  unauthorized: number;
  /** Of those, requests with no Authorization header (a client's unauthenticated probe). */
  unauthenticated: number;
  /** Of those, tokens refused only for their age: signed by the AS for this server, but expired. */
  expiredTokens: number;
  /** Of those, tokens refused for anything else (signature, issuer, audience, type, malformed). */
  invalidTokens: number;
  /** 403 answers (insufficient scope). */
  forbidden: number;
  /** Tool calls executed. */
  toolCalls: number;
}

/** What the server saw of DPoP (RFC 9449). */
export interface DpopCounts {
  /** Requests that presented a DPoP-bound token with a valid proof (nonce challenges excluded). */
  dpopAccepted: number;
  /** 401 `use_dpop_nonce` answers (RFC 9449 section 9). */
  dpopNonceChallenges: number;
  /** Proofs refused, by reason (`replay`, `ath`, `htu`, `jkt`, `signature`, `bearer-bound`, ...). */
  dpopRefused: Record<string, number>;
}

export interface RunningMcpServer {
  /** The MCP endpoint URL, e.g. http://127.0.0.1:PORT/mcp */
  url: string;
  /** The resource identifier (= url); what access tokens' aud must be. */
  resource: string;
  origin: string;
  discovery: DiscoveryVariant;
  /** Where the PRM is served (undefined for the legacy variants). */
  prmUrl: string | undefined;
  /** The AS this server trusts at start (the embedded one for legacy variants). */
  authorizationServer: RunningAuthorizationServer;
  /** Move the server to another AS: its PRM names `next` and only `next`'s tokens are accepted. */
  switchAuthorizationServer(next: RunningAuthorizationServer): void;
  toolCalls(): number;
  counts(): McpServerCounts;
  dpopCounts(): DpopCounts;
  /** A new DPoP nonce (RFC 9449 section 9): proofs carrying the old one are challenged again. */
  rotateDpopNonce(): void;
  /** From now on, take DPoP-bound tokens only (or Bearer ones too again): PRM and challenges follow. */
  setDpopRequired(required: boolean): void;
  close(): Promise<void>;
}

const DEFAULT_SCOPES = ['mcp:read', 'mcp:write', 'mcp:admin'];
const READ = 'mcp:read';
const ADMIN = 'mcp:admin';

export async function startProtectedMcpServer(options: ProtectedMcpServerOptions = {}): Promise<RunningMcpServer> {
  const discovery = options.discovery ?? 'header';
  const mcpPath = options.path ?? '/mcp';
  const scopes = options.scopesSupported ?? DEFAULT_SCOPES;
  const name = options.name ?? `testbed-mcp-${discovery}`;
  const legacy = discovery === 'legacy-as-on-origin' || discovery === 'legacy-default-endpoints';
  if (!legacy && !options.authorizationServer)
    throw new TypeError(`discovery '${discovery}' needs an authorizationServer`);

  const server = createServer();
  const origin = await listenEphemeral(server);
  const resource = `${origin}${mcpPath}`;

  let as = legacy
    ? createAuthorizationServer(origin, {
        ...options.legacyAuthorizationServer,
        defaultResource: resource,
        serveMetadata: discovery === 'legacy-as-on-origin',
        ...(discovery === 'legacy-default-endpoints'
          ? { routes: { authorization: '/authorize', token: '/token', registration: '/register' } }
          : {}),
      })
    : (options.authorizationServer as RunningAuthorizationServer);
  if (options.registerResource ?? true) {
    as.addResource({
      resource,
      scopes,
      ...(options.accessTokenTtlSeconds !== undefined ? { accessTokenTtlSeconds: options.accessTokenTtlSeconds } : {}),
    });
  }

  const prmPath = {
    header: `/prm${mcpPath}`,
    'two-challenges': `/prm${mcpPath}`,
    'well-known-path': `/.well-known/oauth-protected-resource${mcpPath}`,
    'well-known-root': '/.well-known/oauth-protected-resource',
    'legacy-as-on-origin': undefined,
    'legacy-default-endpoints': undefined,
  }[discovery];
  const prmUrl = prmPath === undefined ? undefined : `${origin}${prmPath}`;
  const headerNamesPrm = discovery === 'header' || discovery === 'two-challenges';
  const prm = {
    resource: options.resourceOverride ?? resource,
    authorization_servers: [as.issuer],
    scopes_supported: scopes,
    bearer_methods_supported: ['header'],
    resource_name: name,
    ...(options.dpop?.required ? { dpop_bound_access_tokens_required: true } : {}),
  } as {
    resource: string;
    authorization_servers: string[];
    scopes_supported: string[];
    bearer_methods_supported: string[];
    resource_name: string;
    dpop_bound_access_tokens_required?: boolean;
  };

  let jwks = createRemoteJWKSet(new URL(as.endpoints.jwks));
  const counts: McpServerCounts = {
    requests: 0,
    unauthorized: 0,
    unauthenticated: 0,
    expiredTokens: 0,
    invalidTokens: 0,
    forbidden: 0,
    toolCalls: 0,
  };
  const dpopCounts: DpopCounts = { dpopAccepted: 0, dpopNonceChallenges: 0, dpopRefused: {} };
  let dpopRequired = options.dpop?.required === true;
  let dpopNonce = randomBytes(16).toString('base64url');
  /** Proof `jti`s seen (RFC 9449 section 11.1: a replayed proof is refused). */
  const seenJtis = new Set<string>();

  /** The WWW-Authenticate field(s) for a 401 or 403. */
  function challenge(params: Array<[string, string]>): string | string[] {
    const all = [...params];
    if (headerNamesPrm && prmUrl) all.push(['resource_metadata', prmUrl]);
    const scheme = dpopRequired ? 'DPoP' : 'Bearer';
    const fields = dpopRequired ? [['algs', 'ES256 ES384 ES512'] as [string, string], ...all] : all;
    const bearer = fields.length ? `${scheme} ${fields.map(([k, v]) => `${k}="${quote(v)}"`).join(', ')}` : scheme;
    return discovery === 'two-challenges' ? ['DPoP algs="ES256", error="invalid_token"', bearer] : bearer;
  }

  function refuseProof(reason: string): void {
    dpopCounts.dpopRefused[reason] = (dpopCounts.dpopRefused[reason] ?? 0) + 1;
  }

  /**
   * RFC 9449 section 4.3 checks of the proof for a request presenting `token` bound to `jkt`;
   * 'nonce' when only the server's nonce is missing or stale (section 9).
   */
  async function checkProof(req: IncomingMessage, token: string, jkt: string): Promise<'ok' | 'nonce' | string> {
    const proof = req.headers.dpop;
    if (typeof proof !== 'string' || proof.includes(',')) return 'missing';
    let header: ReturnType<typeof decodeProtectedHeader>;
    try {
      header = decodeProtectedHeader(proof);
    } catch {
      return 'malformed';
    }
    const jwk = header.jwk as JWK | undefined;
    if (header.typ !== 'dpop+jwt' || !jwk || jwk.d !== undefined) return 'header';
    if (!header.alg || !['ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519', 'PS256', 'RS256'].includes(header.alg))
      return 'alg';
    let claims: JWTPayload;
    try {
      claims = (await jwtVerify(proof, await importJWK(jwk, header.alg), { typ: 'dpop+jwt' })).payload;
    } catch {
      return 'signature';
    }
    if ((await calculateJwkThumbprint(jwk, 'sha256')) !== jkt) return 'jkt';
    if (claims.htm !== req.method) return 'htm';
    if (claims.htu !== resource) return 'htu';
    if (claims.ath !== createHash('sha256').update(token).digest('base64url')) return 'ath';
    if (typeof claims.iat !== 'number' || Math.abs(Date.now() / 1000 - claims.iat) > 60) return 'iat';
    if (typeof claims.jti !== 'string' || claims.jti.length < 8) return 'jti';
    if (seenJtis.has(claims.jti)) return 'replay';
    seenJtis.add(claims.jti);
    if (options.dpop?.nonce && claims.nonce !== dpopNonce) return 'nonce';
    return 'ok';
  }

  function unauthorized(res: ServerResponse, error?: { code: string; description: string }): void {
    counts.unauthorized += 1;
    const params: Array<[string, string]> = error
      ? [
          ['error', error.code],
          ['error_description', error.description],
        ]
      : [];
    if (!legacy) params.push(['scope', READ]);
    sendJson(res, 401, { error: error?.code ?? 'unauthorized' }, { 'WWW-Authenticate': challenge(params) });
  }

  function forbidden(res: ServerResponse, required: string[]): void {
    counts.forbidden += 1;
    const params: Array<[string, string]> = [
      ['error', 'insufficient_scope'],
      ['scope', required.join(' ')],
    ];
    sendJson(res, 403, { error: 'insufficient_scope' }, { 'WWW-Authenticate': challenge(params) });
  }

  async function verify(token: string): Promise<JWTPayload> {
    const { payload } = await jwtVerify(token, jwks, {
      issuer: as.issuer,
      audience: resource,
      algorithms: ['ES256'],
      typ: 'at+jwt',
      requiredClaims: ['exp', 'iat'],
    });
    if (options.preciseExpiry && typeof payload.exp === 'number' && payload.exp * 1000 <= Date.now()) {
      throw Object.assign(new Error('access token expired'), { code: 'ERR_JWT_EXPIRED' });
    }
    return payload;
  }

  async function handleMcp(req: IncomingMessage, res: ServerResponse): Promise<void> {
    counts.requests += 1;
    const header = req.headers.authorization;
    const match = header ? /^(Bearer|DPoP) +([A-Za-z0-9\-._~+/]+=*)$/i.exec(header) : null;
    const presentedDpop = match?.[1]?.toLowerCase() === 'dpop';
    if (!match?.[2] || (dpopRequired && !presentedDpop) || (presentedDpop && options.dpop?.unsupported)) {
      await drain(req);
      if (!header) counts.unauthenticated += 1;
      return unauthorized(
        res,
        header ? { code: 'invalid_request', description: 'malformed Authorization header' } : undefined,
      );
    }
    const token = match[2];
    let payload: JWTPayload;
    try {
      payload = await verify(token);
    } catch (err) {
      await drain(req);
      const expired = (err as { code?: string }).code === 'ERR_JWT_EXPIRED';
      if (expired) counts.expiredTokens += 1;
      else counts.invalidTokens += 1;
      return unauthorized(res, {
        code: 'invalid_token',
        description: expired ? 'access token expired' : 'access token invalid',
      });
    }
    // RFC 9449 section 7: a token bound to a key needs the DPoP scheme and a proof of that key.
    const jkt = (payload.cnf as { jkt?: unknown } | undefined)?.jkt;
    if (!options.dpop?.unsupported && (typeof jkt === 'string' || presentedDpop)) {
      const verdict =
        typeof jkt === 'string' && presentedDpop
          ? await checkProof(req, token, jkt)
          : presentedDpop
            ? 'unbound'
            : 'bearer-bound';
      if (verdict === 'nonce') {
        await drain(req);
        counts.unauthorized += 1;
        dpopCounts.dpopNonceChallenges += 1;
        return sendJson(
          res,
          401,
          { error: 'use_dpop_nonce' },
          {
            'WWW-Authenticate':
              'DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof"',
            'DPoP-Nonce': dpopNonce,
          },
        );
      }
      if (verdict !== 'ok') {
        await drain(req);
        refuseProof(verdict);
        counts.invalidTokens += 1;
        return unauthorized(res, { code: 'invalid_token', description: `DPoP proof refused (${verdict})` });
      }
      dpopCounts.dpopAccepted += 1;
    }
    const granted = typeof payload.scope === 'string' ? payload.scope.split(' ').filter(Boolean) : [];

    if (req.method !== 'POST') {
      await drain(req);
      return sendText(res, 405, 'method not allowed', { Allow: 'POST' });
    }
    let body: unknown;
    try {
      body = JSON.parse((await readBody(req)).toString('utf8'));
    } catch {
      return sendJson(res, 400, { jsonrpc: '2.0', id: null, error: { code: -32700, message: 'Parse error' } });
    }
    const required = requiredScopes(body);
    if (!required.every((s) => granted.includes(s))) return forbidden(res, required);

    const auth: AuthInfo = {
      token,
      clientId: typeof payload.client_id === 'string' ? payload.client_id : '',
      scopes: granted,
      resource: new URL(resource),
      ...(typeof payload.exp === 'number' ? { expiresAt: payload.exp } : {}),
    };
    const mcp = buildMcpServer(name, counts);
    const transport = new StreamableHTTPServerTransport({ enableJsonResponse: true }); // no sessionIdGenerator: stateless
    res.on('close', () => {
      void transport.close();
      void mcp.close();
    });
    await mcp.connect(transport);
    await transport.handleRequest(Object.assign(req, { auth }), res, body);
  }

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? '/', origin).pathname;
    const done = (err: unknown): void => {
      if (!res.headersSent) sendJson(res, 500, { error: 'server_error', detail: String(err) });
      else res.end();
    };
    if (path === mcpPath) {
      handleMcp(req, res).catch(done);
      return;
    }
    if (prmPath !== undefined && path === prmPath && req.method === 'GET') {
      return sendJson(res, 200, prm);
    }
    if (legacy) {
      as.handle(req, res);
      return;
    }
    sendText(res, 404, 'not found');
  });

  return {
    url: resource,
    resource,
    origin,
    discovery,
    prmUrl,
    authorizationServer: as,
    switchAuthorizationServer: (next: RunningAuthorizationServer) => {
      // The server moves to another AS (a migration): its PRM names the new issuer and only the
      // new issuer's tokens are accepted from now on.
      next.addResource({ resource, scopes });
      as = next;
      prm.authorization_servers = [next.issuer];
      jwks = createRemoteJWKSet(new URL(next.endpoints.jwks));
    },
    toolCalls: () => counts.toolCalls,
    counts: () => ({ ...counts }),
    dpopCounts: () => ({ ...dpopCounts, dpopRefused: { ...dpopCounts.dpopRefused } }),
    rotateDpopNonce: () => {
      dpopNonce = randomBytes(16).toString('base64url');
    },
    setDpopRequired: (required: boolean) => {
      dpopRequired = required;
      if (required) prm.dpop_bound_access_tokens_required = true;
      else delete prm.dpop_bound_access_tokens_required;
    },
    close: async () => {
      await closeServer(server);
      if (legacy) await as.close();
    },
  };
}

/** Scopes a JSON-RPC message (or batch) needs: mcp:read always, + mcp:admin for admin_echo. */
function requiredScopes(body: unknown): string[] {
  const messages = Array.isArray(body) ? body : [body];
  const admin = messages.some((m) => {
    const msg = m as { method?: unknown; params?: { name?: unknown } } | null;
    return msg?.method === 'tools/call' && msg.params?.name === 'admin_echo';
  });
  return admin ? [READ, ADMIN] : [READ];
}

function buildMcpServer(name: string, counts: McpServerCounts): McpServer {
  const mcp = new McpServer({ name, version: '1.0.0' });
  const has = (scopes: string[] | undefined, scope: string): boolean => scopes?.includes(scope) ?? false;
  mcp.registerTool(
    'echo',
    { description: 'Echo the text back (needs mcp:read).', inputSchema: { text: z.string() } },
    async ({ text }, extra) => {
      if (!has(extra.authInfo?.scopes, READ))
        return { isError: true, content: [{ type: 'text', text: 'insufficient_scope' }] };
      counts.toolCalls += 1;
      return { content: [{ type: 'text', text }] };
    },
  );
  mcp.registerTool(
    'admin_echo',
    { description: 'Echo the text back (needs mcp:admin).', inputSchema: { text: z.string() } },
    async ({ text }, extra) => {
      if (!has(extra.authInfo?.scopes, ADMIN))
        return { isError: true, content: [{ type: 'text', text: 'insufficient_scope' }] };
      counts.toolCalls += 1;
      return { content: [{ type: 'text', text: `admin: ${text}` }] };
    },
  );
  return mcp;
}

/** Escape a value for an auth-param quoted-string. */
function quote(value: string): string {
  return value.replace(/["\\]/g, (c) => `\\${c}`);
}

async function drain(req: IncomingMessage): Promise<void> {
  try {
    await readBody(req);
  } catch {
    // ignore
  }
}
