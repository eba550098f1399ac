/**
 * The report's figures for one variant, computed from the sessions' events (what the user saw:
 * calls, browser tabs, needs-auth) and the authorization servers' audits (what the IdP saw:
 * refreshes, reuses, revocations, malformed requests, cross-client redemptions).
 *
 * Definitions:
 *   - cold-start tabs: tabs a session opened for a server before its first successful call there;
 *     forced re-auths: tabs opened after it (the report's "re-authenticate every 2-4 days").
 *     Per server per simulated day = forced re-auths / servers / simulated days.
 *   - refresh calls per access-token expiry, per server: refresh_token grants the AS received for
 *     the server's resource, divided by the number of access-token lifetimes that elapsed, both
 *     over one window: from the server's first token (the AS's first successful token response
 *     for it, or its first successful call if earlier; not before the sessions started) to the
 *     stop. (Counting the refreshes from
 *     the sign-in but the lifetimes only from the first successful call, as this did before,
 *     inflated a client that keeps tokens fresh from the sign-in on: 1.07-1.31 on short DPoP runs,
 *     where the nonce round trips put seconds between a server's sign-in and its first call.) A client that
 *     refreshes exactly once per lifetime scores 1.00 (the physical limit with calls this dense);
 *     N processes refreshing the same expiry score up to N.
 *     With calls this dense, refreshing ahead of expiry (authkeep: at 72.5-75% of the lifetime)
 *     and the gap until the next call roughly cancel out; minimumRefreshes gives the strict bound.
 *     A machine identity on the client credentials grant (SEP-1046) has no refresh token: each of
 *     its token requests is its renewal, so they count here as refreshes do (scenario ci-workers),
 *     the first one included.
 *   - redundant refreshes: refresh calls for a server made while a token it got less than half a
 *     lifetime earlier was still fresh (another process just refreshed).
 *
 * For: report.ts and the arena test. Not for: running anything.
 */
import type { ArenaServer } from './bed.js';
import { type ChaosMetrics, chaosMetrics } from './chaos.js';
import type { Findings } from './detectors.js';
import type { TimedSessionEvent, VariantRun } from './runner.js';
import type { HttpAuditEntry } from './testbed/audit.js';

export interface ServerMetrics {
  index: number;
  name: string;
  discovery: string;
  callsOk: number;
  callsFailed: number;
  coldStartTabs: number;
  forcedReauths: number;
  refreshCalls: number;
  refreshCallsFailed: number;
  /** Token requests the AS answered `use_dpop_nonce` (retried with its nonce; not refreshes). */
  dpopNonceChallenges: number;
  expiries: number;
  /** refreshCalls / expiries, or null when the server was never in use long enough. */
  refreshPerExpiry: number | null;
  /**
   * The fewest refreshes any client could have made for the same calls: one whenever a call
   * comes after the last token expired (greedy interval cover). A lazy single client scores
   * refreshCalls / minimumRefreshes = 1.00; refreshing ahead of expiry costs more.
   */
  minimumRefreshes: number;
  redundantRefreshes: number;
  refreshReuses: number;
  revokedGrants: number;
  malformedAuthorize: number;
  crossClient: number;
  /** 401 answers of the MCP server (no token, or an expired / invalid one). */
  unauthorized: number;
}

