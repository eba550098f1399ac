/**
 * The `chaos` scenario's machinery (arena/scenarios.ts): token-endpoint faults at the rotating
 * authorization server (testbed/token-faults.ts), sessions SIGKILLed at seeded random moments and
 * at refresh answers, and restarted (the runner does the killing; this module decides when), the
 * stores inspected after the run, and the figures: what was injected, which refresh-token chains
 * were lost and why, and how wide the window between the AS's answer and the record write is.
 *
 * A chain is lost when the AS rotated a refresh token and the new one never reached the record:
 * its answer was taken away by a fault after processing (`lost_answer`), or the process that sent
 * the refresh was killed before writing it (`kill`). The next refresh then presents the spent
 * token: a reuse, and the AS revokes the grant. Every other reuse, revocation or forced re-auth is
 * the client's, except one the client brings on itself without fault: a slow AS that answers after
 * the client's own request timeout (`client_timeout`, counted apart: the answer never came in time).
 *
 * For: runner.ts, metrics.ts, report rows and the chaos test. Not for: the library.
 */
import { readdir } from 'node:fs/promises';

import { openStore } from '../src/store/open-store.js';
import { storeLayout } from '../src/store/paths.js';
import { deriveSeed, exponentialDelay, mulberry32 } from './random.js';
import type { VariantRun } from './runner.js';
import type { AuditEntry, EventAuditEntry, HttpAuditEntry } from './testbed/audit.js';
import { FAULT_KINDS, type TokenFaultPlan, tokenFaultPlan } from './testbed/token-faults.js';

export interface ChaosOptions {
  /** Share of token-endpoint requests at the rotating AS that fail (0.2). */
  faultRate: number;
  /** Of the faults that may come after processing (503, no answer, reset), the share that does. */
  afterShare: number;
  /** Mean real ms between two timer kills (of any session). */
  killMeanIntervalMs: number;
  /** Chance that a refresh answer (200, no fault) kills the process that sent it, at once. */
  answerKillChance: number;
  /** Real ms from a kill to the new process (same session, same home). */
  restartDelayMs: number;
  /** authkeep sessions' `httpTimeoutMs`: when a token request whose answer never comes gives up. */
  httpTimeoutMs: number;
}

export const CHAOS_DEFAULTS: ChaosOptions = {
  faultRate: 0.2,
  afterShare: 1 / 3,
  killMeanIntervalMs: 4000,
  answerKillChance: 0.03,
  restartDelayMs: 200,
  httpTimeoutMs: 3000,
};

export interface KillRecord {
  session: number;
  pid: number;
  /** Epoch ms of the SIGKILL. */
  t: number;
  /** `timer`: a seeded random moment; `answer`: the AS had just answered a refresh this process sent. */
  trigger: 'timer' | 'answer';
  /** answer: the seq of that refresh request at the AS. */
  requestSeq?: number;
}

export interface ChaosLog {
  kills: KillRecord[];
  restarts: number;
  /** Records read back from every home after the run, and how many did not parse or validate. */
  recordsChecked: number;
  unreadableRecords: number;
  /** Files the store moved to quarantine during the run (unreadable records found by a transaction). */
  quarantined: number;
}

/** What the runner lends the chaos controller: killing a session's current process. */
export interface Killer {
  /** SIGKILL session `session`'s process if it is running; its pid, or undefined. */
  killSession(session: number): number | undefined;
  /** SIGKILL the session process with this pid if it is still running; its session, or undefined. */
  killPid(pid: number): number | undefined;
  sessions: number;
}

export interface ChaosController {
  /** For the root authorization server (bed option `rootAs`). */
  tokenFaults: TokenFaultPlan;
  auditSink: (entry: AuditEntry) => void;
  /** Start the timer kills (at go) with the runner's killer. */
  start(killer: Killer): void;
  stop(): void;
  kills: KillRecord[];
}

