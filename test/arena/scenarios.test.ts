/**
 * Short real runs of the arena's scenarios (arena/scenarios.ts) for the authkeep columns, judged
 * from the authorization server's audit: `fleet` (3 hosts on the fleet store, one real
 * redis-server), `ci-workers` (8 processes on one client-credentials identity) and `dpop` (every
 * server DPoP-only, nonces at the AS and the server). Each asserts the zeros (no refresh-token
 * reuse, no revoked grant, no forced re-auth, no sign-in beyond the first) and one renewal per
 * server per expiry, fleet-wide or machine-wide.
 *
 * The bounds are ones the other columns fail, as the arena's own runs show (arena/README.md): per
 * host file stores holding one copied record reuse its refresh token at the first expiry (a
 * revoked grant, a sign-in per host); processes each fetching their own client-credentials token
 * send one request per process per expiry (8 at the cold start alone).
 *
 * Determinism: every run starts its simulated time once the cold start is over
 * (`daysAfterColdStart`). Tokens live 2 s (2 real seconds per simulated hour) so a busy machine's
 * delays stay small against a lifetime. "One renewal per expiry" is judged by the senders' clocks
 * (refresh-sends.ts, as test/arena/arena.test.ts does): consecutive renewals of a server, whichever
 * process or host sent them, are at least a lifetime less keep-fresh's margin apart, so the count
 * is at most one per lifetime of the span; nothing is asserted about how many calls fit.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { timeScale } from '../../arena/clock.js';
import { parseCli } from '../../arena/main.js';
import { computeMetrics, type VariantMetrics } from '../../arena/metrics.js';
import { type ArenaReport, renderHtml, renderTable, variantReport } from '../../arena/report.js';
import { runVariant, type VariantRun } from '../../arena/runner.js';
import { columnRun, FLEET_HOSTS, SCENARIOS, type ScenarioName } from '../../arena/scenarios.js';
import { type RefreshSend, refreshSpacing } from '../../arena/testbed/refresh-sends.js';

const scale = timeScale(2);
const ttlMs = scale.accessTokenTtlSeconds * 1000;
/** keep-fresh's earliest renewal of a token: its lifetime less the margin (1.5%, at least 20 ms, +10% jitter). */
const MIN_SPACING_MS = Math.floor(ttlMs - Math.max(20, 0.015 * ttlMs) * 1.1);

async function runColumn(
  t: { diagnostic(message: string): void },
  scenario: ScenarioName,
  column: string,
  options: { sessions: number; servers: number; days: number },
): Promise<{ run: VariantRun; m: VariantMetrics }> {
  const { variant, world } = columnRun(SCENARIOS[scenario], column);
  const run = await runVariant({
    variant,
    ...(world ? { world } : {}),
    ...options,
    seed: 5,
    scale,
    meanIntervalMs: 1000,
    daysAfterColdStart: true,
  });
  const m = computeMetrics(run);
  for (const line of renderTable([m], SCENARIOS[scenario].rows).split('\n')) t.diagnostic(line);
  return { run, m };
}

/** The zeros, and at most one renewal per lifetime per server (by the senders' clocks). */
function assertOneRenewalPerExpiry(t: { diagnostic(message: string): void }, run: VariantRun, m: VariantMetrics) {
  assert.equal(run.coldStartEndedAt !== undefined, true, 'every session made a call to every server');
  assert.deepEqual(run.sessionErrors, []);
  assert.equal(m.refreshReuses, 0, 'no refresh-token reuse');
  assert.equal(m.revokedGrants, 0, 'no revoked grant');
  assert.equal(m.forcedReauths, 0, 'no forced re-auth');
  assert.equal(m.crossClient, 0);
  const sends: RefreshSend[] = run.events.flatMap(({ event }) =>
    event.type === 'refresh_sent' ? [{ resource: run.servers[event.server]?.resource ?? '', at: event.t }] : [],
  );
  const lifetimes = Math.floor((run.stoppedAt - (run.coldStartEndedAt as number)) / ttlMs);
  for (const s of m.perServer) {
    const server = run.servers[s.index] as VariantRun['servers'][number];
    const spacing = refreshSpacing(sends, server.resource, MIN_SPACING_MS);
    t.diagnostic(
      `${s.name}: ${s.refreshCalls} renewals / ${s.expiries} expiries = ${s.refreshPerExpiry?.toFixed(2)}; sends ${spacing.count} over ${spacing.spanMs} ms, min gap ${spacing.minGapMs} ms`,
    );
    assert.equal(s.refreshCallsFailed, 0, `${s.name}: no renewal refused`);
    // The run renewed across expiries (not every one: on a loaded machine a lifetime can end
    // before its renewal lands, and the next call's renewal covers it).
    assert.ok(
      s.refreshCalls >= Math.max(1, Math.floor(lifetimes / 2)),
      `${s.name}: the run crossed ${lifetimes} expiries`,
    );
    assert.ok(
      spacing.minGapMs >= MIN_SPACING_MS,
      `${s.name}: two renewals ${spacing.minGapMs} ms apart: one expiry renewed twice`,
    );
    assert.ok(spacing.count <= spacing.maxCount, `${s.name}: ${spacing.count} renewals, at most ${spacing.maxCount}`);
    // Every renewal the AS saw in the window was sent by a session (none by anyone else).
    assert.ok(s.refreshCalls <= spacing.count, `${s.name}: the AS saw no renewal the sessions did not send`);
    // Per expiry: one, plus the partial lifetimes at either end of a short run.
    assert.ok(
      (s.refreshPerExpiry ?? 0) <= 1 + 2 / s.expiries,
      `${s.name}: ${s.refreshPerExpiry} renewals per expiry (at most ${(1 + 2 / s.expiries).toFixed(2)})`,
    );
  }
}

