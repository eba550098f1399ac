/**
 * clock: the time source and the timers of the token manager, injectable so tests control time
 * (a skewed authorization server, a refresh that outlasts its timer) without sleeping.
 *
 * Not for: deciding when to refresh (refresh-policy.ts).
 */

export interface Clock {
  /** Epoch milliseconds. */
  now(): number;
  /** Run `fn` after `ms` milliseconds without keeping the process alive; returns a cancel function. */
  setTimer(fn: () => void, ms: number): () => void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer(fn, ms) {
    const timer = setTimeout(fn, Math.max(0, ms));
    timer.unref();
    return () => clearTimeout(timer);
  },
};