export interface VariantMetrics {
  variant: string;
  sessions: number;
  servers: number;
  /** Simulated days actually run (from go to stop). */
  days: number;
  callsOk: number;
  callsFailed: number;
  coldStartTabs: number;
  forcedReauths: number;
  forcedReauthsPerServerDay: number;
  /** Mean over servers with a ratio; min and max too. */
  refreshPerExpiry: { mean: number | null; min: number | null; max: number | null };
  redundantRefreshes: number;
  refreshCalls: number;
  /** Sum over servers of the fewest refreshes any client could have made for the same calls. */
  minimumRefreshes: number;
  /** 401 answers of the MCP servers. */
  unauthorized: number;
  refreshReuses: number;
  revokedGrants: number;
  revokedByReuse: number;
  malformedAuthorize: number;
  crossClient: number;
  needsAuthWithReason: number;
  needsAuthWithoutReason: number;
  /** Reason -> count, for the needs-auth events that had one. */
  needsAuthReasons: Record<string, number>;
  loginsFailed: number;
  tabsStuck: number;
  registrations: number;
  authorizeRequests: number;
  codeExchanges: number;
  /** Client credentials token requests (machine identities, scenario ci-workers). */
  clientCredentialsRequests: number;
  /** Token-endpoint refusals by the AS's private error_detail (e.g. `client mismatch`). */
  tokenErrors: Record<string, number>;
  /** The most frequent failed-call errors (message -> count), top 8. */
  topErrors: Array<{ error: string; count: number }>;
  perServer: ServerMetrics[];
  sessionErrors: string[];
  /** Scenario chaos: what was injected, the chains lost and why, the loss window (chaos.ts). */
  chaos?: ChaosMetrics;
}

export function computeMetrics(run: VariantRun): VariantMetrics {
  const ttlMs = run.scale.accessTokenTtlSeconds * 1000;
  const events = run.events.filter((e) => e.event.t <= run.stoppedAt + 60_000);
  const firstOk = new Map<string, number>();
  for (const { session, event } of events) {
    if (event.type !== 'call' || !event.ok) continue;
    const key = `${session}:${event.server}`;
    if (!firstOk.has(key) || (firstOk.get(key) as number) > event.t) firstOk.set(key, event.t);
  }
  const tabClass = (e: TimedSessionEvent): 'cold' | 'forced' => {
    const first = firstOk.get(`${e.session}:${e.event.server}`);
    return first !== undefined && e.event.t >= first ? 'forced' : 'cold';
  };

  const http = run.audits.flatMap((a) => a.entries.filter((e): e is HttpAuditEntry => e.kind === 'http'));
  const perServer = run.servers.map((server) => serverMetrics(server, run, events, tabClass, http, ttlMs));

  const calls = events.filter((e) => e.event.type === 'call');
  const tabs = events.filter((e) => e.event.type === 'tab');
  const needs = events
    .map((e) => e.event)
    .filter((e): e is Extract<TimedSessionEvent['event'], { type: 'needs_auth' }> => e.type === 'needs_auth');
  const reasons: Record<string, number> = {};
  for (const n of needs) if (n.reason) reasons[n.reason] = (reasons[n.reason] ?? 0) + 1;
  const errors = new Map<string, number>();
  for (const { event } of calls) {
    if (event.type === 'call' && !event.ok) {
      const key = normaliseError(event.error ?? 'unknown');
      errors.set(key, (errors.get(key) ?? 0) + 1);
    }
  }
  const days = (run.stoppedAt - run.startedAt) / run.scale.dayMs;
  const forced = tabs.filter((e) => tabClass(e) === 'forced').length;
  const ratios = perServer.map((s) => s.refreshPerExpiry).filter((r): r is number => r !== null);
  const f: Findings = run.findings;
  const chaos = chaosMetrics(run);
  return {
    variant: run.column ?? run.variant,
    sessions: run.sessions,
    servers: run.servers.length,
    days,
    callsOk: calls.filter((e) => e.event.type === 'call' && e.event.ok).length,
    callsFailed: calls.filter((e) => e.event.type === 'call' && !e.event.ok).length,
    coldStartTabs: tabs.length - forced,
    forcedReauths: forced,
    forcedReauthsPerServerDay: days > 0 ? forced / run.servers.length / days : 0,
    refreshPerExpiry: {
      mean: ratios.length ? ratios.reduce((a, b) => a + b, 0) / ratios.length : null,
      min: ratios.length ? Math.min(...ratios) : null,
      max: ratios.length ? Math.max(...ratios) : null,
    },
    redundantRefreshes: perServer.reduce((a, s) => a + s.redundantRefreshes, 0),
    refreshCalls: perServer.reduce((a, s) => a + s.refreshCalls, 0),
    minimumRefreshes: perServer.reduce((a, s) => a + s.minimumRefreshes, 0),
    unauthorized: perServer.reduce((a, s) => a + s.unauthorized, 0),
    refreshReuses: f.refreshReuses.length,
    revokedGrants: f.revokedGrants.length,
    revokedByReuse: f.revokedGrants.filter((r) => r.cause === 'refresh_reuse').length,
    malformedAuthorize: f.malformed.length,
    crossClient: f.crossClient.length,
    needsAuthWithReason: needs.filter((n) => n.reason).length,
    needsAuthWithoutReason: needs.filter((n) => !n.reason).length,
    needsAuthReasons: reasons,
    loginsFailed: events.filter((e) => e.event.type === 'login' && !e.event.ok).length,
    tabsStuck: events.filter((e) => e.event.type === 'tab_stuck').length,
    registrations: http.filter((e) => e.endpoint === 'registration' && e.method === 'POST' && e.status === 201).length,
    authorizeRequests: http.filter((e) => e.endpoint === 'authorization').length,
    codeExchanges: http.filter((e) => e.endpoint === 'token' && e.grantType === 'authorization_code').length,
    clientCredentialsRequests: http.filter((e) => e.endpoint === 'token' && e.grantType === 'client_credentials')
      .length,
    tokenErrors: countBy(
      http.filter((e) => e.endpoint === 'token' && e.status !== 200),
      (e) =>
        `${e.grantType ?? 'unknown'}: ${e.error ?? `HTTP ${e.status}`}${e.errorDetail ? ` (${e.errorDetail})` : ''}`,
    ),
    topErrors: [...errors.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 8)
      .map(([error, count]) => ({ error, count })),
    perServer,
    sessionErrors: run.sessionErrors,
    ...(chaos ? { chaos } : {}),
  };
}

