/**
 * adoption-watch: while a process waits for another process's refresh of a server, watch the record lock-free and adopt the holder's tokens the moment they land.
 *
 * One watch per refresh transaction (token-manager.ts steps 2 and 2a). It is started when the
 * transaction finds the server's refresh lock held, and ends when it adopted (its `signal` is
 * aborted with the `Adopted` tokens, which also ends the lock wait), when the transaction took the
 * lock (`stop`), or when the wait failed. Why watch rather than queue: N processes at one expiry
 * used to take the lock one after another only to adopt under it; and why watch before taking any
 * part in the lock (`deferToHolder`): in a refresh storm the waiters' CPU is what delays the one
 * refresh they all wait for.
 *
 * Not for: taking the lock or refreshing (token-manager.ts), or the OS's file notifications
 * (store/file-change-watch.ts).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { DpopKey } from '../oauth/dpop.js';
import type { CredentialStore } from '../store/credential-store.js';
import type { ServerRecord, Tokens } from '../store/record.js';
import { detectDrift } from './drift.js';
import type { Logger } from './log.js';

/**
 * A watch notified of record replacements still looks this often: every 250 ms while the OS
 * watches the directory (a write from another host of a shared file system is not notified), every
 * 50 ms where it does not.
 */
const WATCH_BACKSTOP_MS = { notified: 250, unnotified: 50 };

/**
 * A process that finds the refresh lock held watches the record this long before taking part in
 * the lock (unless the tokens land, the lock is released or the record changes first), looking at
 * the lock file every `lockCheckMs`. A refresh round trip to a near AS fits in it; a holder killed
 * mid-refresh leaves its lock file, and is taken over this much later than by a lock waiter.
 */
const DEFER_TO_HOLDER = { maxMs: 250, lockCheckMs: 25 };

/** A record version as a waiter saw it (its `version` is undefined when there was no record). */
export interface RecordVersion {
  version: string | undefined;
}

/** The store's cheap version of the record (store.recordVersion), or undefined without one or on failure. */
export function recordVersionOf(store: CredentialStore, serverUrl: string): Promise<RecordVersion | undefined> {
  const versionOf = store.recordVersion;
  if (versionOf === undefined) return Promise.resolve(undefined);
  return versionOf.call(store, serverUrl).then(
    (version) => ({ version }),
    () => undefined,
  );
}

/**
 * When the record's tokens arrived: the instant of the refresh that stored them (its answer
 * arrives after the request, which is what `obtainedAt` says), when that refresh stored these.
 */
export function arrivedAt(record: ServerRecord): number | undefined {
  const at = record.lastRefreshAt;
  return at !== undefined && record.tokens !== undefined && at >= record.tokens.obtainedAt ? at : undefined;
}

/** Tokens another process stored, adopted by a waiter: the reason its watch's signal is aborted with. */
export class Adopted {
  constructor(
    readonly tokens: Tokens,
    readonly generation: number,
    readonly dpop: DpopKey | undefined,
    readonly arrivedAt: number | undefined,
  ) {}
}

/** The reason the watch stops once the lock wait ended (taken, timed out or failed). */
class LockTaken {}

export interface AdoptionWatchOptions {
  store: CredentialStore;
  logger: Logger;
  serverUrl: string;
  /** Tokens in `record` (not needs-auth, no drift) this waiter may serve as they are, else undefined. */
  adoptable(record: ServerRecord): Tokens | undefined;
  /** The record's version taken before the transaction's lock-free read (that content is known). */
  seen: RecordVersion | undefined;
}

export class AdoptionWatch {
  private readonly controller = new AbortController();
  private watching: Promise<void> | undefined;
  /** The look at the record in progress (resolves when it ends), else undefined. */
  private look: Promise<void> | undefined;
  /** Called when a look read a changed record that holds nothing to adopt (ends a deferral). */
  private onUnadoptableChange: (() => void) | undefined;
  private deferred = false;

  constructor(private readonly options: AdoptionWatchOptions) {}

  /** Aborted once the watch adopted (reason: `Adopted`) or was stopped: the lock wait's signal. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** The tokens adopted, once the watch found them. */
  get adopted(): Adopted | undefined {
    const reason: unknown = this.controller.signal.reason;
    return reason instanceof Adopted ? reason : undefined;
  }

  /** The look in progress, for the lock wait to let it finish before it tries the lock again. */
  lookInProgress(): Promise<void> | undefined {
    return this.look;
  }

  /** Start watching (again: a no-op). */
  start(): void {
    this.watching ??= this.watchForAdoptable();
  }

  /** Stop watching: the lock was taken or the wait ended. */
  stop(): void {
    if (!this.controller.signal.aborted) this.controller.abort(new LockTaken());
  }

  /** Resolves once the watch has ended (after `stop`, or once it adopted). */
  async ended(): Promise<void> {
    await this.watching;
  }

