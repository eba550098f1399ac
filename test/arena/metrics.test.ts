/**
 * The arena's figures from hand-made runs: cold-start tabs vs forced re-auths, refresh calls per
 * access-token expiry, the fewest possible refreshes, redundant refreshes, needs-auth with and
 * without a reason; and the table, HTML and options parsing built on them.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';

import type { ArenaServer } from '../../arena/bed.js';
import { SERVER_KINDS } from '../../arena/bed.js';
import { timeScale } from '../../arena/clock.js';
import { parseCli } from '../../arena/main.js';
import { computeMetrics, explainReauths } from '../../arena/metrics.js';
import {
  type ArenaReport,
  headline,
  renderHeadline,
  renderHtml,
  renderTable,
  unusableServers,
  variantReport,
} from '../../arena/report.js';
import type { TimedSessionEvent, VariantRun } from '../../arena/runner.js';
import type { SessionEvent } from '../../arena/session.js';
import type { HttpAuditEntry } from '../../arena/testbed/audit.js';

const T0 = 1_000_000;
const scale = timeScale(1);
const server: ArenaServer = {
  index: 0,
  name: 'header',
  kind: SERVER_KINDS[0] as ArenaServer['kind'],
  url: 'http://127.0.0.1:1/mcp',
  resource: 'http://127.0.0.1:1/mcp',
  issuer: 'http://127.0.0.1:2',
};

let seq = 0;
function refresh(at: number, status = 200): HttpAuditEntry {
  seq += 1;
  return {
    kind: 'http',
    seq,
    time: T0 + at,
    method: 'POST',
    path: '/token',
    endpoint: 'token',
    queryNames: [],
    query: {},
    grantType: 'refresh_token',
    resources: [server.resource],
    status,
    events: [],
  };
}

type EventInput = SessionEvent extends infer E
  ? E extends SessionEvent
    ? Omit<E, 't'> & { at: number }
    : never
  : never;

function ev(session: number, event: EventInput): TimedSessionEvent {
  const { at, ...rest } = event as { at: number } & Record<string, unknown>;
  return { session, event: { ...rest, t: T0 + at } as SessionEvent };
}

function run(events: TimedSessionEvent[], entries: HttpAuditEntry[], durationMs: number): VariantRun {
  return {
    variant: 'naive',
    days: durationMs / scale.dayMs,
    sessions: 2,
    scale,
    servers: [server],
    startedAt: T0,
    stoppedAt: T0 + durationMs,
    events,
    audits: [{ issuer: server.issuer, entries }],
    mcpCounts: [
      {
        requests: 0,
        unauthorized: 3,
        unauthenticated: 0,
        expiredTokens: 0,
        invalidTokens: 0,
        forbidden: 0,
        toolCalls: 0,
      },
    ],
    findings: { malformed: [], crossClient: [], refreshReuses: [], codeReuses: [], revokedGrants: [] },
    sessionErrors: [],
    wallMs: durationMs,
  };
}

test("tabs before a session's first successful call are the cold start; later ones are forced re-auths", () => {
  const events = [
    ev(0, { type: 'tab', server: 0, at: 10 }),
    ev(0, { type: 'needs_auth', server: 0, at: 9 }),
    ev(1, { type: 'tab', server: 0, at: 12 }),
    ev(1, { type: 'tab', server: 0, at: 400 }),
    ev(0, { type: 'call', server: 0, ok: true, at: 300 }),
    ev(1, { type: 'call', server: 0, ok: true, at: 500 }),
    ev(0, { type: 'needs_auth', server: 0, reason: 'invalid_grant', at: 20_000 }),
    ev(0, { type: 'tab', server: 0, at: 20_001 }),
    ev(0, { type: 'call', server: 0, ok: false, error: 'x', at: 20_002 }),
    ev(0, { type: 'call', server: 0, ok: true, at: 24_000 }),
  ];
  const m = computeMetrics(run(events, [], 24_000));
  assert.equal(m.coldStartTabs, 3, "session 1's second tab came before its first success");
  assert.equal(m.forcedReauths, 1);
  assert.equal(m.forcedReauthsPerServerDay, 1, 'one re-auth, one server, one simulated day');
  assert.equal(m.callsOk, 3);
  assert.equal(m.callsFailed, 1);
  assert.equal(m.needsAuthWithReason, 1);
  assert.equal(m.needsAuthWithoutReason, 1);
  assert.deepEqual(m.needsAuthReasons, { invalid_grant: 1 });
  assert.equal(m.days, 1);
});

test('each forced re-auth is explained by what the AS had just refused for that server, if anything', () => {
  const events = [
    ev(0, { type: 'call', server: 0, ok: true, at: 100 }),
    ev(0, { type: 'tab', server: 0, at: 5000 }),
    ev(0, { type: 'tab', server: 0, at: 20_000 }),
  ];
  const refused = { ...refresh(4200, 400), error: 'invalid_grant', errorDetail: 'refresh token already used' };
  const causes = explainReauths(run(events, [refused, refresh(15_000, 400)], 24_000));
  assert.equal(causes.length, 2);
  assert.equal(causes[0]?.asRefusal, 'refresh_token: invalid_grant (refresh token already used)');
  assert.equal(causes[1]?.asRefusal, undefined, 'the refusal 5 s earlier is too old to explain it');
  assert.equal(causes[0]?.server, 'header');
});

test('refresh calls per expiry, the fewest possible refreshes and redundant refreshes', () => {
  // Calls every 250 ms for 10 s; token lifetime 1 s.
  const events: TimedSessionEvent[] = [];
  for (let at = 0; at <= 10_000; at += 250)
    events.push(ev(at % 500 === 0 ? 0 : 1, { type: 'call', server: 0, ok: true, at }));
  // Once per lifetime, at expiry: 1.00.
  const once = computeMetrics(
    run(
      events,
      Array.from({ length: 10 }, (_, i) => refresh(1000 * (i + 1))),
      10_000,
    ),
  );
  assert.equal(once.perServer[0]?.expiries, 10);
  assert.equal(once.perServer[0]?.refreshPerExpiry, 1);
  assert.equal(once.perServer[0]?.minimumRefreshes, 10);
  assert.equal(once.redundantRefreshes, 0);
  // Two processes refreshing the same expiry: 2.00, half of them redundant.
  const twice = computeMetrics(
    run(
      events,
      Array.from({ length: 20 }, (_, i) => refresh(1000 * (Math.floor(i / 2) + 1) - 30 + (i % 2) * 30)),
      10_000,
    ),
  );
  assert.equal(twice.perServer[0]?.refreshPerExpiry, 2);
  assert.equal(twice.redundantRefreshes, 10);
  assert.equal(twice.refreshPerExpiry.max, 2);
});

test('refreshes and lifetimes are counted over one window, from the first token to the stop', () => {
  // Signed in at 0 (code exchange), kept fresh once per lifetime from then on, but the first
  // successful call only at 3 s (a slow cold start) and the last at 8 s: 10 lifetimes, 10 refreshes.
  const signIn = { ...refresh(0), grantType: 'authorization_code' };
  const events = [3000, 5000, 8000].map((at) => ev(0, { type: 'call', server: 0, ok: true, at }));
  const keptFresh = Array.from({ length: 10 }, (_, i) => refresh(1000 * (i + 1) - 15));
  const m = computeMetrics(run(events, [signIn, ...keptFresh, refresh(10_400)], 10_000));
  assert.equal(m.perServer[0]?.expiries, 10, 'from the sign-in, not the first call');
  assert.equal(m.perServer[0]?.refreshCalls, 10, 'the refresh after the stop is outside the window');
  assert.equal(m.perServer[0]?.refreshPerExpiry, 1);
});

test('the fewest possible refreshes follow the calls, not the clock', () => {
  // Calls at 0, 0.5, 2.2, 2.9, 3.3 s: tokens needed at 0 (login), 2.2 (refresh), 3.3 (refresh).
  const events = [0, 500, 2200, 2900, 3300].map((at) => ev(0, { type: 'call', server: 0, ok: true, at }));
  const m = computeMetrics(run(events, [], 3300));
  assert.equal(m.perServer[0]?.minimumRefreshes, 2);
  assert.equal(m.perServer[0]?.expiries, 3);
});

test("the headline: forced re-auths per server per 30 days over the servers a variant could use, beside the field report's 2-4 days", () => {
  const events = [
    ev(0, { type: 'tab', server: 0, at: 10 }),
    ev(0, { type: 'call', server: 0, ok: true, at: 300 }),
    ev(0, { type: 'tab', server: 0, at: 20_001 }),
    ev(0, { type: 'call', server: 0, ok: true, at: 20_500 }),
  ];
  const m = computeMetrics(run(events, [], scale.dayMs * 3));
  assert.equal(m.forcedReauths, 1);
  const h = headline(m);
  assert.equal(h.servers, 1);
  assert.ok(Math.abs((h.per30Days ?? 0) - 10) < 1e-9, `one re-auth in 3 days is 10 per 30 days, got ${h.per30Days}`);
  assert.ok(Math.abs((h.everyDays ?? 0) - 3) < 1e-9);
  const clean = computeMetrics(run([ev(0, { type: 'call', server: 0, ok: true, at: 300 })], [], scale.dayMs * 3));
  assert.deepEqual(headline(clean), { per30Days: 0, everyDays: null, servers: 1 });
  const unusable = computeMetrics(
    run([ev(0, { type: 'call', server: 0, ok: false, error: 'x', at: 300 })], [], scale.dayMs),
  );
  assert.equal(headline(unusable).per30Days, null, 'no server it could use: no figure');
  const lines = renderHeadline([m, { ...clean, variant: 'authkeep' }]);
  assert.match(lines[0] ?? '', /every 2-4 days, 7\.5-15\.0 per 30 days/);
  assert.match(lines[1] ?? '', /naive: 10\.0 \(one every 3\.0 days per server/);
  assert.match(lines[2] ?? '', /authkeep: 0\.0 \(none in 3\.0 days per server/);
  const html = renderHtml({
    generatedAt: 'now',
    options: {
      days: 3,
      sessions: 2,
      servers: 1,
      variants: ['naive'],
      seed: 1,
      secondsPerHour: 1,
      meanCallIntervalMs: 1,
    },
    variants: [variantReport(run(events, [], scale.dayMs * 3), m)],
    skipped: [],
    wallSeconds: 1,
  } as unknown as ArenaReport);
  assert.ok(html.includes('naive: 10.0 (one every 3.0 days per server'), 'the HTML page opens with the headline');
});

test('the table and the HTML report carry every figure, and the HTML is self-contained', () => {
  const events = [
    ev(0, { type: 'tab', server: 0, at: 5 }),
    ev(0, { type: 'call', server: 0, ok: true, at: 100 }),
    ev(0, { type: 'call', server: 0, ok: true, at: 2100 }),
  ];
  const r = run(events, [refresh(1100), refresh(1150, 400)], 2400);
  const metrics = computeMetrics(r);
  const table = renderTable([metrics, { ...metrics, variant: 'authkeep' }]);
  for (const label of [
    'sessions x servers',
    'simulated days',
    'tool calls ok / failed',
    'forced re-auths after first login',
    'per server per simulated day',
    'refresh calls per AT expiry per server',
    'refresh-token reuses',
    'revoked grants',
    'malformed authorize requests',
    'cross-client redemptions',
    'browser tabs at cold start',
    'needs-auth with / without reason',
  ]) {
    assert.ok(table.includes(label), label);
  }
  assert.match(table.split('\n')[0] ?? '', /naive\s+authkeep$/);

  const report: ArenaReport = {
    generatedAt: new Date(T0).toISOString(),
    options: {
      days: 0.1,
      sessions: 2,
      servers: 1,
      variants: ['naive'],
      seed: 1,
      secondsPerHour: 1,
      meanCallIntervalMs: 2000,
    },
    wallSeconds: 3,
    skipped: [{ variant: 'mcp-remote', reason: 'not installed' }],
    variants: [variantReport(r, metrics)],
  };
  const html = renderHtml(report);
  assert.match(html, /^<!doctype html>/);
  assert.ok(html.includes('<svg'), 'inline SVG timeline');
  assert.ok(!/<script|<link|src=|href="http/i.test(html), 'no external resources or scripts');
  assert.ok(html.includes('header'), 'server name');
  assert.ok(html.includes('mcp-remote (not installed)'), 'skipped variants are named');
  assert.ok(html.includes('refresh_token: HTTP 400'), 'token-endpoint refusals');
});

test('options: defaults, validation, variants', () => {
  const defaults = parseCli([]);
  assert.notEqual(defaults, 'help');
  if (defaults === 'help') return;
  assert.deepEqual(defaults.variants, ['naive', 'authkeep']);
  assert.equal(defaults.sessions, 8);
  assert.equal(defaults.days, 3);
  assert.equal(defaults.servers, 5);
  assert.equal(defaults.out, 'arena-out');
  const custom = parseCli([
    '--days',
    '0.5',
    '--sessions',
    '3',
    '--servers',
    '6',
    '--variants',
    'authkeep',
    '--seed',
    '7',
    '--out',
    '/tmp/x',
  ]);
  assert.deepEqual(custom, {
    ...defaults,
    days: 0.5,
    sessions: 3,
    servers: 6,
    variants: ['authkeep'],
    seed: 7,
    out: '/tmp/x',
  });
  assert.equal(parseCli(['--help']), 'help');
  assert.throws(() => parseCli(['--sessions', '0']), /--sessions/);
  assert.throws(() => parseCli(['--variants', 'naive,bogus']), /unknown variant/);
  assert.throws(() => parseCli(['--bogus']), /bogus/);
});

test('a server no call of a variant got through to is named, with why, in the table and the HTML', () => {
  const events = [
    ev(0, { type: 'call', server: 0, ok: true, at: 100 }),
    ev(0, { type: 'call', server: 0, ok: false, error: 'Error: the proxy did not start', at: 200 }),
  ];
  const base = computeMetrics(run(events, [], 2400));
  const server = base.perServer[0] as NonNullable<(typeof base.perServer)[0]>;
  const failing = { ...server, name: 'dpop', callsOk: 0, callsFailed: 3 };
  const mcpRemote = { ...base, variant: 'mcp-remote', perServer: [failing] };
  const unknown = { ...base, variant: 'some-client', perServer: [failing] };
  assert.deepEqual(unusableServers(base), [], 'a server with a successful call is usable, whatever else failed');
  assert.match(unusableServers(mcpRemote)[0]?.reason ?? '', /no DPoP in mcp-remote 0\.15\.1/);
  assert.match(unusableServers(unknown)[0]?.reason ?? '', /no call succeeded/);
  const table = renderTable([base, mcpRemote]);
  assert.match(table, /servers it could not use\s+none\s+dpop$/m);
  assert.match(table, /^mcp-remote cannot use dpop: no DPoP in mcp-remote/m);
  assert.match(table, /needs-auth with \/ without reason\s+\d+ \/ \d+\s+n\/a: proxy signs in itself$/m);
  const html = renderHtml({
    generatedAt: new Date(T0).toISOString(),
    options: { days: 0.1, sessions: 1, servers: 1, variants: [], seed: 1, secondsPerHour: 1, meanCallIntervalMs: 2000 },
    wallSeconds: 1,
    skipped: [],
    variants: [{ metrics: mcpRemote, timeline: [], reauthCauses: [], examples: emptyExamples() }],
  });
  assert.ok(html.includes('cannot use it: no DPoP in mcp-remote'), 'the per-server cell says why');
});

function emptyExamples() {
  return { malformed: [], crossClient: [], refreshReuses: [], codeReuses: [], revokedGrants: [] };
}
