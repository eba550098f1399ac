/**
 * `npm start`: the arena. Runs each client variant (default: naive, then authkeep) against its own
 * fresh authorization servers and MCP servers with N agent sessions as separate processes, then
 * prints the comparison table and writes report.json and report.html to --out (default
 * arena-out/).
 *
 *   npm start -- --days 2 --sessions 8 --servers 5 --variants naive,authkeep --seed 1 --out arena-out
 *
 * --scenario NAME picks the world (arena/scenarios.ts): default (today's), fleet, ci-workers, dpop,
 * short-ttl, scale, chaos.
 *
 * Extra knobs: --seconds-per-hour N (time compression, default 1: a simulated day is 24 s),
 * --interval-ms N (mean real ms between two calls of one session to one server, default 2000).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { faultSummary } from './chaos.js';
import { timeScale } from './clock.js';
import { computeMetrics, type VariantMetrics } from './metrics.js';
import {
  type ArenaReport,
  renderHeadline,
  renderHtml,
  renderTable,
  type VariantReport,
  variantReport,
} from './report.js';
import { runVariant, type VariantProgress } from './runner.js';
import { columnRun, SCENARIO_NAMES, SCENARIOS, type ScenarioName, scenarioColumns } from './scenarios.js';

const KNOWN_VARIANTS = ['naive', 'authkeep', 'naive-v2', 'authkeep-proxy', 'mcp-remote'] as const;

export interface CliOptions {
  scenario: ScenarioName;
  days: number;
  sessions: number;
  servers: number;
  variants: string[];
  seed: number;
  out: string;
  secondsPerHour: number;
  intervalMs: number;
}

export const DEFAULTS: CliOptions = {
  scenario: 'default',
  days: 3,
  sessions: 8,
  servers: 5,
  variants: ['naive', 'authkeep'],
  seed: 1,
  out: 'arena-out',
  secondsPerHour: 1,
  intervalMs: 2000,
};

const USAGE = `usage: npm start -- [options]
  --scenario NAME       the world: ${SCENARIO_NAMES.join(', ')} (default ${DEFAULTS.scenario}; see arena/README.md)
  --days N              simulated days to run (default ${DEFAULTS.days}; 1 day = 24 s at the default scale)
  --sessions N          agent sessions (OS processes) per variant (default ${DEFAULTS.sessions})
  --servers N           protected MCP servers (default ${DEFAULTS.servers})
  --variants LIST       comma-separated: ${KNOWN_VARIANTS.join(',')} (default ${DEFAULTS.variants.join(',')})
  --seed N              seed of the call schedule (default ${DEFAULTS.seed})
  --out DIR             where report.json and report.html go (default ${DEFAULTS.out}/)
  --seconds-per-hour N  real seconds per simulated hour (default ${DEFAULTS.secondsPerHour})
  --interval-ms N       mean real ms between two calls of a session to a server (default ${DEFAULTS.intervalMs})
  -h, --help`;

export function parseCli(argv: string[]): CliOptions | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: {
      scenario: { type: 'string' },
      days: { type: 'string' },
      sessions: { type: 'string' },
      servers: { type: 'string' },
      variants: { type: 'string' },
      seed: { type: 'string' },
      out: { type: 'string' },
      'seconds-per-hour': { type: 'string' },
      'interval-ms': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) return 'help';
  const num = (name: string, raw: string | undefined, fallback: number, integer: boolean, min: number): number => {
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!Number.isFinite(n) || n < min || (integer && !Number.isInteger(n))) {
      throw new Error(`--${name} must be ${integer ? 'an integer' : 'a number'} >= ${min}, got ${JSON.stringify(raw)}`);
    }
    return n;
  };
  const scenarioName = values.scenario ?? DEFAULTS.scenario;
  if (!(SCENARIO_NAMES as readonly string[]).includes(scenarioName))
    throw new Error(`unknown scenario ${JSON.stringify(scenarioName)} (known: ${SCENARIO_NAMES.join(', ')})`);
  const scenario = SCENARIOS[scenarioName as ScenarioName];
  const known = scenarioColumns(scenario, KNOWN_VARIANTS);
  const variants = (values.variants ?? (scenario.defaults.variants ?? DEFAULTS.variants).join(','))
    .split(',')
    .map((v) => v.trim())
    .filter(Boolean);
  for (const v of variants) {
    if (!known.includes(v))
      throw new Error(`unknown variant ${JSON.stringify(v)} in scenario ${scenario.name} (known: ${known.join(', ')})`);
  }
  if (variants.length === 0) throw new Error('--variants names no variant');
  return {
    scenario: scenario.name,
    days: num('days', values.days, DEFAULTS.days, false, 0.01),
    sessions: num('sessions', values.sessions, scenario.defaults.sessions ?? DEFAULTS.sessions, true, 1),
    servers: num('servers', values.servers, scenario.defaults.servers ?? DEFAULTS.servers, true, 1),
    variants: [...new Set(variants)],
    seed: num('seed', values.seed, DEFAULTS.seed, true, 0),
    out: values.out ?? DEFAULTS.out,
    secondsPerHour: num('seconds-per-hour', values['seconds-per-hour'], DEFAULTS.secondsPerHour, true, 1),
    intervalMs: num('interval-ms', values['interval-ms'], DEFAULTS.intervalMs, true, 50),
  };
}

/** Why a variant cannot run here, or undefined when it can. */
function unavailable(variant: string): string | undefined {
  if (variant !== 'mcp-remote') return undefined;
  try {
    createRequire(import.meta.url).resolve('mcp-remote/package.json');
  } catch {
    return 'mcp-remote is not installed (a devDependency: run npm ci)';
  }
  return undefined;
}

