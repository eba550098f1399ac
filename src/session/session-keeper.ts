/**
 * session-keeper: SessionKeeper, everything the library does, composed: discovery, sign-in
 * coordination, the token manager and the store. One per process serves many MCP servers; it
 * holds no per-flow mutable state of its own (each sign-in is a value in sign-in.ts).
 *
 * Not for: protocol steps (oauth/), persistence (store/), or the SDK adapter (mcp/): the public
 * AuthKeeper (src/auth-keeper.ts) is this class plus `authProvider()`, composed at the package
 * root so that nothing here imports from a layer above. The CLI and the proxy use this class
 * directly, so they never load the SDK adapter.
 */
import { AuthkeepError, atStep, NeedsAuthError } from '../errors.js';
import { discoverAuthorizationServer } from '../oauth/authorization-server-metadata.js';
import { machineClientAuthentication } from '../oauth/client-credentials.js';
import { type DpopKeyPair, DpopKeyring, type DpopMode } from '../oauth/dpop.js';
import type { HttpOptions } from '../oauth/http.js';
import { revokeToken } from '../oauth/revocation.js';
import { unionScopes } from '../oauth/scope.js';
import type { AuthorizationServer, Registration } from '../oauth/types.js';
import type { BearerChallenge } from '../oauth/www-authenticate.js';
import { type CredentialStore, DEFAULT_LOCK_POLICIES, type QuarantinedRecord } from '../store/credential-store.js';
import { openStore } from '../store/open-store.js';
import { accountHome, DEFAULT_ACCOUNT, defaultHome } from '../store/paths.js';
import type { ServerRecord } from '../store/record.js';
import type { StoreModeOption } from '../store/store-mode.js';
import { createAuthenticatedFetch, RefusalBackoff, sendWithProof } from './authenticated-fetch.js';
import { type OpenAuthorizationUrl, openInBrowser } from './browser.js';
import { canonicalServerUrl } from './canonical-url.js';
import { type Clock, systemClock } from './clock.js';
import { deviceFlowUnavailable, deviceSignIn, printDeviceCode, type ShowDeviceCode } from './device-sign-in.js';
import { type DiscoveredServer, discoverServer } from './discover-server.js';
import { type IdpClient, IdpSessions, idpSessionKey } from './idp-session.js';
import { Logger, type LogSink } from './log.js';
import { signInNeedsHttp, storedHttpChoice } from './loopback-http.js';
import { type MachineGrantOptions, machineCredential, machineSignIn, machineStepUp } from './machine-grant.js';
import type { RefreshMode } from './refresh-policy.js';
import { readSecret, type SecretReader } from './secret-source.js';
import { type CallbackOptions, type SignInContext, type SignInResult, type StaticClient, signIn } from './sign-in.js';
import { SignInCoordinator } from './sign-in-coordinator.js';
import { SignInGate } from './sign-in-gate.js';
import { stampTokens } from './stamp-tokens.js';
import { staticClientFor } from './static-client.js';
import { quarantinedStatus, type ServerStatus, serverStatus } from './status.js';
import { markNeedsAuth, needsAuthInfo, TokenManager } from './token-manager.js';

export interface AuthKeeperOptions {
  /** Where records live. Default: `$AUTHKEEP_HOME`, else the platform's per-user data directory. */
  home?: string;
  /**
   * Which identity to use at every server: each account keeps its own records, locks and client
   * registrations (`<home>/accounts/<name>`; the default account, `default`, is home itself).
   */
  account?: string;
  /** `client_name` sent in dynamic client registration. Default `authkeep`. */
  clientName?: string;
  /** A client ID metadata document URL, used when the AS advertises support for it. */
  clientMetadataUrl?: string;
  /**
   * Pre-registered clients, keyed by issuer or by MCP server URL. One keyed by server URL is bound
   * to one issuer (its `issuer`, else the first it is used at) and never presented to another.
   */
  staticClients?: Record<string, StaticClient>;
  /** How the user is sent to the AS. Default: `$BROWSER`, else the platform opener. */
  openAuthorizationUrl?: OpenAuthorizationUrl;
  /** The loopback redirect: host (127.0.0.1 or localhost; always bound on 127.0.0.1), port, path. */
  callback?: CallbackOptions;
  /**
   * DANGER: allows http for 127.0.0.1 / localhost / [::1] only (local development and tests).
   * https is required for every other host whatever this says.
   */
  allowInsecureLoopback?: boolean;
  /** How long a sign-in waits for the browser step. Default 5 minutes. */
  loginTimeoutMs?: number;
  /** Bounded number of 403 insufficient_scope re-authorizations per request. Default 2. */
  maxStepUps?: number;
  /**
   * Re-authorizations for more scope (step-ups) per server, over a window, whatever the number
   * of requests: a server demanding a new scope every time cannot open a tab per request.
   * Default 3 per 10 minutes.
   */
  stepUpBudget?: { max: number; windowMs: number };
  /** Timeout of each request to the AS or the server during auth. Default 30 s. */
  httpTimeoutMs?: number;
  /** A fetch to use for every request (tests, proxies). Default: global fetch. */
  fetch?: typeof fetch;
  /** Structured events (never secrets). */
  log?: LogSink;
  /**
   * How credentials are kept: a store mode for the files under `home` (`auto`, the default unless
   * `$AUTHKEEP_STORE` says otherwise: sealed under a key in the OS keychain when a persistent one
   * answers, else plaintext files; `keychain`: sealed, or a `keychain_unavailable` error; `file`:
   * plaintext; `redis://host:port/db` or `rediss://...`: the fleet store shared by many hosts,
   * docs/FLEET.md), or another store backend.
   */
  store?: CredentialStore | StoreModeOption;
  /** Backoff for transient token-endpoint failures. Default [200, 800, 2000] ms. */
  transientRetryDelaysMs?: number[];
  /**
   * `on-demand` (default): refresh when a call needs a token in its last quarter-life.
   * `keep-fresh`: refresh from a timer just before expiry, for long-lived agent sessions
   * (always-valid tokens, one refresh per lifetime, the sliding refresh window kept alive).
   */
  refreshMode?: RefreshMode;
  /**
   * Device sign-ins (RFC 8628): shows the user the verification URI and user code. Default: two
   * lines on stderr.
   */
  showDeviceCode?: ShowDeviceCode;
  /** Time and timers (tests). Default the system's. */
  clock?: Clock;
  /**
   * Machine identities (no browser, no person): a client credentials or JWT bearer grant per MCP
   * server URL or per issuer, used by `login()` (and so by the proxy's sign-ins) instead of the
   * browser. The record then stores the grant, and each renewal uses it (docs/MACHINE-IDENTITIES.md).
   */
  machineGrants?: Record<string, MachineGrantOptions>;
  /** Where machine grants read secrets from (tests). Default this process's environment and files. */
  secretReader?: SecretReader;
  /**
   * DPoP (RFC 9449) at sign-in. `auto` (default): tokens are bound to a key of this machine
   * wherever the authorization server supports DPoP (a refresh token taken from the store is
   * worthless elsewhere), and wherever the server requires it. `when-required`: only where the
   * server requires it, so tokens stay usable as Bearer tokens (e.g. `authkeep token` for curl).
   */
  dpop?: DpopMode;
}

