/**
 * A short arena run of the authkeep variant (half a simulated day: 12 s, 6 sessions as separate
 * processes x 4 servers of every discovery kind, against a fresh oidc-provider with rotation and
 * reuse revocation), asserting the zeros the arena exists to show: no forced re-auth, no refresh-
 * token reuse, no revoked grant, no malformed authorize request, no cross-client redemption, one
 * browser tab per server at the cold start, every needs-auth with a reason, no failed call.
 *
 * Refresh calls per access-token expiry: authkeep refreshes ahead of expiry by design (at 72.5-75%
 * of the lifetime, src/session/refresh-policy.ts), and only when a call needs a token. So per
 * server the count is bounded below by the fewest refreshes any client could make for the same
 * calls (one whenever a call comes after the last token expired) and above by one refresh per
 * 72.5% of a lifetime elapsed (+1 for the partial lifetime at either end). Amplification (several
 * processes refreshing the same expiry) would show as redundant refreshes, which must be zero.
 * The ratio itself is printed; it is ~1.0-1.15 at this call density, and approaches 1/0.74 = 1.35
 * only when calls are much denser than the refresh interval.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { timeScale } from '../../arena/clock.js';
import { computeMetrics } from '../../arena/metrics.js';
import { renderTable } from '../../arena/report.js';
import { runVariant } from '../../arena/runner.js';

test('short arena run: authkeep shows the zeros', { timeout: 120_000 }, async (t) => {
  const run = await runVariant({
    variant: 'authkeep',
    days: 0.5,
    sessions: 6,
    servers: 4,
    seed: 3,
    scale: timeScale(1),
    meanIntervalMs: 1500,
  });
  const m = computeMetrics(run);
  for (const line of renderTable([m]).split('\n')) t.diagnostic(line);
  t.diagnostic(
    `refresh calls per expiry by server: ${m.perServer.map((s) => `${s.name} ${s.refreshCalls}/${s.expiries} (fewest ${s.minimumRefreshes})`).join(', ')}`,
  );

  assert.deepEqual(m.sessionErrors, []);
  assert.equal(m.sessions, 6);
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
  assert.equal(m.coldStartTabs, 4, 'one browser tab per server at the cold start');
  assert.equal(m.loginsFailed, 0);
  assert.equal(m.callsFailed, 0, 'no failed tool call');
  assert.ok(m.callsOk > 100, `${m.callsOk} calls ok`);
  assert.equal(m.redundantRefreshes, 0, 'no two refreshes for the same expiry');

  const lifetimeShare = 0.725;
  for (const s of m.perServer) {
    assert.ok(s.expiries >= 9, `${s.name}: in use for ${s.expiries} lifetimes`);
    assert.ok(
      s.refreshCalls >= s.minimumRefreshes,
      `${s.name}: ${s.refreshCalls} refreshes >= the fewest possible ${s.minimumRefreshes}`,
    );
    const bound = Math.ceil(s.expiries / lifetimeShare) + 1;
    assert.ok(
      s.refreshCalls <= bound,
      `${s.name}: ${s.refreshCalls} refreshes <= ${bound} (one per 72.5% of a lifetime)`,
    );
    assert.equal(s.refreshCallsFailed, 0, `${s.name}: no refused refresh`);
  }
});
