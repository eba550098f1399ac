/**
 * sign-in-coordinator: when several processes, or several calls in one process, need an
 * interactive sign-in for the same server at once (every agent session starting together after a
 * revocation), exactly one runs the flow and opens one browser tab; the others wait, bounded and
 * saying so, then adopt the stored result. A failed or abandoned sign-in releases the waiters
 * with its reason.
 *
 * How: one shared promise per server in-process; across processes the server's `login` lock.
 * A process that gets the lock re-reads the record: tokens obtained after it started waiting mean
 * another process signed in, so it adopts them. The leader's outcome (ok or failed, with reason)
 * is written next to the record; a waiter that finds a failure newer than its own start throws
 * that failure instead of opening yet another tab.
 *
 * Not for: the flow itself (sign-in.ts).
 */
import { isAuthkeepError, NeedsAuthError } from '../errors.js';
import { scopeCovers } from '../oauth/scope.js';
import type { CredentialStore } from '../store/credential-store.js';
import type { ServerRecord } from '../store/record.js';
import type { DiscoveredServer } from './discover-server.js';
import { detectDrift } from './drift.js';
import type { Logger } from './log.js';
import { recordFromSignIn, type SignInResult } from './sign-in.js';
import { needsAuthInfo } from './token-manager.js';

export interface LoginOutcome {
  status: 'ok' | 'failed';
  at: number;
  pid: number;
  code?: string;
  message?: string;
}

export interface SignInCoordinatorDeps {
  store: CredentialStore;
  logger: Logger;
  lockTimeoutMs: number;
  /**
   * How long a sign-in may hold the login lock before waiters take it over: longer than the
   * sign-in's own timeout, so a slow human is never overtaken by a second tab (the store's
   * default, 10 minutes, when unset).
   */
  maxHoldMs?: number;
}

export class SignInCoordinator {
  private readonly inflight = new Map<string, Promise<ServerRecord>>();

  constructor(private readonly deps: SignInCoordinatorDeps) {}

  /**
   * Sign in to `server.serverUrl` unless another process or call does it first.
   * `run` performs the interactive flow given the record as it is under the lock.
   */
  signIn(
    server: DiscoveredServer,
    scope: string | undefined,
    run: (current: ServerRecord | undefined) => Promise<SignInResult>,
    requestedAt: number = Date.now(),
  ): Promise<ServerRecord> {
    const key = server.serverUrl;
    const running = this.inflight.get(key);
    if (running !== undefined) return running;
    const flight = this.coordinate(server, scope, run, requestedAt).finally(() => this.inflight.delete(key));
    this.inflight.set(key, flight);
    return flight;
  }

  private async coordinate(
    server: DiscoveredServer,
    scope: string | undefined,
    run: (current: ServerRecord | undefined) => Promise<SignInResult>,
    /** When the caller decided it needs a sign-in: a sign-in finished after this one is adopted. */
    waitingSince: number,
  ): Promise<ServerRecord> {
    const { store, logger } = this.deps;
    const serverUrl = server.serverUrl;
    let announced = false;
    return store.transaction(
      serverUrl,
      'login',
      async (tx) => {
        const current = await tx.read();
        const record = current.kind === 'ok' ? current.record : undefined;
        const outcome = await store.readLoginOutcome(serverUrl);
        // A sign-in finished after the caller decided it needs one: we waited for its holder, or
        // its outcome (written by sign-ins only, never by a refresh) is newer than our decision.
        const anotherFinished = announced || (outcome?.status === 'ok' && outcome.at >= waitingSince);

        // Another process signed in while we waited: adopt its result, open no tab.
        if (record && signedInSince(record, server, scope, waitingSince, anotherFinished)) {
          logger.emit('info', 'login.adopted', 'adopted a sign-in completed by another process', { serverUrl });
          return record;
        }
        // Another process's sign-in failed while we waited: release with its reason.
        if (outcome && outcome.status === 'failed' && outcome.at >= waitingSince && outcome.pid !== process.pid) {
          throw new NeedsAuthError(
            needsAuthInfo(serverUrl, 'login_failed', {
              error: outcome.code,
              errorDescription: `the sign-in run by process ${outcome.pid} failed: ${outcome.message ?? 'unknown error'}`,
            }),
          );
        }

        try {
          const result = await run(record);
          const written = await tx.write(recordFromSignIn(server, result, record));
          await store.writeLoginOutcome(serverUrl, { status: 'ok', at: Date.now(), pid: process.pid });
          logger.emit('info', 'login.ok', 'signed in', {
            serverUrl,
            issuer: result.registration.issuer,
            clientId: result.registration.clientId,
            registration: result.registration.method,
          });
          return written;
        } catch (err) {
          const code = isAuthkeepError(err) ? err.code : 'unexpected';
          const message = err instanceof Error ? err.message : String(err);
          await store.writeLoginOutcome(serverUrl, {
            status: 'failed',
            at: Date.now(),
            pid: process.pid,
            code,
            message,
          });
          logger.emit('warn', 'login.failed', `sign-in failed: ${message}`, { serverUrl, code });
          throw err;
        }
      },
      {
        timeoutMs: this.deps.lockTimeoutMs,
        ...(this.deps.maxHoldMs !== undefined ? { maxHoldMs: this.deps.maxHoldMs } : {}),
        onWait: (holder) => {
          if (announced) return;
          announced = true;
          logger.emit(
            'info',
            'login.waiting',
            `waiting for the sign-in running in process ${holder.info?.pid ?? '?'}`,
            { serverUrl },
          );
        },
      },
    );
  }
}

/**
 * True when `record` holds usable tokens obtained by a sign-in that finished after `since`. When
 * another sign-in finished after `since` (the caller waited for the login lock's holder, or the
 * stored sign-in outcome is newer than `since`), tokens that landed (were written) after `since`
 * count too though their request left before it: a sign-in with no browser (a machine grant) is
 * nothing but its token request, so processes starting together would otherwise each find the
 * leader's tokens "older" than their own start and run the grant again. A refresh alone never
 * counts: it writes no sign-in outcome, so a sign-in the user asked for is not skipped for it.
 */
function signedInSince(
  record: ServerRecord,
  server: DiscoveredServer,
  scope: string | undefined,
  since: number,
  anotherFinished: boolean,
): boolean {
  const tokens = record.tokens;
  if (!tokens || record.needsAuth || detectDrift(record)) return false;
  if (record.authorizationServer.issuer !== server.authorizationServer.issuer) return false;
  const landedAt = anotherFinished ? Date.parse(record.updatedAt) : Number.NaN;
  if (tokens.obtainedAt < since && !(landedAt >= since)) return false;
  return scopeCovers(tokens.scope, scope);
}
