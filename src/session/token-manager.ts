/**
 * token-manager: getAccessToken and the refresh transaction (docs/DESIGN.md invariants 3, 4, 5).
 *
 * The hot path is a Map lookup: a cached token before its refresh-due instant is returned with no
 * disk and no lock. Past that instant, one shared promise per server (in-process single-flight)
 * runs the transaction, which reads like the protocol:
 *   1. read the record without a lock; if another process already refreshed, adopt its tokens;
 *   2. otherwise take the server's refresh lock and re-read (the pre-lock read is only a hint);
 *      while another process holds the lock, watch the record lock-free and adopt the holder's
 *      tokens as soon as they land (waiters do not queue on the lock only to adopt). A process
 *      that finds the lock already held watches first and takes no part in the lock for a while
 *      (2a): in a refresh storm the holder's refresh lands before the waiters would have spent the
 *      CPU that taking part in the lock costs (adoption-watch.ts);
 *   3. check drift: tokens stamped with another client_id or issuer are never sent;
 *   4. adopt if, under the lock, the record now holds tokens that are not due;
 *   5. a registration whose client secret expired is not used: needs-auth, registration dropped;
 *   6. refresh, keep the old refresh token when the response carries none, stamp the new tokens
 *      with the registration's client_id and issuer, write with compare-and-swap, release (a
 *      client the AS refuses, invalid_client or unauthorized_client, is dropped as well);
 *   7. only then expose the new token.
 * A record holding a machine grant (machine-grant.ts: client credentials, JWT bearer, SEP-990
 * ID-JAG) has no refresh token: at step 6 its next token comes from the grant instead, under the
 * same lock, with the same retries, compare-and-swap and needs-auth marking (its registration is
 * never dropped: it is the user's configuration).
 * The transaction is not cancellable by its caller: once a refresh token is spent, the result is
 * persisted whatever happens to the request that triggered it.
 *
 * Not for: interactive sign-in (see sign-in.ts) or HTTP handling of 401/403 (authenticated-fetch.ts).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { displayNeedsAuthInfo, NeedsAuthError, type NeedsAuthInfo, type NeedsAuthReason } from '../errors.js';
import { type DpopKey, DpopKeyring } from '../oauth/dpop.js';
import { DEFAULT_TIMEOUT_MS, type HttpOptions } from '../oauth/http.js';
import { refreshAccessToken, TokenEndpointError, type TokenSet } from '../oauth/token-endpoint.js';
import { clientSecretExpired, type Registration } from '../oauth/types.js';
import type { CredentialStore } from '../store/credential-store.js';
import type { ServerRecord, Tokens } from '../store/record.js';
import { Adopted, AdoptionWatch, arrivedAt, recordVersionOf } from './adoption-watch.js';
import { type Clock, systemClock } from './clock.js';
import { detectDrift } from './drift.js';
import type { Logger } from './log.js';
import { type IdpSessionTokens, nextMachineToken } from './machine-grant.js';
import { isUnexpired, type RefreshMode, refreshDueAt } from './refresh-policy.js';
import type { SecretReader } from './secret-source.js';
import { stampTokens } from './stamp-tokens.js';
import { corruptDescription } from './status.js';

/** An access token as a request presents it: Bearer, or DPoP with the key it is bound to (RFC 9449). */
export interface Credential {
  accessToken: string;
  tokenType: string;
  /** The record's DPoP key, when the token is DPoP-bound (tokenType `DPoP`). */
  dpop?: DpopKey;
}

interface CachedToken extends Credential {
  refreshAt: number;
  expiresAt: number | undefined;
}

/** Why a refresh is being attempted: a policy, not a boolean. */
export type RefreshCause =
  | { kind: 'due' }
  /** The server answered 401 to this token: refresh unless the store already holds another one. */
  | { kind: 'rejected'; rejectedAccessToken: string };

