/**
 * Compressed time for the arena: by default 1 simulated hour = 1 real second, so a simulated day
 * is 24 s. The authorization server's lifetimes are the field report's, compressed: access
 * tokens 1 hour, refresh tokens 15 days sliding (renewed on every rotation), grants 30 days
 * absolute.
 *
 * For: the arena's runner and report. Not for: the library (it never knows time is compressed;
 * the AS simply issues 1-second tokens).
 */
export interface TimeScale {
  /** Real seconds per simulated hour (a positive integer: the AS's TTLs are whole seconds). */
  secondsPerHour: number;
  hourMs: number;
  dayMs: number;
  accessTokenTtlSeconds: number;
  refreshTokenTtlSeconds: number;
  grantTtlSeconds: number;
}

export const ACCESS_TOKEN_HOURS = 1;
export const REFRESH_TOKEN_DAYS = 15;
export const GRANT_DAYS = 30;

export function timeScale(secondsPerHour = 1): TimeScale {
  if (!Number.isSafeInteger(secondsPerHour) || secondsPerHour < 1) {
    throw new RangeError('seconds per simulated hour must be a positive integer');
  }
  const hourMs = secondsPerHour * 1000;
  return {
    secondsPerHour,
    hourMs,
    dayMs: 24 * hourMs,
    accessTokenTtlSeconds: ACCESS_TOKEN_HOURS * secondsPerHour,
    refreshTokenTtlSeconds: REFRESH_TOKEN_DAYS * 24 * secondsPerHour,
    grantTtlSeconds: GRANT_DAYS * 24 * secondsPerHour,
  };
}

/** Simulated days -> real milliseconds. */
export function daysToMs(days: number, scale: TimeScale): number {
  return Math.round(days * scale.dayMs);
}
