/**
 * The arena's report: a terminal table (one column per variant), a JSON document, and a
 * self-contained HTML page with an inline SVG timeline per server (logins, refreshes, failures,
 * re-auths, revocations per variant).
 *
 * For: arena/main.ts. Not for: computing figures (metrics.ts).
 */
import type { ServerKind } from './bed.js';
import { faultSummary } from './chaos.js';
import type { Findings } from './detectors.js';
import { explainReauths, type ReauthCause, type ServerMetrics, type VariantMetrics } from './metrics.js';
import type { VariantRun } from './runner.js';
import { SCENARIOS, type ScenarioName, type ScenarioRow } from './scenarios.js';
import type { HttpAuditEntry } from './testbed/audit.js';

export interface TimelineMark {
  /** Simulated days since the cold start. */
  day: number;
  kind:
    | 'login'
    | 'reauth'
    | 'refresh'
    | 'refresh_failed'
    | 'call_failed'
    | 'revoked'
    | 'reuse'
    | 'cross_client'
    | 'malformed';
}

export interface ServerTimeline {
  server: number;
  name: string;
  discovery: string;
  marks: TimelineMark[];
}

export interface VariantReport {
  metrics: VariantMetrics;
  timeline: ServerTimeline[];
  /** Every forced re-auth with what the AS had just refused for that server, if anything. */
  reauthCauses: ReauthCause[];
  /** Up to 20 examples of each finding, for the curious (no secrets: the audit redacts them). */
  examples: { [K in keyof Findings]: Findings[K] };
}

export interface ArenaReport {
  generatedAt: string;
  options: {
    days: number;
    sessions: number;
    servers: number;
    variants: string[];
    seed: number;
    secondsPerHour: number;
    meanCallIntervalMs: number;
  };
  /** The world it ran in (arena/scenarios.ts); absent in reports from before scenarios. */
  scenario?: { name: ScenarioName; title: string; description: string; notes: string[] };
  /** Real seconds the whole run took. */
  wallSeconds: number;
  skipped: Array<{ variant: string; reason: string }>;
  variants: VariantReport[];
}

export function variantReport(run: VariantRun, metrics: VariantMetrics): VariantReport {
  const sample = <T>(list: T[]): T[] => list.slice(0, 20);
  return {
    metrics,
    timeline: buildTimeline(run),
    reauthCauses: explainReauths(run),
    examples: {
      malformed: sample(run.findings.malformed),
      crossClient: sample(run.findings.crossClient),
      refreshReuses: sample(run.findings.refreshReuses),
      codeReuses: sample(run.findings.codeReuses),
      revokedGrants: sample(run.findings.revokedGrants),
    },
  };
}

export function buildTimeline(run: VariantRun): ServerTimeline[] {
  const day = (t: number): number => Math.max(0, (t - run.startedAt) / run.scale.dayMs);
  const firstOk = new Map<string, number>();
  for (const { session, event } of run.events) {
    if (event.type === 'call' && event.ok) {
      const key = `${session}:${event.server}`;
      if (!firstOk.has(key) || (firstOk.get(key) as number) > event.t) firstOk.set(key, event.t);
    }
  }
  const http = run.audits.flatMap((a) => a.entries.filter((e): e is HttpAuditEntry => e.kind === 'http'));
  return run.servers.map((server) => {
    const marks: TimelineMark[] = [];
    for (const { session, event } of run.events) {
      if (event.server !== server.index) continue;
      if (event.type === 'tab') {
        const first = firstOk.get(`${session}:${server.index}`);
        marks.push({ day: day(event.t), kind: first !== undefined && event.t >= first ? 'reauth' : 'login' });
      } else if (event.type === 'call' && !event.ok) {
        marks.push({ day: day(event.t), kind: 'call_failed' });
      }
    }
    for (const entry of http) {
      if (
        entry.endpoint === 'token' &&
        entry.grantType === 'refresh_token' &&
        entry.resources.includes(server.resource)
      ) {
        marks.push({ day: day(entry.time), kind: entry.status === 200 ? 'refresh' : 'refresh_failed' });
      }
    }
    const about = (resources: string[]): boolean => resources.includes(server.resource);
    for (const f of run.findings.revokedGrants)
      if (about(f.resources)) marks.push({ day: day(f.time), kind: 'revoked' });
    for (const f of run.findings.refreshReuses) if (about(f.resources)) marks.push({ day: day(f.time), kind: 'reuse' });
    for (const f of run.findings.crossClient)
      if (about(f.resources)) marks.push({ day: day(f.time), kind: 'cross_client' });
    for (const f of run.findings.malformed) if (about(f.resources)) marks.push({ day: day(f.time), kind: 'malformed' });
    marks.sort((a, b) => a.day - b.day);
    return { server: server.index, name: server.name, discovery: server.kind.description, marks };
  });
}

