/**
 * refresh-sends: when each refresh a client made was sent, per resource, by the client's own
 * clock, for judging "one refresh per expiry" exactly. A process passes `refreshLog(home, report)`
 * as AuthKeeper's `log`: on every `refresh.ok` event it reports the new tokens' `obtainedAt` (the
 * event carries it with the record's resource; a library without them: read from the record just
 * written, which the event follows, when that record is plaintext), the instant the token manager
 * dated the request just before sending it, which is what its refresh policy measures lifetimes
 * from. Not the authorization server's arrival times: they add its queueing delay, which on a
 * busy machine reaches hundreds of milliseconds; nor the moment fetch is called: a descheduled
 * process can lose as much between dating a request and handing it to fetch.
 *
 * For: the concurrency tests and the arena's sessions. Reports resource and time only, never a token.
 */
import { readFileSync } from 'node:fs';
import type { LogEvent, LogSink } from '../../src/session/log.js';
import { recordKey, storeLayout } from '../../src/store/paths.js';

export interface RefreshSend {
  /** The resource of the refreshed tokens: which server's token was refreshed. */
  resource: string;
  /** Epoch ms the request was dated (the refreshed tokens' obtainedAt). */
  at: number;
}

/**
 * The smallest spacing of two refreshes of one server with 2 s tokens refreshed on demand: exp is
 * whole seconds + 2, so a token lives at least 1 s from the moment its request was dated, and a
 * refresh is decided only once a quarter of that is left (refresh-policy.ts, decided under the
 * lock with no jitter), whichever processes send them. Two processes refreshing for the same
 * expiry would be a lock handoff apart.
 */
export const MIN_REFRESH_SPACING_MS = 750;

/**
 * A log sink that reports every successful refresh (then passes the event on to `next`). `home`
 * is the AuthKeeper's home: the record written by the refresh is read there.
 */
export function refreshLog(home: string, report: (send: RefreshSend) => void, next?: LogSink): LogSink {
  const layout = storeLayout(home);
  return (event: LogEvent) => {
    if (event.event === 'refresh.ok' && typeof event.resource === 'string' && typeof event.obtainedAt === 'number') {
      report({ resource: event.resource, at: event.obtainedAt });
    } else if (event.event === 'refresh.ok' && event.serverUrl !== undefined) {
      const record = JSON.parse(readFileSync(layout.recordPath(recordKey(event.serverUrl)), 'utf8')) as {
        resource: string;
        tokens: { obtainedAt: number };
      };
      report({ resource: record.resource, at: record.tokens.obtainedAt });
    }
    next?.(event);
  };
}

export interface RefreshSpacing {
  count: number;
  /** Smallest gap between two consecutive sends (Infinity with fewer than two). */
  minGapMs: number;
  /** Last send minus first send. */
  spanMs: number;
  /** The most refreshes that span allows at one per `minSpacingMs`. */
  maxCount: number;
}

/**
 * How the refreshes of `resource` were spaced, over every process's sends, and how many that span
 * allows at one per `minSpacingMs`.
 */
export function refreshSpacing(
  sends: RefreshSend[],
  resource: string,
  minSpacingMs: number = MIN_REFRESH_SPACING_MS,
): RefreshSpacing {
  const times = sends
    .filter((s) => s.resource === resource)
    .map((s) => s.at)
    .sort((a, b) => a - b);
  const gaps = times.slice(1).map((t, i) => t - (times[i] as number));
  const spanMs = times.length ? (times.at(-1) as number) - (times[0] as number) : 0;
  return {
    count: times.length,
    minGapMs: gaps.length ? Math.min(...gaps) : Number.POSITIVE_INFINITY,
    spanMs,
    maxCount: 1 + Math.floor(spanMs / minSpacingMs),
  };
}
