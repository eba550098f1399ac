/**
 * Runs one variant: a fresh bed (authorization servers with their audits, MCP servers), N agent
 * sessions as separate OS processes (session.ts) that all start together with no stored
 * credentials (the cold start) and call tools for the whole run, then collects their events and
 * the audits.
 *
 * For: arena/main.ts and the arena test. Not for: computing figures (metrics.ts) or printing.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

import { type ArenaServer, startArenaBed } from './bed.js';
import { type ChaosLog, createChaos, inspectHomes } from './chaos.js';
import { daysToMs, type TimeScale } from './clock.js';
import { detect, type Findings, mergeFindings } from './detectors.js';
import type { ChildMessage, SessionConfig, SessionEvent, Variant } from './session.js';
import type { AuditEntry } from './testbed/audit.js';
import type { McpServerCounts } from './testbed/mcp-server.js';
import type { PreparedWorld, VariantWorld } from './world.js';

export interface VariantRunOptions {
  variant: Variant;
  days: number;
  sessions: number;
  servers: number;
  seed: number;
  scale: TimeScale;
  /** Mean interval between two calls of one session to one server, real ms. */
  meanIntervalMs: number;
  callTimeoutMs?: number;
  /** Where the sessions' stderr goes (one file per session); none: discarded. */
  logDir?: string;
  /**
   * Run the `days` only once the cold start is over: every session has made a successful call to
   * every server. Then the span in which tokens expire and get refreshed is `days` long however
   * long a slow machine takes to start. The arena's own runs leave it off: there the cold start is
   * part of the first simulated day.
   */
  daysAfterColdStart?: boolean;
  onProgress?: (progress: VariantProgress) => void;
  /** The scenario's changes for this column (arena/world.ts); none: today's world. */
  world?: VariantWorld;
}

export interface VariantProgress {
  variant: Variant;
  /** The scenario's column name, when it differs from the variant. */
  column?: string;
  phase: 'starting' | 'running' | 'stopping' | 'done';
  elapsedMs: number;
  totalMs: number;
  dayMs: number;
  callsOk: number;
  callsFailed: number;
  tabs: number;
}

export interface TimedSessionEvent {
  session: number;
  event: SessionEvent;
}

export interface AuditSnapshot {
  issuer: string;
  entries: AuditEntry[];
}

export interface VariantRun {
  variant: Variant;
  /** The report's column when a scenario names it apart from the variant (e.g. `authkeep-fleet`). */
  column?: string;
  /** The simulated host of each session, by session index (fleet scenarios only). */
  hosts?: number[];
  /** What the scenario prepared before the sessions started. */
  worldNotes?: string[];
  days: number;
  sessions: number;
  scale: TimeScale;
  servers: ArenaServer[];
  /** Epoch ms when the sessions were told to go, and when they were told to stop. */
  startedAt: number;
  stoppedAt: number;
  /**
   * With `daysAfterColdStart`: epoch ms when every session had made a successful call to every
   * server (undefined if that never happened).
   */
  coldStartEndedAt?: number;
  events: TimedSessionEvent[];
  audits: AuditSnapshot[];
  /** What each MCP server saw, by server index (401s show clients presenting expired tokens). */
  mcpCounts: McpServerCounts[];
  findings: Findings;
  /** Sessions that died or reported a fatal error. */
  sessionErrors: string[];
  /** Scenario chaos: the kills, restarts and the stores read back after the run. */
  chaos?: ChaosLog;
  /** Real ms from spawning the first session to the last one exiting. */
  wallMs: number;
}