export interface TokenManagerDeps {
  store: CredentialStore;
  /** HTTP options for requests about `record` (its stored http choice, loopback-http.ts). */
  http: (record?: ServerRecord) => HttpOptions;
  logger: Logger;
  /** Backoff delays for transient token-endpoint failures (temporarily_unavailable, 5xx, timeouts). */
  transientRetryDelaysMs?: number[];
  lockTimeoutMs?: number;
  /** `keep-fresh`: refresh from a timer just before expiry (refresh-policy.ts). Default `on-demand`. */
  refreshMode?: RefreshMode;
  /** Time and timers. Default the system's. */
  clock?: Clock;
  /** Where machine grants read their secrets (environment, files). Default this process's. */
  secretReader?: SecretReader;
  /** DPoP handles for refreshes of DPoP-bound grants (RFC 9449 section 5). Default: its own. */
  dpopKeyring?: DpopKeyring;
  /** SEP-990 grants without an ID token source: the ID token of the IdP session (idp-session.ts). */
  idpSessions?: IdpSessionTokens;
}

const DEFAULT_RETRY_DELAYS_MS = [200, 800, 2000];

/** Time kept free before the refresh lock's max hold: 10% of the hold, at most 10 s. */
const MAX_HOLD_MARGIN_MS = 10_000;

/** A sent refresh's answer is awaited this many request timeouts (at most until the refresh deadline). */
export const SPENT_TOKEN_ANSWER_TIMEOUTS = 4;

/**
 * How long a refresh waits for its answer: 4 times the request timeout, at most until the refresh
 * deadline. Once the AS has read a refresh token it may have rotated it; giving up on the answer
 * loses the new one, and the retry presents the old one again: a reuse, for which a strict AS
 * (RFC 9700 section 4.14.2) revokes the whole grant. A starved machine (the arena's `scale`
 * scenario: a load average of 100 on two cores) answers late, not never, so the answer is worth
 * more than the request timeout. It is not worth holding every other process's refresh for the
 * lock's whole max hold when it never comes (the arena's `chaos` scenario); the caller's request
 * timeout says how slow an AS it expects. With the default 30 s the deadline (about 110 s) is the
 * bound. Without a deadline (no lock bound), the request timeout stands.
 */
