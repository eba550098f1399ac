/**
 * auth-provider: AuthKeeper as an `OAuthClientProvider` for @modelcontextprotocol/sdk (tested
 * with 1.32.2), so an SDK-driven MCP client keeps every invariant of docs/DESIGN.md. Get one with
 * `keeper.authProvider(serverUrl)` and pass it as a transport's `authProvider`.
 *
 * How the SDK drives a provider (client/auth.js, client/streamableHttp.js, client/sse.js):
 * - before every request the transport calls tokens() and sends its `access_token`;
 * - on a 401 (or a 403 insufficient_scope) it runs auth(provider): discoveryState(), its own
 *   discovery, clientInformation() (registering by DCR when that is undefined), then tokens()
 *   again: WITH a refresh_token it refreshes by itself and saveTokens() -> AUTHORIZED; without one
 *   it calls state(), builds its own authorize URL, saveCodeVerifier(), redirectToAuthorization()
 *   -> REDIRECT, upon which the transport throws UnauthorizedError and the app is expected to call
 *   transport.finishAuth(code) (auth() again: codeVerifier(), code exchange, saveTokens()).
 * Every way auth() reaches AUTHORIZED is a token request the SDK makes with a credential it holds.
 * Its refresh is neither single-flight across processes nor re-read under a lock: two SDK
 * processes refreshing at once against rotation with reuse detection get the grant revoked.
 *
 * The design: AuthKeeper does all of OAuth; the SDK never holds a credential it could spend.
 * - DPoP (RFC 9449): tokens() says `token_type: DPoP` for a DPoP-bound token; 1.x writes Bearer
 *   whatever it says, so such a server needs the provider's `fetch` as the transport's `fetch`
 *   (it re-presents the token as DPoP with a proof); 2.x signs proofs itself from dpop()
 *   (sdk-v2-auth-provider.ts).
 * - tokens() returns the access token of getAccessToken() (a Map lookup on the hot path; refresh
 *   ahead of expiry, single-flight in-process and machine-wide, adopting other processes' tokens)
 *   and NEVER the refresh token, so the SDK's own refresh branch cannot run. When only a sign-in
 *   helps (no credentials, refresh token refused, drift, ...) tokens() runs keeper.login():
 *   coordinated across processes (one browser tab via $BROWSER), one registration per issuer, the
 *   authorize URL built once and verified; then it returns the new token, so the request that
 *   needed it goes through. Concurrent requests share one sign-in, and a failed one is reported
 *   for 30 s rather than retried per request (sign-in-gate.ts). With `interactive: false` tokens()
 *   returns undefined instead, and the SDK's 401 path ends in a NeedsAuthError that says why.
 * - auth() is therefore entered only when the server rejects a token we believed valid (revoked
 *   on the server's side, or a 403 insufficient_scope). Its first provider call, discoveryState(),
 *   is where we recover: recoverFromRejection() adopts a token another process stored or
 *   refreshes under the lock; when only a sign-in helps, keeper.login(). It then hands the SDK
 *   AuthKeeper's stored discovery (issuer, metadata, resource), so auth() makes no request of its
 *   own and binds to exactly the registration's issuer. redirectToAuthorization()
 *   receives the SDK's authorize URL, which is never opened; its `scope` (chosen by the SDK with the
 *   same strategy as ours) tells a step-up: a scope the grant does not cover is re-authorized by
 *   keeper.login() with the union, a bounded number of times. auth() still returns REDIRECT, so
 *   the transport fails THAT one request with UnauthorizedError and the next one carries the new
 *   token. `fetch: keeper.fetch(serverUrl)` avoids even that failure (it retries in-band): prefer
 *   it as the transport's `fetch` when the SDK's OAuth surface is not needed.
 * - clientInformation() is the record's registration, stamped with its issuer, so the SDK never
 *   registers a client of its own; with none stored it signs in first (non-interactive: throws
 *   NeedsAuthError rather than let the SDK register). saveClientInformation() accepts the stored
 *   registration (the SDK's issuer binding) and refuses any other: one record, one registration.
 * - saveTokens() (reached only when an app completes an SDK-driven flow itself with finishAuth)
 *   goes through keeper.storeTokens(): compare-and-swap against the access token the SDK last
 *   saw; usable tokens stored meanwhile by another process are kept, never overwritten. The
 *   access token tokens() served, saved back (the 2.x SDK stamps unstamped tokens with their
 *   issuer and saves them), is not written: that write would drop the refresh token.
 * - invalidateCredentials() deletes nothing: 'tokens' / 'client' / 'all' mean "what you gave me
 *   was refused" and are answered by recoverFromRejection() (adopt newer, else refresh under the
 *   lock, else the token manager's own compare-and-swap needs-auth marker); 'verifier' (and
 *   'all') drop this provider's open flows; 'discovery' has nothing cached here.
 * - Code verifiers are per flow, never one slot: saveCodeVerifier() files a verifier under its
 *   S256 challenge, redirectToAuthorization() moves it under the URL's `state` (the URL carries
 *   both, so concurrent flows cannot be crossed), with the issuer the URL goes to, and
 *   codeVerifier() answers for the flow that completeAuthorization(callback, finish) selects (or
 *   the only open one). completeAuthorization() checks the redirect back (state, RFC 9207 `iss`
 *   exactly, error, code) before the code is handed to `finish` (the SDK's finishAuth).
 *
 * Not for: the OAuth steps themselves (session/, oauth/) or the stdio proxy (proxy.ts).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { createHash, randomBytes } from 'node:crypto';
import type { OAuthClientProvider, OAuthDiscoveryState } from '@modelcontextprotocol/sdk/client/auth.js';
import type {
  AuthorizationServerMetadata,
  OAuthClientInformationFull,
  OAuthClientMetadata,
  OAuthTokens,
} from '@modelcontextprotocol/sdk/shared/auth.js';
import { AuthkeepError, NeedsAuthError } from '../errors.js';
import { validateAuthorizationResponse } from '../oauth/authorization-response.js';
import { scopeCovers, unionScopes } from '../oauth/scope.js';
import type { SessionKeeper } from '../session/session-keeper.js';
import { CURABLE, SignInGate } from '../session/sign-in-gate.js';

export interface KeeperAuthProviderOptions {
  /**
   * Sign in (keeper.login(), browser via $BROWSER) when the server needs it. Default true.
   * false: tokens() answers undefined and the SDK's auth() ends in a NeedsAuthError.
   */
  interactive?: boolean;
  /** Scope to ask for in a sign-in started here (unioned with what the server asks for). */
  scope?: string;
  /**
   * The redirect URL shown to the SDK. The SDK's own authorize URL is never opened (sign-in uses
   * AuthKeeper's loopback callback), so this matters only to an app that completes an SDK-driven
   * flow itself. Default `http://127.0.0.1/callback`.
   */
  redirectUrl?: string;
  /** `client_name` in the metadata shown to the SDK. Default `authkeep`. */
  clientName?: string;
  /** How many step-ups (403 insufficient_scope re-authorizations) per scope. Default 1. */
  maxStepUpsPerScope?: number;
}

