/**
 * refresh-policy: when a cached access token stops being served and a refresh starts. The skew
 * scales with the token's lifetime, so 2-second test tokens and 1-hour real tokens both refresh
 * ahead of expiry without refreshing constantly: a quarter of the lifetime, at most 5 minutes, at
 * least 50 ms, minus up to 10% jitter per process so processes do not all arrive at the lock at
 * the same millisecond.
 *
 * Not for: the refresh itself (see token-manager.ts).
 */
import type { Tokens } from '../store/record.js';

const MAX_SKEW_MS = 5 * 60_000;
const MIN_SKEW_MS = 50;
/** Tokens without expires_in are re-validated by the server (a 401 triggers refresh); serve them this long. */
const NO_EXPIRY_SERVE_MS = 60 * 60_000;

/** The instant after which `tokens` should be refreshed rather than served. */
export function refreshDueAt(tokens: Pick<Tokens, 'expiresAt' | 'obtainedAt'>, jitter = Math.random()): number {
  if (tokens.expiresAt === undefined) return tokens.obtainedAt + NO_EXPIRY_SERVE_MS;
  const lifetime = Math.max(0, tokens.expiresAt - tokens.obtainedAt);
  const skew = Math.min(MAX_SKEW_MS, Math.max(MIN_SKEW_MS, lifetime / 4));
  return tokens.expiresAt - skew * (1 + 0.1 * jitter);
}

/** True while the access token can still be presented (it has not expired). */
export function isUnexpired(tokens: Pick<Tokens, 'expiresAt'>, now = Date.now()): boolean {
  return tokens.expiresAt === undefined || now < tokens.expiresAt;
}
