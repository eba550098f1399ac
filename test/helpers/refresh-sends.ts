/**
 * refresh-sends: the instants at which refresh requests left the clients, per resource, for
 * judging "one refresh per expiry" by the clients' own clock. The authorization server's arrival
 * times add its queueing delay, which a busy machine stretches; a send instant does not depend on
 * it. A child passes `recordingFetch(sends)` as AuthKeeper's `fetch` and reports `sends` in its
 * summary (resource and time only, never a token).
 *
 * Why 750 ms: a 2 s token from oidc-provider carries exp = whole seconds + 2, so it lives at least
 * 1 s from the moment its request was sent, and a refresh starts only once a quarter of that is
 * left (refresh-policy.ts, decided under the lock with no jitter): two refreshes of one server are
 * at least 750 ms apart, whichever processes send them. Two processes refreshing for the same
 * expiry would be a lock handoff apart.
 */

export interface RefreshSend {
  /** The RFC 8707 resource of the refresh request: which server's token it refreshed. */
  resource: string;
  /** Epoch ms just before the request was handed to fetch. */
  at: number;
}

/** The smallest spacing of two refreshes of one server with 2 s tokens (see the header). */
export const MIN_REFRESH_SPACING_MS = 750;
/**
 * What the spacing of send instants may lose to the sender itself: the token manager dates a
 * refresh, then builds the request and hands it to fetch. Microseconds, unless the process is
 * descheduled right there.
 */
export const SEND_STALL_ALLOWANCE_MS = 250;

function formBody(body: unknown): URLSearchParams | undefined {
  if (body instanceof URLSearchParams) return body;
  if (typeof body === 'string') return new URLSearchParams(body);
  return undefined;
}

/** A fetch that appends every refresh_token grant request it sends to `sends`. */
export function recordingFetch(sends: RefreshSend[], inner: typeof fetch = fetch): typeof fetch {
  return (input, init) => {
    const params = formBody(init?.body);
    if (params?.get('grant_type') === 'refresh_token') {
      sends.push({ resource: params.get('resource') ?? '', at: Date.now() });
    }
    return inner(input, init);
  };
}

export interface RefreshSpacing {
  count: number;
  /** Smallest gap between two consecutive sends (Infinity with fewer than two). */
  minGapMs: number;
  /** Last send minus first send. */
  spanMs: number;
  /** The most refreshes that span allows at one per MIN_REFRESH_SPACING_MS. */
  maxCount: number;
}

/** How the refreshes of `resource` were spaced, over every process's sends. */
export function refreshSpacing(sends: RefreshSend[], resource: string): RefreshSpacing {
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
    maxCount: 1 + Math.floor((spanMs + SEND_STALL_ALLOWANCE_MS) / MIN_REFRESH_SPACING_MS),
  };
}
