/**
 * sign-in-gate: how the SDK adapter and the proxy start an interactive sign-in on a request's
 * behalf. One at a time (callers share the running one; one with a wider scope runs after it), and
 * after a failure (the user closed the tab, the AS refused) the same failure is reported for a
 * cool-down instead of opening a new browser tab for every queued request.
 *
 * Not for: coordinating sign-ins across processes (session/sign-in-coordinator.ts does that).
 */
import type { NeedsAuthReason } from '../errors.js';

/**
 * Needs-auth reasons a sign-in cures. Not: `as_unreachable` (the AS is down; signing in would fail
 * too) and `login_failed` (another process's sign-in just failed; its reason is reported).
 */
export const CURABLE: ReadonlySet<NeedsAuthReason> = new Set<NeedsAuthReason>([
  'no_credentials',
  'invalid_grant',
  'client_mismatch',
  'drift',
  'revoked',
  'expired',
  'issuer_changed',
  'malformed_response',
  'insufficient_scope',
  'store_corrupt',
]);
export class SignInGate {
  private running: Promise<void> | undefined;
  private failure: { at: number; error: unknown } | undefined;

  constructor(
    private readonly run: (scope: string | undefined) => Promise<void>,
    private readonly coolDownMs = 30_000,
  ) {}

  signIn(scope?: string): Promise<void> {
    if (this.failure && Date.now() - this.failure.at < this.coolDownMs) return Promise.reject(this.failure.error);
    if (this.running && scope === undefined) return this.running;
    const flight = (this.running ?? Promise.resolve())
      .catch(() => undefined)
      .then(() => this.run(scope))
      .then(
        () => {
          this.failure = undefined;
        },
        (error: unknown) => {
          this.failure = { at: Date.now(), error };
          throw error;
        },
      )
      .finally(() => {
        if (this.running === flight) this.running = undefined;
      });
    this.running = flight;
    return flight;
  }
}
