/**
 * A short arena run of the authkeep variant (half a simulated day: 12 s, 6 sessions as separate
 * processes x 5 servers of every kind, DPoP-bound included, against fresh oidc-providers with
 * rotation and reuse revocation), asserting the zeros the arena exists to show: no forced re-auth, no refresh-
 * token reuse, no revoked grant, no malformed authorize request, no cross-client redemption, one
 * browser tab per server at the cold start, every needs-auth with a reason, no failed call.
 *
 * Determinism: the half day starts once the cold start is over (every session has made a
 * successful call to every server, `daysAfterColdStart`), so the lifetimes judged below elapse
 * however long a slow machine takes to start six sessions. Nothing is asserted about how many
 * calls fit in the run.
 *
 * Refresh calls per access-token expiry: the sessions run `keep-fresh`, which refreshes a server's
 * token from a timer 1.5% before it expires (at least 20 ms, plus up to 10% jitter), once per
 * lifetime machine-wide. A 1-hour token here is a 1 s token whose expiry the client dates from the
 * moment it sent the request, so two refreshes of one server leave their processes at least
 * 978 ms apart, whichever processes send them; a token refused as expired is past that too. The
 * sessions report when each refresh request left (refresh-sends.ts), and that spacing is checked
 * by their clock: the AS's arrival times add its queueing delay, which on a busy machine reaches
 * half a lifetime (the report's "redundant refresh" figure, judged by arrival times, is shown but
 * not asserted). A client refreshing on demand at 72.5-75% of the lifetime, or two processes
 * refreshing for the same expiry, fail the spacing.
 *
 * A token the server refuses because it expired on its way there: with 1 s tokens and a 20 ms
 * margin, a request that takes longer than that on a busy machine (6 simulated minutes at this
 * compression) arrives with an expired token, and if the retry's token also expires in flight
 * the call fails. Such failures are allowed only when the servers' own counts show two expired
 * (never invalid) tokens for each; at real lifetimes the margin is 54 s.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { timeScale } from '../../arena/clock.js';
import { computeMetrics } from '../../arena/metrics.js';
import { renderTable } from '../../arena/report.js';
import { runVariant } from '../../arena/runner.js';
import type { HttpAuditEntry } from '../../arena/testbed/audit.js';
import { type RefreshSend, refreshSpacing } from '../../arena/testbed/refresh-sends.js';

/** keep-fresh's earliest refresh of a 1 s token: 1000 ms minus its margin (20 ms, +10% jitter). */
const MIN_KEEP_FRESH_SPACING_MS = 978;

test('short arena run: authkeep shows the zeros', { timeout: 600_000 }, async (t) => {
  const scale = timeScale(1);
  const run = await runVariant({
    variant: 'authkeep',
    days: 0.5,
    sessions: 6,
    servers: 5,
    seed: 3,
    scale,
    meanIntervalMs: 1500,
    daysAfterColdStart: true,
  });
  const m = computeMetrics(run);
  for (const line of renderTable([m]).split('\n')) t.diagnostic(line);
  t.diagnostic(
    `refresh calls per expiry by server: ${m.perServer.map((s) => `${s.name} ${s.refreshCalls}/${s.expiries} (fewest ${s.minimumRefreshes})`).join(', ')}`,
  );
  t.diagnostic(
    `cold start: ${run.coldStartEndedAt === undefined ? 'never ended' : `${run.coldStartEndedAt - run.startedAt} ms`}`,
  );

  assert.deepEqual(m.sessionErrors, []);
  assert.equal(m.sessions, 6);
  assert.ok(run.coldStartEndedAt !== undefined, 'every session made a successful call to every server');
  assert.ok(m.days > 0.49, `ran ${m.days} simulated days`);
  assert.equal(m.forcedReauths, 0, 'zero forced re-auths');
  assert.equal(m.refreshReuses, 0, 'zero refresh-token reuses');
  assert.equal(m.revokedGrants, 0, 'zero revoked grants');
  assert.equal(m.malformedAuthorize, 0, 'zero malformed authorize requests');
  assert.equal(m.crossClient, 0, 'zero cross-client redemptions');
  assert.equal(m.needsAuthWithoutReason, 0, 'every needs-auth has a reason');
  assert.deepEqual(
    Object.keys(m.needsAuthReasons),
    ['no_credentials'],
    'needs-auth only at the cold start, when nothing is stored',
  );
  assert.equal(m.coldStartTabs, 5, 'one browser tab per server at the cold start');
  assert.equal(m.loginsFailed, 0);

  // No failed call but for tokens that expired in flight (see the header), by the servers' counts.
  const expiredInFlight = run.mcpCounts.reduce((n, c) => n + c.expiredTokens, 0);
  assert.equal(
    run.mcpCounts.reduce((n, c) => n + c.invalidTokens, 0),
    0,
    'no server refused a token for anything but its age',
  );
  for (const { event } of run.events) {
    if (event.type === 'call' && !event.ok) assert.match(event.error ?? '', /invalid_token/, 'no failed tool call');
  }
  assert.ok(
    2 * m.callsFailed <= expiredInFlight,
    `${m.callsFailed} failed calls, each refused twice for a token that expired in flight (${expiredInFlight} such refusals)`,
  );

  const ttlMs = scale.accessTokenTtlSeconds * 1000;
  const sends: RefreshSend[] = run.events.flatMap(({ event }) =>
    event.type === 'refresh_sent' ? [{ resource: run.servers[event.server]?.resource ?? '', at: event.t }] : [],
  );
  const lifetimes = Math.floor((run.stoppedAt - (run.coldStartEndedAt ?? run.stoppedAt)) / ttlMs);
  for (const s of m.perServer) {
    // In use from its first successful call to its last call: at least the half day after the
    // cold start, less the gap between the last call and the stop (calls are ~4 per second per
    // server) and the partial lifetimes at either end.
    assert.ok(s.expiries >= lifetimes - 3, `${s.name}: in use for ${s.expiries} of ${lifetimes} lifetimes`);
    assert.equal(s.refreshCallsFailed, 0, `${s.name}: no refused refresh`);
    const server = run.servers[s.index] as (typeof run.servers)[number];
    const spacing = refreshSpacing(sends, server.resource, MIN_KEEP_FRESH_SPACING_MS);
    t.diagnostic(`${s.name}: ${spacing.count} refreshes over ${spacing.spanMs} ms, min gap ${spacing.minGapMs} ms`);
    // Every refresh the AS received for the server, the run's last moments included (the figures
    // count renewals up to the stop only, so a refresh sent just before it and received just after
    // is the AS's and the session's, not the figure's).
    const received = run.audits
      .flatMap((a) => a.entries)
      .filter(
        (e): e is HttpAuditEntry =>
          e.kind === 'http' &&
          e.endpoint === 'token' &&
          e.grantType === 'refresh_token' &&
          e.error !== 'use_dpop_nonce' &&
          e.resources.includes(server.resource),
      ).length;
    assert.equal(spacing.count, received, `${s.name}: every refresh the AS saw was reported by a session`);
    assert.ok(
      spacing.minGapMs >= MIN_KEEP_FRESH_SPACING_MS,
      `${s.name}: two refreshes ${spacing.minGapMs} ms apart: one expiry refreshed twice, or refreshed early`,
    );
    assert.ok(
      s.refreshCalls <= spacing.maxCount,
      `${s.name}: ${s.refreshCalls} refreshes over ${spacing.spanMs} ms <= ${spacing.maxCount} (one per lifetime, machine-wide)`,
    );
  }
});
