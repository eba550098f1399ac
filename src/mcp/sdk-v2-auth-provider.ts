/**
 * sdk-v2-auth-provider: AuthKeeper as an `OAuthClientProvider` for @modelcontextprotocol/client
 * 2.x (tested with 2.4.0), the same adapter as auth-provider.ts (KeeperAuthProvider, for
 * @modelcontextprotocol/sdk 1.x) with the 2.x contract's differences. Get one with
 * `authProviderV2(keeper, url)` from `authkeep/sdk-v2` and pass it as a transport's `authProvider`.
 *
 * How 2.x drives a provider (read from 2.4.0: its StreamableHTTP and SSE transports and auth()):
 * - a transport's `authProvider` is either the minimal `AuthProvider` ({token, onUnauthorized}) or
 *   an `OAuthClientProvider` (recognised by tokens() and clientInformation()), which it adapts:
 *   token() is tokens()?.access_token before every request; a 401 runs auth(provider) and the
 *   request is retried once only if auth() returns AUTHORIZED, else UnauthorizedError;
 * - a 403 insufficient_scope (onInsufficientScope 'reauthorize', the default) reads tokens().scope,
 *   unions it with the challenge's scope and runs auth(provider, {scope, forceReauthorization}),
 *   retrying once on AUTHORIZED; a minimal AuthProvider gets InsufficientScopeError instead;
 * - auth(): discoveryState(), clientInformation({issuer}) (registering by DCR when undefined),
 *   then WITHOUT a redirectUrl a token request of its own (client_credentials and the like),
 *   tokens({issuer}) (tokens without an `issuer` stamp are stamped and saved back with
 *   saveTokens(); a stamp of another issuer discards them), a refresh of its own when they carry a
 *   refresh_token, else state(), saveCodeVerifier(), redirectToAuthorization() -> REDIRECT. An
 *   invalid_grant / invalid_client from its own token requests -> invalidateCredentials(), again.
 * Every way auth() reaches AUTHORIZED is a token request the SDK makes with a credential it holds,
 * exactly as in 1.x; so the design is 1.x's (see auth-provider.ts): the SDK never holds the
 * refresh token, tokens() is the single-flight manager's access token (signing in when that is
 * what it takes), auth() is entered only on a refusal and recovers in discoveryState(), ends in
 * REDIRECT (the triggering request fails with UnauthorizedError once, the next one carries the
 * recovered token; a step-up is re-authorized by AuthKeeper with the union of scopes),
 * saveTokens() is compare-and-swap, verifiers are kept per flow, invalidateCredentials()
 * recovers instead of deleting. `fetch: keeper.fetch(url)` (a 2.x `FetchLike`) loses no request.
 *
 * What 2.x needs beyond 1.x:
 * - tokens() carries the `issuer` stamp (SEP-2352; the record's issuer) so 2.x neither warns nor
 *   saves the token back, and the grant's `scope` so a 403's union starts from what is granted.
 *   Both are read from the record when the access token changes: the hot path stays a Map lookup.
 *   (This class.)
 * - the access token served, saved back stamped, is not written: a write of tokens without the
 *   refresh token would drop it (KeeperAuthProvider.saveTokens, so a 1.x provider handed to a 2.x
 *   transport is safe too).
 * - redirectUrl is always defined (KeeperAuthProvider): without one 2.x requests tokens itself.
 * - the context argument ({issuer}) of the credential methods: one record per server has one
 *   registration at one issuer, so it selects nothing here; the SDK checks the stamps.
 * - dpop() (SEP-1932 / RFC 9449): for DPoP-bound tokens (tokens() then says `token_type: DPoP`),
 *   a 2.x DpopSession signing with the key stored with them (imported, not extractable), so the
 *   transports present `Authorization: DPoP` with a fresh proof per request and retry a
 *   `use_dpop_nonce` once; undefined for Bearer tokens. One session per key, so nonces persist.
 *
 * Why an OAuthClientProvider and not 2.x's minimal AuthProvider: with {token, onUnauthorized} a
 * 401 would be recovered and the request retried in-band, but a 403 insufficient_scope would end
 * in InsufficientScopeError with no step-up at all. `fetch: keeper.fetch(url)` does both in-band.
 *
 * Not for: the adapter's logic (auth-provider.ts) or 2.x's middleware (keeper.fetch is one).
 */
import {
  DpopSession,
  type OAuthClientInformationContext,
  type OAuthClientProvider,
  type DpopKeyPair as SdkDpopKeyPair,
  type StoredOAuthTokens,
} from '@modelcontextprotocol/client';
import type { SessionKeeper } from '../session/session-keeper.js';
import { KeeperAuthProvider, type KeeperAuthProviderOptions } from './auth-provider.js';

export type { KeeperAuthProviderOptions };

export class KeeperAuthProviderV2 extends KeeperAuthProvider implements OAuthClientProvider {
  /** The 2.x DPoP session of the key the current tokens are bound to. */
  private dpopSession: { thumbprint: string; session: Promise<DpopSession> } | undefined;
  /** The issuer and scope of the record, as read when `accessToken` was first served. */
  private stamp: { accessToken: string; issuer: string | undefined; scope: string | undefined } | undefined;

  constructor(
    private readonly session: SessionKeeper,
    serverUrl: string,
    options: KeeperAuthProviderOptions = {},
  ) {
    super(session, serverUrl, options);
  }

  /**
   * The current access token (never the refresh token) with its issuer stamp and granted scope;
   * signs in first when that is what it takes. `ctx` selects nothing: one record, one issuer.
   */
  override async tokens(_ctx?: OAuthClientInformationContext): Promise<StoredOAuthTokens | undefined> {
    const tokens = await super.tokens();
    if (!tokens) return undefined;
    if (this.stamp?.accessToken !== tokens.access_token) {
      const [status] = await this.session.status(this.serverUrl);
      this.stamp = { accessToken: tokens.access_token, issuer: status?.issuer, scope: status?.scope };
    }
    return {
      access_token: tokens.access_token,
      token_type: tokens.token_type,
      ...(this.stamp.scope !== undefined ? { scope: this.stamp.scope } : {}),
      ...(this.stamp.issuer !== undefined ? { issuer: this.stamp.issuer } : {}),
    };
  }

  /** The DPoP session for DPoP-bound tokens (see the header); undefined for Bearer tokens. */
  async dpop(): Promise<DpopSession | undefined> {
    const pair = await this.session.dpopKeyPair(this.serverUrl);
    if (pair === undefined) return undefined;
    if (this.dpopSession?.thumbprint !== pair.thumbprint) {
      this.dpopSession = {
        thumbprint: pair.thumbprint,
        session: DpopSession.create({
          keyPair: {
            alg: pair.alg,
            privateKey: pair.privateKey,
            publicKey: pair.publicKey,
            publicJwk: pair.publicJwk as SdkDpopKeyPair['publicJwk'],
            thumbprint: pair.thumbprint,
          },
        }),
      };
    }
    return this.dpopSession.session;
  }
}