export function createChaos(options: ChaosOptions, seed: number): ChaosController {
  const kills: KillRecord[] = [];
  const timerRandom = mulberry32(deriveSeed(seed, 7001));
  const answerRandom = mulberry32(deriveSeed(seed, 7002));
  let killer: Killer | undefined;
  let timer: NodeJS.Timeout | undefined;
  let running = false;
  const scheduleTimerKill = (): void => {
    timer = setTimeout(
      () => {
        if (!running || !killer) return;
        const session = Math.floor(timerRandom() * killer.sessions);
        const t = Date.now();
        const pid = killer.killSession(session);
        if (pid !== undefined) kills.push({ session, pid, t, trigger: 'timer' });
        scheduleTimerKill();
      },
      exponentialDelay(timerRandom, options.killMeanIntervalMs),
    );
  };
  return {
    tokenFaults: tokenFaultPlan({
      seed: deriveSeed(seed, 7000),
      rate: options.faultRate,
      afterShare: options.afterShare,
    }),
    auditSink: (entry) => {
      if (!running || !killer || entry.kind !== 'http') return;
      if (entry.endpoint !== 'token' || entry.grantType !== 'refresh_token') return;
      if (entry.status !== 200 || entry.fault || entry.sender === undefined) return;
      // One draw per answered refresh, whatever its sender.
      if (answerRandom() >= options.answerKillChance) return;
      const t = Date.now();
      const pid = Number(entry.sender);
      const session = killer.killPid(pid);
      if (session !== undefined) kills.push({ session, pid, t, trigger: 'answer', requestSeq: entry.seq });
    },
    start: (k) => {
      killer = k;
      running = true;
      scheduleTimerKill();
    },
    stop: () => {
      running = false;
      clearTimeout(timer);
    },
    kills,
  };
}

/** Read back every record of every home (file store): how many, how many unreadable, how many quarantined. */
export async function inspectHomes(
  homes: string[],
): Promise<Pick<ChaosLog, 'recordsChecked' | 'unreadableRecords' | 'quarantined'>> {
  let recordsChecked = 0;
  let unreadableRecords = 0;
  let quarantined = 0;
  for (const home of new Set(homes)) {
    const store = openStore({ home, account: 'default', env: { AUTHKEEP_STORE: 'file' } });
    for (const read of await store.list()) {
      recordsChecked++;
      if (read.kind === 'corrupt') unreadableRecords++;
    }
    quarantined += (await readdir(storeLayout(home).quarantineDir).catch(() => [])).length;
  }
  return { recordsChecked, unreadableRecords, quarantined };
}

// ---------------------------------------------------------------------------------------------
// figures

/**
 * `lost_answer`: a fault after processing took the answer; `kill`: the sender was killed before
 * its record held the new token; `client_timeout`: no fault and no kill, but the client closed the
 * connection before the AS answered (its own request timeout on a slow AS: the answer came too late).
 */
export type LossCause = 'lost_answer' | 'kill' | 'client_timeout';

export interface ChainLoss {
  cause: LossCause;
  /** The rotation whose answer never reached a record: its seq at the AS, arrival and answer instants. */
  rotationSeq: number;
  resources: string[];
  answeredAt: number;
  /**
   * kill: the kill's instant minus the AS's answer (negative: killed while the AS was still
   * processing; when the connection closed before any answer, minus the request's arrival).
   */
  killOffsetMs?: number;
  killTrigger?: KillRecord['trigger'];
  /** The reuse that showed it (the spent token presented again), if one came before the stop. */
  reuseSeq?: number;
}

export interface WindowWidth {
  count: number;
  medianMs: number | null;
  p95Ms: number | null;
  maxMs: number | null;
}

export interface ChaosMetrics {
  tokenRequests: number;
  /** Faults injected, by `phase kind` (e.g. `before reset`). */
  faults: Record<string, number>;
  faultsBefore: number;
  faultsAfter: number;
  /** Faults after processing on refreshes the AS had answered 200: rotations whose answer was lost. */
  lostAnswers: number;
  kills: { timer: number; answer: number };
  restarts: number;
  /** Chains lost, by cause (each explained by a lost answer or a kill of its sender). */
  losses: ChainLoss[];
  lossesByCause: Record<LossCause, number>;
  /** Reuses and revocations by reuse that no loss explains: the client's. */
  unexplainedReuses: number;
  unexplainedRevocations: number;
  /** Forced re-auths (tabs after a session's first successful call to the server) outside loss epochs. */
  forcedReauthsUnexplained: number;
  forcedReauthsAfterLoss: number;
  /** Each unexplained forced re-auth: ms after go, where, and the needs-auth the session met before it. */
  unexplainedReauths: Array<{ t: number; session: number; server: number; reason?: string; detail?: string }>;
  /** Sign-ins the AS answered whose tokens no record got (a fault after processing, or the sender killed). */
  lostSignIns: Array<{ cause: LossCause; seq: number; answeredAt: number }>;
  unreadableRecords: number;
  recordsChecked: number;
  /** needs-auth events whose reason was store_corrupt. */
  storeCorruptEvents: number;
  /** From the AS's answer to the record written, over every refresh a session stored. */
  window: WindowWidth;
  /** The part of it inside the client: from the answer parsed (record.lastRefreshAt) to the record written. */
  clientWindow: WindowWidth;
}

