/**
 * sign-in: one interactive authorization-code flow with PKCE, from registration to stored tokens.
 * Each flow is its own immutable value keyed by its `state` (docs/DESIGN.md invariant 8): verifier,
 * state, redirect URI, issuer, resource and scope live in this function's frame and nowhere else.
 *
 *   1. choose the registration: the record's (same issuer), another record's for the same issuer,
 *      a pre-registered client, a client ID metadata document, or DCR (oauth/registration.ts);
 *   2. open the loopback callback (RFC 8252 section 7.3);
 *   3. PKCE S256 and state; build the authorize URL once, parse it back and compare;
 *   4. send the user to it and wait for the callback; check state and RFC 9207 iss;
 *   5. redeem the code (with resource, RFC 8707) and stamp the tokens with client_id and issuer;
 *      where DPoP applies (RFC 9449, oauth/dpop.ts), with a proof of a key pair generated for this
 *      sign-in, which the record then keeps beside the tokens bound to it.
 *
 * Not for: coordinating concurrent sign-ins (sign-in-coordinator.ts) or writing the record.
 */
import { generateRandomNonce, generateRandomState } from 'oauth4webapi';
import { AuthkeepError } from '../errors.js';
import { validateAuthorizationResponse } from '../oauth/authorization-response.js';
import { buildAuthorizationUrl } from '../oauth/authorize-url.js';
import { type DpopKey, DpopKeyring, type DpopMode, dpopPolicy, generateDpopKey } from '../oauth/dpop.js';
import type { MachineGrant } from '../oauth/grants.js';
import type { HttpOptions } from '../oauth/http.js';
import { startLoopbackCallback } from '../oauth/loopback-callback.js';
import { createPkcePair } from '../oauth/pkce.js';
import { registerClient } from '../oauth/registration.js';
import { OFFLINE_ACCESS, scopeList, unionScopes, withOfflineAccess } from '../oauth/scope.js';
import { exchangeAuthorizationCode, type IdToken, TokenEndpointError, type TokenSet } from '../oauth/token-endpoint.js';
import type { AuthorizationServer, Registration } from '../oauth/types.js';
import type { ServerRecord, Tokens } from '../store/record.js';
import type { DiscoveredServer } from './discover-server.js';
import type { Logger } from './log.js';
import { stampTokens } from './stamp-tokens.js';

export interface StaticClient {
  clientId: string;
  clientSecret?: string;
  tokenEndpointAuthMethod?: 'none' | 'client_secret_basic' | 'client_secret_post';
  /**
   * The issuer of the authorization server this client is registered with. Keyed by server URL,
   * a client without it is bound to the issuer it is first used at (static-client.ts).
   */
  issuer?: string;
}

export interface CallbackOptions {
  host?: '127.0.0.1' | 'localhost';
  port?: number;
  path?: string;
}

export interface SignInContext {
  http: HttpOptions;
  logger: Logger;
  clientName: string;
  clientMetadataUrl?: string;
  staticClient?: StaticClient;
  callback: CallbackOptions;
  timeoutMs: number;
  openAuthorizationUrl: (url: string) => Promise<void> | void;
  /** A registration already known for this issuer (this record's or another server's). */
  knownRegistration?: Registration;
  /** Forget a registration the AS refused (the store's dropRegistration), so no sign-in reuses it. */
  dropRegistration?: (registration: Registration) => Promise<void>;
  /** Machine-wide one-registration-per-issuer (the store's registerOnce); else register directly. */
  registerOnce?: (issuer: string, register: () => Promise<Registration>) => Promise<Registration>;
  /** DPoP handles (and the nonces they remember) of this keeper. Default: one for this sign-in. */
  dpopKeyring?: DpopKeyring;
  /** When to bind tokens to a key (oauth/dpop.ts). Default `auto`. */
  dpopMode?: DpopMode;
  /**
   * An OpenID Connect sign-in at an enterprise IdP itself (idp-session.ts), not at an MCP server's
   * AS: a `nonce` (OpenID Connect Core 1.0 section 3.1.2.1), no RFC 8707 `resource` (the IdP is
   * not signed in to for a resource server), no DPoP, and the answer must carry an ID token,
   * validated by oauth4webapi (iss, aud = client_id, exp, iat, nonce).
   */
  openid?: boolean;
}

export interface SignInResult {
  registration: Registration;
  tokens: Tokens;
  /** A machine grant signed in (machine-grant.ts): stored, so renewals use it. */
  grant?: MachineGrant;
  /** The key the tokens are bound to (tokenType `DPoP`), stored with them. */
  dpop?: DpopKey;
  /** An OpenID Connect sign-in at an IdP (SignInContext.openid): the validated ID token. */
  idToken?: IdToken;
}