export interface LoginOptions {
  /** Scope to request first; unioned with the scope the server's challenge or PRM asks for. */
  scope?: string;
  /**
   * How the user signs in. 'browser' (default): authorization code with PKCE through the browser.
   * 'device' and 'auto': the device authorization grant (RFC 8628) when the AS offers it and the
   * client registration may use it, else the browser flow ('device' logs the fallback as a
   * warning, 'auto' as info).
   */
  mode?: 'browser' | 'device' | 'auto';
  /** With mode 'device': throw `device_flow_unavailable` instead of falling back to the browser. */
  requireDevice?: boolean;
  /**
   * Sign in with this machine grant (overrides `machineGrants`); no browser. An enterprise grant
   * (`id_jag`) without `idToken` uses the IdP session (`loginIdp`), signing in there first, with
   * `mode`, when there is none that can be renewed.
   */
  grant?: MachineGrantOptions;
}

export class SessionKeeper {
  /** The store's directory: home, or the named account's directory inside it. */
  readonly home: string;
  /** The account this keeper signs in and refreshes as (`default` unless named). */
  readonly account: string;
  /**
   * The store the records live in (`options.store`, else files under `home`). For inspection
   * (`authkeep doctor`) and embedders; every change of a record goes through this class.
   */
  readonly store: CredentialStore;
  private readonly logger: Logger;
  private readonly tokens: TokenManager;
  private readonly coordinator: SignInCoordinator;
  private readonly options: AuthKeeperOptions;
  private readonly canonicalUrls = new Map<string, string>();
  private readonly clock: Clock;
  /** Per server: step-ups of every fetch go through one gate (one at a time, cool-down, budget). */
  private readonly stepUpGates = new Map<string, SignInGate>();
  /** Per server: refusals of fresh tokens, shared by every fetch. */
  private readonly refusals = new Map<string, RefusalBackoff>();
  /** DPoP handles per stored key (RFC 9449): proofs and the nonces each server last sent. */
  private readonly dpopKeyring = new DpopKeyring();
  /** Enterprise IdP sessions (SEP-990), one record per IdP issuer. */
  private readonly idpSessions: IdpSessions;

  constructor(options: AuthKeeperOptions = {}) {
    this.options = options;
    this.account = options.account ?? DEFAULT_ACCOUNT;
    const root = options.home ?? defaultHome();
    this.home = accountHome(root, this.account);
    this.store =
      typeof options.store === 'object'
        ? options.store
        : openStore({
            home: this.home,
            // Every account under one home shares its data key.
            keyHome: root,
            account: this.account,
            ...(options.store !== undefined ? { store: options.store } : {}),
          });
    this.logger = new Logger(options.log);
    this.clock = options.clock ?? systemClock;
    const loginTimeoutMs = options.loginTimeoutMs ?? 5 * 60_000;
    this.idpSessions = new IdpSessions({
      store: this.store,
      http: (record) => this.http(record),
      logger: this.logger,
      clock: this.clock,
    });
    this.tokens = new TokenManager({
      idpSessions: (idp, serverUrl) => this.idpSessions.idToken(idp, serverUrl),
      store: this.store,
      http: (record) => this.http(record),
      logger: this.logger,
      ...(options.transientRetryDelaysMs ? { transientRetryDelaysMs: options.transientRetryDelaysMs } : {}),
      ...(options.refreshMode ? { refreshMode: options.refreshMode } : {}),
      clock: this.clock,
      ...(options.secretReader ? { secretReader: options.secretReader } : {}),
      dpopKeyring: this.dpopKeyring,
    });
    this.coordinator = new SignInCoordinator({
      store: this.store,
      logger: this.logger,
      lockTimeoutMs: loginTimeoutMs + 60_000,
      // A sign-in holds the login lock while it waits for the browser (loginTimeoutMs), and a
      // minute more for the code exchange and the write; only then may a waiter take over.
      maxHoldMs: Math.max(DEFAULT_LOCK_POLICIES.login.maxHoldMs ?? 0, loginTimeoutMs + 60_000),
    });
  }