export function awaitSpentTokenAnswer(
  http: Pick<HttpOptions, 'timeoutMs'>,
  bound: Pick<HttpOptions, 'deadline'>,
): Pick<HttpOptions, 'timeoutMs'> {
  if (bound.deadline === undefined) return {};
  const patience = SPENT_TOKEN_ANSWER_TIMEOUTS * (http.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  return { timeoutMs: Math.max(1, Math.min(patience, bound.deadline - Date.now())) };
}

/** A refresh request's HTTP options within `bound` (the refresh deadline): that deadline, and its answer awaited (above). */
export function spentTokenHttp(http: HttpOptions, bound: Pick<HttpOptions, 'deadline'>): HttpOptions {
  return { ...http, ...bound, ...awaitSpentTokenAnswer(http, bound) };
}

/** The same under a lock held until `holdUntil` (an IdP session's refresh: one request, no retries). */
export function refreshHttp(http: HttpOptions, holdUntil: number | undefined): HttpOptions {
  const deadline = refreshDeadline(holdUntil);
  return deadline === undefined ? http : spentTokenHttp(http, { deadline });
}

/**
 * The instant (epoch ms) by which a refresh under a lock that may be taken over at `holdUntil`
 * must have ended; undefined when the lock is not bounded.
 */
export function refreshDeadline(holdUntil: number | undefined): number | undefined {
  if (holdUntil === undefined) return undefined;
  return holdUntil - Math.ceil(Math.min(MAX_HOLD_MARGIN_MS, Math.max(0, (holdUntil - Date.now()) / 10)));
}

export function needsAuthInfo(
  serverUrl: string,
  reason: NeedsAuthReason,
  extra: Partial<Omit<NeedsAuthInfo, 'reason' | 'serverUrl'>> = {},
): NeedsAuthInfo {
  return { serverUrl, reason, at: new Date().toISOString(), ...extra };
}

/** The NeedsAuthError a stored needs-auth marker stands for. */
export function needsAuthFromRecord(record: ServerRecord): NeedsAuthError | undefined {
  const marker = record.needsAuth;
  if (!marker) return undefined;
  return new NeedsAuthError({
    serverUrl: record.serverUrl,
    reason: marker.reason,
    error: marker.error,
    errorDescription: marker.errorDescription,
    at: marker.at,
    request: marker.request,
    ...(marker.step ? { step: marker.step } : {}),
  });
}

export class TokenManager {
  private readonly cache = new Map<string, CachedToken>();
  private readonly inflight = new Map<string, Promise<CachedToken>>();
  /** Cancels the keep-fresh timer of each server. */
  private readonly timers = new Map<string, () => void>();
  private readonly retryDelays: number[];
  private readonly clock: Clock;
  private readonly keyring: DpopKeyring;
  private closed = false;

  constructor(private readonly deps: TokenManagerDeps) {
    this.retryDelays = deps.transientRetryDelaysMs ?? DEFAULT_RETRY_DELAYS_MS;
    this.clock = deps.clock ?? systemClock;
    this.keyring = deps.dpopKeyring ?? new DpopKeyring();
  }

  /** A valid access token for `serverUrl` (canonical). The hot path touches no disk and no lock. */
  getAccessToken(serverUrl: string): Promise<string> {
    const cached = this.cache.get(serverUrl);
    if (cached !== undefined && this.clock.now() < cached.refreshAt) return Promise.resolve(cached.accessToken);
    return this.singleFlight(serverUrl, { kind: 'due' }).then(accessTokenOf);
  }

  /** getAccessToken with how to present the token: Bearer, or DPoP with its key. */
  getCredential(serverUrl: string): Promise<Credential> {
    const cached = this.cache.get(serverUrl);
    if (cached !== undefined && this.clock.now() < cached.refreshAt) return Promise.resolve(cached);
    return this.singleFlight(serverUrl, { kind: 'due' });
  }

  /** Synchronous hot path for benchmarks and callers that can use a cached value. */
  peekCachedToken(serverUrl: string): string | undefined {
    const cached = this.cache.get(serverUrl);
    return cached !== undefined && this.clock.now() < cached.refreshAt ? cached.accessToken : undefined;
  }

  /** The server rejected `rejectedAccessToken` (401): get another one, adopting or refreshing. */
  recoverFromRejection(serverUrl: string, rejectedAccessToken: string): Promise<string> {
    return this.recoverCredential(serverUrl, rejectedAccessToken).then(accessTokenOf);
  }

  /** recoverFromRejection with how to present the token. */
  recoverCredential(serverUrl: string, rejectedAccessToken: string): Promise<Credential> {
    const cached = this.cache.get(serverUrl);
    if (cached?.accessToken === rejectedAccessToken) this.cache.delete(serverUrl);
    else if (cached !== undefined && this.clock.now() < cached.refreshAt) return Promise.resolve(cached);
    return this.singleFlight(serverUrl, { kind: 'rejected', rejectedAccessToken });
  }

  /**
   * The server rejected `rejectedAccessToken` while refreshing for it is backed off: a token
   * another process stored since, if any. Reads the record without a lock; never refreshes.
   */
  async adoptNewer(serverUrl: string, rejectedAccessToken: string): Promise<Credential | undefined> {
    const read = await this.deps.store.read(serverUrl);
    if (read.kind !== 'ok' || detectDrift(read.record) !== undefined) return undefined;
    const fresh = this.adoptable(read.record, { kind: 'rejected', rejectedAccessToken });
    return fresh === undefined ? undefined : this.remember(serverUrl, fresh, read.record.dpop, arrivedAt(read.record));
  }

  /**
   * How `accessToken` (one this manager served for `serverUrl`) is presented: the cache's entry, else
   * the stored record's tokens when they are that token. Undefined for a token neither holds.
   */
  async credentialFor(serverUrl: string, accessToken: string): Promise<Credential | undefined> {
    const cached = this.cache.get(serverUrl);
    if (cached?.accessToken === accessToken) return cached;
    const read = await this.deps.store.read(serverUrl);
    if (read.kind !== 'ok' || read.record.tokens?.accessToken !== accessToken) return undefined;
    const { tokens, dpop } = read.record;
    return { accessToken, tokenType: tokens.tokenType, ...(tokens.tokenType === 'DPoP' && dpop ? { dpop } : {}) };
  }

  /** Make the manager serve the tokens of a record just written (after login). */
  adopt(record: ServerRecord): void {
    if (record.tokens && !record.needsAuth && detectDrift(record) === undefined)
      this.remember(record.serverUrl, record.tokens, record.dpop, arrivedAt(record));
  }

  forget(serverUrl: string): void {
    this.cache.delete(serverUrl);
    this.timers.get(serverUrl)?.();
    this.timers.delete(serverUrl);
  }

  /**
   * Stop the keep-fresh timers and wait until every refresh in flight is persisted or has failed.
   * A process that exits in the middle of a refresh loses the refresh token the AS just rotated
   * to; the next process to refresh presents the spent one, and an AS with reuse detection
   * revokes the grant. Calls still get tokens afterwards, refreshed on demand.
   */
  async close(): Promise<void> {
    this.closed = true;
    for (const cancel of this.timers.values()) cancel();
    this.timers.clear();
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight.values()]);
  }

  private singleFlight(serverUrl: string, cause: RefreshCause): Promise<CachedToken> {
    const running = this.inflight.get(serverUrl);
    if (running !== undefined) return running;
    const flight = this.refreshTransaction(serverUrl, cause).finally(() => {
      this.inflight.delete(serverUrl);
    });
    this.inflight.set(serverUrl, flight);
    return flight;
  }

  /**
   * Serve `tokens` from the cache until their refresh-due instant. `refreshedAt`: this process
   * just refreshed them, and the next refresh waits at least MIN_REFRESH_INTERVAL_MS from then
   * (a slow AS answering with a token already due must not start the next refresh at once).
   */
  private remember(serverUrl: string, tokens: Tokens, dpop: DpopKey | undefined, refreshedAt?: number): CachedToken {
    const mode = this.deps.refreshMode ?? 'on-demand';
    const entry: CachedToken = {
      accessToken: tokens.accessToken,
      tokenType: tokens.tokenType,
      ...(tokens.tokenType === 'DPoP' && dpop ? { dpop } : {}),
      refreshAt: refreshDueAt(tokens, Math.random(), mode, refreshedAt),
      expiresAt: tokens.expiresAt,
    };
    this.cache.set(serverUrl, entry);
    if (mode === 'keep-fresh') this.scheduleRefresh(serverUrl, entry.refreshAt);
    return entry;
  }

  /**
   * keep-fresh: refresh at `at` from a timer that never keeps the process alive. The refresh is
   * the ordinary transaction, so across processes one refreshes and the others adopt. A timer
   * that finds a refresh already running joins it and, once it settles, makes sure the next
   * timer is set (the running refresh may have set its timer before this one fired and took it).
   * A failure is logged and stops the timer; the next call then meets it with its reason.
   */
  private scheduleRefresh(serverUrl: string, at: number): void {
    if (this.closed) return;
    this.timers.get(serverUrl)?.();
    const cancel = this.clock.setTimer(() => {
      this.timers.delete(serverUrl);
      const cached = this.cache.get(serverUrl);
      if (cached === undefined || this.closed) return; // forgotten (logout), never served, or closed
      // Timers can fire a millisecond early: then wait for the due instant rather than lose the chain.
      if (this.clock.now() < cached.refreshAt) return this.scheduleRefresh(serverUrl, cached.refreshAt);
      this.singleFlight(serverUrl, { kind: 'due' }).then(
        () => {
          const next = this.cache.get(serverUrl);
          if (next !== undefined && !this.timers.has(serverUrl)) this.scheduleRefresh(serverUrl, next.refreshAt);
        },
        (err: unknown) => {
          this.deps.logger.emit(
            'warn',
            'refresh.background_failed',
            `background refresh failed: ${(err as Error).message}`,
            { serverUrl },
          );
        },
      );
    }, at - this.clock.now());
    this.timers.set(serverUrl, cancel);
    this.deps.logger.emit('debug', 'refresh.scheduled', 'keep-fresh: next refresh scheduled', {
      serverUrl,
      due: new Date(at).toISOString(),
    });
  }

  /** Tokens in `record` that can be served as they are, given why we came here. */
  private adoptable(record: ServerRecord, cause: RefreshCause): Tokens | undefined {
    const tokens = record.tokens;
    if (!tokens || record.needsAuth) return undefined;
    if (cause.kind === 'rejected') {
      // After a 401, adopt only a token other than the rejected one (another process refreshed).
      return tokens.accessToken !== cause.rejectedAccessToken && isUnexpired(tokens, this.clock.now())
        ? tokens
        : undefined;
    }
    // Due by this manager's mode. Under keep-fresh, a token another process refreshed is adopted
    // until the earliest instant keep-fresh could refresh it (full jitter: a timer that fired at
    // its own jittered instant never adopts the token it came to refresh), not refreshed again
    // from its last quarter on. On demand: from its last quarter on, without jitter.
    const mode = this.deps.refreshMode ?? 'on-demand';
    return this.clock.now() < refreshDueAt(tokens, mode === 'keep-fresh' ? 1 : 0, mode, arrivedAt(record))
      ? tokens
      : undefined;
  }

  private async readRecord(serverUrl: string, read: () => ReturnType<CredentialStore['read']>): Promise<ServerRecord> {
    const result = await read();
    if (result.kind === 'missing') throw new NeedsAuthError(needsAuthInfo(serverUrl, 'no_credentials'));
    if (result.kind === 'corrupt') {
      throw new NeedsAuthError(
        needsAuthInfo(serverUrl, 'store_corrupt', { errorDescription: corruptDescription(result) }),
        { cause: result.error },
      );
    }
    return result.record;
  }

  private async refreshTransaction(serverUrl: string, cause: RefreshCause): Promise<CachedToken> {
    const { store, logger } = this.deps;

    // 1. Lock-free read: the common case after another process refreshed is a plain adoption.
    //    The record's version is taken first, so a waiter's watch can tell whether it changed since.
    const hintVersion = await recordVersionOf(store, serverUrl);
    const hint = await this.readRecord(serverUrl, () => store.read(serverUrl));
    const stored = needsAuthFromRecord(hint);
    if (stored) throw stored;
    if (detectDrift(hint) === undefined) {
      const fresh = this.adoptable(hint, cause);
      if (fresh) {
        logger.emit('debug', 'refresh.adopted', 'adopted tokens another process stored', {
          serverUrl,
          generation: hint.generation,
        });
        return this.remember(serverUrl, fresh, hint.dpop, arrivedAt(hint));
      }
    }

    // 2. Take the per-server refresh lock and re-read under it. While another process holds it,
    //    watch the record: its tokens are adopted the moment they land, without queueing on the lock.
    //    The holder's write lands before its release, and both wake this waiter: the look at the
    //    record goes first (`beforeRetry`), so waiters adopt instead of taking the lock in turn
    //    only to adopt under it. Found held at once, the lock is left alone for a while (2a:
    //    before the transaction, or when its first create finds the lock held).
    const watch = new AdoptionWatch({
      store,
      logger,
      serverUrl,
      adoptable: (record) => this.adoptable(record, cause),
      seen: hintVersion,
    });
    const adoptedWhileWaiting = (adopted: Adopted): CachedToken => {
      logger.emit('debug', 'refresh.adopted', 'adopted tokens another process stored while waiting for its lock', {
        serverUrl,
        generation: adopted.generation,
      });
      return this.remember(serverUrl, adopted.tokens, adopted.dpop, adopted.arrivedAt);
    };
    try {
      await watch.deferToHolder(false);
      const adopted = watch.adopted;
      if (adopted !== undefined) return adoptedWhileWaiting(adopted);
      return await this.lockedRefresh(serverUrl, cause, {
        signal: watch.signal,
        onHeld: () => watch.deferToHolder(true),
        onWait: () => watch.start(),
        beforeRetry: () => watch.lookInProgress(),
        onLocked: () => watch.stop(),
      });
    } catch (err) {
      // acquireLock throws the abort's reason itself: only then was the wait given up for adoption.
      if (err instanceof Adopted) return adoptedWhileWaiting(err);
      throw err;
    } finally {
      watch.stop();
      await watch.ended();
    }
  }

  /** Steps 2 to 7, under the server's refresh lock. */
  private lockedRefresh(
    serverUrl: string,
    cause: RefreshCause,
    waiting: {
      signal: AbortSignal;
      onHeld: () => Promise<void>;
      onWait: () => void;
      beforeRetry: () => Promise<void> | undefined;
      onLocked: () => void;
    },
  ): Promise<CachedToken> {
    const { store, logger } = this.deps;
    return store.transaction(
      serverUrl,
      'refresh',
      async (tx) => {
        waiting.onLocked();
        const record = await this.readRecord(serverUrl, () => tx.read());
        const marker = needsAuthFromRecord(record);
        if (marker) throw marker;

        // 3. Drift: never send tokens that belong to another registration or issuer.
        const drift = detectDrift(record);
        if (drift) {
          const info = needsAuthInfo(serverUrl, 'drift', { errorDescription: drift.description });
          await tx.write(markNeedsAuth(record, info));
          logger.emit('warn', 'needs_auth', drift.description, { serverUrl, reason: 'drift', field: drift.field });
          throw new NeedsAuthError(info, { field: drift.field });
        }

        // 4. Another process refreshed while we waited for the lock: adopt, do not spend the token again.
        const fresh = this.adoptable(record, cause);
        if (fresh) {
          logger.emit('debug', 'refresh.adopted', 'adopted tokens refreshed under the lock by another process', {
            serverUrl,
            generation: record.generation,
          });
          return this.remember(serverUrl, fresh, record.dpop, arrivedAt(record));
        }

        // A machine grant (machine-grant.ts): the next token comes from the grant, not a refresh token.
        if (record.grant !== undefined) {
          const machine = { ...record, grant: record.grant };
          const next = await this.refreshWithRetry(
            record,
            record.tokens,
            (sentAt, bound) =>
              nextMachineToken(
                machine,
                { ...this.deps.http(record), ...bound },
                sentAt,
                this.deps.secretReader,
                this.deps.idpSessions,
              ),
            async (info) => {
              await tx.write(markNeedsAuth(record, info));
            },
            tx,
          );
          if (next === 'unreachable-but-valid')
            return this.serveUntilExpiry(serverUrl, record.tokens as Tokens, undefined);
          const written = await tx.write(next);
          logger.emit('info', 'refresh.ok', `obtained a new access token (${record.grant.type})`, {
            serverUrl,
            generation: written.generation,
            grant: record.grant.type,
            resource: written.resource,
            ...(written.tokens ? { obtainedAt: written.tokens.obtainedAt } : {}),
          });
          // Bearer tokens: a machine grant's requests carry no DPoP proof (its record holds no key).
          return this.remember(serverUrl, next.tokens as Tokens, undefined, next.lastRefreshAt);
        }

        const tokens = record.tokens;
        if (!tokens) throw new NeedsAuthError(needsAuthInfo(serverUrl, 'no_credentials'));
        if (!tokens.refreshToken) {
          if (cause.kind === 'due' && isUnexpired(tokens, this.clock.now())) {
            // Nothing to refresh with; serve the token until it expires, then needs-auth `expired`.
            const entry = this.remember(serverUrl, tokens, record.dpop);
            entry.refreshAt = tokens.expiresAt ?? entry.refreshAt;
            return entry;
          }
          const info = needsAuthInfo(serverUrl, cause.kind === 'rejected' ? 'revoked' : 'expired');
          await tx.write(markNeedsAuth(record, info));
          throw new NeedsAuthError(info);
        }

        // 5. A registration whose client secret expired is refused by the AS (RFC 7591 section
        // 3.2.1): no doomed refresh; it is dropped and the next sign-in registers again.
        const { registration } = record;
        if (clientSecretExpired(registration, this.clock.now())) {
          const info = needsAuthInfo(serverUrl, 'client_expired', {
            errorDescription: `the secret of client ${registration.clientId} expired at ${new Date(registration.clientSecretExpiresAt ?? 0).toISOString()}`,
          });
          await tx.write(markNeedsAuth(record, info));
          await this.dropRegistration(serverUrl, registration, 'client_expired');
          throw new NeedsAuthError(info, { field: 'registration.clientSecretExpiresAt' });
        }

        // 6. Refresh, persist with compare-and-swap, then expose.
        const refreshToken = tokens.refreshToken;
        const next = await this.refreshWithRetry(
          record,
          tokens,
          async (_sentAt, bound) => {
            // RFC 9449 section 5: a DPoP-bound grant is refreshed with a proof of the same key.
            const dpop = record.dpop ? await this.keyring.handle(record.dpop) : undefined;
            return refreshAccessToken(
              record.authorizationServer,
              record.registration,
              {
                refreshToken,
                // An IdP session (idp-session.ts) was signed in to for no resource server.
                ...(record.idpSession ? {} : { resource: record.resource }),
                ...(tokens.scope ? { scope: tokens.scope } : {}),
                ...(dpop ? { dpop } : {}),
              },
              spentTokenHttp(this.deps.http(record), bound),
            );
          },
          async (info) => {
            await tx.write(markNeedsAuth(record, info));
          },
          tx,
        );
        if (next === 'unreachable-but-valid') return this.serveUntilExpiry(serverUrl, tokens, record.dpop);
        const written = await tx.write(next);
        const refreshedAt = next.lastRefreshAt;
        logger.emit('info', 'refresh.ok', 'refreshed access token', {
          serverUrl,
          generation: written.generation,
          rotated: next.tokens?.refreshToken !== tokens.refreshToken,
          // When the request was dated (not a secret): what "one refresh per expiry" is judged by.
          resource: written.resource,
          ...(written.tokens ? { obtainedAt: written.tokens.obtainedAt } : {}),
        });
        // 7. Expose only what is persisted.
        return this.remember(serverUrl, next.tokens as Tokens, next.dpop, refreshedAt);
      },
      {
        ...(this.deps.lockTimeoutMs === undefined ? {} : { timeoutMs: this.deps.lockTimeoutMs }),
        signal: waiting.signal,
        beforeRetry: waiting.beforeRetry,
        onHeld: waiting.onHeld,
        onWait: (holder) => {
          logger.emit('debug', 'refresh.waiting', 'waiting for another process refreshing this server', {
            serverUrl,
            holderPid: holder.info?.pid,
          });
          waiting.onWait();
        },
      },
    );
  }

  /** Forget a registration the AS refused or whose secret expired (the store's dropRegistration). */
  private async dropRegistration(
    serverUrl: string,
    registration: Registration,
    reason: NeedsAuthReason,
  ): Promise<void> {
    await this.deps.store.dropRegistration(registration.issuer, registration.clientId);
    this.deps.logger.emit('warn', 'registration.dropped', `dropped client registration ${registration.clientId}`, {
      serverUrl,
      issuer: registration.issuer,
      clientId: registration.clientId,
      reason,
    });
  }

  private serveUntilExpiry(serverUrl: string, tokens: Tokens, dpop: DpopKey | undefined): CachedToken {
    const entry = this.remember(serverUrl, tokens, dpop);
    // Retry the refresh soon rather than at the normal due time, but keep serving the valid token.
    const now = this.clock.now();
    entry.refreshAt = Math.min(tokens.expiresAt ?? now + 5000, now + 1000);
    return entry;
  }

  /**
   * Calls the token endpoint, retrying transient failures with backoff. invalid_grant and
   * client errors mark the record needs-auth (through `markNeedsAuth`) and throw. A transient
   * failure that outlasts the retries never forces a re-auth: it serves the current token while
   * it is valid, else throws needs-auth `as_unreachable` without persisting it.
   *
   * The refresh token is spent under the refresh lock, which waiters take over once it has been
   * held for its max hold (`lock.holdUntil`): every attempt, retries and their waits included,
   * ends before then (refreshDeadline: no request starts after it, none runs past it), so no
   * waiter presents the same refresh token while ours is still in flight. Before each request the
   * lock is checked still ours (`lock_lost` otherwise: the token is not spent).
   */
  private async refreshWithRetry(
    record: ServerRecord,
    tokens: Tokens | undefined,
    /**
     * The token request: a refresh, or a machine grant's next token (record.grant). `bound` goes
     * into its HttpOptions: the deadline before the lock's max hold.
     */
    request: (sentAt: number, bound: Pick<HttpOptions, 'deadline'>) => Promise<TokenSet>,
    markNeedsAuth: (info: NeedsAuthInfo) => Promise<void>,
    lock: { holdUntil?: number | undefined; assertLockHeld?(): Promise<void> } = {},
  ): Promise<ServerRecord | 'unreachable-but-valid'> {
    const { serverUrl } = record;
    const deadline = refreshDeadline(lock.holdUntil);
    const bound: Pick<HttpOptions, 'deadline'> = deadline === undefined ? {} : { deadline };
    for (let attempt = 0; ; attempt++) {
      let response: TokenSet;
      await lock.assertLockHeld?.();
      const sentAt = this.clock.now();
      try {
        response = await request(sentAt, bound);
      } catch (err) {
        if (!(err instanceof TokenEndpointError)) throw err;
        if (err.kind === 'transient') {
          const delay = this.retryDelays[attempt];
          // A retry that could not finish before the deadline is not started.
          if (delay !== undefined && (deadline === undefined || Date.now() + delay < deadline)) {
            this.deps.logger.emit('warn', 'refresh.retry', `token endpoint unavailable, retrying in ${delay} ms`, {
              serverUrl,
              status: err.status,
              error: err.oauthError,
            });
            await sleep(delay);
            continue;
          }
          if (tokens !== undefined && isUnexpired(tokens, this.clock.now())) return 'unreachable-but-valid';
          throw new NeedsAuthError(
            needsAuthInfo(serverUrl, 'as_unreachable', {
              issuer: record.authorizationServer.issuer,
              error: err.oauthError,
              errorDescription: err.message,
              request: err.request,
              ...(err.step ? { step: err.step } : {}),
            }),
            { cause: err },
          );
        }
        if (err.kind === 'malformed') {
          // Bad input leaves stored state untouched: the record keeps its tokens and no marker is
          // written. If the AS did rotate the token before answering garbage, the next attempt
          // gets invalid_grant, which is then recorded with its reason.
          const info = needsAuthInfo(serverUrl, 'malformed_response', {
            errorDescription: err.message,
            request: err.request,
            ...(err.step ? { step: err.step } : {}),
          });
          this.deps.logger.emit('warn', 'needs_auth', `refresh answer unusable: ${err.field ?? 'body'}`, {
            serverUrl,
            reason: 'malformed_response',
            field: err.field,
            request: err.request,
          });
          throw new NeedsAuthError(info, { cause: err, ...(err.field ? { field: err.field } : {}) });
        }
        const reason: NeedsAuthReason = err.needsAuthReason ?? 'as_error';
        const info = needsAuthInfo(serverUrl, reason, {
          error: err.oauthError,
          errorDescription: err.oauthErrorDescription,
          request: err.request,
          ...(err.step ? { step: err.step } : {}),
        });
        await markNeedsAuth(info);
        // The AS refused the client itself (an AS purging idle dynamic clients): never reuse it. A
        // machine grant's client is the user's configuration: it stays, for the user to correct.
        if (reason === 'client_mismatch' && record.grant === undefined) {
          await this.dropRegistration(serverUrl, record.registration, reason);
        }
        this.deps.logger.emit('warn', 'needs_auth', `refresh failed: ${reason}`, {
          serverUrl,
          reason,
          error: err.oauthError,
          request: err.request,
        });
        throw new NeedsAuthError(info, { cause: err });
      }
      const now = this.clock.now();
      // Stamped with the record's registration; the old refresh token stays when none came back.
      // A machine grant's tokens replace the old ones whole (it has no refresh token to keep).
      const nextTokens = stampTokens(response, {
        registration: record.registration,
        sentAt,
        receivedAt: now,
        ...(record.grant === undefined && tokens ? { previous: tokens } : {}),
        requestedScope: record.grant === undefined ? tokens?.scope : record.grant.scope,
      });
      const { needsAuth: _cleared, ...rest } = record;
      return { ...rest, tokens: nextTokens, lastRefreshAt: now, updatedAt: new Date(now).toISOString() };
    }
  }
}

function accessTokenOf(credential: Credential): string {
  return credential.accessToken;
}

/**
 * The record with a needs-auth marker; tokens the AS refused are dropped, the registration kept.
 * The marker is printed again by `status`, so the AS's words are stored made safe to print.
 */
export function markNeedsAuth(record: ServerRecord, raw: NeedsAuthInfo): ServerRecord {
  const info = displayNeedsAuthInfo(raw);
  const keepTokens = info.reason === 'malformed_response' || info.reason === 'as_unreachable';
  const { tokens, ...rest } = record;
  return {
    ...rest,
    ...(keepTokens && tokens ? { tokens } : {}),
    needsAuth: {
      reason: info.reason,
      at: info.at,
      ...(info.error ? { error: info.error } : {}),
      ...(info.errorDescription ? { errorDescription: info.errorDescription } : {}),
      ...(info.request ? { request: info.request } : {}),
      ...(info.step ? { step: info.step } : {}),
    },
    updatedAt: new Date().toISOString(),
  };
}