/** Unconsumed flows are forgotten after this long (the loopback sign-in times out sooner). */
const FLOW_TTL_MS = 10 * 60_000;
const MAX_FLOWS = 64;

interface Flow {
  verifier: string;
  at: number;
  /**
   * The issuer recorded when the flow was sent to the authorization server (MCP "Authorization
   * Response Validation"), and whether its metadata advertises `iss` (RFC 9207 section 3).
   * Undefined when its authorize URL did not go to the stored authorization server.
   */
  issuer?: { issuer: string; issParameterSupported: boolean };
}

export class KeeperAuthProvider implements OAuthClientProvider {
  private readonly interactive: boolean;
  /** The access token tokens() last handed to the SDK: the "rejected" one when auth() runs. */
  private lastServed: string | undefined;
  /** The client_id clientInformation() last handed to the SDK. */
  private lastClientId: string | undefined;
  private readonly gate: SignInGate;
  private readonly stepUps = new Map<string, number>();
  /** Verifiers saved by the SDK, by their S256 challenge, until redirectToAuthorization names the state. */
  private readonly pendingByChallenge = new Map<string, Flow>();
  /** Verifiers by the `state` of their authorize URL. */
  private readonly flows = new Map<string, Flow>();
  private readonly selectedFlow = new AsyncLocalStorage<string>();

  constructor(
    private readonly keeper: SessionKeeper,
    /** Canonical server URL. */
    readonly serverUrl: string,
    private readonly options: KeeperAuthProviderOptions = {},
  ) {
    this.interactive = options.interactive !== false;
    this.gate = new SignInGate(async (scope) => {
      const wanted = unionScopes(scope, options.scope);
      await keeper.login(serverUrl, wanted ? { scope: wanted } : {});
    });
  }

