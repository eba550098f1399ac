/**
 * The real authorization server of the test bed: oidc-provider 9 on 127.0.0.1 (ephemeral port),
 * configured the way strict IdPs behave for MCP clients, with an audit of everything it saw.
 *
 * For: integration tests and the arena. It provides DCR (no initial access token), PKCE (S256
 * only, always required), resource indicators with JWT access tokens whose `aud` is the MCP
 * server, refresh tokens for every client that has the refresh_token grant, refresh-token
 * rotation where reusing a rotated token returns invalid_grant AND revokes the grant, revocation,
 * RFC 9207 `iss` in authorization responses, native clients with loopback redirect URIs (port
 * ignored), auto-approving login/consent (see interactions.ts), optional issuer path with or
 * without RFC 8414 path-inserted metadata, and the audit (see audit.ts).
 *
 * Not for: mocking (this is the real provider); client-side logic; anything off loopback.
 * Time is not simulated here: TTLs are plain seconds (the arena passes compressed values).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { generateKeyPairSync, type KeyObject, randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createLocalJWKSet, type JWK, jwtVerify, SignJWT } from 'jose';
import Provider, { type ClientMetadata, type Configuration, errors, type KoaContextWithOIDC } from 'oidc-provider';
import { handler as clientCredentialsHandler } from 'oidc-provider/lib/actions/grants/client_credentials.js';
import * as grantHelpers from 'oidc-provider/lib/helpers/grants.js';

import { type AuditEntry, AuditLog, type HttpAuditEntry, toAuditParams } from './audit.js';
import { closeServer, listenEphemeral, sendText } from './http-util.js';
import { completeInteraction, type InteractionBehavior } from './interactions.js';
import { createMemoryAdapter } from './memory-adapter.js';
import { installEventAudit, installRequestAudit, startHttpEntry } from './provider-audit.js';
import { drainBody, inflict, interceptAnswer, type TokenFaultPlan } from './token-faults.js';

export interface ResourceDefinition {
  /** The resource indicator, i.e. the MCP server URL (also the JWT `aud`). */
  resource: string;
  /** Scopes this resource accepts (e.g. mcp:read mcp:write mcp:admin). */
  scopes: string[];
  /** Overrides the AS-wide access token TTL for this resource. */
  accessTokenTtlSeconds?: number;
}