/** The grants that renew a server's access token: a refresh, or a machine identity's next token. */
const RENEWAL_GRANTS = new Set(['refresh_token', 'client_credentials']);

function serverMetrics(
  server: ArenaServer,
  run: VariantRun,
  events: TimedSessionEvent[],
  tabClass: (e: TimedSessionEvent) => 'cold' | 'forced',
  http: HttpAuditEntry[],
  ttlMs: number,
): ServerMetrics {
  const mine = events.filter((e) => e.event.server === server.index);
  const calls = mine.filter((e) => e.event.type === 'call');
  const okTimes = calls.filter((e) => e.event.type === 'call' && e.event.ok).map((e) => e.event.t);
  const tabs = mine.filter((e) => e.event.type === 'tab');
  const tokenEntries = http
    .filter((e) => e.endpoint === 'token' && e.resources.includes(server.resource))
    .sort((a, b) => a.time - b.time);
  // A DPoP nonce challenge (RFC 9449 section 8: 400 use_dpop_nonce, nothing spent) is half of one
  // refresh's round trip, not a refresh: counted apart.
  const nonceChallenge = (e: HttpAuditEntry): boolean => e.error === 'use_dpop_nonce';
  const renewals = tokenEntries.filter((e) => RENEWAL_GRANTS.has(e.grantType ?? '') && !nonceChallenge(e));

  // Access-token lifetimes elapsed from the server's first token to the stop, and the renewals
  // in that same window.
  let expiries = 0;
  let minimumRefreshes = 0;
  let windowStart = Number.POSITIVE_INFINITY;
  if (okTimes.length) {
    const first = Math.min(...okTimes);
    const firstToken = tokenEntries.find((e) => e.status === 200)?.time ?? first;
    // Not before the sessions started: lifetimes that ended while no session ran (a scenario
    // that signs in before the run) are no client's to renew.
    windowStart = Math.max(run.startedAt, Math.min(first, firstToken));
    expiries = Math.floor((run.stoppedAt - windowStart) / ttlMs);
    let coveredUntil = first + ttlMs;
    for (const t of calls
      .map((e) => e.event.t)
      .filter((t) => t > first)
      .sort((a, b) => a - b)) {
      if (t >= coveredUntil) {
        minimumRefreshes++;
        coveredUntil = t + ttlMs;
      }
    }
  }

  const refreshes = renewals.filter((e) => e.time > windowStart && e.time <= run.stoppedAt);

  // Redundant: a refresh while a token obtained < half a lifetime ago was fresh.
  let redundant = 0;
  let lastIssued = -Infinity;
  for (const entry of tokenEntries) {
    if (nonceChallenge(entry)) continue;
    if (RENEWAL_GRANTS.has(entry.grantType ?? '') && entry.time - lastIssued < ttlMs / 2) redundant++;
    if (entry.status === 200) lastIssued = entry.time;
  }

  const about = (resources: string[]): boolean => resources.includes(server.resource);
  const f = run.findings;
  return {
    index: server.index,
    name: server.name,
    discovery: server.kind.description,
    callsOk: okTimes.length,
    callsFailed: calls.length - okTimes.length,
    coldStartTabs: tabs.filter((e) => tabClass(e) === 'cold').length,
    forcedReauths: tabs.filter((e) => tabClass(e) === 'forced').length,
    refreshCalls: refreshes.length,
    refreshCallsFailed: refreshes.filter((e) => e.status !== 200).length,
    dpopNonceChallenges: tokenEntries.filter(nonceChallenge).length,
    expiries,
    refreshPerExpiry: expiries > 0 ? refreshes.length / expiries : null,
    minimumRefreshes,
    redundantRefreshes: redundant,
    refreshReuses: f.refreshReuses.filter((r) => about(r.resources)).length,
    revokedGrants: f.revokedGrants.filter((r) => about(r.resources)).length,
    malformedAuthorize: f.malformed.filter((r) => about(r.resources)).length,
    crossClient: f.crossClient.filter((r) => about(r.resources)).length,
    unauthorized: run.mcpCounts[server.index]?.unauthorized ?? 0,
  };
}