test("--scenario: the default is today's world; a scenario brings its columns and defaults; the report names it", () => {
  const plain = parseCli([]);
  const fleet = parseCli(['--scenario', 'fleet']);
  assert.ok(plain !== 'help' && fleet !== 'help');
  assert.equal(plain.scenario, 'default');
  assert.deepEqual(plain.variants, ['naive', 'authkeep']);
  assert.equal(columnRun(SCENARIOS.default, 'authkeep').world, undefined, 'default: no world, the arena unchanged');
  assert.deepEqual(fleet.variants, ['authkeep-files', 'authkeep-fleet']);
  assert.equal(fleet.sessions, 6);
  assert.deepEqual(parseCli(['--scenario', 'fleet', '--sessions', '9']), { ...fleet, sessions: 9 });
  assert.throws(() => parseCli(['--scenario', 'nonesuch']), /unknown scenario/);
  const chaos = parseCli(['--scenario', 'chaos']);
  assert.ok(chaos !== 'help');
  assert.deepEqual([chaos.variants, chaos.sessions, chaos.servers], [['naive', 'authkeep'], 8, 3]);
  assert.ok(columnRun(SCENARIOS.chaos, 'authkeep').world?.chaos, 'chaos: faults and kills in the world');
  assert.throws(() => parseCli(['--scenario', 'fleet', '--variants', 'naive']), /unknown variant/);
  const ci = columnRun(SCENARIOS['ci-workers'], 'naive').world;
  assert.equal(ci?.clientCredentials?.clientId, 'arena-ci', 'naive ci workers: the SDK client credentials provider');
  assert.equal(columnRun(SCENARIOS['short-ttl'], 'authkeep').world?.accessTokenTtlSeconds, 45);

  const run: VariantRun = {
    variant: 'authkeep',
    column: 'authkeep-fleet',
    days: 0,
    sessions: 0,
    scale,
    servers: [],
    startedAt: 0,
    stoppedAt: 0,
    events: [],
    audits: [],
    mcpCounts: [],
    findings: { malformed: [], crossClient: [], refreshReuses: [], codeReuses: [], revokedGrants: [] },
    sessionErrors: [],
    wallMs: 0,
  };
  const report: ArenaReport = {
    generatedAt: 'now',
    options: { days: 0, sessions: 0, servers: 0, variants: [], seed: 1, secondsPerHour: 1, meanCallIntervalMs: 1 },
    scenario: {
      name: 'fleet',
      title: SCENARIOS.fleet.title,
      description: SCENARIOS.fleet.description,
      notes: ['signed in once on host 0'],
    },
    wallSeconds: 0,
    skipped: [],
    variants: [variantReport(run, computeMetrics(run))],
  };
  const html = renderHtml(report);
  assert.ok(html.includes('<h2 id="scenario">Scenario: fleet'), 'a section names the scenario');
  assert.ok(html.includes('signed in once on host 0'), 'and what was prepared');
  assert.ok(html.includes('<th>authkeep-fleet</th>'), 'the column is named by the scenario');
  assert.ok(html.includes('sign-ins at the IdP'), "the scenario's rows");
  assert.ok(
    renderTable(
      report.variants.map((v) => v.metrics),
      SCENARIOS.fleet.rows,
    ).includes('sign-ins at the IdP'),
  );
});

test('fleet: 3 hosts on the fleet store, one identity signed in once: no reuse, no revocation, one refresh per expiry fleet-wide', {
  timeout: 300_000,
}, async (t) => {
  const servers = 2;
  const { run, m } = await runColumn(t, 'fleet', 'authkeep-fleet', { sessions: FLEET_HOSTS, servers, days: 0.15 });
  assert.deepEqual([...new Set(run.hosts)].sort(), [0, 1, 2], 'the sessions ran on three hosts');
  assertOneRenewalPerExpiry(t, run, m);
  assert.equal(m.codeExchanges, servers, 'one sign-in per server for the whole fleet (the operator, before the run)');
  assert.equal(m.coldStartTabs, 0, 'no host opened a browser');
  assert.equal(m.registrations, 1, 'one registration for the fleet');
});

test('ci-workers: 8 processes on client credentials: one token request per server per expiry, no browser', {
  timeout: 300_000,
}, async (t) => {
  const { run, m } = await runColumn(t, 'ci-workers', 'authkeep', { sessions: 8, servers: 1, days: 0.15 });
  assertOneRenewalPerExpiry(t, run, m);
  assert.equal(m.authorizeRequests, 0, 'no authorization request');
  assert.equal(m.codeExchanges, 0);
  assert.equal(m.coldStartTabs, 0);
  assert.equal(m.redundantRefreshes, 0, 'the cold start was one token request, not one per process');
  assert.ok(m.clientCredentialsRequests >= m.refreshCalls, 'the renewals are client credentials requests');
});

test('dpop: every server DPoP-only with nonces: no reuse, one refresh per expiry, nonce challenges apart', {
  timeout: 300_000,
}, async (t) => {
  const servers = 2;
  const { run, m } = await runColumn(t, 'dpop', 'authkeep', { sessions: 4, servers, days: 0.15 });
  assert.ok(
    run.servers.every((s) => s.kind.name === 'dpop'),
    'every server is the dpop kind',
  );
  assertOneRenewalPerExpiry(t, run, m);
  assert.equal(m.coldStartTabs, servers, 'one browser tab per server');
  const nonces = m.perServer.reduce((n, s) => n + s.dpopNonceChallenges, 0);
  assert.ok(nonces > 0, 'the AS demanded its nonce (and those answers are not counted as refreshes)');
});