export interface AuthorizationServerOptions {
  /** Issuer path, '' (default) or e.g. '/tenant'; the provider is mounted under it. */
  issuerPath?: string;
  /** Also serve RFC 8414 / OIDC path-inserted metadata (`/.well-known/<kind>/tenant`). */
  pathInsertedMetadata?: boolean;
  /** Serve discovery metadata at all (false: every /.well-known/ path is 404). Default true. */
  serveMetadata?: boolean;
  /** Access token TTL in whole seconds (default 3600). */
  accessTokenTtlSeconds?: number;
  /** Refresh token TTL in whole seconds, renewed on each rotation (default 15 days). */
  refreshTokenTtlSeconds?: number;
  /** Grant TTL in whole seconds: the absolute bound of a login (default 30 days). */
  grantTtlSeconds?: number;
  /** Protected resources (MCP servers); more can be added later with addResource(). */
  resources?: ResourceDefinition[];
  /** Resource used when an authorization request names none (default: none, opaque token). */
  defaultResource?: string;
  /** The provider's `scopes` setting (default: openid offline_access mcp:read mcp:write mcp:admin). */
  scopes?: string[];
  /**
   * Leave `scopes` at oidc-provider's default (openid offline_access), so a DCR whose `scope`
   * names mcp:* is rejected with invalid_client_metadata, as strict IdPs do. Authorization for
   * resource scopes still works (they come from the resource definitions).
   */
  strictRegistrationScopes?: boolean;
  /** Pre-registered clients (confidential with client_secret_basic/_post, or public `none`). */
  staticClients?: ClientMetadata[];
  /** true (default): every refresh rotates; 'provider-default': public clients only. */
  rotateRefreshToken?: boolean | 'provider-default';
  /** Account id the robot logs in as (default 'robot'). */
  accountId?: string;
  /** Finish consent with access_denied. */
  denyConsent?: boolean;
  /** Override endpoint paths (relative to the issuer), e.g. { authorization: '/authorize' }. */
  routes?: Partial<Record<'authorization' | 'token' | 'registration' | 'revocation' | 'jwks', string>>;
  /**
   * Advertise `client_id_metadata_document_supported: true`. oidc-provider 9.13's own CIMD
   * feature only fetches https URLs and refuses loopback addresses, so it cannot run here; with
   * this flag the metadata advertises support and `cimdClients` are pre-registered under their
   * URL client_ids, so a client that picks CIMD completes the flow. The AS does NOT fetch.
   */
  advertiseClientIdMetadataDocument?: boolean;
  /** Clients known by URL client_id when advertiseClientIdMetadataDocument is set. */
  cimdClients?: ClientMetadata[];
  /** Receives every audit entry as it is recorded. */
  auditSink?: (entry: AuditEntry) => void;
  /**
   * Enable oidc-provider's device authorization grant (RFC 8628, `features.deviceFlow`): the
   * metadata then publishes `device_authorization_endpoint` (`/device/auth`) and lists the
   * device_code grant; users verify at `/device` (see robot-device.ts). Default off.
   */
  deviceFlow?: boolean;
  /**
   * Give JWT access tokens a millisecond-precise `exp` (issuance + TTL, a non-integer NumericDate
   * as RFC 7519 section 2 allows). oidc-provider's own `exp` is floor(now) + TTL, so a 1-second
   * token (the arena's compressed hour) would otherwise live anywhere between 0 and 1 s. Servers
   * started with `preciseExpiry` check this `exp` to the millisecond.
   */
  preciseExpiry?: boolean;
  /**
   * Enable the client credentials grant (RFC 6749 section 4.4, `features.clientCredentials`) for
   * static clients whose `grant_types` list it; with resource indicators, the token's `aud` is
   * the requested resource. Default off.
   */
  clientCredentials?: boolean;
  /**
   * Register the RFC 7523 section 2.1 JWT bearer grant (workload identity federation): the
   * `assertion` must verify with `publicKey` (the workload platform's key), name `audience`
   * (default the issuer) and not be expired; then a token is issued as for client credentials
   * (same resource and scope rules). Refusals are invalid_grant.
   */
  jwtBearer?: { publicKey: CryptoKey | KeyObject; audience?: string };
  /**
   * Act as an enterprise IdP for SEP-990: register the RFC 8693 token exchange grant, which takes
   * an ID token (`subject_token`, verified with `subjectTokenKey`, or without it with this
   * provider's own signing keys, so the ID tokens it issued at an OpenID Connect sign-in are the
   * ones taken; `aud` the requesting client) and answers an ID-JAG signed with `signingKey`
   * (ES256, typ `oauth-id-jag+jwt`, `aud` the requested `audience`, the `resource`, `client_id` =
   * `clientIdAtAudience` or the requester's). `allowResource`: the IdP's policy, which MCP servers
   * the user may reach (others: invalid_target, RFC 8693 section 2.2.2). Default: all.
   */
  tokenExchange?: TokenExchangeOptions;
  /** ID token TTL in whole seconds (default: the access token TTL). */
  idTokenTtlSeconds?: number;
  /**
   * DPoP (RFC 9449, oidc-provider's `features.dPoP`): the metadata lists
   * `dpop_signing_alg_values_supported`, a token request with a proof gets tokens bound to its key
   * (`token_type: DPoP`, JWT access tokens with `cnf.jkt`; a public client's refresh token is bound
   * too, and its refresh must prove the same key). `requireNonce`: every proof must carry the AS's
   * nonce (section 8: 400 `use_dpop_nonce` with a `DPoP-Nonce` header otherwise). Default off:
   * oidc-provider enables DPoP by default, and the test bed's servers that take Bearer tokens only
   * would refuse tokens bound to a key.
   */
  dpop?: { requireNonce?: boolean };
  /**
   * A fault layer at the token endpoint (token-faults.ts, the arena's chaos scenario): the plan
   * says which POSTs fail, how, and whether before or after the provider processes them. Each
   * fault is recorded on the request's audit entry (`fault`).
   */
  tokenFaults?: TokenFaultPlan;
}