export interface ReauthCause {
  /** Simulated days since the cold start. */
  day: number;
  server: string;
  session: number;
  /**
   * The AS's last refusal for this server within 3 s before the tab (its error and error_detail),
   * or undefined: the AS refused nothing, so the client had no usable tokens of its own accord
   * (e.g. another process had deleted them, or a file was read while being rewritten).
   */
  asRefusal?: string;
}

/** For every forced re-auth: what the AS had just refused for that server, if anything. */
export function explainReauths(run: VariantRun): ReauthCause[] {
  const firstOk = new Map<string, number>();
  for (const { session, event } of run.events) {
    if (event.type !== 'call' || !event.ok) continue;
    const key = `${session}:${event.server}`;
    if (!firstOk.has(key) || (firstOk.get(key) as number) > event.t) firstOk.set(key, event.t);
  }
  const http = run.audits.flatMap((a) => a.entries.filter((e): e is HttpAuditEntry => e.kind === 'http'));
  const causes: ReauthCause[] = [];
  for (const { session, event } of run.events) {
    if (event.type !== 'tab') continue;
    const first = firstOk.get(`${session}:${event.server}`);
    if (first === undefined || event.t < first) continue;
    const server = run.servers.find((s) => s.index === event.server);
    const refusal = http
      .filter(
        (e) =>
          e.endpoint === 'token' &&
          e.status !== 200 &&
          e.time <= event.t &&
          e.time >= event.t - 3000 &&
          server &&
          e.resources.includes(server.resource),
      )
      .sort((a, b) => b.time - a.time)[0];
    causes.push({
      day: (event.t - run.startedAt) / run.scale.dayMs,
      server: server?.name ?? String(event.server),
      session,
      ...(refusal
        ? {
            asRefusal: `${refusal.grantType}: ${refusal.error ?? refusal.status}${refusal.errorDetail ? ` (${refusal.errorDetail})` : ''}`,
          }
        : {}),
    });
  }
  return causes.sort((a, b) => a.day - b.day);
}

function countBy<T>(list: T[], key: (item: T) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const item of list) {
    const k = key(item);
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}

/** Strip ports, ids and numbers so equal errors group together. */
export function normaliseError(error: string): string {
  return error
    .replace(/http:\/\/127\.0\.0\.1:\d+/g, 'http://127.0.0.1:PORT')
    .replace(/process \d+/g, 'process N')
    .replace(/\d{3,}/g, 'N')
    .slice(0, 160);
}