  get redirectUrl(): string {
    return this.options.redirectUrl ?? 'http://127.0.0.1/callback';
  }

  get clientMetadata(): OAuthClientMetadata {
    return {
      client_name: this.options.clientName ?? 'authkeep',
      redirect_uris: [this.redirectUrl],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      ...(this.options.scope ? { scope: this.options.scope } : {}),
    };
  }

  // --- tokens -----------------------------------------------------------------------------------

  /** The current access token (never the refresh token); signs in first when that is what it takes. */
  async tokens(): Promise<OAuthTokens | undefined> {
    let token: { accessToken: string; tokenType: 'Bearer' | 'DPoP' };
    try {
      token = await this.keeper.getToken(this.serverUrl);
    } catch (err) {
      if (!(err instanceof NeedsAuthError)) throw err;
      if (!this.interactive) return undefined;
      if (!CURABLE.has(err.reason)) throw err;
      await this.signIn();
      token = await this.keeper.getToken(this.serverUrl);
    }
    this.lastServed = token.accessToken;
    return { access_token: token.accessToken, token_type: token.tokenType };
  }

  /**
   * The transport's `fetch` for servers whose tokens are DPoP-bound (RFC 9449): @modelcontextprotocol/sdk
   * 1.x always writes `Authorization: Bearer <tokens().access_token>`; through this fetch a
   * DPoP-bound token goes out as `DPoP` with a fresh proof of the key stored with it (one retry
   * when the server asks for its nonce), everything else untouched (SessionKeeper.dpopFetch).
   * Pass it as the transport's `fetch` beside `authProvider`.
   */
  get fetch(): typeof fetch {
    this.dpopFetch ??= this.keeper.dpopFetch(this.serverUrl);
    return this.dpopFetch;
  }
  private dpopFetch: typeof fetch | undefined;

  /**
   * Tokens from an SDK-run code exchange: stored compare-and-swap, never over newer ones. The
   * access token tokens() served coming back (an SDK stamping it with the issuer and saving it,
   * as @modelcontextprotocol/client 2.x does with unstamped tokens) is nothing new: it is not
   * written, since a write of tokens without the refresh token would drop it.
   */
  async saveTokens(tokens: OAuthTokens): Promise<void> {
    if (tokens.access_token === this.lastServed) return;
    const outcome = await this.keeper.storeTokens(
      this.serverUrl,
      {
        accessToken: tokens.access_token,
        tokenType: /^bearer$/i.test(tokens.token_type) ? 'Bearer' : tokens.token_type,
        ...(tokens.expires_in !== undefined ? { expiresIn: tokens.expires_in } : {}),
        ...(tokens.refresh_token !== undefined ? { refreshToken: tokens.refresh_token } : {}),
        ...(tokens.scope !== undefined ? { scope: tokens.scope } : {}),
        ...(typeof tokens.issuer === 'string' ? { issuer: tokens.issuer } : {}),
      },
      { basedOn: this.lastServed, clientId: this.lastClientId },
    );
    if (outcome === 'stored') this.lastServed = tokens.access_token;
  }

  /**
   * auth() has started: the server refused what we sent (or we had nothing). Recover here, first,
   * so the next request carries a good token whatever auth() does next. Then answer AuthKeeper's
   * own discovery results, so the SDK neither discovers differently (and, finding another issuer
   * than the registration's, registers a client of its own) nor touches the network.
   */
  async discoveryState(): Promise<OAuthDiscoveryState | undefined> {
    await this.recover();
    const stored = await this.keeper.storedServer(this.serverUrl);
    if (!stored) return undefined;
    const as = stored.authorizationServer;
    return {
      authorizationServerUrl: as.issuer,
      ...(stored.resourceMetadataUrl ? { resourceMetadataUrl: stored.resourceMetadataUrl } : {}),
      ...(stored.resourceMetadataUrl
        ? { resourceMetadata: { resource: stored.resource, authorization_servers: [as.issuer] } }
        : {}),
      authorizationServerMetadata: {
        ...as,
        authorization_endpoint: as.authorization_endpoint ?? new URL('/authorize', as.issuer).href,
        response_types_supported: ['code'],
      } as AuthorizationServerMetadata,
    };
  }