  /** HTTP options; for a server whose record kept the `--allow-http` choice, http on loopback. */
  private http(record?: Pick<ServerRecord, 'serverUrl' | 'allowHttpLoopback'>): HttpOptions {
    return {
      allowInsecureLoopback: this.options.allowInsecureLoopback === true || storedHttpChoice(record),
      timeoutMs: this.options.httpTimeoutMs ?? 30_000,
      ...(this.options.fetch ? { fetch: this.options.fetch } : {}),
    };
  }

  /**
   * Interactive sign-in: discovery, registration, the browser step, code exchange. Concurrent
   * calls for the same server, in this process or others, run one flow and share its result.
   */
  async login(serverUrl: string, options: LoginOptions = {}): Promise<ServerStatus> {
    const requestedAt = Date.now();
    const url = canonicalServerUrl(serverUrl);
    const stored = await this.storedRecord(url);
    const http = this.http(stored);
    const discovered = await discoverServer(url, http);
    // Signed in over http on loopback, as allowed: keep the choice with the record.
    const server: DiscoveredServer =
      http.allowInsecureLoopback && signInNeedsHttp(discovered)
        ? { ...discovered, allowHttpLoopback: true }
        : discovered;
    // The caller's scope first (a step-up's: the challenge's, then what was granted), then the
    // one discovery chose (the probe's challenge, else the PRM's scopes_supported).
    const scope = unionScopes(options.scope, server.scope);
    // SEP-990 with the IdP session (a configured grant, or the stored one a step-up runs again):
    // one sign-in at the IdP serves every server on it.
    const configured =
      options.grant ??
      this.options.machineGrants?.[url] ??
      this.options.machineGrants?.[server.authorizationServer.issuer] ??
      (stored?.authorizationServer.issuer === server.authorizationServer.issuer ? stored.grant : undefined);
    if (configured?.type === 'id_jag' && configured.idToken === undefined && configured.idp) {
      await this.ensureIdpSession(configured.idp, url, options);
    }
    const record = await this.coordinator.signIn(
      server,
      scope,
      async (current) => {
        const issuer = server.authorizationServer.issuer;
        if (current && current.authorizationServer.issuer !== issuer) {
          // SEP-2352: the server moved; its new AS gets a registration of its own (below).
          this.logger.emit('warn', 'login.issuer_changed', `the server now names ${issuer}`, {
            serverUrl: url,
            issuer,
            previousIssuer: current.authorizationServer.issuer,
          });
        }
        const machine = options.grant ?? this.options.machineGrants?.[url] ?? this.options.machineGrants?.[issuer];
        const machineContext = {
          http: this.http(),
          logger: this.logger,
          secretReader: this.options.secretReader,
          idpSessions: (idp: IdpClient, serverUrl: string) => this.idpSessions.idToken(idp, serverUrl),
        };
        if (machine) return machineSignIn(server, machine, scope, machineContext);
        // A record signed in with a machine grant at this issuer steps up (or signs in again) with
        // that grant, never with a browser its process may not have.
        if (current?.grant && current.authorizationServer.issuer === issuer) {
          return machineStepUp(
            server,
            { registration: current.registration, grant: current.grant },
            scope,
            machineContext,
          );
        }
        const staticClient = staticClientFor(this.options.staticClients, url, issuer, current?.registration);
        // Credentials are keyed by issuer: the record's registration when it is one of this
        // issuer's that may still be used (not dropped: refused by the AS, its secret expired, or
        // its last server logged out), else another server's for the issuer.
        const reusable = await this.store.findRegistrationsByIssuer(issuer);
        const stored =
          reusable.find((m) => current !== undefined && sameRegistration(m.registration, current.registration))
            ?.registration ?? reusable[0]?.registration;
        // A configured pre-registered client wins over a stored registration of another client_id;
        // so does a configured client ID metadata document URL where the AS takes one.
        const metadataUrl =
          !staticClient && server.authorizationServer.client_id_metadata_document_supported === true
            ? this.options.clientMetadataUrl
            : undefined;
        const wanted = staticClient?.clientId ?? metadataUrl;
        const knownRegistration = wanted !== undefined && stored?.clientId !== wanted ? undefined : stored;
        const context = {
          http,
          logger: this.logger,
          clientName: this.options.clientName ?? 'authkeep',
          ...(this.options.clientMetadataUrl ? { clientMetadataUrl: this.options.clientMetadataUrl } : {}),
          ...(staticClient ? { staticClient } : {}),
          callback: this.options.callback ?? {},
          timeoutMs: this.options.loginTimeoutMs ?? 5 * 60_000,
          ...(knownRegistration ? { knownRegistration } : {}),
          dropRegistration: (registration: Registration) =>
            this.store.dropRegistration(registration.issuer, registration.clientId),
          dpopKeyring: this.dpopKeyring,
          // A server that refused DPoP-bound tokens gets Bearer ones unless it requires DPoP.
          ...(current?.dpopRefused
            ? { dpopMode: 'when-required' as const }
            : this.options.dpop
              ? { dpopMode: this.options.dpop }
              : {}),
        };
        return this.interactiveSignIn(server, scope, options, context);
      },
      requestedAt,
    );
    this.tokens.adopt(record);
    return serverStatus({ kind: 'ok', record });
  }