/** A sign-in's DPoP key and its handle, when DPoP applies to this server (RFC 9449 section 5). */
export interface SignInDpop {
  key: DpopKey;
  handle: Awaited<ReturnType<DpopKeyring['handle']>>;
  required: boolean;
}

/**
 * RFC 9449 for one sign-in: a fresh key pair when the AS supports DPoP or the server requires it
 * (dpopPolicy), so a new grant never shares a key with an old one.
 */
export async function prepareDpop(
  server: DiscoveredServer,
  ctx: Pick<SignInContext, 'dpopKeyring' | 'dpopMode'>,
): Promise<SignInDpop | undefined> {
  const policy = dpopPolicy(server.authorizationServer, { dpopRequired: server.dpopRequired === true }, ctx.dpopMode);
  if (!policy.use) return undefined;
  const key = await generateDpopKey(policy.alg);
  return { key, handle: await (ctx.dpopKeyring ?? new DpopKeyring()).handle(key), required: policy.required };
}

/**
 * The token response of a sign-in, judged against its DPoP: a server that takes DPoP-bound tokens
 * only cannot use a Bearer token (the AS ignored the proof), so the sign-in fails saying so. The
 * key is kept only with tokens bound to it.
 */
export function dpopOutcome(tokenSet: TokenSet, dpop: SignInDpop | undefined, issuer: string): { dpop?: DpopKey } {
  if (dpop === undefined) return {};
  if (tokenSet.tokenType === 'DPoP') return { dpop: dpop.key };
  if (dpop.required) {
    throw new AuthkeepError(
      'dpop_unsupported',
      `the server takes DPoP-bound tokens only, and authorization server ${issuer} issued a Bearer token`,
      { field: 'token_type' },
    );
  }
  return {};
}

function loopbackPort(uri: string | undefined): number | undefined {
  if (!uri) return undefined;
  try {
    const url = new URL(uri);
    return url.port ? Number(url.port) : undefined;
  } catch {
    return undefined;
  }
}

/** Opens the callback on the configured port, else on the port of the registered redirect URI, else an ephemeral one. */
async function openCallback(ctx: SignInContext, state: string, as: AuthorizationServer) {
  const base = {
    host: ctx.callback.host ?? '127.0.0.1',
    path: ctx.callback.path ?? '/callback',
    expectedState: state,
    timeoutMs: ctx.timeoutMs,
    // RFC 9207: the page shows nothing of a response from another issuer.
    expectedIssuer: {
      issuer: as.issuer,
      issParameterSupported: as.authorization_response_iss_parameter_supported === true,
    },
  } as const;
  if (ctx.callback.port !== undefined) return startLoopbackCallback({ ...base, port: ctx.callback.port });
  const registered = loopbackPort(ctx.knownRegistration?.redirectUris[0]);
  if (registered !== undefined) {
    try {
      return await startLoopbackCallback({ ...base, port: registered });
    } catch {
      // The registered port is busy; RFC 8252 section 7.3 lets the AS accept any loopback port.
    }
  }
  return startLoopbackCallback({ ...base, port: 0 });
}