// ---------------------------------------------------------------------------------------------
// terminal table

interface Row {
  label: string;
  value: (m: VariantMetrics) => string;
}

const fmt = (n: number | null, digits = 2): string => (n === null ? 'n/a' : n.toFixed(digits));

/**
 * Server kinds a variant cannot use, and why (what the client lacks, as read from its code and
 * seen in the run). Shown only where the run agrees: no call to that server succeeded.
 */
export const CANNOT_USE: Readonly<Record<string, Partial<Record<ServerKind['name'], string>>>> = {
  naive: {
    'two-challenges':
      "the 1.x SDK reads only the first WWW-Authenticate challenge (DPoP), finds no resource_metadata and no PRM at the well-known path, takes the MCP server's origin for its AS and registers there (404)",
    dpop: 'Bearer only: the 1.x SDK has no DPoP, and the server takes DPoP-bound tokens only (RFC 9449)',
  },
  'naive-v2': {
    dpop: 'Bearer only: the 2.x SDK binds tokens only through a provider that implements dpop(), which a straightforward provider does not; the server refuses Bearer tokens, so every call ends in "401 after re-authentication"',
  },
  'mcp-remote': {
    'two-challenges':
      "mcp-remote 0.15.1's auth (the 1.x SDK's, bundled) reads only the first WWW-Authenticate challenge (DPoP), finds no resource_metadata, takes the MCP server's origin for its AS and registers there (404): the proxy exits",
    dpop: "no DPoP in mcp-remote 0.15.1: its auth reads resource_metadata only from a Bearer challenge (this server's is DPoP), registers at the MCP server's origin (404) and exits; it could not present DPoP-bound tokens anyway",
  },
};

/** Figures a variant cannot have, and why. */
const NOT_APPLICABLE: Readonly<Record<string, Partial<Record<'needsAuth' | 'signIns', string>>>> = {
  'mcp-remote': {
    needsAuth: 'n/a: proxy signs in itself',
    signIns: 'n/a: inside the proxy',
  },
  'authkeep-proxy': {
    needsAuth: 'n/a: proxy signs in itself',
    signIns: 'n/a: inside the proxy',
  },
};

const kindOf = (serverName: string): string => serverName.replace(/-\d+$/, '');

/** The servers a variant made no successful call to, with why. */
export function unusableServers(m: VariantMetrics): Array<{ server: string; reason: string }> {
  return m.perServer
    .filter((s) => s.callsOk === 0)
    .map((s) => ({
      server: s.name,
      reason:
        s.callsFailed === 0
          ? 'no call completed in the run (the client was still starting or signing in when it ended)'
          : (CANNOT_USE[m.variant]?.[kindOf(s.name) as ServerKind['name']] ??
            'no call succeeded (see the most frequent failed-call errors)'),
    }));
}