export interface TokenExchangeOptions {
  subjectTokenKey?: CryptoKey | KeyObject;
  signingKey: KeyObject;
  clientIdAtAudience?: string;
  allowResource?: (resource: string) => boolean;
}

export interface RunningAuthorizationServer {
  /** e.g. http://127.0.0.1:PORT or http://127.0.0.1:PORT/tenant */
  issuer: string;
  /** http://127.0.0.1:PORT */
  origin: string;
  provider: Provider;
  audit: AuditLog;
  /** Absolute endpoint URLs. */
  endpoints: {
    authorization: string;
    token: string;
    registration: string;
    revocation: string;
    jwks: string;
    /** RFC 8414 metadata at the issuer's own path (issuer + /.well-known/oauth-authorization-server). */
    metadata: string;
  };
  /** Mutable robot behaviour (account, deny consent). */
  behavior: InteractionBehavior;
  /** origin + path */
  url(path: string): string;
  /** Register another protected resource. */
  addResource(definition: ResourceDefinition): void;
  /** The host app's request handler (to embed the AS into another server). */
  handle(req: IncomingMessage, res: ServerResponse): void;
  close(): Promise<void>;
}

const DEFAULT_SCOPES = ['openid', 'offline_access', 'mcp:read', 'mcp:write', 'mcp:admin'];
const DAY = 24 * 60 * 60;

/** Start oidc-provider on its own http server at 127.0.0.1:0. */
export async function startAuthorizationServer(
  options: AuthorizationServerOptions = {},
): Promise<RunningAuthorizationServer> {
  const server = createServer();
  const origin = await listenEphemeral(server);
  const as = createAuthorizationServer(origin, options);
  server.on('request', as.handle);
  return {
    ...as,
    close: async () => {
      await as.close();
      await closeServer(server);
    },
  };
}

/**
 * Build the AS for a given origin without listening: `handle` serves it. Used to embed an AS
 * into another server's origin (the 2025-03-26 "MCP server is its own AS" variants).
 */
