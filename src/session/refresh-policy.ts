/**
 * refresh-policy: when a cached access token stops being served and a refresh starts. The skew
 * scales with the token's lifetime, so 2-second test tokens and 1-hour real tokens both refresh
 * ahead of expiry without refreshing constantly: a quarter of the lifetime, at most 5 minutes, at
 * least 50 ms, minus up to 10% jitter per process so processes do not all arrive at the lock at
 * the same millisecond. A token is never served past its due instant, with one exception: a
 * token issued to live implausibly short (expires_in 0, an `exp` a moment after the request) is
 * served for MIN_REFRESH_INTERVAL_MS, so a broken or hostile AS cannot turn every call into a
 * refresh. A token that is due when it arrives because the answer was slow is served only while
 * valid (see refreshDueAt).
 *
 * Not for: the refresh itself (see token-manager.ts).
 */
import type { Tokens } from '../store/record.js';

const MAX_SKEW_MS = 5 * 60_000;
const MIN_SKEW_MS = 50;
/** Tokens without expires_in are re-validated by the server (a 401 triggers refresh); serve them this long. */
const NO_EXPIRY_SERVE_MS = 60 * 60_000;
/**
 * A token already due when it arrived is served this long after it arrived, so a broken or
 * hostile AS whose tokens are due at once cannot turn every call into a refresh (the resource
 * server's 401 is then the judge). Every other token is due before it expires, however short.
 */
export const MIN_REFRESH_INTERVAL_MS = 1_000;
/**
 * How far a JWT `exp` may sit from what expires_in says and still be believed: expires_in has
 * one-second granularity and servers truncate the issue time, and clocks differ a little. Beyond
 * this (a skewed clock, a broken AS) `exp` is ignored and expires_in, which is relative, rules.
 */
const EXP_TOLERANCE = { min: 2_000, max: 60_000, share: 0.25 };

/**
 * When to refresh. `on-demand` (the default) refreshes when a call needs a token in the last
 * quarter of its lifetime: early enough that a call arriving a little later still finds a valid
 * token. `keep-fresh` refreshes from a timer just before expiry (1.5% of the lifetime, at most
 * 2 minutes, at least 20 ms), whether or not a call needs it: the token is always valid, one
 * refresh per lifetime per server machine-wide, and the refresh token's sliding window never
 * lapses while the process runs. For long-lived agent sessions.
 */
export type RefreshMode = 'on-demand' | 'keep-fresh';

const KEEP_FRESH = { share: 0.015, min: 20, max: 2 * 60_000 };

/**
 * The instant after which `tokens` should be refreshed rather than served: before they expire,
 * or, for tokens already due when they arrived at `notBefore` (default: when they were obtained;
 * a refresh's answer arrives later than that), MIN_REFRESH_INTERVAL_MS after their arrival.
 */
export function refreshDueAt(
  tokens: Pick<Tokens, 'expiresAt' | 'obtainedAt'>,
  jitter = Math.random(),
  mode: RefreshMode = 'on-demand',
  notBefore: number = tokens.obtainedAt,
): number {
  if (tokens.expiresAt === undefined) return tokens.obtainedAt + NO_EXPIRY_SERVE_MS;
  const lifetime = Math.max(0, tokens.expiresAt - tokens.obtainedAt);
  const skew =
    mode === 'keep-fresh'
      ? Math.min(KEEP_FRESH.max, Math.max(KEEP_FRESH.min, lifetime * KEEP_FRESH.share))
      : Math.min(MAX_SKEW_MS, Math.max(MIN_SKEW_MS, lifetime / 4));
  const due = tokens.expiresAt - skew * (1 + 0.1 * jitter);
  const arrived = Math.max(tokens.obtainedAt, notBefore);
  if (due > arrived) return due;
  // Due when it arrived. A token issued to live under half the minimum interval (expires_in 0, an
  // `exp` a moment after the request) says more about the AS than about the token: it is served
  // for the minimum interval. Any other (a slow answer on a busy machine) is served while it is
  // valid, at most the minimum interval, and never once expired: the next call refreshes, paced
  // by that slow AS's own round trip (over three quarters of a lifetime of at least 500 ms).
  if (tokens.expiresAt - tokens.obtainedAt < MIN_REFRESH_INTERVAL_MS / 2) return arrived + MIN_REFRESH_INTERVAL_MS;
  return Math.min(arrived + MIN_REFRESH_INTERVAL_MS, tokens.expiresAt);
}

/** True while the access token can still be presented (it has not expired). */
export function isUnexpired(tokens: Pick<Tokens, 'expiresAt'>, now = Date.now()): boolean {
  return tokens.expiresAt === undefined || now < tokens.expiresAt;
}

/**
 * When an access token granted `expiresIn` seconds (RFC 6749 section 5.1) by a response to a
 * request sent at `requestSentAt` and received at `respondedAt` expires, conservatively.
 *
 * expires_in has one-second granularity and servers count it from a truncated issue time
 * (oidc-provider: exp = floor(now) + ttl), so the token can expire up to a second before
 * sentAt + expiresIn. When the access token is a JWT carrying a numeric `exp` (RFC 9068), that
 * instant is exact and the earlier of the two is used: the token stays opaque for every other
 * purpose, and `exp` can only shorten what expires_in says, never extend it. But `exp` is the
 * AS's clock, not ours: it is believed only when it is consistent, later than the response and
 * within EXP_TOLERANCE of sentAt + expiresIn. An `exp` already past (a skewed clock, a broken
 * AS) would make the token due the moment it arrives, and every call would refresh. Otherwise
 * (and for an opaque token) the second is taken off, but never more than half the lifetime.
 */
export function accessTokenExpiresAt(
  requestSentAt: number,
  expiresIn: number,
  accessToken?: string,
  respondedAt: number = requestSentAt,
): number {
  const lifetimeMs = expiresIn * 1000;
  const byExpiresIn = requestSentAt + lifetimeMs;
  const exp = accessToken === undefined ? undefined : jwtExpiry(accessToken);
  if (exp !== undefined && expConsistent(exp, byExpiresIn, lifetimeMs, respondedAt)) return Math.min(byExpiresIn, exp);
  return byExpiresIn - Math.min(1000, lifetimeMs / 2);
}

function expConsistent(exp: number, byExpiresIn: number, lifetimeMs: number, respondedAt: number): boolean {
  const tolerance = Math.min(EXP_TOLERANCE.max, Math.max(EXP_TOLERANCE.min, lifetimeMs * EXP_TOLERANCE.share));
  return exp > respondedAt && Math.abs(exp - byExpiresIn) <= tolerance;
}

/** The `exp` of a JWT (epoch ms), or undefined when the token is not a JWT with a numeric exp. */
function jwtExpiry(token: string): number | undefined {
  const parts = token.split('.');
  if (parts.length !== 3 || !parts[1]) return undefined;
  try {
    const payload: unknown = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
    const exp = typeof payload === 'object' && payload !== null ? (payload as { exp?: unknown }).exp : undefined;
    return typeof exp === 'number' && Number.isFinite(exp) ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}