export const TABLE_ROWS: Row[] = [
  { label: 'sessions x servers', value: (m) => `${m.sessions} x ${m.servers}` },
  { label: 'simulated days', value: (m) => fmt(m.days) },
  { label: 'tool calls ok / failed', value: (m) => `${m.callsOk} / ${m.callsFailed}` },
  { label: 'forced re-auths after first login', value: (m) => String(m.forcedReauths) },
  { label: '  per server per simulated day', value: (m) => fmt(m.forcedReauthsPerServerDay) },
  {
    label: 'refresh calls per AT expiry per server',
    value: (m) =>
      m.refreshPerExpiry.mean === null
        ? 'n/a'
        : `${fmt(m.refreshPerExpiry.mean)} (${fmt(m.refreshPerExpiry.min)}-${fmt(m.refreshPerExpiry.max)})`,
  },
  {
    label: '  refresh calls / fewest possible',
    value: (m) =>
      m.minimumRefreshes
        ? `${m.refreshCalls} / ${m.minimumRefreshes} = ${fmt(m.refreshCalls / m.minimumRefreshes)}`
        : 'n/a',
  },
  { label: '  redundant refresh calls', value: (m) => `${m.redundantRefreshes} of ${m.refreshCalls}` },
  { label: '  401s from MCP servers', value: (m) => String(m.unauthorized) },
  { label: 'refresh-token reuses', value: (m) => String(m.refreshReuses) },
  { label: 'revoked grants (by reuse)', value: (m) => `${m.revokedGrants} (${m.revokedByReuse})` },
  { label: 'malformed authorize requests', value: (m) => String(m.malformedAuthorize) },
  { label: 'cross-client redemptions', value: (m) => String(m.crossClient) },
  { label: 'browser tabs at cold start', value: (m) => `${m.coldStartTabs} (ideal ${m.servers})` },
  {
    label: 'needs-auth with / without reason',
    value: (m) => NOT_APPLICABLE[m.variant]?.needsAuth ?? `${m.needsAuthWithReason} / ${m.needsAuthWithoutReason}`,
  },
  { label: 'failed sign-ins', value: (m) => NOT_APPLICABLE[m.variant]?.signIns ?? String(m.loginsFailed) },
  { label: 'client registrations (DCR)', value: (m) => String(m.registrations) },
  {
    label: 'servers it could not use',
    value: (m) =>
      unusableServers(m)
        .map((u) => u.server)
        .join(', ') || 'none',
  },
];

/** One line per server a variant could not use, saying why (printed under the table). */
export function renderUnusable(metrics: VariantMetrics[]): string {
  return metrics
    .flatMap((m) => unusableServers(m).map((u) => `${m.variant} cannot use ${u.server}: ${u.reason}`))
    .join('\n');
}

/** The field report's experience: a forced sign-in every 2 to 4 days per server. */
export const FIELD_REPORT_DAYS = { min: 2, max: 4 } as const;

/**
 * The headline per variant: forced re-auths per server per 30 simulated days, over the servers it
 * could use (a server it made no successful call to forces no re-auth and says nothing), and how
 * many days apart that is, next to the field report's "every 2-4 days" (7.5 to 15 per 30 days).
 */
export function headline(m: VariantMetrics): { per30Days: number | null; everyDays: number | null; servers: number } {
  const servers = m.perServer.filter((s) => s.callsOk > 0).length;
  if (servers === 0 || m.days <= 0) return { per30Days: null, everyDays: null, servers };
  const perServerDay = m.forcedReauths / servers / m.days;
  return { per30Days: perServerDay * 30, everyDays: perServerDay > 0 ? 1 / perServerDay : null, servers };
}

/** The headline lines, one per variant, printed above the table and opening the HTML page. */
export function renderHeadline(metrics: VariantMetrics[]): string[] {
  const field = `the field report: one every ${FIELD_REPORT_DAYS.min}-${FIELD_REPORT_DAYS.max} days, ${fmt(30 / FIELD_REPORT_DAYS.max, 1)}-${fmt(30 / FIELD_REPORT_DAYS.min, 1)} per 30 days`;
  return [
    `forced re-auths per server per 30 simulated days (${field}):`,
    ...metrics.map((m) => {
      const h = headline(m);
      if (h.per30Days === null) return `  ${m.variant}: n/a (no server it could use, or no time run)`;
      const every = h.everyDays === null ? `none in ${fmt(m.days, 1)} days` : `one every ${fmt(h.everyDays, 1)} days`;
      return `  ${m.variant}: ${fmt(h.per30Days, 1)} (${every} per server; ${m.forcedReauths} over ${h.servers} servers it could use in ${fmt(m.days, 1)} days)`;
    }),
  ];
}