export function createAuthorizationServer(
  origin: string,
  options: AuthorizationServerOptions = {},
): RunningAuthorizationServer {
  const issuerPath = normalizeIssuerPath(options.issuerPath ?? '');
  const issuer = `${origin}${issuerPath}`;
  const accessTtl = positiveInt(options.accessTokenTtlSeconds ?? 3600, 'accessTokenTtlSeconds');
  const refreshTtl = positiveInt(options.refreshTokenTtlSeconds ?? 15 * DAY, 'refreshTokenTtlSeconds');
  const grantTtl = positiveInt(options.grantTtlSeconds ?? 30 * DAY, 'grantTtlSeconds');
  const resources = new Map<string, ResourceDefinition>();
  for (const r of options.resources ?? []) resources.set(r.resource, r);
  const behavior: InteractionBehavior = {
    accountId: options.accountId ?? 'robot',
    denyConsent: options.denyConsent ?? false,
  };
  const audit = new AuditLog(options.auditSink);
  const routes = {
    authorization: '/auth',
    token: '/token',
    registration: '/reg',
    revocation: '/token/revocation',
    jwks: '/jwks',
    ...options.routes,
  };

  const keys = signingKeys();
  const configuration: Configuration = {
    adapter: createMemoryAdapter(),
    clients: [...(options.staticClients ?? []), ...(options.cimdClients ?? [])].map(withClientDefaults),
    jwks: { keys },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    ...(options.strictRegistrationScopes ? {} : { scopes: options.scopes ?? DEFAULT_SCOPES }),
    routes,
    responseTypes: ['code'],
    findAccount: async (_ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
    interactions: { url: async (_ctx, interaction) => `${issuerPath}/interaction/${interaction.uid}` },
    features: {
      devInteractions: { enabled: false },
      registration: { enabled: true, initialAccessToken: false },
      revocation: { enabled: true },
      ...(options.deviceFlow ? { deviceFlow: { enabled: true } } : {}),
      ...(options.clientCredentials || options.jwtBearer ? { clientCredentials: { enabled: true } } : {}),
      dPoP: options.dpop
        ? {
            enabled: true,
            nonceSecret: randomBytes(32),
            requireNonce: () => options.dpop?.requireNonce === true,
          }
        : { enabled: false },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (_ctx, _client, oneOf) => oneOf ?? options.defaultResource,
        // Refresh (and code exchange) without `resource` get the granted one.
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, indicator) => {
          const def = resources.get(indicator);
          if (!def) throw new errors.InvalidTarget(`unknown resource ${indicator}`);
          return {
            scope: def.scopes.join(' '),
            audience: def.resource,
            accessTokenTTL: def.accessTokenTtlSeconds ?? accessTtl,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'ES256' } },
          };
        },
      },
    },
    pkce: { required: () => true },
    // Refresh tokens for every client allowed the grant, offline_access or not, that outlive
    // the (absent) session.
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    expiresWithSession: async () => false,
    ...(options.rotateRefreshToken === 'provider-default'
      ? {}
      : { rotateRefreshToken: options.rotateRefreshToken ?? true }),
    ttl: {
      AccessToken: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? accessTtl,
      AuthorizationCode: () => 60,
      ClientCredentials: () => accessTtl,
      DeviceCode: () => 600,
      BackchannelAuthenticationRequest: () => 600,
      IdToken: () => options.idTokenTtlSeconds ?? accessTtl,
      RefreshToken: () => refreshTtl,
      Grant: () => grantTtl,
      Interaction: () => 3600,
      Session: () => grantTtl,
    },
    ...(options.advertiseClientIdMetadataDocument
      ? { discovery: { client_id_metadata_document_supported: true } }
      : {}),
    ...(options.preciseExpiry
      ? {
          formats: {
            customizers: {
              jwt: async (_ctx, token, jwt) => {
                const ttl = (token as { expiration?: number }).expiration;
                if (typeof ttl === 'number') jwt.payload.exp = Math.round(Date.now() + ttl * 1000) / 1000;
              },
            },
          },
        }
      : {}),
  };

  const provider = new Provider(issuer, configuration);
  // No reverse proxy in front: trust nothing forwarded.
  provider.proxy = false;
  if (options.jwtBearer) registerJwtBearerGrant(provider, issuer, options.jwtBearer);
  if (options.tokenExchange) registerTokenExchangeGrant(provider, issuer, options.tokenExchange, publicJwks(keys));

  /** HTTP entries of requests in flight, by request object (events attach to them). */
  const inFlight = new WeakMap<IncomingMessage, HttpAuditEntry>();
  /** The entry of the request being handled (covers interactionDetails' own contexts). */
  const current = new AsyncLocalStorage<HttpAuditEntry>();
  installEventAudit(provider, audit, inFlight, current);
  installRequestAudit(provider, inFlight);

  const callback = provider.callback();
  const metadataKinds = ['oauth-authorization-server', 'openid-configuration'];

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const url = new URL(req.url ?? '/', origin);
    const entry = startHttpEntry(audit, req, url);
    current.run(entry, () => route(req, res, url, entry));
  };

  const route = (req: IncomingMessage, res: ServerResponse, url: URL, entry: HttpAuditEntry): void => {
    inFlight.set(req, entry);
    res.on('finish', () => {
      entry.status = res.statusCode;
      entry.answeredAt ??= Date.now();
      audit.record(entry);
    });
    // A request aborted before its response finished is still recorded.
    res.on('close', () => {
      if (!res.writableFinished && entry.status === undefined) {
        entry.status = 0;
        audit.record(entry);
      }
    });

    const path = url.pathname;
    const serveMetadata = options.serveMetadata ?? true;

    const plan = options.tokenFaults;
    const fault = plan && req.method === 'POST' && path === `${issuerPath}${routes.token}` ? plan.next() : undefined;
    if (plan && fault?.phase === 'before') {
      // The provider never sees it: read the body for the audit only (grant type, resources).
      entry.endpoint = 'token';
      entry.fault = { ...fault };
      drainBody(req).then(
        (raw) => {
          const { names, params } = toAuditParams(new URLSearchParams(raw).entries());
          entry.bodyNames = names;
          entry.body = params;
          const grantType = params.grant_type?.[0];
          if (grantType) entry.grantType = grantType;
          if (params.resource?.length) entry.resources = [...entry.resources, ...params.resource];
          inflict(fault, req, res, plan.holdCapMs);
        },
        () => req.socket.destroy(),
      );
      return;
    }
    if (plan && fault?.phase === 'after') {
      const audited: NonNullable<HttpAuditEntry['fault']> = { ...fault };
      entry.fault = audited;
      interceptAnswer(fault, req, res, plan.holdCapMs, (status) => {
        audited.asStatus = status;
        entry.answeredAt = Date.now();
      });
    }

    if (path.startsWith('/.well-known/') || path.startsWith(`${issuerPath}/.well-known/`)) {
      if (!serveMetadata) {
        sendText(res, 404, 'not found');
        return;
      }
      entry.endpoint = 'discovery';
      // RFC 8414 section 3.1 path insertion: /.well-known/<kind>/tenant
      const inserted = metadataKinds.find((kind) => issuerPath && path === `/.well-known/${kind}${issuerPath}`);
      if (inserted) {
        if (!options.pathInsertedMetadata) {
          sendText(res, 404, 'not found');
          return;
        }
        mount(req, res, `${issuerPath}/.well-known/${inserted}`);
        return;
      }
    }

    if (path.startsWith(`${issuerPath}/interaction/`)) {
      entry.endpoint = 'interaction';
      completeInteraction(provider, behavior, req, res).catch((err: unknown) => {
        entry.error = 'interaction_failed';
        entry.errorDetail = err instanceof Error ? err.message : String(err);
        if (!res.headersSent) sendText(res, 400, 'interaction failed');
      });
      return;
    }

    if (issuerPath === '' || path === issuerPath || path.startsWith(`${issuerPath}/`)) {
      mount(req, res, req.url ?? '/');
      return;
    }
    sendText(res, 404, 'not found');
  };

  /** Hand the request to the provider, mounted under issuerPath. */
  function mount(req: IncomingMessage, res: ServerResponse, fullUrl: string): void {
    const withMount = req as IncomingMessage & { originalUrl?: string };
    withMount.originalUrl = fullUrl;
    req.url = fullUrl.slice(issuerPath.length) || '/';
    if (!req.url.startsWith('/')) req.url = `/${req.url}`;
    void callback(req, res);
  }

  const issuerUrl = (route: string): string => `${issuer}${route}`;

  return {
    issuer,
    origin,
    provider,
    audit,
    endpoints: {
      authorization: issuerUrl(routes.authorization),
      token: issuerUrl(routes.token),
      registration: issuerUrl(routes.registration),
      revocation: issuerUrl(routes.revocation),
      jwks: issuerUrl(routes.jwks),
      metadata: issuerUrl('/.well-known/oauth-authorization-server'),
    },
    behavior,
    url: (path: string) => `${origin}${path}`,
    addResource: (definition: ResourceDefinition) => {
      resources.set(definition.resource, definition);
    },
    handle,
    close: async () => {},
  };
}

