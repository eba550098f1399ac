/**
 * idp-session: the user's session at an enterprise IdP for enterprise-managed authorization (MCP
 * SEP-990): one OpenID Connect sign-in there (authorization code with PKCE and a nonce, or the
 * device grant; sign-in.ts and device-sign-in.ts with `openid`), stored as its own record keyed
 * by the IdP's issuer in the same store, under the same locks, as every server's. Every MCP server
 * configured with that IdP exchanges its ID token (machine-grant.ts), so one browser visit serves
 * them all.
 *
 * The ID token is what is kept fresh, not the IdP's access token: when it is within a quarter of
 * its lifetime (at most a minute) of its `exp`, it is renewed with the IdP's refresh token (OpenID
 * Connect Core 1.0 section 12), single-flight in this process (one promise per issuer) and across
 * processes (the issuer record's refresh lock, then a re-read: a session another process renewed
 * is adopted, so a rotated refresh token is spent once, docs/DESIGN.md invariant 3). oauth4webapi
 * validates each new ID token (iss, aud = client_id, exp, iat); its `sub` must be the session's
 * (section 12.2). When no renewal is possible, the IdP record is marked needs-auth and the error
 * names the step: `idp_sign_in`.
 *
 * Not for: the exchange of the ID token (oauth/token-exchange.ts, machine-grant.ts), or the
 * browser and device steps themselves (sign-in.ts, device-sign-in.ts).
 */
import { AuthkeepError, NeedsAuthError, type NeedsAuthReason } from '../errors.js';
import type { SecretSource } from '../oauth/grants.js';
import type { HttpOptions } from '../oauth/http.js';
import { refreshAccessToken, TokenEndpointError } from '../oauth/token-endpoint.js';
import type { CredentialStore } from '../store/credential-store.js';
import type { ServerRecord } from '../store/record.js';
import { canonicalServerUrl } from './canonical-url.js';
import type { Clock } from './clock.js';
import type { Logger } from './log.js';
import { stampTokens } from './stamp-tokens.js';
import { markNeedsAuth, needsAuthInfo, refreshHttp } from './token-manager.js';

/** An enterprise IdP as the user configures it: its issuer and this client there. */
export interface IdpClient {
  issuer: string;
  /** This client's client_id at the IdP: the ID token's `aud`. */
  clientId: string;
  /** Where the client's secret at the IdP is read, when it has one. */
  clientSecret?: SecretSource | undefined;
}

/** The record key of the session at `issuer`: the issuer in canonical URL form. */
export function idpSessionKey(issuer: string): string {
  return canonicalServerUrl(issuer);
}

/** Renewed this long before `exp`: a quarter of the ID token's lifetime, at most a minute. */
function staleAt(record: ServerRecord): number {
  const session = record.idpSession;
  if (!session) return 0;
  const lifetime = session.expiresAt - session.issuedAt;
  return session.expiresAt - Math.min(60_000, Math.max(0, lifetime / 4));
}

export interface IdpSessionDeps {
  store: CredentialStore;
  /** HTTP options for requests about the IdP record (its stored http choice). */
  http: (record?: ServerRecord) => HttpOptions;
  logger: Logger;
  clock: Clock;
}

export class IdpSessions {
  private readonly inflight = new Map<string, Promise<string>>();

  constructor(private readonly deps: IdpSessionDeps) {}

  /**
   * The ID token of the stored session at `idp.issuer` for `idp.clientId`, renewed at the IdP
   * when it is due. Throws NeedsAuthError (step `idp_sign_in`, naming `serverUrl`, the MCP server
   * it is for) when there is no session or it cannot be renewed; a TokenEndpointError of kind
   * `transient` (step `idp_sign_in`) when the IdP could not be reached, for the caller to retry.
   */
  async idToken(idp: IdpClient, serverUrl: string): Promise<string> {
    const key = idpSessionKey(idp.issuer);
    const read = await this.deps.store.read(key);
    const record = read.kind === 'ok' ? read.record : undefined;
    if (record && this.usable(record, idp) && this.deps.clock.now() < staleAt(record)) {
      return (record.idpSession as { token: string }).token;
    }
    let flight = this.inflight.get(key);
    if (flight === undefined) {
      const seen = record ? { generation: record.generation, token: record.idpSession?.token } : undefined;
      flight = this.renew(idp, key, serverUrl, seen).finally(() => this.inflight.delete(key));
      this.inflight.set(key, flight);
    }
    return flight;
  }

  /** A session for this client, not marked needs-auth (fresh or not). */
  private usable(record: ServerRecord, idp: IdpClient): boolean {
    return (
      record.idpSession !== undefined &&
      record.needsAuth === undefined &&
      record.registration.clientId === idp.clientId &&
      record.registration.issuer === idp.issuer
    );
  }

  private needs(
    serverUrl: string,
    idp: IdpClient,
    reason: NeedsAuthReason,
    errorDescription: string,
    extra: { error?: string | undefined; request?: string | undefined } = {},
  ): NeedsAuthError {
    return new NeedsAuthError(
      needsAuthInfo(serverUrl, reason, {
        issuer: idp.issuer,
        errorDescription,
        step: 'idp_sign_in',
        ...(extra.error ? { error: extra.error } : {}),
        request: extra.request ?? `sign-in at ${idp.issuer}`,
      }),
    );
  }