export function renderTable(metrics: VariantMetrics[], scenarioRows: ScenarioRow[] = []): string {
  const header = ['', ...metrics.map((m) => m.variant)];
  const rows = [...TABLE_ROWS, ...scenarioRows].map((row) => [row.label, ...metrics.map((m) => row.value(m))]);
  const widths = header.map((_, i) => Math.max(...[header, ...rows].map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i === 0 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number)))
      .join('  ')
      .trimEnd();
  const rule = widths.map((w) => '-'.repeat(w)).join('  ');
  const why = renderUnusable(metrics);
  return [line(header), rule, ...rows.map(line), ...(why ? ['', why] : [])].join('\n');
}

// ---------------------------------------------------------------------------------------------
// HTML

const esc = (s: string): string =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);

const COLORS = {
  refresh: '#9aa5b1',
  refresh_failed: '#d9822b',
  login: '#2b6cb0',
  reauth: '#e67e00',
  call_failed: '#d64545',
  revoked: '#7b1f1f',
  reuse: '#8e44ad',
  cross_client: '#c2185b',
  malformed: '#b7791f',
};

const LEGEND: Array<{ kind: keyof typeof COLORS; label: string }> = [
  { kind: 'login', label: 'sign-in tab at cold start' },
  { kind: 'reauth', label: 'forced re-auth (tab after the first login)' },
  { kind: 'refresh', label: 'refresh call (ok)' },
  { kind: 'refresh_failed', label: 'refresh call refused' },
  { kind: 'call_failed', label: 'failed tool calls (per bin)' },
  { kind: 'reuse', label: 'refresh-token reuse' },
  { kind: 'revoked', label: 'grant revoked' },
  { kind: 'cross_client', label: 'cross-client redemption' },
  { kind: 'malformed', label: 'malformed authorize request' },
];

function legendSymbol(kind: keyof typeof COLORS): string {
  const c = COLORS[kind];
  switch (kind) {
    case 'refresh':
    case 'refresh_failed':
      return `<svg width="14" height="14"><line x1="7" y1="1" x2="7" y2="13" stroke="${c}" stroke-width="2"/></svg>`;
    case 'call_failed':
      return `<svg width="14" height="14"><rect x="3" y="4" width="8" height="10" fill="${c}"/></svg>`;
    case 'login':
      return `<svg width="14" height="14"><circle cx="7" cy="7" r="5" fill="${c}"/></svg>`;
    case 'reauth':
      return `<svg width="14" height="14"><path d="M7 1 L13 13 L1 13 Z" fill="${c}"/></svg>`;
    case 'revoked':
      return `<svg width="14" height="14"><rect x="3" y="3" width="8" height="8" fill="${c}"/></svg>`;
    case 'malformed':
      return `<svg width="14" height="14"><path d="M7 2 L12 7 L7 12 L2 7 Z" fill="${c}"/></svg>`;
    default:
      return `<svg width="14" height="14"><path d="M2 2 L12 12 M12 2 L2 12" stroke="${c}" stroke-width="2.5"/></svg>`;
  }
}