  /**
   * Step 2a. The refresh lock is already held (store.refreshUnderWay, or `lockKnownHeld`: the
   * transaction's first create found it held; another process's refresh, most likely): watch the
   * record for the holder's tokens before taking any (further) part in the lock. Returns once
   * they are adopted, the lock is found released, a look found the record changed to something
   * not adoptable (needs-auth, another registration), or after DEFER_TO_HOLDER.maxMs; then, unless
   * adopted, the lock is waited for as usual (the same watch going on). At most once per watch.
   * Why: taking part in the lock (directory checks, an exclusive create, reading and judging the
   * holder's file) costs a waiter several times the CPU of watching, and in a refresh storm dozens
   * of waiters doing so at once take the CPU that the one refresh they wait for needs. Processes
   * meeting one expiry together mostly look before any of them holds the lock; the losers of its
   * create defer then. A store that cannot tell, or does not notify record changes, goes to the
   * lock at once.
   */
  async deferToHolder(lockKnownHeld: boolean): Promise<void> {
    const { store, logger, serverUrl } = this.options;
    const refreshUnderWay = store.refreshUnderWay;
    if (this.deferred || refreshUnderWay === undefined || store.watchRecord === undefined) return;
    const lockHeld = (): Promise<boolean> => refreshUnderWay.call(store, serverUrl).catch(() => false);
    if (!lockKnownHeld && !(await lockHeld())) return;
    this.deferred = true;
    logger.emit('debug', 'refresh.waiting', 'another process is refreshing this server: watching its record', {
      serverUrl,
    });
    const ended = new AbortController();
    const end = (): void => ended.abort();
    const { signal } = this.controller;
    signal.addEventListener('abort', end, { once: true });
    this.onUnadoptableChange = end;
    this.start();
    try {
      for (const giveUpAt = Date.now() + DEFER_TO_HOLDER.maxMs; !ended.signal.aborted; ) {
        const left = giveUpAt - Date.now();
        if (left <= 0) break;
        await sleep(Math.min(DEFER_TO_HOLDER.lockCheckMs, left), undefined, { signal: ended.signal }).catch(
          () => undefined,
        );
        if (!ended.signal.aborted && !(await lockHeld())) break;
      }
    } finally {
      signal.removeEventListener('abort', end);
      this.onUnadoptableChange = undefined;
      // A look reading what the holder just wrote ends first: adopt rather than take the lock to.
      await this.look;
    }
  }

  /**
   * Look at the record lock-free until it holds tokens this waiter may adopt, then abort the
   * watch's signal with them. Where the store notifies replacements (watchRecord: the file
   * store's OS file-change events), it looks once at once and then on each notification, with a
   * stat every WATCH_BACKSTOP_MS in case notifications never come; elsewhere it polls, backing off
   * from 5 ms to 25 ms. Where the store has a cheap record version (a stat), the record is read
   * only when it changed since `seen` or since the last read. Dozens of waiters polling, or
   * reading a record they have just read, take the CPU that the lock holder's refresh needs.
   */
  private async watchForAdoptable(): Promise<void> {
    const { store, serverUrl, adoptable } = this.options;
    const { signal } = this.controller;
    const changes = store.watchRecord?.(serverUrl);
    let delay = 5;
    let looked = false;
    let lastRead = this.options.seen;
    try {
      while (!signal.aborted) {
        if (changes === undefined) {
          await sleep(delay);
          delay = Math.min(25, delay * 1.5);
        } else if (looked) {
          const backstop = changes.notifies ? WATCH_BACKSTOP_MS.notified : WATCH_BACKSTOP_MS.unnotified;
          await changes.next(backstop, signal);
        }
        looked = true;
        if (signal.aborted) return;
        let finish = (): void => {};
        this.look = new Promise<void>((resolve) => {
          finish = resolve;
        });
        try {
          // The version is taken before the read: a write landing in between changes it again.
          const version = await recordVersionOf(store, serverUrl);
          if (version !== undefined && lastRead !== undefined && version.version === lastRead.version) continue;
          lastRead = version;
          const read = await store.read(serverUrl).catch(() => undefined);
          const fresh =
            read?.kind !== 'ok' || read.record.needsAuth || detectDrift(read.record) !== undefined
              ? undefined
              : adoptable(read.record);
          if (fresh === undefined || read?.kind !== 'ok') {
            // Known to have changed (a store without versions is read at every look).
            if (version !== undefined) this.onUnadoptableChange?.();
            continue;
          }
          if (!signal.aborted) {
            this.controller.abort(new Adopted(fresh, read.record.generation, read.record.dpop, arrivedAt(read.record)));
            return;
          }
        } finally {
          this.look = undefined;
          finish();
        }
      }
    } finally {
      changes?.close();
    }
  }
}