  /**
   * The IdP session `idp` for `serverUrl`: the stored one when its ID token is fresh or can be
   * renewed at the IdP, else a sign-in there (`loginIdp`). A failure names step `idp_sign_in`.
   */
  private async ensureIdpSession(idp: IdpClient, serverUrl: string, options: LoginOptions): Promise<void> {
    try {
      await this.idpSessions.idToken(idp, serverUrl);
      return;
    } catch (err) {
      if (!(err instanceof NeedsAuthError)) throw atStep(err, 'idp_sign_in');
      this.logger.emit('info', 'idp.sign_in_needed', `signing in to the identity provider ${idp.issuer}`, {
        serverUrl,
        issuer: idp.issuer,
        reason: err.reason,
      });
    }
    await this.loginIdp(idp, {
      ...(options.mode ? { mode: options.mode } : {}),
      ...(options.requireDevice ? { requireDevice: true } : {}),
    });
  }

  /**
   * Sign in to an enterprise IdP with OpenID Connect (SEP-990): authorization code with PKCE and a
   * nonce through the browser, or the device grant (`mode` as for `login`), scope `openid` (and
   * `offline_access` where the IdP lists it, so the session can be renewed). The ID token,
   * validated (iss, aud = `idp.clientId`, exp, nonce), is stored with the IdP's tokens in a record
   * of its own keyed by the IdP's issuer; every MCP server whose grant names this IdP without an ID
   * token source exchanges it. Concurrent sign-ins to one IdP, in this process or others, run one
   * flow. Failures carry `step` `idp_sign_in`.
   */
  async loginIdp(idp: IdpClient, options: Pick<LoginOptions, 'mode' | 'requireDevice'> = {}): Promise<ServerStatus> {
    const requestedAt = Date.now();
    const key = idpSessionKey(idp.issuer);
    try {
      const stored = await this.storedRecord(key);
      const http = this.http(stored);
      const as = await discoverAuthorizationServer(idp.issuer, http);
      const server: DiscoveredServer = {
        serverUrl: key,
        resource: key,
        authorizationServer: as,
        scope: 'openid',
        ...(http.allowInsecureLoopback && signInNeedsHttp({ serverUrl: key, authorizationServer: as })
          ? { allowHttpLoopback: true as const }
          : {}),
      };
      const record = await this.coordinator.signIn(
        server,
        'openid',
        async () => {
          // The client's secret at the IdP, if any, is kept with the registration, as every
          // pre-registered client's is, so the session can be renewed.
          const clientSecret = idp.clientSecret
            ? await readSecret(idp.clientSecret, 'idp.clientSecret', this.options.secretReader)
            : undefined;
          const staticClient: StaticClient = {
            clientId: idp.clientId,
            issuer: as.issuer,
            ...(clientSecret !== undefined
              ? { clientSecret, tokenEndpointAuthMethod: 'client_secret_basic' as const }
              : { tokenEndpointAuthMethod: 'none' as const }),
          };
          return this.interactiveSignIn(server, 'openid', options, {
            http,
            logger: this.logger,
            clientName: this.options.clientName ?? 'authkeep',
            staticClient,
            callback: this.options.callback ?? {},
            timeoutMs: this.options.loginTimeoutMs ?? 5 * 60_000,
            openid: true,
          });
        },
        requestedAt,
      );
      return serverStatus({ kind: 'ok', record });
    } catch (err) {
      throw atStep(err, 'idp_sign_in');
    }
  }

  /**
   * The browser sign-in, or the device grant where `options.mode` asks for it and the AS and
   * registration allow it (else the browser, or `device_flow_unavailable` with `requireDevice`).
   */
  private interactiveSignIn(
    server: DiscoveredServer,
    scope: string | undefined,
    options: Pick<LoginOptions, 'mode' | 'requireDevice'>,
    context: Omit<SignInContext, 'openAuthorizationUrl'>,
  ): Promise<SignInResult> {
    if (options.mode === 'device' || options.mode === 'auto') {
      const unavailable = deviceFlowUnavailable(server.authorizationServer, context.knownRegistration, {
        staticClient: context.staticClient !== undefined,
        clientMetadataUrl: this.options.clientMetadataUrl !== undefined,
      });
      if (unavailable === undefined) {
        return deviceSignIn(server, scope, {
          ...context,
          showDeviceCode: this.options.showDeviceCode ?? printDeviceCode,
        });
      }
      if (options.mode === 'device' && options.requireDevice) {
        throw new AuthkeepError(
          'device_flow_unavailable',
          `cannot use the device authorization grant: ${unavailable}`,
          {
            field: 'device_authorization_endpoint',
          },
        );
      }
      this.logger.emit(
        options.mode === 'device' ? 'warn' : 'info',
        'login.device_unavailable',
        `signing in with the browser: ${unavailable}`,
        {
          serverUrl: server.serverUrl,
          issuer: server.authorizationServer.issuer,
        },
      );
    }
    return signIn(server, scope, {
      ...context,
      openAuthorizationUrl: this.options.openAuthorizationUrl ?? openInBrowser,
      registerOnce: (issuer, register) => this.store.registerOnce(issuer, register),
    });
  }