function normalizeIssuerPath(path: string): string {
  if (path === '' || path === '/') return '';
  const withSlash = path.startsWith('/') ? path : `/${path}`;
  return withSlash.endsWith('/') ? withSlash.slice(0, -1) : withSlash;
}

function positiveInt(value: number, name: string): number {
  if (!Number.isSafeInteger(value) || value <= 0) throw new TypeError(`${name} must be a positive integer (seconds)`);
  return value;
}

/** An RSA key (ID tokens default to RS256) and an EC key (ES256 JWT access tokens). */
function signingKeys(): Array<Record<string, unknown>> {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  return [
    { ...rsa, kid: `rsa-${randomUUID().slice(0, 8)}`, use: 'sig', alg: 'RS256' },
    { ...ec, kid: `ec-${randomUUID().slice(0, 8)}`, use: 'sig', alg: 'ES256' },
  ];
}

/** The public halves of `keys` (private members dropped), for verifying what the provider signed. */
function publicJwks(keys: Array<Record<string, unknown>>): JWK[] {
  return keys.map(({ d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...rest }) => rest as JWK);
}

function withClientDefaults(client: ClientMetadata): ClientMetadata {
  return {
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    ...client,
  };
}

export const JWT_BEARER_GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer';

/**
 * RFC 7523 section 2.1 at oidc-provider: section 3's checks on the assertion (signature by the
 * workload platform's key, `aud`, `exp`), then the provider's own client credentials handler
 * issues the token (resource indicators, client scope), so both grants' tokens are alike.
 */