  /** The SDK reports credentials as refused. Nothing is deleted: see the header. */
  async invalidateCredentials(scope: 'all' | 'client' | 'tokens' | 'verifier' | 'discovery'): Promise<void> {
    if (scope === 'verifier' || scope === 'all') {
      this.pendingByChallenge.clear();
      this.flows.clear();
    }
    if (scope === 'tokens' || scope === 'client' || scope === 'all') {
      const rejected = this.lastServed;
      if (rejected === undefined) return;
      try {
        await this.keeper.recoverFromRejection(this.serverUrl, rejected);
      } catch (err) {
        // The token manager recorded why (compare-and-swap); tokens() signs in or reports it.
        if (!(err instanceof NeedsAuthError)) throw err;
      }
    }
  }

  // --- client registration ------------------------------------------------------------------------

  /** The record's registration, stamped with its issuer; signs in first when there is none. */
  async clientInformation(): Promise<OAuthClientInformationFull> {
    let registration = (await this.keeper.storedServer(this.serverUrl))?.registration;
    if (!registration) {
      if (!this.interactive) {
        throw new NeedsAuthError({
          serverUrl: this.serverUrl,
          reason: 'no_credentials',
          at: new Date().toISOString(),
          errorDescription: 'the client registration is managed by authkeep; sign in first',
        });
      }
      await this.signIn();
      registration = (await this.keeper.storedServer(this.serverUrl))?.registration;
      if (!registration) {
        throw new AuthkeepError('store_conflict', `sign-in to ${this.serverUrl} finished but no record is stored`, {
          field: 'serverUrl',
        });
      }
    }
    this.lastClientId = registration.clientId;
    return {
      client_id: registration.clientId,
      ...(registration.clientSecret !== undefined ? { client_secret: registration.clientSecret } : {}),
      token_endpoint_auth_method: registration.tokenEndpointAuthMethod,
      redirect_uris: registration.redirectUris.length ? registration.redirectUris : [this.redirectUrl],
      issuer: registration.issuer,
    };
  }

  /** Accepts the stored registration (the SDK binding it to its issuer); refuses any other. */
  async saveClientInformation(info: { client_id: string; issuer?: string | undefined }): Promise<void> {
    const registration = (await this.keeper.storedServer(this.serverUrl))?.registration;
    // Exactly the registration's issuer: the SDK stamps what discoveryState() gave it.
    const issuerOk = info.issuer === undefined || (registration !== undefined && info.issuer === registration.issuer);
    if (registration && registration.clientId === info.client_id && issuerOk) return;
    throw new AuthkeepError(
      'store_conflict',
      `client ${info.client_id} registered by the MCP SDK was not stored: authkeep keeps one registration per server record; run \`authkeep login ${this.serverUrl}\``,
      { field: 'client_id' },
    );
  }

  // --- per-flow state and verifier ------------------------------------------------------------------

  state(): string {
    return randomBytes(32).toString('base64url');
  }

  saveCodeVerifier(codeVerifier: string): void {
    this.prune();
    this.pendingByChallenge.set(s256(codeVerifier), { verifier: codeVerifier, at: Date.now() });
  }

  /** The verifier of the flow completeAuthorization() selected, else of the only open flow. */
  codeVerifier(): string {
    this.prune();
    const state = this.selectedFlow.getStore();
    if (state !== undefined) {
      const flow = this.flows.get(state);
      if (!flow)
        throw new AuthkeepError('state_mismatch', 'no open authorization flow has that state', { field: 'state' });
      return flow.verifier;
    }
    const open = [...this.flows.values()];
    if (open.length === 1 && open[0]) return open[0].verifier;
    throw new AuthkeepError(
      'state_mismatch',
      `${open.length} authorization flows are open: complete the callback inside completeAuthorization(callback, ...)`,
      { field: 'state' },
    );
  }

