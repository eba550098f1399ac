/**
 * sign-in-gate: how an interactive sign-in is started on a request's behalf, by the keeper's
 * authenticated fetch (step-up on 403 insufficient_scope), the SDK adapter and the proxy. One at a
 * time (callers share the running one; one with a wider scope runs after it); after a failure (the
 * user closed the tab, the AS refused) the same failure is reported for a cool-down instead of
 * opening a new browser tab for every queued request; and step-ups (sign-ins asking for a scope)
 * are bounded per server by a budget over a window, so a server that demands a new scope on every
 * request cannot open a tab per request.
 *
 * Not for: coordinating sign-ins across processes (sign-in-coordinator.ts does that).
 */
import { AuthkeepError, type NeedsAuthReason } from '../errors.js';

/**
 * Needs-auth reasons a sign-in cures. Not: `as_unreachable` (the AS is down; signing in would fail
 * too) and `login_failed` (another process's sign-in just failed; its reason is reported).
 */
export const CURABLE: ReadonlySet<NeedsAuthReason> = new Set<NeedsAuthReason>([
  'no_credentials',
  'invalid_grant',
  'client_mismatch',
  'client_expired',
  'drift',
  'revoked',
  'expired',
  'issuer_changed',
  'malformed_response',
  'insufficient_scope',
  'store_corrupt',
]);

export interface SignInGateOptions {
  /** How long a failed sign-in's error is reported instead of starting another. Default 30 s. */
  coolDownMs?: number;
  /** Step-ups (sign-ins with a scope) allowed per window. Default 3 per 10 minutes. */
  stepUpBudget?: { max: number; windowMs: number };
  /** Default Date.now. */
  now?: () => number;
}

export const DEFAULT_STEP_UP_BUDGET = { max: 3, windowMs: 10 * 60_000 };

export class SignInGate {
  private running: Promise<void> | undefined;
  private failure: { at: number; error: unknown } | undefined;
  /** When the step-ups of the current window started. */
  private stepUps: number[] = [];
  private readonly coolDownMs: number;
  private readonly budget: { max: number; windowMs: number };
  private readonly now: () => number;

  constructor(
    private readonly run: (scope: string | undefined) => Promise<void>,
    options: SignInGateOptions = {},
  ) {
    this.coolDownMs = options.coolDownMs ?? 30_000;
    this.budget = options.stepUpBudget ?? DEFAULT_STEP_UP_BUDGET;
    this.now = options.now ?? Date.now;
  }

  /** A sign-in, or with `scope` a step-up to it; throws `step_up_exhausted` once the budget is spent. */
  signIn(scope?: string): Promise<void> {
    const now = this.now();
    if (this.failure && now - this.failure.at < this.coolDownMs) return Promise.reject(this.failure.error);
    if (this.running && scope === undefined) return this.running;
    if (scope !== undefined) {
      this.stepUps = this.stepUps.filter((at) => now - at < this.budget.windowMs);
      if (this.stepUps.length >= this.budget.max) {
        return Promise.reject(
          new AuthkeepError(
            'step_up_exhausted',
            `${this.stepUps.length} re-authorizations for more scope within ${Math.round(this.budget.windowMs / 60_000)} min; not opening another (the server asked for "${scope}")`,
            { field: 'scope', detail: { demanded: scope, budget: this.budget.max } },
          ),
        );
      }
      this.stepUps.push(now);
    }
    const flight = (this.running ?? Promise.resolve())
      .catch(() => undefined)
      .then(() => this.run(scope))
      .then(
        () => {
          this.failure = undefined;
        },
        (error: unknown) => {
          this.failure = { at: this.now(), error };
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
