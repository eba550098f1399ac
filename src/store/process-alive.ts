/**
 * process-alive: is a process id still a running process on this host?
 *
 * For: deciding that a lock holder or a temp-file writer is dead, so its lock can be taken over at
 * once and its leftovers swept. Not for: anything across hosts (a pid means nothing on another
 * machine; callers compare hostnames first and fall back to heartbeat age).
 */
import { readFileSync } from 'node:fs';

/**
 * False only when we are sure the process is gone: `kill(pid, 0)` answers ESRCH, or (Linux) the
 * process is a zombie, i.e. it has exited and only its parent has not reaped it yet. EPERM (a
 * process of another user) counts as alive. A recycled pid makes a dead holder look alive; the
 * lock's heartbeat bound covers that case.
 */
export function isProcessAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
  if (process.platform === 'linux') {
    try {
      // /proc/<pid>/stat is "pid (comm) S ..."; comm may contain spaces and parentheses, so read
      // the state after the LAST ')'.
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      if (state === 'Z' || state === 'X') return false;
    } catch {
      // /proc not mounted or the process vanished between the two checks: kill() said alive.
    }
  }
  return true;
}