/** One SVG per server: a lane per variant, x = simulated days. */
export function renderServerSvg(serverIndex: number, variants: VariantReport[], days: number): string {
  const width = 1180;
  const left = 110;
  const right = 20;
  const laneH = 96;
  const top = 14;
  const axisH = 26;
  const plotW = width - left - right;
  const height = top + laneH * variants.length + axisH;
  const span = Math.max(days, 1e-6);
  const x = (day: number): number => left + Math.min(1, Math.max(0, day / span)) * plotW;
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height}" width="100%" role="img" aria-label="timeline">`,
  );
  variants.forEach((variant, lane) => {
    const y0 = top + lane * laneH;
    parts.push(
      `<rect x="${left}" y="${y0}" width="${plotW}" height="${laneH - 8}" fill="${lane % 2 ? '#f7f9fb' : '#fbfcfd'}" stroke="#e1e6eb"/>`,
    );
    parts.push(
      `<text x="${left - 10}" y="${y0 + laneH / 2}" text-anchor="end" class="lane">${esc(variant.metrics.variant)}</text>`,
    );
    const timeline = variant.timeline.find((t) => t.server === serverIndex);
    if (!timeline) return;
    // Row layout inside the lane: refreshes (top), sign-ins/re-auths, findings, failures (bottom histogram).
    const rowRefresh = y0 + 6;
    const rowTabs = y0 + 33;
    const rowFindingsA = y0 + 50;
    const rowFindingsB = y0 + 63;
    const histBase = y0 + laneH - 10;
    for (const m of timeline.marks) {
      const px = x(m.day).toFixed(1);
      if (m.kind === 'refresh' || m.kind === 'refresh_failed') {
        parts.push(
          `<line x1="${px}" y1="${rowRefresh}" x2="${px}" y2="${rowRefresh + 16}" stroke="${COLORS[m.kind]}" stroke-width="${m.kind === 'refresh' ? 0.8 : 1.6}"/>`,
        );
      }
    }
    // Failed calls as a histogram (bins of 1/100 of the run).
    const bins = new Array<number>(100).fill(0);
    for (const m of timeline.marks)
      if (m.kind === 'call_failed') {
        const bin = Math.min(99, Math.floor((m.day / span) * 100));
        bins[bin] = (bins[bin] ?? 0) + 1;
      }
    const peak = Math.max(1, ...bins);
    bins.forEach((n, i) => {
      if (!n) return;
      const h = Math.max(2, (n / peak) * 16);
      parts.push(
        `<rect x="${(left + (i / 100) * plotW).toFixed(1)}" y="${(histBase - h).toFixed(1)}" width="${(plotW / 100 - 1).toFixed(1)}" height="${h.toFixed(1)}" fill="${COLORS.call_failed}" opacity="0.85"><title>${n} failed call(s)</title></rect>`,
      );
    });
    for (const m of timeline.marks) {
      const px = x(m.day);
      if (m.kind === 'login')
        parts.push(`<circle cx="${px.toFixed(1)}" cy="${rowTabs}" r="4.5" fill="${COLORS.login}" fill-opacity="0.7"/>`);
      if (m.kind === 'reauth')
        parts.push(
          `<path d="M${px.toFixed(1)} ${rowTabs - 6} l6 11 l-12 0 Z" fill="${COLORS.reauth}" fill-opacity="0.8"/>`,
        );
      if (m.kind === 'reuse' || m.kind === 'cross_client') {
        const c = COLORS[m.kind];
        parts.push(
          `<path d="M${(px - 4).toFixed(1)} ${rowFindingsA - 4} l8 8 M${(px + 4).toFixed(1)} ${rowFindingsA - 4} l-8 8" stroke="${c}" stroke-width="2.2"/>`,
        );
      }
      if (m.kind === 'revoked')
        parts.push(
          `<rect x="${(px - 4).toFixed(1)}" y="${rowFindingsB - 4}" width="8" height="8" fill="${COLORS.revoked}"/>`,
        );
      if (m.kind === 'malformed')
        parts.push(`<path d="M${px.toFixed(1)} ${rowFindingsB - 5} l5 5 l-5 5 l-5 -5 Z" fill="${COLORS.malformed}"/>`);
    }
  });
  // Axis: one tick per simulated day (or per 1/4 day for short runs).
  const axisY = top + laneH * variants.length;
  const step = span > 10 ? Math.ceil(span / 10) : span > 2 ? 1 : span > 0.5 ? 0.25 : 0.05;
  for (let d = 0; d <= span + 1e-9; d += step) {
    const px = x(d).toFixed(1);
    parts.push(`<line x1="${px}" y1="${axisY - 8}" x2="${px}" y2="${axisY - 2}" stroke="#6b7785"/>`);
    parts.push(`<text x="${px}" y="${axisY + 12}" text-anchor="middle" class="axis">${Number(d.toFixed(2))}</text>`);
  }
  parts.push(`<text x="${left - 10}" y="${axisY + 12}" text-anchor="end" class="axis">day</text>`);
  parts.push('</svg>');
  return parts.join('');
}