  /**
   * Completes an SDK-driven authorization with the redirect back from the authorization server
   * (`callback`: the URL the browser was sent to, or its query), validated before its code goes
   * anywhere, as AuthKeeper's own sign-in does (authorization-response.ts): its `state` must be
   * one of this provider's open flows; RFC 9207 `iss` is compared with the issuer recorded for
   * that flow by simple string comparison (a mismatch, or no `iss` where the AS advertises it, is
   * iss_mismatch, and nothing else the response says is acted on); an error response is
   * authorization_denied; a code is required. Only then `finish(code)` runs (e.g.
   * `(code) => transport.finishAuth(code)`), with codeVerifier() answering that flow's verifier.
   * The flow is closed afterwards, whatever happened (a verifier is used once).
   */
  async completeAuthorization<T>(callback: URL | URLSearchParams, finish: (code: string) => Promise<T>): Promise<T> {
    const params = callback instanceof URL ? callback.searchParams : callback;
    const states = params.getAll('state');
    const state = states.length === 1 ? states[0] : undefined;
    const flow = state === undefined ? undefined : this.flows.get(state);
    if (state === undefined || flow === undefined) {
      throw new AuthkeepError('state_mismatch', 'the authorization response belongs to no open authorization flow', {
        field: 'state',
      });
    }
    try {
      if (flow.issuer === undefined) {
        throw new AuthkeepError(
          'iss_mismatch',
          'the authorization request of this flow did not go to the stored authorization server, so its response cannot be checked (RFC 9207)',
          { field: 'iss' },
        );
      }
      const { code } = validateAuthorizationResponse(params, {
        state,
        issuer: flow.issuer.issuer,
        issParameterSupported: flow.issuer.issParameterSupported,
      });
      return await this.selectedFlow.run(state, () => finish(code));
    } finally {
      this.flows.delete(state);
    }
  }

  /**
   * The SDK would send the user to `authorizationUrl`. It is never opened: recovery happened in
   * discoveryState(); here the flow is filed by its state, and a scope the grant does not cover
   * (a 403 insufficient_scope) is re-authorized by AuthKeeper with the union of scopes.
   */
  async redirectToAuthorization(authorizationUrl: URL): Promise<void> {
    const state = authorizationUrl.searchParams.get('state');
    const challenge = authorizationUrl.searchParams.get('code_challenge');
    const pending = challenge === null ? undefined : this.pendingByChallenge.get(challenge);
    if (state !== null && pending && challenge !== null) {
      this.pendingByChallenge.delete(challenge);
      // MCP "Authorization Response Validation": record the issuer before redirecting, with the
      // verifier, when the URL goes to the stored authorization server's endpoint.
      const as = (await this.keeper.storedServer(this.serverUrl))?.authorizationServer;
      const endpoint = `${authorizationUrl.origin}${authorizationUrl.pathname}`;
      const issuer =
        as?.authorization_endpoint !== undefined && endpoint === as.authorization_endpoint
          ? { issuer: as.issuer, issParameterSupported: as.authorization_response_iss_parameter_supported === true }
          : undefined;
      this.flows.set(state, issuer === undefined ? pending : { ...pending, issuer });
    }
    const wanted = authorizationUrl.searchParams.get('scope') ?? undefined;
    if (!wanted) return;
    const [status] = await this.keeper.status(this.serverUrl);
    if (status?.state !== 'ok' || scopeCovers(status.scope, wanted)) return;
    const tries = this.stepUps.get(wanted) ?? 0;
    if (!this.interactive || tries >= (this.options.maxStepUpsPerScope ?? 1)) {
      throw new NeedsAuthError({
        serverUrl: this.serverUrl,
        reason: 'insufficient_scope',
        at: new Date().toISOString(),
        errorDescription: `the server asks for scope "${wanted}", the grant has "${status.scope ?? ''}"`,
      });
    }
    this.stepUps.set(wanted, tries + 1);
    await this.signIn(unionScopes(wanted, status.scope));
  }

  // --- internals ---------------------------------------------------------------------------------

  /** Another token after a refusal: adopt, refresh under the lock, or sign in. */
  private async recover(): Promise<void> {
    const rejected = this.lastServed;
    try {
      if (rejected !== undefined) await this.keeper.recoverFromRejection(this.serverUrl, rejected);
      else await this.keeper.getAccessToken(this.serverUrl);
    } catch (err) {
      if (!(err instanceof NeedsAuthError) || !this.interactive || !CURABLE.has(err.reason)) throw err;
      await this.signIn();
    }
  }

  /** keeper.login(), one at a time per provider (AuthKeeper coordinates across processes). */
  private signIn(scope?: string): Promise<void> {
    return this.gate.signIn(scope);
  }

  private prune(): void {
    const cutoff = Date.now() - FLOW_TTL_MS;
    for (const map of [this.pendingByChallenge, this.flows]) {
      for (const [key, flow] of map) if (flow.at < cutoff || map.size > MAX_FLOWS) map.delete(key);
    }
  }
}

function s256(verifier: string): string {
  return createHash('sha256').update(verifier).digest('base64url');
}