function progressBar(stream: NodeJS.WriteStream): (p: VariantProgress) => void {
  let lastDecile = -1;
  return (p) => {
    const fraction = p.totalMs ? p.elapsedMs / p.totalMs : 0;
    const label = `${(p.column ?? p.variant).padEnd(8)} ${p.phase.padEnd(8)}`;
    const stats = `day ${(p.elapsedMs / p.dayMs).toFixed(2)}/${(p.totalMs / p.dayMs).toFixed(2)} · calls ${p.callsOk} ok / ${p.callsFailed} failed · tabs ${p.tabs}`;
    if (stream.isTTY) {
      const width = 30;
      const filled = Math.round(fraction * width);
      stream.write(
        `\r[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${String(Math.round(fraction * 100)).padStart(3)}% ${label} ${stats}\x1b[K`,
      );
      if (p.phase === 'done') stream.write('\n');
    } else {
      const decile = p.phase === 'done' ? 10 : Math.floor(fraction * 10);
      if (decile !== lastDecile && (p.phase === 'running' || p.phase === 'done')) {
        lastDecile = decile;
        stream.write(
          `[arena] ${label} ${String(decile * 10).padStart(3)}% calls ${p.callsOk} ok / ${p.callsFailed} failed, tabs ${p.tabs}\n`,
        );
      }
      if (p.phase === 'done') lastDecile = -1;
    }
  };
}

export async function runArena(
  options: CliOptions,
  onProgress?: (p: VariantProgress) => void,
): Promise<{ report: ArenaReport; metrics: VariantMetrics[] }> {
  const started = Date.now();
  const scale = timeScale(options.secondsPerHour);
  const variants: VariantReport[] = [];
  const skipped: ArenaReport['skipped'] = [];
  const scenario = SCENARIOS[options.scenario];
  const worldNotes: string[] = [];
  for (const column of options.variants) {
    const { variant, world } = columnRun(scenario, column);
    const reason = unavailable(variant);
    if (reason) {
      skipped.push({ variant: column, reason });
      continue;
    }
    const run = await runVariant({
      variant,
      ...(world ? { world } : {}),
      days: options.days,
      sessions: options.sessions,
      servers: options.servers,
      seed: options.seed,
      scale,
      meanIntervalMs: options.intervalMs,
      logDir: path.join(options.out, 'logs'),
      ...(onProgress ? { onProgress } : {}),
    });
    for (const note of run.worldNotes ?? []) worldNotes.push(`${column}: ${note}`);
    variants.push(variantReport(run, computeMetrics(run)));
  }
  const report: ArenaReport = {
    generatedAt: new Date().toISOString(),
    options: {
      days: options.days,
      sessions: options.sessions,
      servers: options.servers,
      variants: options.variants,
      seed: options.seed,
      secondsPerHour: options.secondsPerHour,
      meanCallIntervalMs: options.intervalMs,
    },
    scenario: { name: scenario.name, title: scenario.title, description: scenario.description, notes: worldNotes },
    wallSeconds: (Date.now() - started) / 1000,
    skipped,
    variants,
  };
  return { report, metrics: variants.map((v) => v.metrics) };
}

async function main(): Promise<void> {
  let options: CliOptions | 'help';
  try {
    options = parseCli(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${USAGE}\n`);
    process.exitCode = 2;
    return;
  }
  if (options === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  await mkdir(options.out, { recursive: true });
  process.stderr.write(
    `authkeep arena${options.scenario === 'default' ? '' : ` (scenario ${options.scenario})`}: ${options.variants.join(', ')} · ${options.sessions} sessions x ${options.servers} servers · ${options.days} simulated days (${Math.round(options.days * 24 * options.secondsPerHour)} s per variant)\n`,
  );
  const { report, metrics } = await runArena(options, progressBar(process.stderr));
  for (const s of report.skipped) process.stderr.write(`skipped ${s.variant}: ${s.reason}\n`);
  const jsonPath = path.join(options.out, 'report.json');
  const htmlPath = path.join(options.out, 'report.html');
  await writeFile(jsonPath, `${JSON.stringify(report, null, 2)}\n`);
  await writeFile(htmlPath, renderHtml(report));
  process.stdout.write(
    `\n${renderHeadline(metrics).join('\n')}\n\n${renderTable(metrics, SCENARIOS[options.scenario].rows)}\n\n`,
  );
  for (const m of metrics) {
    if (m.chaos) {
      const lost = m.chaos.losses
        .filter((l) => l.cause === 'kill')
        .map((l) => `${Math.round(l.killOffsetMs ?? 0)} ms`)
        .join(', ');
      process.stdout.write(
        `${m.variant}: faults ${faultSummary(m.chaos)}; ${m.chaos.restarts} restarts; kills in the window at ${lost || 'none'} from the AS's answer\n`,
      );
    }
    if (m.sessionErrors.length)
      process.stdout.write(
        `${m.variant}: ${m.sessionErrors.length} session error(s): ${m.sessionErrors.slice(0, 3).join('; ')}\n`,
      );
  }
  process.stdout.write(`report: ${htmlPath} (JSON: ${jsonPath}) · ${Math.round(report.wallSeconds)} s\n`);
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith('arena/main.ts')) {
  main().catch((err: unknown) => {
    process.stderr.write(`arena failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  });
}