function countByLabel(labels: string[]): Array<[string, number]> {
  const map = new Map<string, number>();
  for (const l of labels) map.set(l, (map.get(l) ?? 0) + 1);
  return [...map.entries()].sort((a, b) => b[1] - a[1]);
}

function scenarioSection(scenario: NonNullable<ArenaReport['scenario']>): string {
  const columns = Object.entries(SCENARIOS[scenario.name].columns ?? {})
    .map(([name, c]) => `<li><b>${esc(name)}</b>: ${esc(c.description)}</li>`)
    .join('');
  const notes = scenario.notes.map((n) => `<li>${esc(n)}</li>`).join('');
  return `<h2 id="scenario">Scenario: ${esc(scenario.title)}</h2>
<p>${esc(scenario.description)}</p>
${columns ? `<ul>${columns}</ul>` : ''}${notes ? `<p class="muted">Prepared before the sessions started:</p><ul class="muted">${notes}</ul>` : ''}`;
}

/** Scenario chaos: per column, the faults by kind and every chain lost, with its cause. */
function chaosSection(metrics: VariantMetrics[]): string {
  const items = metrics.flatMap((m) => {
    const c = m.chaos;
    if (!c) return [];
    const losses = c.losses
      .map((l) =>
        l.cause === 'kill'
          ? `kill (${l.killTrigger}) ${Math.round(l.killOffsetMs ?? 0)} ms after the AS's answer`
          : 'answer taken by a fault after processing',
      )
      .join('; ');
    return [
      `<li><b>${esc(m.variant)}</b>: faults ${esc(faultSummary(c))}; ${c.kills.timer} timer kills, ${c.kills.answer} at a refresh answer, ${c.restarts} restarts; chains lost: ${esc(losses || 'none')}; loss window (AS answer to record written) p50 ${fmt(c.window.medianMs, 0)} ms, max ${fmt(c.window.maxMs, 0)} ms over ${c.window.count} stored refreshes</li>`,
    ];
  });
  return items.length ? `<h3>What the chaos did</h3><ul>${items.join('')}</ul>` : '';
}