  /** A valid access token; refreshes single-flight across processes. Throws NeedsAuthError with a reason. */
  getAccessToken(serverUrl: string): Promise<string> {
    return this.tokens.getAccessToken(this.canonical(serverUrl));
  }

  /**
   * getAccessToken, with the scheme the token is presented with: `Bearer`, or `DPoP` when it is
   * bound to this machine's key (RFC 9449); a DPoP-bound token goes out only with a proof
   * (`fetch()`, `dpopFetch()`).
   */
  async getToken(serverUrl: string): Promise<{ accessToken: string; tokenType: 'Bearer' | 'DPoP' }> {
    const credential = await this.tokens.getCredential(this.canonical(serverUrl));
    return {
      accessToken: credential.accessToken,
      tokenType: credential.tokenType === 'DPoP' && credential.dpop ? 'DPoP' : 'Bearer',
    };
  }

  /**
   * A fetch for callers that write `Authorization` themselves (the MCP SDK transports, which
   * always write `Bearer <token>`): a request to `serverUrl`'s origin whose Authorization carries
   * a DPoP-bound access token this keeper serves for it, and no `DPoP` header yet, is sent as RFC
   * 9449 wants: `Authorization: DPoP <token>` and a fresh proof of the stored key (oauth4webapi),
   * once more with the server's nonce when it asks for one. Every other request goes out as it is.
   */
  dpopFetch(serverUrl: string, base: typeof fetch = this.options.fetch ?? globalThis.fetch): typeof fetch {
    const url = canonicalServerUrl(serverUrl);
    const origin = new URL(url).origin;
    const dpopFetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
      const request = input instanceof Request ? input : undefined;
      const target = request ? request.url : input instanceof URL ? input.href : (input as string);
      const headers = new Headers(request?.headers);
      new Headers(init?.headers).forEach((value, key) => {
        headers.set(key, value);
      });
      const presented = /^(?:Bearer|DPoP) +(\S+)$/i.exec(headers.get('authorization') ?? '')?.[1];
      const credential =
        presented !== undefined && !headers.has('dpop') && new URL(target).origin === origin
          ? await this.tokens.credentialFor(url, presented)
          : undefined;
      if (credential?.tokenType !== 'DPoP' || credential.dpop === undefined) return base(input, init);
      const body = init?.body ?? (request?.body ? await request.arrayBuffer() : undefined);
      const handle = await this.dpopKeyring.handle(credential.dpop);
      const method = init?.method ?? request?.method ?? 'GET';
      return sendWithProof(base, target, method, headers, body, init, credential.accessToken, handle);
    };
    return dpopFetch as typeof fetch;
  }

  /**
   * The DPoP key pair `serverUrl`'s current tokens are bound to, as Web Crypto keys (the private one
   * not extractable), with its algorithm, public JWK and RFC 7638 thumbprint: what an SDK's own
   * DPoP support signs with. Undefined when the tokens are not DPoP-bound. As cheap as
   * getAccessToken (no disk on the hot path).
   */
  async dpopKeyPair(serverUrl: string): Promise<DpopKeyPair | undefined> {
    const credential = await this.tokens.getCredential(this.canonical(serverUrl));
    return credential.dpop ? this.dpopKeyring.keyPair(credential.dpop) : undefined;
  }

  /**
   * Stop refreshing in the background (keep-fresh) and resolve once every refresh in flight has
   * been persisted. Await it before `process.exit()`: an exit in the middle of a refresh loses the
   * rotated refresh token, and the next process's refresh then reuses the spent one (with reuse
   * detection the AS revokes the grant). A process that simply lets its event loop drain needs
   * nothing: a refresh in flight keeps it alive until it is persisted.
   */
  close(): Promise<void> {
    return this.tokens.close();
  }

  /** canonicalServerUrl, memoised: the hot path should not parse a URL per call. */
  private canonical(serverUrl: string): string {
    let url = this.canonicalUrls.get(serverUrl);
    if (url === undefined) {
      url = canonicalServerUrl(serverUrl);
      if (this.canonicalUrls.size > 1000) this.canonicalUrls.clear();
      this.canonicalUrls.set(serverUrl, url);
    }
    return url;
  }

  /**
   * A fetch for `serverUrl` that authenticates, refreshes on 401 and steps up on 403
   * insufficient_scope, sending with `base` (default: the `fetch` option, else the global fetch).
   */
  fetch(serverUrl: string, base: typeof fetch = this.options.fetch ?? globalThis.fetch): typeof fetch {
    const url = canonicalServerUrl(serverUrl);
    let gate = this.stepUpGates.get(url);
    if (gate === undefined) {
      gate = new SignInGate(
        async (scope) => {
          await this.login(url, scope === undefined ? {} : { scope });
        },
        {
          now: () => this.clock.now(),
          ...(this.options.stepUpBudget ? { stepUpBudget: this.options.stepUpBudget } : {}),
        },
      );
      this.stepUpGates.set(url, gate);
    }
    let refusals = this.refusals.get(url);
    if (refusals === undefined) {
      refusals = new RefusalBackoff(() => this.clock.now());
      this.refusals.set(url, refusals);
    }
    const stepUpGate = gate;
    return createAuthenticatedFetch({
      serverUrl: url,
      getCredential: () => this.tokens.getCredential(url),
      recoverFromRejection: (rejected) => this.tokens.recoverCredential(url, rejected),
      dpopHandle: (key) => this.dpopKeyring.handle(key),
      adoptNewer: (rejected) => this.tokens.adoptNewer(url, rejected),
      refusals,
      stepUp: (scope) => stepUpGate.signIn(scope),
      grantedScope: async () => {
        const read = await this.store.read(url);
        return read.kind === 'ok' ? read.record.tokens?.scope : undefined;
      },
      maxStepUps: this.options.maxStepUps ?? 2,
      fetch: base,
      checkAuthorizationServer: (challenge, presented) => this.checkAuthorizationServer(url, challenge, presented),
    });
  }

  /**
   * A server that refuses our tokens and no other token helps (a fresh one refused too, or none to
   * be had) may have moved to another authorization server (SEP-2352). Rediscover it from the
   * 401's challenge (no extra probe); if its issuer differs from the record's, mark needs-auth
   * `issuer_changed`, naming both issuers (the next login registers at the new one) instead of
   * refreshing at the old one forever or reporting the grant as merely revoked. A server that now
   * requires DPoP-bound tokens (RFC 9449) while the stored ones are Bearer: needs-auth `revoked`
   * saying so, which the next sign-in cures by binding new tokens to a key. The reverse, a server
   * that refused a fresh DPoP-bound token with a Bearer-only challenge: needs-auth `revoked`, and
   * the record remembers (`dpopRefused`) so that its next sign-in asks for Bearer tokens.
   */
  private async checkAuthorizationServer(
    url: string,
    challenge: (BearerChallenge & { scheme?: 'bearer' | 'dpop' }) | undefined,
    presented?: string,
  ): Promise<void> {
    let discovered: Awaited<ReturnType<typeof discoverServer>>;
    try {
      discovered = await discoverServer(url, this.http(await this.storedRecord(url)), challenge);
    } catch {
      return; // discovery failing says nothing about a move; the caller sees the 401
    }
    const issuer = discovered.authorizationServer.issuer;
    const info = await this.store.transaction(url, 'refresh', async (tx) => {
      const read = await tx.read();
      if (read.kind !== 'ok') return undefined;
      const { record } = read;
      if (record.authorizationServer.issuer !== issuer) {
        const changed = needsAuthInfo(url, 'issuer_changed', {
          errorDescription: `the server now names ${issuer}; the stored grant is from ${record.authorizationServer.issuer}`,
          request: `discovery of ${url}`,
        });
        await tx.write(markNeedsAuth(record, changed));
        return changed;
      }
      if (discovered.dpopRequired && record.tokens !== undefined && record.tokens.tokenType !== 'DPoP') {
        // RFC 9449 section 7.1: the server now takes DPoP-bound tokens only; Bearer tokens (and
        // their refreshes) will never do, a sign-in binding new ones to a key will.
        const bound = needsAuthInfo(url, 'revoked', {
          errorDescription:
            'the server now takes DPoP-bound tokens only (RFC 9449); the stored tokens are Bearer tokens',
          request: `discovery of ${url}`,
        });
        await tx.write(markNeedsAuth(record, bound));
        return bound;
      }
      if (
        presented === 'DPoP' &&
        challenge?.scheme === 'bearer' &&
        !discovered.dpopRequired &&
        record.tokens?.tokenType === 'DPoP'
      ) {
        // A fresh DPoP-bound token refused with a Bearer challenge and no DPoP one: the server
        // does not take the DPoP scheme (RFC 9449 section 7.1). Its next sign-in asks for Bearer.
        const refused = needsAuthInfo(url, 'revoked', {
          errorDescription:
            'the server refuses DPoP-bound tokens (it challenges with Bearer only); the next sign-in asks for Bearer tokens',
          request: `discovery of ${url}`,
        });
        await tx.write({ ...markNeedsAuth(record, refused), dpopRefused: true });
        return refused;
      }
      return undefined;
    });
    if (info) {
      this.tokens.forget(url);
      this.logger.emit('warn', 'needs_auth', info.errorDescription ?? info.reason, {
        serverUrl: url,
        reason: info.reason,
      });
      throw new NeedsAuthError(info);
    }
  }

  /** The readable record of `url`, if any (a lock-free read). */
  private async storedRecord(url: string): Promise<ServerRecord | undefined> {
    const read = await this.store.read(url);
    return read.kind === 'ok' ? read.record : undefined;
  }

  /**
   * One status per stored server, or for `serverUrl` only. Reads the store (never writes); no
   * network. A record moved to quarantine is shown as needs-auth `store_corrupt` (which server,
   * when, why) as long as its server has no readable record again.
   */
  async status(serverUrl?: string): Promise<ServerStatus[]> {
    if (serverUrl !== undefined) {
      const url = canonicalServerUrl(serverUrl);
      const read = await this.store.read(url);
      if (read.kind === 'missing') {
        const [latest] = (await this.store.quarantined?.(url))?.slice(-1) ?? [];
        if (latest) return [{ ...quarantinedStatus(latest), serverUrl: url }];
      }
      return [serverStatus(read, url)];
    }
    const all = await this.store.list();
    const statuses = all.map((entry) => serverStatus(entry));
    // The newest quarantined copy per key whose server has no record now.
    const present = new Set(all.map((entry) => entry.key));
    const lost = new Map<string, QuarantinedRecord>();
    for (const q of (await this.store.quarantined?.()) ?? []) if (!present.has(q.key)) lost.set(q.key, q);
    return [...statuses, ...[...lost.values()].map(quarantinedStatus)];
  }

  /**
   * Revokes the tokens where the AS has a revocation endpoint (RFC 7009), then deletes the record.
   * When revocation was possible but failed (the AS down or refusing), the record is deleted
   * anyway unless `requireRevocation` is set: then it is kept (the tokens still work at the AS,
   * and a later logout can revoke them) and the result says why (`revocationError`).
   */
  async logout(serverUrl: string, options: { requireRevocation?: boolean } = {}): Promise<LogoutResult> {
    const url = canonicalServerUrl(serverUrl);
    this.tokens.forget(url);
    let registration: Registration | undefined;
    const result = await this.store.transaction(url, 'refresh', async (tx): Promise<LogoutResult> => {
      const read = await tx.read();
      if (read.kind !== 'ok') {
        if (read.kind === 'missing') return { revoked: false, deleted: false, revocation: 'nothing' };
        await tx.delete();
        return { revoked: false, deleted: true, revocation: 'nothing' };
      }
      const record: ServerRecord = read.record;
      let revocation: LogoutResult['revocation'] = record.tokens ? 'unsupported' : 'nothing';
      let revocationError: string | undefined;
      if (record.tokens && record.authorizationServer.revocation_endpoint) {
        const token = record.tokens.refreshToken ?? record.tokens.accessToken;
        const hint = record.tokens.refreshToken ? 'refresh_token' : 'access_token';
        try {
          // A machine grant's client authenticates with the credential its grant names (read now).
          const auth = record.grant
            ? machineClientAuthentication(
                record.registration,
                await machineCredential(record.grant, record.registration, this.options.secretReader),
              )
            : undefined;
          revocation = await revokeToken(
            record.authorizationServer,
            record.registration,
            token,
            hint,
            this.http(record),
            ...(auth ? [auth] : []),
          );
        } catch (err) {
          revocation = 'failed';
          revocationError = err instanceof Error ? err.message : String(err);
          this.logger.emit('warn', 'logout.revoke_failed', `revocation failed: ${revocationError}`, {
            serverUrl: url,
          });
        }
      }
      const revoked = revocation === 'revoked';
      if (revocation === 'failed' && options.requireRevocation) {
        this.logger.emit('warn', 'logout.kept', 'kept the record: its tokens could not be revoked', {
          serverUrl: url,
        });
        return { revoked, deleted: false, revocation, ...(revocationError ? { revocationError } : {}) };
      }
      // A machine grant's client is configuration, never offered to sign-ins: nothing to forget.
      if (record.grant === undefined && record.idpSession === undefined) registration = record.registration;
      await tx.delete();
      this.logger.emit('info', 'logout.ok', 'logged out', { serverUrl: url, revoked });
      return { revoked, deleted: true, revocation, ...(revocationError ? { revocationError } : {}) };
    });
    // Forgetting the server forgets its unreadable copies too (status shows them until then).
    if (result.deleted || result.revocation === 'nothing') await this.store.clearQuarantine?.(url);
    // The last server using a registration forgets it: the next sign-in registers again.
    const loggedOut = registration;
    if (loggedOut !== undefined) {
      const users = await this.store.findRegistrationsByIssuer(loggedOut.issuer);
      if (!users.some((m) => sameRegistration(m.registration, loggedOut))) {
        await this.store.dropRegistration(loggedOut.issuer, loggedOut.clientId);
      }
    }
    return result;
  }

  // ---------------------------------------------------------------------------------------------
  // For the MCP SDK adapter (src/mcp/auth-provider.ts) and other embedders: additive, each one a
  // narrow door onto the token manager or the store that keeps the invariants it names.

  /**
   * The server answered 401 to `rejectedAccessToken`: another token, adopting one another process
   * stored or refreshing single-flight (in-process and machine-wide). Never deletes newer tokens.
   * Throws NeedsAuthError when only a sign-in can help.
   */
  recoverFromRejection(serverUrl: string, rejectedAccessToken: string): Promise<string> {
    return this.tokens.recoverFromRejection(this.canonical(serverUrl), rejectedAccessToken);
  }

  /**
   * What is stored for `serverUrl` besides tokens: the resource, where its metadata was found, the
   * authorization server's metadata and the client registration (with a confidential client's
   * secret). Undefined when nothing is stored. Reads the store; no network.
   */
  async storedServer(serverUrl: string): Promise<StoredServer | undefined> {
    const read = await this.store.read(canonicalServerUrl(serverUrl));
    if (read.kind !== 'ok') return undefined;
    const { record } = read;
    return {
      serverUrl: record.serverUrl,
      resource: record.resource,
      ...(record.resourceMetadataUrl ? { resourceMetadataUrl: record.resourceMetadataUrl } : {}),
      authorizationServer: record.authorizationServer,
      registration: record.registration,
    };
  }

  /**
   * Stores tokens obtained outside AuthKeeper's own flows (the MCP SDK's code exchange through
   * `authProvider()`), compare-and-swap under the record lock (docs/DESIGN.md invariants 2, 4, 5):
   * - they replace the stored tokens only when those are the ones the caller last saw
   *   (`basedOn`: that access token, or undefined for none) or are unusable (absent, needs-auth,
   *   expired); usable tokens another process or call stored meanwhile are never overwritten and
   *   `kept-newer` is returned;
   * - they must come from the record's registration (`clientId`, when given) and issuer (`issuer`,
   *   when given); anything else is refused with `store_conflict`, so a record never pairs one
   *   registration with another's tokens;
   * - they are stamped with the registration's client_id and issuer, and this process serves them.
   */
  async storeTokens(
    serverUrl: string,
    tokens: ExternalTokenSet,
    options: { basedOn: string | undefined; clientId?: string | undefined },
  ): Promise<'stored' | 'kept-newer'> {
    const url = canonicalServerUrl(serverUrl);
    const receivedAt = Date.now();
    return this.store.transaction(url, 'write', async (tx) => {
      const read = await tx.read();
      if (read.kind !== 'ok') {
        throw new AuthkeepError(
          'store_conflict',
          `no stored record for ${url} to attach tokens to; sign in with AuthKeeper first`,
          {
            field: 'serverUrl',
          },
        );
      }
      const record = read.record;
      const registration = record.registration;
      if (options.clientId !== undefined && options.clientId !== registration.clientId) {
        throw new AuthkeepError(
          'store_conflict',
          `tokens for client ${options.clientId} refused: the record's registration is another client`,
          {
            field: 'tokens.client_id',
            detail: { expected: registration.clientId, actual: options.clientId },
          },
        );
      }
      if (tokens.issuer !== undefined && tokens.issuer !== registration.issuer) {
        throw new AuthkeepError(
          'store_conflict',
          `tokens from issuer ${tokens.issuer} refused: the record's registration is at ${registration.issuer}`,
          {
            field: 'tokens.issuer',
            detail: { expected: registration.issuer, actual: tokens.issuer },
          },
        );
      }
      const current = record.tokens;
      const currentUsable =
        current !== undefined &&
        !record.needsAuth &&
        (current.expiresAt === undefined || Date.now() < current.expiresAt);
      if (currentUsable && current.accessToken !== options.basedOn) {
        this.logger.emit('info', 'tokens.kept_newer', 'kept the stored tokens: they are newer than the ones offered', {
          serverUrl: url,
          generation: record.generation,
        });
        return 'kept-newer';
      }
      const next = stampTokens(
        {
          accessToken: tokens.accessToken,
          tokenType: tokens.tokenType !== undefined && /^dpop$/i.test(tokens.tokenType) ? 'DPoP' : 'Bearer',
          ...(tokens.expiresIn !== undefined ? { expiresIn: tokens.expiresIn } : {}),
          ...(tokens.refreshToken !== undefined ? { refreshToken: tokens.refreshToken } : {}),
          ...(tokens.scope !== undefined ? { scope: tokens.scope } : {}),
        },
        { registration, sentAt: receivedAt },
      );
      // Tokens from outside carry no proof of our key: a DPoP key stays only beside DPoP-bound ones.
      const { needsAuth: _cleared, dpop, ...rest } = record;
      const written = await tx.write({
        ...rest,
        ...(dpop && next.tokenType === 'DPoP' ? { dpop } : {}),
        tokens: next,
        updatedAt: new Date(receivedAt).toISOString(),
      });
      this.tokens.adopt(written);
      this.logger.emit('info', 'tokens.stored', 'stored tokens obtained outside AuthKeeper', {
        serverUrl: url,
        generation: written.generation,
      });
      return 'stored';
    });
  }
}