const SESSION_SCRIPT = fileURLToPath(
  new URL(`./session${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url),
);

function sessionExecArgv(): string[] {
  return import.meta.url.endsWith('.ts') ? ['--import', import.meta.resolve('tsx')] : [];
}

export async function runVariant(options: VariantRunOptions): Promise<VariantRun> {
  const wallStart = Date.now();
  const world = options.world;
  const scale = world?.accessTokenTtlSeconds
    ? { ...options.scale, accessTokenTtlSeconds: world.accessTokenTtlSeconds }
    : options.scale;
  const totalMs = daysToMs(options.days, scale);
  const chaos = world?.chaos ? createChaos(world.chaos, options.seed) : undefined;
  const bedOptions = chaos
    ? { ...world?.bed, rootAs: { ...world?.bed?.rootAs, tokenFaults: chaos.tokenFaults, auditSink: chaos.auditSink } }
    : world?.bed;
  const bed = await startArenaBed(options.servers, scale, bedOptions);
  const storeDir = await mkdtemp(path.join(tmpdir(), `arena-${options.variant}-`));
  let prepared: PreparedWorld | undefined;
  const events: TimedSessionEvent[] = [];
  const sessionErrors: string[] = [];
  const children: ChildProcess[] = [];
  let callsOk = 0;
  let callsFailed = 0;
  let tabs = 0;
  let startedAt = 0;
  let stoppedAt = 0;
  let coldStartEndedAt: number | undefined;
  // Session/server pairs that have made a successful call; all of them: the cold start is over.
  const warm = new Set<string>();
  let markColdStartEnded!: () => void;
  const coldStartEnded = new Promise<void>((resolve) => (markColdStartEnded = resolve));
  let phase: VariantProgress['phase'] = 'starting';
  const progress = (): void =>
    options.onProgress?.({
      variant: options.variant,
      ...(world ? { column: world.column } : {}),
      phase,
      elapsedMs: startedAt ? Math.min(totalMs, Date.now() - startedAt) : 0,
      totalMs,
      dayMs: scale.dayMs,
      callsOk,
      callsFailed,
      tabs,
    });
  const ticker = setInterval(progress, 250);

  try {
    if (options.logDir) await mkdir(options.logDir, { recursive: true });
    prepared = await world?.prepare?.({ bed, storeDir, sessions: options.sessions, scale });
    const machineGrants = world?.machineGrants?.(bed);
    const ready: Array<Promise<void>> = [];
    const homes: string[] = [];
    /** Each session's current process (a killed one is replaced by a new process with the same home). */
    const current: Array<ChildProcess | undefined> = [];
    const alive = new Set<Promise<void>>();
    let restarts = 0;
    const spawn = (session: number, incarnation: number): Promise<void> => {
      const setting = prepared?.session(session) ?? {};
      homes[session] = setting.storeDir ?? storeDir;
      const config: SessionConfig = {
        variant: options.variant,
        session,
        servers: bed.servers.map((s) => ({ index: s.index, url: s.url })),
        storeDir: setting.storeDir ?? storeDir,
        seed: options.seed,
        meanIntervalMs: options.meanIntervalMs,
        callTimeoutMs: options.callTimeoutMs ?? 20_000,
        ...(machineGrants ? { machineGrants } : {}),
        ...(world?.clientCredentials ? { clientCredentials: world.clientCredentials } : {}),
        ...(world?.chaos ? { chaos: { httpTimeoutMs: world.chaos.httpTimeoutMs, incarnation } } : {}),
      };
      const child = fork(SESSION_SCRIPT, [JSON.stringify(config)], {
        execArgv: sessionExecArgv(),
        stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
        env: { ...process.env, NODE_NO_WARNINGS: '1', ...setting.env },
      });
      children.push(child);
      current[session] = child;
      const stderr: string[] = [];
      child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
        if (stderr.length < 2000) stderr.push(chunk);
      });
      let markReady!: () => void;
      let markFailed!: (err: Error) => void;
      const isReady = new Promise<void>((resolve, reject) => {
        markReady = resolve;
        markFailed = reject;
      });
      // A restarted process is told to go as soon as it is ready.
      if (incarnation > 0)
        isReady.then(
          () => child.connected && phase === 'running' && child.send({ type: 'go' }),
          () => {},
        );
      child.on('message', (message: ChildMessage) => {
        if (message.type === 'ready') markReady();
        else if (message.type === 'event') {
          events.push({ session, event: message.event });
          if (message.event.type === 'call') message.event.ok ? callsOk++ : callsFailed++;
          if (message.event.type === 'call' && message.event.ok) {
            warm.add(`${session}:${message.event.server}`);
            if (warm.size === options.sessions * bed.servers.length) markColdStartEnded();
          }
          if (message.event.type === 'tab') tabs++;
        } else if (message.type === 'fatal') {
          sessionErrors.push(`session ${session}: ${message.error}`);
          markFailed(new Error(`session ${session} failed to start: ${message.error}`));
        }
      });
      const exited = new Promise<void>((resolve) => {
        child.once('exit', (code, signal) => {
          if ((code !== 0 && code !== null) || (signal && signal !== 'SIGKILL')) {
            sessionErrors.push(`session ${session} exited with ${code ?? signal}`);
          }
          markFailed(new Error(`session ${session} exited before it was ready`));
          if (options.logDir) {
            const suffix = incarnation > 0 ? `-${incarnation}` : '';
            void writeFile(
              path.join(options.logDir, `${world?.column ?? options.variant}-session-${session}${suffix}.log`),
              stderr.join(''),
            ).catch(() => {});
          }
          resolve();
        });
      });
      alive.add(exited);
      void exited.then(() => alive.delete(exited));
      // Killed by the chaos: a new process with the same home, unless the run is stopping.
      if (chaos) {
        void exited.then(async () => {
          if (child.signalCode !== 'SIGKILL' || phase !== 'running' || !killed.has(child)) return;
          await sleep(world?.chaos?.restartDelayMs ?? 0);
          if (phase !== 'running') return;
          restarts++;
          spawn(session, incarnation + 1).catch(() => {});
        });
      }
      return isReady;
    };
    const killed = new WeakSet<ChildProcess>();
    const kill = (child: ChildProcess | undefined): boolean => {
      if (!child || child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return false;
      killed.add(child);
      return child.kill('SIGKILL');
    };
    for (let session = 0; session < options.sessions; session++) ready.push(spawn(session, 0));
    await withTimeout(Promise.all(ready), 120_000, 'sessions did not become ready');

    startedAt = Date.now();
    phase = 'running';
    for (const child of children) child.send({ type: 'go' });
    if (options.daysAfterColdStart) {
      await withTimeout(coldStartEnded, 120_000, 'the cold start did not end').then(
        () => (coldStartEndedAt = Date.now()),
        () => undefined,
      );
    }
    // The kills start at go, or with daysAfterColdStart once the cold start is over (its sign-ins
    // done: the chaos then hits sessions that have credentials to keep). The faults run throughout.
    chaos?.start({
      sessions: options.sessions,
      killSession: (session) => {
        const child = current[session];
        return kill(child) ? child?.pid : undefined;
      },
      killPid: (pid) => {
        const session = current.findIndex((c) => c?.pid === pid);
        return session >= 0 && kill(current[session]) ? session : undefined;
      },
    });
    await sleep(totalMs);

    stoppedAt = Date.now();
    phase = 'stopping';
    chaos?.stop();
    for (const child of children) if (child.connected) child.send({ type: 'stop' });
    const allExited = Promise.all([...alive]);
    const clean = await withTimeout(allExited, 30_000, 'sessions did not stop').then(
      () => true,
      () => false,
    );
    if (!clean) {
      for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
      await allExited;
    }
    phase = 'done';
    progress();
    const chaosLog: ChaosLog | undefined = chaos
      ? { kills: [...chaos.kills], restarts, ...(await inspectHomes(homes)) }
      : undefined;

    const audits = bed.authorizationServers.map((as) => ({ issuer: as.issuer, entries: [...as.audit.entries()] }));
    const publishedResources = bed.servers.map((s) => s.resource);
    const findings = mergeFindings(audits.map((a) => detect(a.entries, { publishedResources })));
    const hosts = Array.from({ length: options.sessions }, (_, i) => prepared?.session(i).host);
    return {
      variant: options.variant,
      ...(world ? { column: world.column } : {}),
      ...(hosts.every((h) => h !== undefined) ? { hosts: hosts as number[] } : {}),
      ...(prepared?.notes.length ? { worldNotes: prepared.notes } : {}),
      days: options.days,
      sessions: options.sessions,
      scale,
      servers: bed.servers,
      startedAt,
      stoppedAt,
      ...(coldStartEndedAt !== undefined ? { coldStartEndedAt } : {}),
      events,
      audits,
      mcpCounts: bed.mcpCounts(),
      findings,
      sessionErrors,
      ...(chaosLog ? { chaos: chaosLog } : {}),
      wallMs: Date.now() - wallStart,
    };
  } finally {
    clearInterval(ticker);
    chaos?.stop();
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await prepared?.close().catch(() => {});
    await bed.close();
    await rm(storeDir, { recursive: true, force: true }).catch(() => {});
  }
}

async function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(message)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