export function renderHtml(report: ArenaReport): string {
  const metrics = report.variants.map((v) => v.metrics);
  const [headlineTitle, ...headlineLines] = renderHeadline(metrics);
  const serverCount = metrics[0]?.servers ?? 0;
  const headCells = metrics.map((m) => `<th>${esc(m.variant)}</th>`).join('');
  const cell = (row: Row, m: VariantMetrics): string => {
    if (row.label !== 'servers it could not use') return `<td>${esc(row.value(m))}</td>`;
    const unusable = unusableServers(m);
    if (!unusable.length) return '<td>none</td>';
    return `<td class="cannot">${unusable.map((u) => `<div><b>${esc(u.server)}</b><div class="why">${esc(u.reason)}</div></div>`).join('')}</td>`;
  };
  const scenario = report.scenario;
  const bodyRows = [...TABLE_ROWS, ...(scenario ? SCENARIOS[scenario.name].rows : [])]
    .map(
      (row) => `<tr><td class="label">${esc(row.label.trim())}</td>${metrics.map((m) => cell(row, m)).join('')}</tr>`,
    )
    .join('\n');
  const legend = LEGEND.map((l) => `<span class="key">${legendSymbol(l.kind)} ${esc(l.label)}</span>`).join('');
  const days = Math.max(0, ...metrics.map((m) => m.days));
  const servers = (report.variants[0]?.metrics.perServer ?? []).map((s: ServerMetrics) => {
    const perVariant = report.variants
      .map((v) => {
        const p = v.metrics.perServer.find((x) => x.index === s.index);
        if (!p) return '';
        const cannot = unusableServers(v.metrics).find((u) => u.server === p.name);
        const calls = cannot
          ? `${p.callsOk} / ${p.callsFailed}<div class="why">cannot use it: ${esc(cannot.reason)}</div>`
          : `${p.callsOk} / ${p.callsFailed}`;
        return `<tr><td class="label">${esc(v.metrics.variant)}</td><td class="${cannot ? 'cannot' : ''}">${calls}</td><td>${p.coldStartTabs}</td><td>${p.forcedReauths}</td><td>${p.refreshCalls}</td><td>${p.expiries}</td><td>${fmt(p.refreshPerExpiry)}</td><td>${p.minimumRefreshes}</td><td>${p.redundantRefreshes}</td><td>${p.unauthorized}</td><td>${p.refreshReuses}</td><td>${p.revokedGrants}</td><td>${p.malformedAuthorize}</td><td>${p.crossClient}</td></tr>`;
      })
      .join('');
    return `<section class="server">
<h3>${esc(s.name)} <span class="muted">· ${esc(s.discovery)}</span></h3>
${renderServerSvg(s.index, report.variants, days)}
<table class="small"><thead><tr><th></th><th>calls ok / failed</th><th>cold-start tabs</th><th>forced re-auths</th><th>refresh calls</th><th>AT expiries</th><th>refresh / expiry</th><th>fewest possible</th><th>redundant</th><th>401s</th><th>reuses</th><th>revoked</th><th>malformed</th><th>cross-client</th></tr></thead><tbody>${perVariant}</tbody></table>
</section>`;
  });
  const errors = report.variants
    .map((v) => {
      const top = v.metrics.topErrors.map((e) => `<li><code>${esc(e.error)}</code> × ${e.count}</li>`).join('');
      const reasons = Object.entries(v.metrics.needsAuthReasons)
        .map(([r, n]) => `<code>${esc(r)}</code> × ${n}`)
        .join(', ');
      const refusals = Object.entries(v.metrics.tokenErrors)
        .sort((a, b) => b[1] - a[1])
        .map(([e, n]) => `<li><code>${esc(e)}</code> × ${n}</li>`)
        .join('');
      const causes = countByLabel(
        v.reauthCauses.map((c) => c.asRefusal ?? 'nothing refused at the AS (the client had no usable tokens)'),
      );
      const reauths = causes.length
        ? `<p><b>what the AS had just refused before each forced re-auth</b></p><ul>${causes.map(([c, n]) => `<li><code>${esc(c)}</code> × ${n}</li>`).join('')}</ul>`
        : '';
      return `<div class="card"><h4>${esc(v.metrics.variant)}</h4>${reauths}<p><b>needs-auth reasons:</b> ${reasons || '<span class="muted">none given</span>'}</p>${top ? `<p><b>most frequent failed-call errors</b></p><ul>${top}</ul>` : '<p class="muted">no failed calls</p>'}<p><b>token-endpoint refusals (the AS's error_detail)</b></p>${refusals ? `<ul>${refusals}</ul>` : '<p class="muted">none</p>'}</div>`;
    })
    .join('');
  const o = report.options;
  const skipped = report.skipped.length
    ? `<p class="muted">Skipped: ${report.skipped.map((s) => `${esc(s.variant)} (${esc(s.reason)})`).join('; ')}</p>`
    : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>authkeep arena</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2933;margin:24px auto;max-width:1240px;padding:0 16px;background:#fff}
h1{font-size:24px;margin:0 0 4px} h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #e4e7eb;padding-bottom:4px} h3{font-size:15px;margin:22px 0 6px} h4{margin:0 0 6px}
.muted{color:#7b8794;font-weight:normal}
table{border-collapse:collapse;margin:6px 0} th,td{padding:5px 12px;border-bottom:1px solid #e4e7eb;text-align:right;white-space:nowrap} th{background:#f5f7fa;font-weight:600}
td.label{text-align:left;color:#323f4b} table.main td:not(.label){font-variant-numeric:tabular-nums;font-weight:600}
table.small{font-size:12px;width:100%} table.small th,table.small td{padding:4px 6px} table.small th{white-space:normal;font-weight:600} table.small td{font-variant-numeric:tabular-nums}
.legend{display:flex;flex-wrap:wrap;gap:6px 18px;margin:8px 0 4px;font-size:12.5px} .key{display:inline-flex;align-items:center;gap:5px}
svg text.lane{font-size:13px;font-weight:600;fill:#323f4b} svg text.axis{font-size:11px;fill:#616e7c} svg text.note{font-size:11px;fill:#52606d}
.cards{display:flex;gap:16px;flex-wrap:wrap} .card{flex:1 1 420px;border:1px solid #e4e7eb;border-radius:6px;padding:10px 14px} .card ul{margin:4px 0;padding-left:18px} code{font-size:12px}
td.cannot{white-space:normal;max-width:260px;vertical-align:top} .why{font-size:11.5px;font-weight:normal;color:#7b3f00;text-align:left}
dl{display:grid;grid-template-columns:270px 1fr;gap:4px 14px;font-size:13px} dt{font-weight:600}
</style></head><body>
<h1>authkeep arena</h1>
<p class="muted">${esc(report.generatedAt)} · ${o.sessions} sessions × ${o.servers} servers · ${fmt(days)} simulated days (1 simulated hour = ${o.secondsPerHour} s) · seed ${o.seed} · ${Math.round(report.wallSeconds)} s wall time</p>
<p>Every variant runs ${o.sessions} agent sessions as separate OS processes against its own fresh oidc-provider (DCR, PKCE S256, resource indicators with JWT access tokens, refresh-token rotation with reuse revocation). Access tokens live 1 simulated hour, refresh tokens 15 days sliding, grants 30 days absolute. All sessions start together with no stored credentials, then call a tool on every server at random intervals (the same seeded schedule for every variant). When a server needs a sign-in, a simulated user completes it in a browser tab.</p>
<p class="headline"><b>${esc(headlineTitle ?? '')}</b></p>
<ul class="headline">${headlineLines.map((line) => `<li>${esc(line.trim())}</li>`).join('')}</ul>
${skipped}
${scenario ? scenarioSection(scenario) : ''}
${chaosSection(metrics)}
<h2>Summary</h2>
<table class="main"><thead><tr><th></th>${headCells}</tr></thead><tbody>
${bodyRows}
</tbody></table>
<dl>
<dt>forced re-auths</dt><dd>browser tabs a session had to open for a server after its first successful call there (per server per simulated day: divided by ${serverCount} servers and the days run).</dd>
<dt>refresh calls per AT expiry</dt><dd>refresh_token grants the authorization server received for a server, divided by the access-token lifetimes that elapsed while it was in use; mean (min-max) over servers. One refresh per lifetime is 1.00; N processes refreshing the same expiry give up to N.</dd>
<dt>refresh calls / fewest possible</dt><dd>the fewest refreshes any client could have made for the same calls: one each time a call comes after the last token expired (a lazy client that refreshes on the 401 gets close, at the price of a 401 per expiry; a client that refreshes ahead of expiry pays some extra refreshes instead).</dd>
<dt>401s from MCP servers</dt><dd>requests the MCP servers refused for a missing, expired or invalid token (every discovery probe at the cold start included).</dd>
<dt>redundant refresh calls</dt><dd>refreshes made while a token obtained less than half a lifetime earlier was still fresh.</dd>
<dt>reuses, revoked grants, malformed, cross-client</dt><dd>from the authorization server's own audit: <code>refresh token already used</code> errors and the <code>grant.revoked</code> events they cause; authorize requests with unknown or misspelled parameters, bad PKCE, a redirect_uri or resource other than the registered / published one, no scope; codes or refresh tokens presented by a client other than the one they were issued to.</dd>
</dl>
<h2>Timelines per server</h2>
<div class="legend">${legend}</div>
${servers.join('\n')}
<h2>What the clients and the IdP said</h2>
<div class="cards">${errors}</div>
</body></html>
`;
}