/** What `logout()` did. */
export interface LogoutResult {
  revoked: boolean;
  deleted: boolean;
  /**
   * `revoked`; `unsupported`: the AS offers no revocation (no endpoint, or not for this token
   * type), so the refresh token stays valid there until it expires; `failed`: revocation was
   * possible and did not happen (`revocationError` says why); `nothing`: no tokens were stored.
   */
  revocation: 'revoked' | 'unsupported' | 'failed' | 'nothing';
  revocationError?: string;
}

/** A server's stored discovery results and client registration (no tokens): see `storedServer()`. */
export interface StoredServer {
  serverUrl: string;
  resource: string;
  resourceMetadataUrl?: string;
  authorizationServer: AuthorizationServer;
  registration: Registration;
}

/** A token response obtained outside AuthKeeper (RFC 6749 section 5.1 fields), for `storeTokens`. */
export interface ExternalTokenSet {
  accessToken: string;
  tokenType?: string;
  /** Seconds, as the token response said. */
  expiresIn?: number;
  refreshToken?: string;
  scope?: string;
  /** The issuer the tokens came from, when the caller knows it (the SDK stamps it). */
  issuer?: string;
}

/** The same registration: one client_id at one issuer, registered at one moment. */
function sameRegistration(a: Registration, b: Registration): boolean {
  return a.issuer === b.issuer && a.clientId === b.clientId && a.registeredAt === b.registeredAt;
}

export { AuthkeepError, NeedsAuthError };
