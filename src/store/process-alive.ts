/**
 * process-alive: is a process id still a running process on this host, and can it run?
 *
 * For: deciding that a lock holder or a temp-file writer is dead, so its lock can be taken over at
 * once and its leftovers swept; and telling a lock holder that is merely starved of CPU (alive,
 * able to run) from one that cannot run (stopped), so only the latter is judged by its heartbeat.
 * Not for: anything across hosts (a pid means nothing on another machine; callers compare
 * hostnames first and fall back to heartbeat age).
 */
import { readFileSync } from 'node:fs';

/**
 * What this host says about a lock holder's process:
 * - `dead`: gone (ESRCH), a zombie, or its pid now belongs to a process started at another time;
 * - `stopped`: alive but stopped (SIGSTOP, Ctrl-Z, a debugger): it cannot act until resumed;
 * - `runnable`: alive, the very process that declared its start time, and running or waiting
 *   (a busy machine may starve it, but it is not hung by a signal);
 * - `unknown`: alive as far as kill(pid, 0) can tell, nothing more (no /proc, or no start time
 *   declared to compare with).
 */
export type HolderProcessState = 'dead' | 'stopped' | 'runnable' | 'unknown';

/**
 * The fields of /proc/<pid>/stat after "pid (comm)", or undefined without /proc: fields[0] is
 * proc(5)'s field 3 (the state), so field N is fields[N - 3]. Also the benchmarks' CPU clock.
 */
export function procStatFields(pid: number): string[] | undefined {
  if (process.platform !== 'linux') return undefined;
  try {
    // /proc/<pid>/stat is "pid (comm) S ..."; comm may contain spaces and parentheses, so split
    // what follows the LAST ')': fields[0] is the state (field 3 of proc(5)).
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat
      .slice(stat.lastIndexOf(')') + 2)
      .trim()
      .split(' ');
  } catch {
    // /proc not mounted, or the process vanished meanwhile: the caller's kill() answer stands.
    return undefined;
  }
}

/** proc(5) field 22, starttime: clock ticks after boot at which the process started. */
const START_TIME_INDEX = 22 - 3;

function startTimeOf(fields: string[]): number | undefined {
  const value = Number(fields[START_TIME_INDEX]);
  return Number.isSafeInteger(value) && value >= 0 ? value : undefined;
}

let ownStart: number | null | undefined;

/**
 * This process's start time (proc(5) starttime) on Linux, else undefined. A lock holder records
 * it, so a waiter can tell its process from a later one that was given the same pid.
 */
export function ownProcessStart(): number | undefined {
  if (ownStart === undefined) {
    const fields = procStatFields(process.pid);
    ownStart = (fields && startTimeOf(fields)) ?? null;
  }
  return ownStart ?? undefined;
}

/**
 * The state of process `pid` for a waiter judging its lock. `declaredStart` is the start time the
 * holder recorded (ownProcessStart); a different one means the pid was reused: `dead`. EPERM (a
 * process of another user) counts as alive.
 */
export function holderProcessState(pid: number, declaredStart?: number): HolderProcessState {
  if (!Number.isSafeInteger(pid) || pid <= 0) return 'dead';
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return 'dead';
  }
  const fields = procStatFields(pid);
  if (fields === undefined) return 'unknown';
  const state = fields[0];
  if (state === 'Z' || state === 'X' || state === 'x') return 'dead';
  if (declaredStart !== undefined) {
    const start = startTimeOf(fields);
    if (start !== undefined && start !== declaredStart) return 'dead';
  }
  if (state === 'T' || state === 't') return 'stopped';
  return declaredStart === undefined ? 'unknown' : 'runnable';
}

/**
 * False only when we are sure the process is gone: `kill(pid, 0)` answers ESRCH, or (Linux) the
 * process is a zombie, i.e. it has exited and only its parent has not reaped it yet. A recycled
 * pid makes a dead holder look alive here (no start time to compare); the lock's heartbeat bound
 * covers that case.
 */
export function isProcessAlive(pid: number): boolean {
  return holderProcessState(pid) !== 'dead';
}
