/**
 * A short real run of the arena's `chaos` scenario for the authkeep column (arena/chaos.ts): 20% of
 * token requests at the rotating authorization server fail transiently (503, temporarily_unavailable,
 * no answer, reset; before or after the AS processed them), sessions are SIGKILLed at random
 * moments and at refresh answers, and restarted with the same home. Judged from the AS's audit:
 * no refresh-token reuse, revoked grant or forced re-auth except where a chain was lost physically
 * (the AS rotated and the new token never reached the record: a fault took the answer away, or
 * its sender was killed), each of those explained one by one; no unreadable record; and every
 * kind of fault and kill did happen.
 *
 * The days count from the end of the cold start (every session has called every server), and the
 * kills start then (the faults from the first request on): the chaos hits sessions that hold
 * credentials. The run uses the scenario's world with two knobs turned up so a short run meets every kind: a
 * timer kill every 2 s on average and 10% of refresh answers killing their sender (the arena: 4 s,
 * 3%). The fault and kill draws are seeded; the seed is fixed, so whether a kind happens depends
 * only on how many token requests and refresh answers there were, and the counts it needs are
 * small (with seed 1 the fourth fault, which completes the four kinds, is the 16th token request;
 * the first fault after processing the 5th; the first answer kill the 5th refresh answer).
 * Nothing is asserted about timings.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { faultSummary } from '../../arena/chaos.js';
import { timeScale } from '../../arena/clock.js';
import { computeMetrics } from '../../arena/metrics.js';
import { renderTable } from '../../arena/report.js';
import { runVariant } from '../../arena/runner.js';
import { columnRun, SCENARIOS } from '../../arena/scenarios.js';
import { FAULT_KINDS } from '../../arena/testbed/token-faults.js';

test('chaos: transient token-endpoint faults and killed sessions: no reuse, revocation or re-auth but the physical losses, no unreadable record', {
  timeout: 300_000,
}, async (t) => {
  const { variant, world } = columnRun(SCENARIOS.chaos, 'authkeep');
  assert.ok(world?.chaos);
  const run = await runVariant({
    variant,
    world: { ...world, chaos: { ...world.chaos, killMeanIntervalMs: 2000, answerKillChance: 0.1 } },
    sessions: 4,
    servers: 3,
    days: 0.3,
    seed: 1,
    scale: timeScale(2),
    meanIntervalMs: 1000,
    daysAfterColdStart: true,
  });
  const m = computeMetrics(run);
  const c = m.chaos;
  assert.ok(c, 'chaos figures');
  for (const line of renderTable([m], SCENARIOS.chaos.rows).split('\n')) t.diagnostic(line);
  t.diagnostic(`faults ${faultSummary(c)}; ${c.restarts} restarts`);
  for (const loss of c.losses) t.diagnostic(`lost chain: ${JSON.stringify({ ...loss, resources: undefined })}`);
  for (const lost of c.lostSignIns) t.diagnostic(`lost sign-in: ${JSON.stringify(lost)}`);
  for (const r of c.unexplainedReauths) t.diagnostic(`unexplained re-auth: ${JSON.stringify(r)}`);

  assert.deepEqual(run.sessionErrors, []);
  assert.equal(run.coldStartEndedAt !== undefined, true, 'every session made a call to every server');
  // What was injected: every kind of fault, both phases, both kinds of kill, and restarts.
  for (const kind of FAULT_KINDS) {
    const n = (c.faults[`before ${kind}`] ?? 0) + (c.faults[`after ${kind}`] ?? 0);
    assert.ok(n > 0, `a ${kind} fault was injected`);
  }
  assert.ok(c.faultsBefore > 0 && c.faultsAfter > 0, 'faults before and after the AS processed a request');
  assert.ok(c.kills.timer > 0, 'sessions killed at random moments');
  assert.ok(c.kills.answer > 0, 'sessions killed at a refresh answer');
  assert.ok(c.restarts > 0, 'killed sessions restarted');

  // The zeros, but for the chains lost physically, each explained.
  assert.equal(c.unexplainedReuses, 0, 'every reuse presented a token whose rotation was lost to a fault or a kill');
  assert.equal(c.unexplainedRevocations, 0, 'every grant revoked by reuse is such a lost chain');
  assert.equal(m.revokedGrants, m.revokedByReuse, 'no grant revoked for another reason');
  assert.ok(m.refreshReuses <= c.losses.length, `${m.refreshReuses} reuses for ${c.losses.length} lost chains`);
  for (const loss of c.losses) {
    if (loss.cause === 'kill') {
      // Its sender was killed: the offset from the AS's answer says where in the window.
      assert.ok(loss.killOffsetMs !== undefined && loss.killTrigger !== undefined, 'a kill of the sender');
    } else {
      const rotation = run.audits
        .flatMap((a) => a.entries)
        .find((e) => e.kind === 'http' && e.seq === loss.rotationSeq);
      assert.ok(rotation?.kind === 'http', 'the rotation is in the audit');
      if (loss.cause === 'lost_answer') assert.ok(rotation.fault?.phase === 'after' && rotation.fault.asStatus === 200);
      // A late answer: no fault, and the client had closed the connection before the AS answered.
      else assert.ok(rotation.fault === undefined && rotation.status === 0);
    }
  }
  assert.equal(c.forcedReauthsUnexplained, 0, 'no forced re-auth but after a lost chain');
  assert.equal(m.forcedReauths, c.forcedReauthsAfterLoss);
  assert.ok(c.recordsChecked > 0, 'the records were read back');
  assert.equal(c.unreadableRecords, 0, 'no unreadable record');
  assert.equal(c.storeCorruptEvents, 0, 'no session met an unreadable record');
  assert.ok(c.window.count > 0, 'the window was measured on stored refreshes');
});