const fp = (value: string | undefined): string | undefined => /sha256:[0-9a-f]{12}/.exec(value ?? '')?.[0];

function widths(list: number[]): WindowWidth {
  const sorted = [...list].sort((a, b) => a - b);
  const at = (q: number): number | null =>
    sorted.length ? (sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number) : null;
  return { count: sorted.length, medianMs: at(0.5), p95Ms: at(0.95), maxMs: sorted.at(-1) ?? null };
}

/** The AS's own answer to a request (a fault after processing replaced it; one before: none). */

export function chaosMetrics(run: VariantRun): ChaosMetrics | undefined {
  const log = run.chaos;
  if (!log) return undefined;
  const http = run.audits.flatMap((a) => a.entries.filter((e): e is HttpAuditEntry => e.kind === 'http'));
  const events = run.audits.flatMap((a) => a.entries.filter((e): e is EventAuditEntry => e.kind === 'event'));
  const bySeq = new Map(http.map((e) => [e.seq, e]));
  const token = http.filter((e) => e.endpoint === 'token');
  const faults: Record<string, number> = {};
  for (const e of token)
    if (e.fault) faults[`${e.fault.phase} ${e.fault.kind}`] = (faults[`${e.fault.phase} ${e.fault.kind}`] ?? 0) + 1;
  const refreshes = token.filter((e) => e.grantType === 'refresh_token').sort((a, b) => a.seq - b.seq);

  // The refresh token each request issued (its `refresh_token.saved` event) and the stored ones.
  const issuedBy = new Map<string, HttpAuditEntry>();
  for (const ev of events) {
    if (ev.event !== 'refresh_token.saved' || ev.requestSeq === undefined || !ev.tokenFingerprint) continue;
    const request = bySeq.get(ev.requestSeq);
    if (request) issuedBy.set(ev.tokenFingerprint, request);
  }
  const issuedSeqs = new Set([...issuedBy.values()].map((e) => e.seq));
  const stored = new Set<string>();
  const width: number[] = [];
  const clientWidth: number[] = [];
  for (const { event } of run.events) {
    if (event.type !== 'refresh_stored' || !event.rt) continue;
    stored.add(event.rt);
    const answered = issuedBy.get(event.rt)?.answeredAt;
    if (answered !== undefined) width.push(event.t - answered);
    if (event.answeredAt !== undefined) clientWidth.push(event.t - event.answeredAt);
  }
  const reportsStores = run.events.some((e) => e.event.type === 'refresh_stored');
  const killsByPid = new Map<number, KillRecord>();
  for (const k of log.kills) killsByPid.set(k.pid, k);

  // Every rotation (a refresh the AS answered 200) whose new token never reached a record, and why.
  const losses = new Map<number, ChainLoss>();
  const lossOf = (rotation: HttpAuditEntry): ChainLoss | undefined => {
    const known = losses.get(rotation.seq);
    if (known) return known;
    const issued = [...issuedBy.entries()].find(([, e]) => e.seq === rotation.seq)?.[0];
    if (issued === undefined || stored.has(issued)) return undefined;
    const answeredAt = rotation.answeredAt ?? rotation.time;
    let loss: ChainLoss | undefined;
    if (rotation.fault?.phase === 'after')
      loss = { cause: 'lost_answer', rotationSeq: rotation.seq, resources: rotation.resources, answeredAt };
    else {
      const kill = rotation.sender !== undefined ? killsByPid.get(Number(rotation.sender)) : undefined;
      // A column that does not report its stores (naive): the sender survived the write if its
      // session made a successful call to that server between the answer and the kill (that
      // client stores a refreshed token before it uses it, and refreshes only an expired one).
      const server = run.servers.find((s) => rotation.resources.includes(s.resource))?.index;
      const survived =
        kill !== undefined &&
        !reportsStores &&
        run.events.some(
          ({ session, event }) =>
            session === kill.session &&
            event.type === 'call' &&
            event.ok &&
            event.server === server &&
            event.t > answeredAt &&
            event.t < kill.t,
        );
      if (kill && !survived)
        loss = {
          cause: 'kill',
          rotationSeq: rotation.seq,
          resources: rotation.resources,
          answeredAt,
          killOffsetMs: kill.t - answeredAt,
          killTrigger: kill.trigger,
        };
      else if (rotation.status === 0)
        loss = { cause: 'client_timeout', rotationSeq: rotation.seq, resources: rotation.resources, answeredAt };
    }
    if (loss) losses.set(rotation.seq, loss);
    return loss;
  };
  for (const r of refreshes) if (r.fault?.phase === 'after' && r.fault.asStatus === 200) lossOf(r);

  let unexplainedReuses = 0;
  const explainedGrants = new Set<string>();
  const explainedReuseTimes: Array<{ time: number; resources: string[] }> = [];
  for (const reuse of run.findings.refreshReuses) {
    const request = reuse.requestSeq !== undefined ? bySeq.get(reuse.requestSeq) : undefined;
    const spent = fp(request?.body?.refresh_token?.[0]);
    const rotation = refreshes.find(
      (e) => e.seq < (request?.seq ?? reuse.seq) && fp(e.body?.refresh_token?.[0]) === spent && issuedSeqs.has(e.seq),
    );
    const loss = spent && rotation ? lossOf(rotation) : undefined;
    if (!loss) {
      unexplainedReuses++;
      continue;
    }
    loss.reuseSeq ??= reuse.seq;
    if (reuse.grantId) explainedGrants.add(reuse.grantId);
    explainedReuseTimes.push({ time: reuse.time, resources: reuse.resources });
  }
  const byReuse = run.findings.revokedGrants.filter((r) => r.cause === 'refresh_reuse');
  const unexplainedRevocations = byReuse.filter(
    (r) =>
      !(r.grantId !== undefined && explainedGrants.has(r.grantId)) &&
      !explainedReuseTimes.some(
        (u) => Math.abs(u.time - r.time) < 1000 && u.resources.some((x) => r.resources.includes(x)),
      ),
  ).length;

  // Sign-ins lost the same way: a code exchange the AS answered 200 whose tokens no record got,
  // its answer taken by a fault, or its sender killed before that session reported the sign-in.
  const serverOf = (resources: string[]): number | undefined =>
    run.servers.find((s) => resources.includes(s.resource))?.index;
  const codeExchanges = token
    .filter((e) => e.grantType === 'authorization_code' && (e.fault ? e.fault.asStatus : e.status) === 200)
    .sort((a, b) => a.time - b.time);
  const signInLost = (e: HttpAuditEntry): LossCause | undefined => {
    if (e.fault?.phase === 'after') return 'lost_answer';
    const kill = e.sender !== undefined ? killsByPid.get(Number(e.sender)) : undefined;
    if (!kill) return undefined;
    const answeredAt = e.answeredAt ?? e.time;
    const server = serverOf(e.resources);
    const reported = run.events.some(
      ({ session, event }) =>
        session === kill.session &&
        event.type === 'login' &&
        event.ok &&
        event.server === server &&
        event.t >= answeredAt &&
        event.t <= kill.t,
    );
    return reported ? undefined : 'kill';
  };
  const lostSignIns = codeExchanges.flatMap((e) => {
    const cause = signInLost(e);
    return cause ? [{ cause, seq: e.seq, resources: e.resources, answeredAt: e.answeredAt ?? e.time }] : [];
  });
  const lostSignInSeqs = new Set(lostSignIns.map((l) => l.seq));

  // Loss epochs per server: from a loss to the first sign-in the client got (a code exchange
  // answered 200, no fault, not lost), and 2 s more.
  const epochs = [
    ...[...losses.values()].map((l) => ({ resources: l.resources, from: l.answeredAt })),
    ...lostSignIns.map((l) => ({ resources: l.resources, from: l.answeredAt })),
  ].map((loss) => {
    const signIn = codeExchanges.find(
      (e) =>
        e.status === 200 &&
        !e.fault &&
        !lostSignInSeqs.has(e.seq) &&
        e.time > loss.from &&
        e.resources.some((r) => loss.resources.includes(r)),
    );
    return { resources: loss.resources, from: loss.from, to: (signIn?.answeredAt ?? Number.POSITIVE_INFINITY) + 2000 };
  });
  const firstOk = new Map<string, number>();
  for (const { session, event } of run.events) {
    if (event.type !== 'call' || !event.ok) continue;
    const key = `${session}:${event.server}`;
    if (!firstOk.has(key) || (firstOk.get(key) as number) > event.t) firstOk.set(key, event.t);
  }
  let forcedReauthsUnexplained = 0;
  let forcedReauthsAfterLoss = 0;
  const unexplainedReauths: ChaosMetrics['unexplainedReauths'] = [];
  for (const { session, event } of run.events) {
    if (event.type !== 'tab') continue;
    const first = firstOk.get(`${session}:${event.server}`);
    if (first === undefined || event.t < first) continue;
    const resource = run.servers[event.server]?.resource ?? '';
    if (epochs.some((ep) => ep.resources.includes(resource) && event.t >= ep.from && event.t <= ep.to))
      forcedReauthsAfterLoss++;
    else {
      forcedReauthsUnexplained++;
      const reason = run.events
        .filter(
          (e) =>
            e.session === session &&
            e.event.type === 'needs_auth' &&
            e.event.server === event.server &&
            e.event.t <= event.t,
        )
        .at(-1)?.event;
      unexplainedReauths.push({
        t: event.t - run.startedAt,
        session,
        server: event.server,
        ...(reason?.type === 'needs_auth' && reason.reason ? { reason: reason.reason } : {}),
        ...(reason?.type === 'needs_auth' && reason.detail ? { detail: reason.detail.slice(0, 200) } : {}),
      });
    }
  }

  const lossList = [...losses.values()].sort((a, b) => a.answeredAt - b.answeredAt);
  return {
    tokenRequests: token.length,
    faults: Object.fromEntries(Object.entries(faults).sort()),
    faultsBefore: token.filter((e) => e.fault?.phase === 'before').length,
    faultsAfter: token.filter((e) => e.fault?.phase === 'after').length,
    lostAnswers: refreshes.filter((e) => e.fault?.phase === 'after' && e.fault.asStatus === 200).length,
    kills: {
      timer: log.kills.filter((k) => k.trigger === 'timer').length,
      answer: log.kills.filter((k) => k.trigger === 'answer').length,
    },
    restarts: log.restarts,
    losses: lossList,
    lossesByCause: {
      lost_answer: lossList.filter((l) => l.cause === 'lost_answer').length,
      kill: lossList.filter((l) => l.cause === 'kill').length,
      client_timeout: lossList.filter((l) => l.cause === 'client_timeout').length,
    },
    unexplainedReuses,
    unexplainedRevocations,
    forcedReauthsUnexplained,
    forcedReauthsAfterLoss,
    unexplainedReauths,
    lostSignIns: lostSignIns.map(({ cause, seq, answeredAt }) => ({ cause, seq, answeredAt })),
    unreadableRecords: log.unreadableRecords + log.quarantined,
    recordsChecked: log.recordsChecked,
    storeCorruptEvents: run.events.filter((e) => e.event.type === 'needs_auth' && e.event.reason === 'store_corrupt')
      .length,
    window: widths(width),
    clientWindow: widths(clientWidth),
  };
}

/** `before 503 3, ...` in FAULT_KINDS order. */
export function faultSummary(c: ChaosMetrics): string {
  const short: Record<string, string> = {
    http_503: '503',
    temporarily_unavailable: 'temp_unavail',
    no_answer: 'no answer',
    reset: 'reset',
  };
  return (['before', 'after'] as const)
    .map(
      (phase) =>
        `${phase}: ${FAULT_KINDS.map((k) => c.faults[`${phase} ${k}`] ?? 0)
          .map((n, i) => `${n} ${short[FAULT_KINDS[i] as string]}`)
          .join(', ')}`,
    )
    .join('; ');
}
