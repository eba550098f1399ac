/**
 * file-change-watch: wake a waiter when a file in a directory is replaced, from the operating
 * system's change notification (inotify, FSEvents, ReadDirectoryChangesW through `fs.watch`), with
 * a timer as the backstop. One watcher per directory per process, shared by every subscription and
 * closed with the last one.
 *
 * Why: a process waiting for another process's refresh must see the record the moment it lands.
 * Polling it (a stat every few milliseconds) costs every waiter CPU that the one process doing the
 * refresh needs; dozens of waiters on two cores make the refresh itself wait. A notification costs
 * nothing until the rename. Notifications are not promised everywhere (network file systems, some
 * FUSE mounts, an exhausted inotify limit): a subscription also wakes after `maxWaitMs`, so a
 * missing notification only makes the waiter slower, never wrong. Callers always re-check the file
 * itself; a wake is a hint.
 */
import { type FSWatcher, watch } from 'node:fs';
import path from 'node:path';

/** A subscription to one file's replacements. */
export interface FileChanges {
  /**
   * Resolves when the file may have changed since the previous `next` resolved (at once if a
   * notification arrived meanwhile), after `maxWaitMs` otherwise, or when `signal` aborts or the
   * subscription is closed; with which of these happened.
   */
  next(maxWaitMs: number, signal?: AbortSignal): Promise<'changed' | 'timeout' | 'ended'>;
  /**
   * Whether the operating system is watching the directory now. False when the watch could not be
   * set up or failed since: then only the timer wakes `next`, and a caller should keep its timer
   * short.
   */
  readonly notifies: boolean;
  close(): void;
}

interface DirectoryWatch {
  watcher: FSWatcher | undefined;
  listeners: Map<string, Set<() => void>>;
}

const watches = new Map<string, DirectoryWatch>();

function directoryWatch(dir: string): DirectoryWatch {
  const existing = watches.get(dir);
  if (existing) return existing;
  const entry: DirectoryWatch = { watcher: undefined, listeners: new Map() };
  try {
    const watcher = watch(dir, { persistent: false }, (_event, filename) => {
      if (filename === null) {
        // Some platforms do not name the file: wake every subscriber of the directory.
        for (const set of entry.listeners.values()) for (const wake of [...set]) wake();
        return;
      }
      for (const wake of [...(entry.listeners.get(String(filename)) ?? [])]) wake();
    });
    // A watcher that fails (the directory went away, the inotify limit) leaves the timers in charge.
    watcher.on('error', () => {
      watcher.close();
      entry.watcher = undefined;
    });
    entry.watcher = watcher;
  } catch {
    // No notifications here (ENOSPC, ENOENT, unsupported): every subscription falls back to its timer.
  }
  watches.set(dir, entry);
  return entry;
}

function release(dir: string, name: string, wake: () => void): void {
  const entry = watches.get(dir);
  if (!entry) return;
  const set = entry.listeners.get(name);
  set?.delete(wake);
  if (set?.size === 0) entry.listeners.delete(name);
  if (entry.listeners.size === 0) {
    entry.watcher?.close();
    watches.delete(dir);
  }
}

/** Subscribe to replacements of `file` (its directory is watched; the file may not exist yet). */
export function watchFileChanges(file: string): FileChanges {
  const dir = path.dirname(file);
  const name = path.basename(file);
  const entry = directoryWatch(dir);
  const subscription = changeNotices({
    notifies: () => entry.watcher !== undefined,
    close: () => release(dir, name, subscription.notice),
  });
  let set = entry.listeners.get(name);
  if (!set) {
    set = new Set();
    entry.listeners.set(name, set);
  }
  set.add(subscription.notice);
  return subscription.changes;
}

/**
 * The `FileChanges` of one subscription to a source of change notices (the OS's file events here,
 * the fleet store's published record changes in redis-credential-store.ts): the source calls
 * `notice` on each; `notifies` says whether the source is live; `close` releases it (once).
 */
export function changeNotices(source: { notifies(): boolean; close(): void }): {
  notice: () => void;
  changes: FileChanges;
} {
  let changed = false;
  let waiter: ((outcome: 'changed' | 'timeout' | 'ended') => void) | undefined;
  let closed = false;
  const notice = (): void => {
    changed = true;
    waiter?.('changed');
  };
  const changes: FileChanges = {
    next(maxWaitMs, signal) {
      if (changed) {
        changed = false;
        return Promise.resolve('changed');
      }
      if (closed || signal?.aborted) return Promise.resolve('ended');
      return new Promise((resolve) => {
        const done = (outcome: 'changed' | 'timeout' | 'ended'): void => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', ended);
          waiter = undefined;
          changed = false;
          resolve(outcome);
        };
        const ended = (): void => done('ended');
        const timer = setTimeout(() => done('timeout'), Math.max(0, maxWaitMs));
        signal?.addEventListener('abort', ended, { once: true });
        waiter = done;
      });
    },
    get notifies() {
      return !closed && source.notifies();
    },
    close() {
      if (closed) return;
      closed = true;
      waiter?.('ended');
      source.close();
    },
  };
  return { notice, changes };
}