  /**
   * Under the issuer record's refresh lock: adopt a session renewed meanwhile (a new ID token since
   * `seen`, the record this process judged due, or one not due), else refresh it.
   */
  private renew(
    idp: IdpClient,
    key: string,
    serverUrl: string,
    seen: { generation: number; token: string | undefined } | undefined,
  ): Promise<string> {
    const { store, logger, clock } = this.deps;
    return store.transaction(key, 'refresh', async (tx) => {
      const read = await tx.read();
      const session = read.kind === 'ok' ? read.record.idpSession : undefined;
      if (read.kind !== 'ok' || session === undefined) {
        throw this.needs(serverUrl, idp, 'no_credentials', `no session at the identity provider ${idp.issuer}`);
      }
      const record = read.record;
      if (record.registration.clientId !== idp.clientId || record.registration.issuer !== idp.issuer) {
        throw this.needs(
          serverUrl,
          idp,
          'no_credentials',
          `the session at the identity provider ${idp.issuer} is client ${record.registration.clientId}'s, not ${idp.clientId}'s`,
        );
      }
      if (record.needsAuth) {
        const marker = record.needsAuth;
        throw this.needs(
          serverUrl,
          idp,
          marker.reason,
          `the session at the identity provider ${idp.issuer} needs a sign-in: ${marker.errorDescription ?? marker.reason}`,
          { error: marker.error, request: marker.request },
        );
      }
      const renewedMeanwhile =
        seen !== undefined && record.generation !== seen.generation && session.token !== seen.token;
      if (renewedMeanwhile || clock.now() < staleAt(record)) {
        logger.emit('debug', 'idp.adopted', 'adopted an ID token renewed by another process', {
          serverUrl: key,
          issuer: idp.issuer,
        });
        return session.token;
      }
      const tokens = record.tokens;
      if (!tokens?.refreshToken) {
        const info = needsAuthInfo(key, 'expired', {
          issuer: idp.issuer,
          errorDescription: 'the ID token expired and the identity provider gave no refresh token',
          step: 'idp_sign_in',
        });
        await tx.write(markNeedsAuth(record, info));
        throw this.needs(serverUrl, idp, 'expired', `the ID token from ${idp.issuer} expired and cannot be renewed`);
      }
      const sentAt = clock.now();
      let response: Awaited<ReturnType<typeof refreshAccessToken>>;
      try {
        response = await refreshAccessToken(
          record.authorizationServer,
          record.registration,
          { refreshToken: tokens.refreshToken, requireIdToken: true },
          // Bounded by the lock's max hold, and its answer awaited 4 request timeouts (token-manager.ts).
          refreshHttp(this.deps.http(record), tx.holdUntil),
        );
      } catch (err) {
        if (!(err instanceof TokenEndpointError)) throw err;
        if (err.kind === 'transient') throw err.withStep('idp_sign_in');
        const reason: NeedsAuthReason =
          err.kind === 'malformed' ? 'malformed_response' : (err.needsAuthReason ?? 'as_error');
        // A refused refresh token ends the session; an unusable answer leaves it as it was.
        if (err.kind === 'needs_auth') {
          await tx.write(
            markNeedsAuth(
              record,
              needsAuthInfo(key, reason, {
                issuer: idp.issuer,
                error: err.oauthError,
                errorDescription: err.oauthErrorDescription,
                request: err.request,
                step: 'idp_sign_in',
              }),
            ),
          );
        }
        logger.emit('warn', 'idp.refresh_failed', `the ID token could not be renewed: ${reason}`, {
          serverUrl: key,
          issuer: idp.issuer,
          reason,
          request: err.request,
        });
        throw this.needs(
          serverUrl,
          idp,
          reason,
          `the ID token from ${idp.issuer} could not be renewed${err.oauthError ? ` (${err.oauthError})` : ''}`,
          { error: err.oauthError, request: err.request },
        );
      }
      const idToken = response.idToken;
      if (!idToken || idToken.subject !== session.subject) {
        // OpenID Connect Core 1.0 section 12.2: a refreshed ID token names the same subject.
        throw new AuthkeepError(
          'token_response_invalid',
          `the identity provider ${idp.issuer} renewed the ID token for another subject`,
          { field: 'id_token.sub', step: 'idp_sign_in' },
        );
      }
      const now = clock.now();
      const { needsAuth: _cleared, ...rest } = record;
      const written = await tx.write({
        ...rest,
        tokens: stampTokens(response, {
          registration: record.registration,
          sentAt,
          receivedAt: now,
          previous: tokens,
          requestedScope: tokens.scope,
        }),
        idpSession: { ...idToken },
        lastRefreshAt: now,
        updatedAt: new Date(now).toISOString(),
      });
      logger.emit('info', 'idp.refreshed', `renewed the ID token at ${idp.issuer}`, {
        serverUrl: key,
        issuer: idp.issuer,
        generation: written.generation,
      });
      return idToken.token;
    });
  }
}