function registerJwtBearerGrant(
  provider: Provider,
  issuer: string,
  options: { publicKey: CryptoKey | KeyObject; audience?: string },
): void {
  const helpers = Object.fromEntries(
    Object.entries(grantHelpers).map(([name, helper]) => [
      name,
      (helper as (...args: unknown[]) => unknown).bind(undefined, provider),
    ]),
  );
  const handle = async (ctx: KoaContextWithOIDC): Promise<void> => {
    const assertion = (ctx.oidc.params as { assertion?: unknown }).assertion;
    if (typeof assertion !== 'string' || assertion === '') throw new errors.InvalidRequest('missing assertion');
    try {
      await jwtVerify(assertion, options.publicKey, { audience: options.audience ?? issuer });
    } catch (err) {
      throw new errors.InvalidGrant(`assertion refused: ${(err as Error).name}`);
    }
    await clientCredentialsHandler(provider, helpers, ctx);
  };
  provider.registerGrantType(JWT_BEARER_GRANT, handle, ['assertion', 'scope', 'resource'], ['resource']);
}

export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';

/** RFC 8693 at oidc-provider, as an enterprise IdP answers SEP-990's exchange of an ID token for an ID-JAG. */
function registerTokenExchangeGrant(
  provider: Provider,
  issuer: string,
  options: TokenExchangeOptions,
  ownKeys: JWK[],
): void {
  const ownKeySet = createLocalJWKSet({ keys: ownKeys });
  const handle = async (ctx: KoaContextWithOIDC): Promise<void> => {
    const params = ctx.oidc.params as Record<string, unknown>;
    const client = ctx.oidc.client;
    if (!client) throw new errors.InvalidClient('no client');
    if (params.subject_token_type !== 'urn:ietf:params:oauth:token-type:id_token') {
      throw new errors.InvalidRequest('subject_token_type must be an ID token');
    }
    if (params.requested_token_type !== 'urn:ietf:params:oauth:token-type:id-jag') {
      throw new errors.InvalidRequest('requested_token_type must be an ID-JAG');
    }
    if (typeof params.audience !== 'string' || typeof params.resource !== 'string') {
      throw new errors.InvalidRequest('audience and resource are required');
    }
    if (options.allowResource && !options.allowResource(params.resource)) {
      throw new errors.InvalidTarget('the user may not use this resource');
    }
    let sub: string | undefined;
    try {
      const subjectToken = String(params.subject_token);
      const expected = { issuer, audience: client.clientId };
      const verified = options.subjectTokenKey
        ? await jwtVerify(subjectToken, options.subjectTokenKey, expected)
        : await jwtVerify(subjectToken, ownKeySet, expected);
      sub = verified.payload.sub;
    } catch (err) {
      throw new errors.InvalidGrant(`subject_token refused: ${(err as Error).name}`);
    }
    const idJag = await new SignJWT({
      resource: params.resource,
      client_id: options.clientIdAtAudience ?? client.clientId,
      ...(typeof params.scope === 'string' ? { scope: params.scope } : {}),
    })
      .setProtectedHeader({ alg: 'ES256', typ: 'oauth-id-jag+jwt' })
      .setIssuer(issuer)
      .setSubject(sub ?? 'unknown')
      .setAudience(params.audience)
      .setIssuedAt()
      .setExpirationTime('5m')
      .setJti(randomUUID())
      .sign(options.signingKey);
    ctx.body = {
      access_token: idJag,
      issued_token_type: 'urn:ietf:params:oauth:token-type:id-jag',
      token_type: 'N_A',
      expires_in: 300,
    };
  };
  provider.registerGrantType(TOKEN_EXCHANGE_GRANT, handle, [
    'subject_token',
    'subject_token_type',
    'requested_token_type',
    'audience',
    'resource',
    'scope',
  ]);
}