export async function signIn(
  server: DiscoveredServer,
  requestedScope: string | undefined,
  ctx: SignInContext,
): Promise<SignInResult> {
  const as = server.authorizationServer;
  if (!as.authorization_endpoint) {
    throw new AuthkeepError('metadata_invalid', `authorization server ${as.issuer} has no authorization_endpoint`, {
      field: 'authorization_endpoint',
    });
  }
  const scope = withOfflineAccess(requestedScope, as.scopes_supported);
  const state = generateRandomState();
  const callback = await openCallback(ctx, state, as);
  try {
    // 1. Registration (kept per issuer; re-registered when the issuer changes). DCR asks for every
    // scope the resource publishes, not only today's, so a later step-up is not refused as
    // invalid_scope for a client registered narrowly.
    const registrationScope = withOfflineAccess(
      unionScopes(scope, server.resourceScopes?.join(' ')),
      as.scopes_supported,
    );
    const register = () =>
      registerClient(
        as,
        {
          clientName: ctx.clientName,
          redirectUris: [callback.redirectUri],
          ...(registrationScope ? { scope: registrationScope } : {}),
          ...(ctx.clientMetadataUrl ? { clientMetadataUrl: ctx.clientMetadataUrl } : {}),
          ...(ctx.staticClient ? { staticClient: ctx.staticClient } : {}),
        },
        ctx.http,
      );
    // A metadata document client is the configured URL itself: nothing to register, and never
    // the client another sign-in registered at this issuer (which registerOnce would hand back).
    const metadataDocument = ctx.clientMetadataUrl !== undefined && as.client_id_metadata_document_supported === true;
    const registration =
      ctx.knownRegistration && ctx.knownRegistration.issuer === as.issuer
        ? ctx.knownRegistration
        : ctx.staticClient || metadataDocument || !ctx.registerOnce
          ? await register()
          : await ctx.registerOnce(as.issuer, register);

    // 3. PKCE and the authorize URL, built once and verified by parsing it back.
    const pkce = await createPkcePair();
    const nonce = ctx.openid ? generateRandomNonce() : undefined;
    const url = buildAuthorizationUrl({
      authorizationEndpoint: as.authorization_endpoint,
      clientId: registration.clientId,
      redirectUri: callback.redirectUri,
      state,
      codeChallenge: pkce.challenge,
      codeChallengeMethod: 'S256',
      ...(ctx.openid ? {} : { resource: server.resource }),
      ...(scope ? { scope } : {}),
      ...(nonce !== undefined ? { nonce } : {}),
      // OpenID Connect Core 1.0 section 11: offline_access at an IdP is asked for with prompt=consent.
      ...(ctx.openid && scopeList(scope).includes(OFFLINE_ACCESS) ? { prompt: 'consent' as const } : {}),
    });

    // 4. Send the user there and wait for the redirect.
    ctx.logger.emit('info', 'login.authorize', `opening the authorization page of ${as.issuer}`, {
      serverUrl: server.serverUrl,
      issuer: as.issuer,
      clientId: registration.clientId,
    });
    await ctx.openAuthorizationUrl(url.href);
    const params = await callback.result;
    const { code } = validateAuthorizationResponse(params, {
      state,
      issuer: as.issuer,
      issParameterSupported: as.authorization_response_iss_parameter_supported === true,
    });

    // 5. Redeem the code with the same client, redirect URI and resource (and a DPoP proof).
    const dpop = ctx.openid ? undefined : await prepareDpop(server, ctx);
    const sentAt = Date.now();
    const tokenSet = await refusedClientDropped(ctx, registration, () =>
      exchangeAuthorizationCode(
        as,
        registration,
        {
          code,
          codeVerifier: pkce.verifier,
          redirectUri: callback.redirectUri,
          ...(ctx.openid ? { nonce } : { resource: server.resource }),
          ...(dpop ? { dpop: dpop.handle } : {}),
        },
        ctx.http,
      ),
    );
    return {
      registration,
      tokens: stampTokens(tokenSet, { sentAt, registration, requestedScope: scope }),
      ...dpopOutcome(tokenSet, dpop, as.issuer),
      ...(tokenSet.idToken ? { idToken: tokenSet.idToken } : {}),
    };
  } finally {
    await callback.close();
  }
}

/**
 * Run a token request of a sign-in; when the AS refuses the client itself (invalid_client,
 * unauthorized_client: a dynamic client it purged), drop the registration before rethrowing, so
 * the next sign-in registers again instead of reusing a dead client forever.
 */
export async function refusedClientDropped<T>(
  ctx: Pick<SignInContext, 'dropRegistration'>,
  registration: Registration,
  request: () => Promise<T>,
): Promise<T> {
  try {
    return await request();
  } catch (err) {
    if (err instanceof TokenEndpointError && err.needsAuthReason === 'client_mismatch')
      await ctx.dropRegistration?.(registration);
    throw err;
  }
}

/** The record a successful sign-in produces (generation is set by the store's compare-and-swap). */
export function recordFromSignIn(
  server: DiscoveredServer,
  result: SignInResult,
  previous: ServerRecord | undefined,
): ServerRecord {
  return {
    ...(server.allowHttpLoopback ? { allowHttpLoopback: true } : {}),
    version: 1,
    serverUrl: server.serverUrl,
    generation: previous?.generation ?? 0,
    resource: server.resource,
    ...(server.resourceMetadataUrl ? { resourceMetadataUrl: server.resourceMetadataUrl } : {}),
    authorizationServer: server.authorizationServer,
    registration: result.registration,
    tokens: result.tokens,
    ...(result.grant ? { grant: result.grant } : {}),
    ...(result.dpop ? { dpop: result.dpop } : {}),
    ...(previous?.dpopRefused && !result.dpop ? { dpopRefused: true } : {}),
    ...(result.idToken ? { idpSession: { ...result.idToken } } : {}),
    updatedAt: new Date().toISOString(),
  };
}
