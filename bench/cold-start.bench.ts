/**
 * Cold-start benchmark: the wall time of `authkeep token <url>` (a stored, valid token, so no
 * network) and of `authkeep status`, each a whole process from spawn to exit, against
 * `node -e 0` in the same run on this machine. Runs alternate (baseline, token, status, baseline,
 * ...) so that a busy machine slows all three alike; the figure is the ratio of medians. Goal:
 * <= 1.6x. Not a test: machines are shared and noisy.
 *
 * It runs the built CLI as the package ships it (bin/authkeep.cjs running dist/cli/authkeep.cjs),
 * so `npm run bench` builds first; AUTHKEEP_BENCH_BIN names another `authkeep` to measure (one
 * installed from the packed tarball, say).
 *
 *   npm run bench                  (or: node --import tsx bench/cold-start.bench.ts, after a build)
 *   BENCH_RUNS=20 npm run bench    (more runs)
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FileCredentialStore } from '../src/store/file-credential-store.js';
import { makeRecord } from '../test/helpers/store-fixtures.js';
import { type BenchResult, median, RESULTS_FILE, recordResults } from './results.js';

const BIN = process.env.AUTHKEEP_BENCH_BIN || fileURLToPath(new URL('../bin/authkeep.cjs', import.meta.url));
const BUILT_CLI = fileURLToPath(new URL('../dist/cli/authkeep.cjs', import.meta.url));
const SERVER = 'https://mcp.example.com/mcp';
const RUNS = Number(process.env.BENCH_RUNS ?? 10);
const GOAL = 1.6;

interface Subject {
  name: string;
  args: string[];
  /** Throws when the run did not do what it should (then its time means nothing). */
  check(stdout: string): void;
}

/** Wall milliseconds of one run of `node ...args`, from spawn to exit. */
function timeRun(subject: Subject, env: NodeJS.ProcessEnv): number {
  const start = process.hrtime.bigint();
  const run = spawnSync(process.execPath, subject.args, { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  if (run.status !== 0) {
    throw new Error(`${subject.name} exited ${run.status ?? run.signal}; stderr: ${run.stderr}`);
  }
  subject.check(run.stdout);
  return ms;
}

if (!process.env.AUTHKEEP_BENCH_BIN && !existsSync(BUILT_CLI)) {
  throw new Error(`${path.relative(process.cwd(), BUILT_CLI)} is missing: run \`npm run build\` (npm run bench does)`);
}

const home = await mkdtemp(path.join(tmpdir(), 'authkeep-cold-start-'));
try {
  const record = makeRecord(SERVER, { tag: 'cold-start' });
  const token = record.tokens?.accessToken;
  await new FileCredentialStore({ home }).transaction(SERVER, 'write', (tx) => tx.write(record));

  const env: NodeJS.ProcessEnv = { ...process.env, AUTHKEEP_HOME: home, NO_COLOR: '1' };
  delete env.AUTHKEEP_FROM_SOURCE;
  delete env.AUTHKEEP_DEBUG;

  const baseline: Subject = {
    name: 'node -e 0',
    args: ['-e', '0'],
    check: () => {},
  };
  const subjects: Subject[] = [
    {
      name: 'authkeep token <url>',
      args: [BIN, 'token', SERVER],
      check: (stdout) => {
        if (stdout !== `${token}\n`) throw new Error(`authkeep token printed ${JSON.stringify(stdout)}`);
      },
    },
    {
      name: 'authkeep status',
      args: [BIN, 'status'],
      check: (stdout) => {
        if (!stdout.includes(SERVER)) throw new Error(`authkeep status did not list ${SERVER}: ${stdout}`);
      },
    },
  ];
  const all = [baseline, ...subjects];
  // One unmeasured round: the first run of each pays for cold file caches.
  for (const subject of all) timeRun(subject, env);
  const times = new Map<Subject, number[]>(all.map((s) => [s, []]));
  for (let i = 0; i < RUNS; i++) {
    for (const subject of all) times.get(subject)?.push(timeRun(subject, env));
  }

  const baselineMs = median(times.get(baseline) ?? []);
  const results: BenchResult[] = subjects.map((subject) => {
    const medianMs = median(times.get(subject) ?? []);
    const ratio = medianMs / baselineMs;
    return {
      name: `cold-start: ${subject.name}`,
      ratio,
      goal: { ratio: GOAL, compare: '<=' },
      goalMet: ratio <= GOAL,
      medianMs,
      baselineMedianMs: baselineMs,
      baseline: baseline.name,
      runs: RUNS,
      node: process.version,
    };
  });

  const ms = (n: number) => `${n.toFixed(1)} ms`;
  console.log(`cold start: median wall time of ${RUNS} alternating runs each, ${BIN}`);
  console.log(`  ${baseline.name.padEnd(22)}: ${ms(baselineMs)}`);
  for (const r of results) {
    const name = r.name.replace('cold-start: ', '');
    console.log(`  ${name.padEnd(22)}: ${ms(r.medianMs as number)}  ratio ${r.ratio.toFixed(2)}x`);
  }
  console.log(`  goal                  : <= ${GOAL}x`);
  console.log(`  goal met              : ${results.every((r) => r.goalMet) ? 'yes' : 'NO'}`);
  recordResults(results);
  console.log(`  figures               : ${path.relative(process.cwd(), RESULTS_FILE)}`);
} finally {
  await rm(home, { recursive: true, force: true });
}
