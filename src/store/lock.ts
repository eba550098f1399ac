/**
 * lock: a cross-process exclusive lock (one lock file per name), with prompt recovery from dead
 * holders and a hard bound on hung ones (docs/DESIGN.md invariants 3 and 7).
 *
 * For: serialising the read-modify-write of one server's record, and one interactive sign-in per
 * server, across every process of this user on this host. `acquireLock` waits (woken by the OS's
 * notice that the lock file was removed, and checking on a small jittered backoff that a holder on
 * this host is still alive; polling the file on that backoff where nothing notifies),
 * `readLockHolder` reports the holder for `authkeep doctor`.
 * Not for: protecting data on its own. A lease on a file system cannot stop a holder that was
 * paused (SIGSTOP, swap, debugger) past the bound from waking up and acting; that is why every
 * record write is ALSO a compare-and-swap on the record's generation (credential-store.ts), which
 * is the fencing token. Not re-entrant: acquiring a lock this process already holds waits for it.
 *
 * Why our own and not a package: proper-lockfile has an open stale-takeover race (two waiters that
 * see the same stale lock can both "take it over" and both believe they hold it) and by default
 * throws from a timer, crashing the process, when it finds its lock compromised; MSAL's lock never
 * recovers from a killed holder. mcp-remote's lease (exclusive create + pid + ttl) is the right
 * shape, and this is that shape plus an exactly-once takeover.
 *
 * The scheme
 * - The lock is the file `<dir>/<name>.lock`, created with O_CREAT|O_EXCL (`wx`): the file system
 *   lets exactly one creator succeed. It holds JSON {pid, hostname, nonce, acquiredAt, purpose,
 *   staleMs, maxHoldMs?, processStart?}; the random nonce identifies this holding (pids and inode
 *   numbers are reused, nonces are not). `staleMs`/`maxHoldMs` are the holder's promise, so every
 *   waiter judges it by the same bounds whatever its own options. `processStart` (Linux) is the
 *   holder's process start time, so a waiter can tell the holder from a later process given the
 *   same pid.
 * - The holder refreshes the file's mtime (the heartbeat) every staleMs/4 from an unref'd timer,
 *   after checking the file still carries its nonce (if not, the handle is marked `lost`).
 * - No lock or claim file is ever followed through a symbolic link (store-trust.ts): creation is
 *   O_EXCL (which refuses any existing link), reads and the heartbeat are O_NOFOLLOW, and a link
 *   or a file that is not the user's own at a lock path names no holder, so it is removed (the
 *   link itself, never its target) like a file abandoned mid-creation. The lock directory must be
 *   the user's own and not writable by others, or acquireLock throws `store_untrusted`.
 * - A waiter treats the lock as stale when (a) its holder is on this host and its pid is dead
 *   (ESRCH, a zombie, or a pid now carrying another start time): at once; (b) the heartbeat is
 *   older than staleMs: a hung holder, unless this host shows the holder is its very process and
 *   able to run (see below); (c) it was taken more than maxHoldMs ago (when the holder set such a
 *   bound); (d) the file has stayed unparseable for UNREADABLE_GRACE_MS (a creator killed between
 *   create and write; a creator that was only slow notices after its write that its file was
 *   unlinked, and retries).
 * - Why a runnable holder on this host is not judged by its heartbeat: a process starved of CPU
 *   (tens of processes on two cores) can miss its heartbeat for longer than staleMs while its
 *   refresh request is in flight; taking its lock over then hands the same refresh token to a
 *   second process, and a strict authorization server revokes the grant. A silent heartbeat
 *   tells a starved holder from a hung one only by guessing; the process state does not guess.
 *   So on Linux, a same-host holder whose recorded start time matches its pid's and which is not
 *   stopped keeps the lock until it releases it, dies, or its maxHoldMs passes (the refresh lock
 *   declares one, and a refresh bounds its requests by it; a lock with no max hold keeps the
 *   heartbeat rule, so it stays bounded). A stopped holder (SIGSTOP, Ctrl-Z), a
 *   holder on another host, and any holder where the state cannot be read (no /proc, no start
 *   time recorded) are judged by the heartbeat as before.
 * - What a lock file declares is capped by the waiter: a staleMs or maxHoldMs above
 *   DECLARED_BOUND_SLACK times the waiter's own bound for that lock counts as that cap, and a
 *   heartbeat or acquiredAt more than MAX_CLOCK_SKEW_MS in the future (or an acquiredAt that does
 *   not parse) makes it stale at once. So a forged or corrupt file naming a live pid (pids are
 *   reused) and huge limits blocks waiters for a bounded time, not for ever.
 * - A holder learns it lost the lock through its heartbeat, and before it writes: `verify()` reads
 *   the lock file again (the store calls it before every compare-and-swap under the lock, and the
 *   token manager before every refresh request). `holdUntil` tells it when waiters may take it
 *   over, so a refresh bounds its requests by it (session/token-manager.ts).
 * - Removing a lock file, whether a holder releasing its own or a waiter removing a stale one,
 *   is only ever done through `removeInstance`, which first creates, again with O_EXCL, a claim
 *   file named after that holding: `<name>.lock.<nonce>.claim`. With the claim held it re-reads the
 *   lock file, and unlinks it only if it still carries that nonce (and, for a takeover, is still
 *   stale); then it removes its claim.
 *
 * Why a takeover happens exactly once (when many waiters see the same stale lock at once)
 * - For a given holding N, at most one process at a time holds the claim `....N.claim` (O_EXCL).
 * - The file at the lock path can only change by being unlinked (creation fails while it exists),
 *   and the only code that unlinks it is a claim holder for the holding it verified. So between
 *   the claim holder's re-read ("the file is N") and its unlink, the file is still N: nobody else
 *   may unlink N (they would need N's claim), and nobody can create a new lock while N exists.
 *   The unlink therefore removes N and never a newer holding.
 * - A waiter that comes late (N already removed) may take N's claim again, but its re-read shows
 *   another nonce or no file, so it unlinks nothing. Hence N is removed exactly once, and then the
 *   waiters race on O_EXCL create, which exactly one wins: no two processes ever both hold it.
 * - Release goes through the same claim, so a slow holder releasing at the same instant a waiter
 *   judges it stale cannot remove the waiter's fresh lock either.
 * - The claim is recoverable: it holds {pid, hostname, nonce} like a lock. A claim whose process
 *   is dead (or that is older than CLAIM_STALE_MS; claims live for microseconds) is removed by the
 *   same procedure one level up (`<claim>.<claimNonce>.claim`), so a claimer killed mid-takeover
 *   cannot wedge the lock. Depth is bounded; past it we simply wait.
 * - The residual risk is the one no file lease can remove: a process paused for longer than the
 *   bound exactly inside its few-syscall critical section. Dead processes (SIGKILL, crash) never
 *   trigger it. Compare-and-swap on the record covers it.
 */
import { randomBytes } from 'node:crypto';
import { channel } from 'node:diagnostics_channel';
import { constants as fsConstants } from 'node:fs';
import { type FileHandle, lstat, open, readdir, unlink } from 'node:fs/promises';
import { hostname as osHostname } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import * as z from 'zod/mini';
import { AuthkeepError } from '../errors.js';
import { ensurePrivateDir, storeIoError } from './atomic-file.js';
import { type FileChanges, watchFileChanges } from './file-change-watch.js';
import { holderProcessState, isProcessAlive, ownProcessStart } from './process-alive.js';
import { checkDirectory, openStoreFile } from './store-trust.js';

/** What a lock (or claim) file holds. Never a secret. */
export interface LockInfo {
  pid: number;
  hostname: string;
  nonce: string;
  /** ISO 8601 time at which the holder took the lock. */
  acquiredAt: string;
  purpose: string;
  /** The holder heartbeats at least every staleMs / 4; older than staleMs means hung. */
  staleMs?: number;
  /** When set, the lock is stale this long after acquiredAt even while heartbeating. */
  maxHoldMs?: number;
  /** The holder's process start time on this host (Linux: proc(5) starttime), if known. */
  processStart?: number;
}

export type StaleReason = 'dead_pid' | 'heartbeat' | 'max_hold' | 'unreadable';

/** A lock as a waiter or `authkeep doctor` sees it. */
export interface LockHolder {
  path: string;
  /** Undefined when the file is not (yet) valid JSON: a creator mid-write, or a torn file. */
  info: LockInfo | undefined;
  /** Milliseconds since the last heartbeat (the file's mtime). */
  heartbeatAgeMs: number;
  /** Why a waiter would take it over now; undefined while the holder is healthy. */
  stale: StaleReason | undefined;
}

export interface AcquireLockOptions {
  /** Give up (AuthkeepError lock_timeout) after this long. Default 30 s. 0 means try once. */
  timeoutMs?: number;
  /** Heartbeat bound: a holder silent for longer is hung. Default 10 s. Recorded in the lock file. */
  staleMs?: number;
  /** Bound on the whole holding even while heartbeating (e.g. a sign-in). Default: none. */
  maxHoldMs?: number;
  /** Recorded in the lock file for diagnostics. Default: the lock name. */
  purpose?: string;
  /** Called when this call finds the lock held, and again whenever the holder changes. */
  onWait?(holder: LockHolder): void;
  /**
   * Awaited once, the first time this call finds the lock held, before it looks at the holder or
   * sets up its wait: a caller that can learn the holder's outcome by cheaper means (the token
   * manager watching the record the holder writes) waits there first, and may end the acquisition
   * by aborting `signal`. When it returns, the wait goes on as usual.
   */
  onHeld?(): Promise<void>;
  /**
   * Awaited after each wait, before the next attempt: a caller woken by the same change (the
   * holder's write, then its release) finishes what that change started first, and may abort the
   * wait through `signal` (the token manager adopting the record the holder wrote).
   */
  beforeRetry?(): Promise<void> | undefined;
  /** Called when this call removed a stale lock (whoever then wins the create). */
  onTakeover?(stale: LockHolder): void;
  /** Called (at most once) when the heartbeat finds that the lock was taken from us. */
  onLost?(): void;
  signal?: AbortSignal;
}

export interface LockHandle {
  readonly name: string;
  readonly path: string;
  /** Our own holding, as written in the lock file. */
  readonly holder: LockInfo;
  /** How long acquisition waited, in milliseconds. */
  readonly waitedMs: number;
  /** True once the heartbeat (or `verify`) found our file gone or replaced: another process judged us stale. */
  readonly lost: boolean;
  /** When waiters may take the lock over even while we heartbeat (acquiredAt + maxHoldMs), if bounded. */
  readonly holdUntil: number | undefined;
  /**
   * Read the lock file now: true while it still carries our nonce; false (and `lost` from then on)
   * once another process has taken it over. Call it before acting on what the lock protects.
   */
  verify(): Promise<boolean>;
  /** Remove the lock if the file still carries our nonce. Idempotent; never throws. */
  release(): Promise<void>;
}

/** What `lockWaitChannel` publishes. */
export interface LockWaitMessage {
  dir: string;
  name: string;
  holder: LockHolder;
}

/**
 * Published whenever `onWait` is called (an acquirer found the lock held, or its holder changed),
 * for observers that did not start the acquisition: a test that must know a waiter is blocked
 * before it releases the lock, or tracing. Nothing is published while nobody subscribes.
 */
export const lockWaitChannel = channel('authkeep:lock:wait');

export const DEFAULT_LOCK_TIMEOUT_MS = 30_000;
export const DEFAULT_STALE_MS = 10_000;
/** A claim lives for a few syscalls; one older than this belongs to a hung process. */
const CLAIM_STALE_MS = 5_000;
/**
 * A lock file that is still unparseable after this long was abandoned mid-creation (its creator
 * was killed between the exclusive create and the write). Short on purpose: if the creator was
 * merely slow, it finds its file unlinked after writing (nlink 0) and does not claim the lock.
 */
const UNREADABLE_GRACE_MS = 500;
const MAX_CLAIM_DEPTH = 3;
const BACKOFF_START_MS = 5;
const BACKOFF_CAP_MS = 50;

const HOSTNAME = osHostname();
/** Recorded in every lock this process takes (see LockInfo.processStart); read once, on first use. */
function processStartField(): { processStart?: number } {
  const start = ownProcessStart();
  return start === undefined ? {} : { processStart: start };
}
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

function errno(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

function newNonce(): string {
  return randomBytes(12).toString('hex');
}

/** Path of the lock file for `name` in `dir`. */
export function lockFilePath(dir: string, name: string): string {
  if (!NAME_PATTERN.test(name)) {
    throw new AuthkeepError('invalid_argument', `lock name ${JSON.stringify(name)} is not file-safe`, {
      field: 'name',
    });
  }
  return path.join(dir, `${name}.lock`);
}

// ---------------------------------------------------------------------------------------------
// Reading a lock or claim file

interface Observed {
  /** The holding's identity: its nonce, or for an unparseable file its inode, size and mtime. */
  id: string;
  info: LockInfo | undefined;
  mtimeMs: number;
  ino: number;
}

/** A bound a holder promised: a positive number of milliseconds; anything else counts as not given. */
const BoundSchema = z.catch(z.optional(z.number().check(z.positive())), undefined);

/** What a lock (or claim) file must hold to say who holds it; validated, never cast. */
const LockInfoSchema = z.object({
  pid: z.int(),
  hostname: z.string(),
  nonce: z.string().check(z.regex(/^[0-9a-f]{8,64}$/)),
  acquiredAt: z.string(),
  purpose: z.string(),
  staleMs: BoundSchema,
  maxHoldMs: BoundSchema,
  processStart: z.catch(z.optional(z.int().check(z.nonnegative())), undefined),
});

/** The holder a lock file names, or undefined when it names none (a creator mid-write, a torn file). */
function parseInfo(text: string): LockInfo | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  const parsed = LockInfoSchema.safeParse(value);
  if (!parsed.success) return undefined;
  const { staleMs, maxHoldMs, processStart, ...holder } = parsed.data;
  return {
    ...holder,
    ...(staleMs !== undefined ? { staleMs } : {}),
    ...(maxHoldMs !== undefined ? { maxHoldMs } : {}),
    ...(processStart !== undefined ? { processStart } : {}),
  };
}

/**
 * Content and mtime of the file at `file`, read through one descriptor; undefined if absent. It is
 * opened without following a symbolic link (store-trust.ts): a link, or a file that is not the
 * user's own, names no holder (an unreadable holding, taken over after UNREADABLE_GRACE_MS; its
 * removal unlinks the link itself). With `touch`, the file's times are set to now through the same
 * descriptor when it still carries that nonce (the heartbeat).
 */
async function inspect(file: string, touch?: string): Promise<Observed | undefined> {
  let fh: FileHandle;
  try {
    fh = await openStoreFile(file, fsConstants.O_RDONLY);
  } catch (err) {
    if (errno(err) === 'ENOENT') return undefined;
    if (err instanceof AuthkeepError && err.code === 'store_untrusted') return untrustedHolding(file);
    throw storeIoError('read lock', file, err);
  }
  try {
    const st = await fh.stat();
    const text = await fh.readFile('utf8');
    const info = parseInfo(text);
    const id = info ? info.nonce : `u${st.ino}-${st.size}-${Math.round(st.mtimeMs * 1000)}`;
    if (touch !== undefined && info?.nonce === touch) {
      const now = new Date();
      await fh.utimes(now, now);
    }
    return { id, info, mtimeMs: st.mtimeMs, ino: st.ino };
  } catch (err) {
    throw storeIoError('read lock', file, err);
  } finally {
    await fh.close().catch(() => undefined);
  }
}

/** A lock path holding a symbolic link or a foreign file, seen without following it. */
async function untrustedHolding(file: string): Promise<Observed | undefined> {
  try {
    const st = await lstat(file);
    return { id: `l${st.ino}-${Math.round(st.mtimeMs * 1000)}`, info: undefined, mtimeMs: st.mtimeMs, ino: st.ino };
  } catch (err) {
    if (errno(err) === 'ENOENT') return undefined;
    throw storeIoError('read lock', file, err);
  }
}

/** A lock file may declare bounds up to this many times the waiter's own; beyond, it is capped. */
export const DECLARED_BOUND_SLACK = 4;
/** Clock skew tolerated between hosts sharing a store; a lock stamped further in the future is forged. */
export const MAX_CLOCK_SKEW_MS = 60_000;

/** What a holder declared, capped at DECLARED_BOUND_SLACK times the waiter's own bound (see the header). */
function capped(declared: number | undefined, own: number | undefined): number | undefined {
  if (own === undefined) return declared;
  return declared === undefined ? own : Math.min(declared, own * DECLARED_BOUND_SLACK);
}

function lockStaleReason(
  obs: Observed,
  fallbackStaleMs: number,
  fallbackMaxHoldMs: number | undefined,
  now: number,
): StaleReason | undefined {
  const age = now - obs.mtimeMs;
  const staleMs = capped(obs.info?.staleMs, fallbackStaleMs) ?? fallbackStaleMs;
  if (obs.info === undefined) return age > Math.min(staleMs, UNREADABLE_GRACE_MS) ? 'unreadable' : undefined;
  const state = obs.info.hostname === HOSTNAME ? holderProcessState(obs.info.pid, obs.info.processStart) : 'unknown';
  if (state === 'dead') return 'dead_pid';
  const maxHoldMs = capped(obs.info.maxHoldMs, fallbackMaxHoldMs);
  // A runnable holder on this host is starved, not hung: its max hold bounds it, when there is
  // one, instead of its heartbeat (see the header).
  const starvedNotHung = state === 'runnable' && maxHoldMs !== undefined;
  if ((!starvedNotHung && age > staleMs) || -age > MAX_CLOCK_SKEW_MS) return 'heartbeat';
  const since = Date.parse(obs.info.acquiredAt);
  if (!Number.isFinite(since) || since - now > MAX_CLOCK_SKEW_MS) return 'max_hold';
  if (maxHoldMs !== undefined && now - since > maxHoldMs) return 'max_hold';
  return undefined;
}

function claimIsStale(obs: Observed, now: number): boolean {
  const age = now - obs.mtimeMs;
  if (obs.info === undefined) return age > UNREADABLE_GRACE_MS;
  if (obs.info.hostname === HOSTNAME && !isProcessAlive(obs.info.pid)) return true;
  return age > CLAIM_STALE_MS;
}

function holderView(file: string, obs: Observed, stale: StaleReason | undefined, now: number): LockHolder {
  return { path: file, info: obs.info, heartbeatAgeMs: Math.max(0, Math.round(now - obs.mtimeMs)), stale };
}

// ---------------------------------------------------------------------------------------------
// Exclusive create and exactly-once removal

/**
 * Create `file` exclusively with `info` as content. Returns false when it already exists.
 * After writing, checks the file is still linked: if this process was paused between create and
 * write long enough for the empty file to be judged abandoned and removed, it does not hold it.
 */
async function createExclusive(file: string, info: LockInfo, retryMissingDir = true): Promise<boolean> {
  let fh: FileHandle;
  try {
    fh = await open(file, 'wx', 0o600);
  } catch (err) {
    if (errno(err) === 'EEXIST') return false;
    if (errno(err) === 'ENOENT' && retryMissingDir) {
      await ensurePrivateDir(path.dirname(file));
      return createExclusive(file, info, false);
    }
    throw storeIoError('create lock', file, err);
  }
  let ino: number | undefined;
  let linked = false;
  let failure: unknown;
  try {
    // Write at once: until this lands the file is empty, and an empty lock file says nothing
    // about its creator (see UNREADABLE_GRACE_MS).
    await fh.writeFile(JSON.stringify(info));
    const st = await fh.stat();
    linked = process.platform === 'win32' || st.nlink > 0;
  } catch (err) {
    failure = err;
    ino = await fh.stat().then(
      (st) => st.ino,
      () => undefined,
    );
  } finally {
    await fh.close().catch(() => undefined);
  }
  if (failure === undefined) return linked;
  // The write failed (disk full...): remove our partial file, only if the path is still that file.
  const obs = await inspect(file).catch(() => undefined);
  const ours = (cur: Observed): boolean =>
    ino !== undefined && cur.ino === ino && (cur.info === undefined || cur.info.nonce === info.nonce);
  if (obs !== undefined && ours(obs)) await removeInstance(file, obs, ours, 0).catch(() => undefined);
  throw storeIoError('write lock', file, failure);
}

type RemoveOutcome = 'removed' | 'gone' | 'changed' | 'busy';

/**
 * Unlink `file` only if it is still the holding `expected` and `stillRemovable` agrees, under an
 * exclusive claim named after that holding (see the header comment for why this is exactly-once).
 */
async function removeInstance(
  file: string,
  expected: Observed,
  stillRemovable: (current: Observed) => boolean,
  depth: number,
): Promise<RemoveOutcome> {
  const claimPath = `${file}.${expected.id}.claim`;
  const claim: LockInfo = {
    pid: process.pid,
    hostname: HOSTNAME,
    nonce: newNonce(),
    acquiredAt: new Date().toISOString(),
    purpose: 'claim',
  };
  if (!(await createExclusive(claimPath, claim))) {
    // Someone else is removing this holding. If that someone died (or hung) mid-way, remove its
    // claim the same way, one level up, so the next attempt can proceed.
    if (depth < MAX_CLAIM_DEPTH) {
      const other = await inspect(claimPath);
      if (other !== undefined && claimIsStale(other, Date.now())) {
        await removeInstance(claimPath, other, (cur) => claimIsStale(cur, Date.now()), depth + 1);
      }
    }
    return 'busy';
  }
  try {
    const current = await inspect(file);
    if (current === undefined) return 'gone';
    if (current.id !== expected.id || !stillRemovable(current)) return 'changed';
    try {
      await unlink(file);
    } catch (err) {
      if (errno(err) === 'ENOENT') return 'gone';
      throw storeIoError('remove lock', file, err);
    }
    return 'removed';
  } finally {
    // Remove our claim if it is still ours (it is, unless we were paused past CLAIM_STALE_MS).
    const mine = await inspect(claimPath).catch(() => undefined);
    if (mine?.info?.nonce === claim.nonce) await unlink(claimPath).catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------------------------
// In-process wake-ups, where the OS does not notify the lock file's removal: a release in this
// process wakes this process's waiters at once (waiters in other processes find out by polling).

const wakers = new Map<string, Set<() => void>>();

function wakeWaiters(file: string): void {
  for (const wake of wakers.get(file) ?? []) wake();
}

function waitForWake(file: string, ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    let set = wakers.get(file);
    if (set === undefined) {
      set = new Set();
      wakers.set(file, set);
    }
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      set.delete(done);
      if (set.size === 0) wakers.delete(file);
      resolve();
    };
    const timer = setTimeout(done, Math.max(0, ms));
    set.add(done);
    signal?.addEventListener('abort', done, { once: true });
  });
}

// ---------------------------------------------------------------------------------------------
// Public API

function timeoutError(name: string, timeoutMs: number, last: LockHolder | undefined): AuthkeepError {
  const who = last?.info
    ? `held by pid ${last.info.pid} on ${last.info.hostname} (${last.info.purpose}) since ${last.info.acquiredAt}`
    : last
      ? 'held by an unreadable lock file'
      : 'contended';
  return new AuthkeepError('lock_timeout', `lock ${name} not acquired within ${timeoutMs} ms: ${who}`, {
    detail: {
      lock: name,
      holderPid: last?.info?.pid,
      holderHostname: last?.info?.hostname,
      holderPurpose: last?.info?.purpose,
      heartbeatAgeMs: last?.heartbeatAgeMs,
    },
  });
}

/**
 * Take the exclusive lock `name` in directory `dir` (created 0700 if missing), waiting up to
 * `timeoutMs`. Dead holders are taken over at once, hung ones after `staleMs`, starved ones on
 * this host only after their max hold (see the header).
 * Throws AuthkeepError `lock_timeout` naming the lock and holder pid, or `store_io`.
 */
export async function acquireLock(dir: string, name: string, options: AcquireLockOptions = {}): Promise<LockHandle> {
  const file = lockFilePath(dir, name);
  const timeoutMs = options.timeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS;
  const staleMs = options.staleMs ?? DEFAULT_STALE_MS;
  if (!(staleMs > 0) || !(timeoutMs >= 0))
    throw new AuthkeepError('invalid_argument', 'staleMs must be > 0 and timeoutMs >= 0', { field: 'options' });
  try {
    // The lock directory must be the user's own (store-trust.ts); a missing one is made on create.
    await checkDirectory(dir, 'directory');
  } catch (err) {
    if (err instanceof AuthkeepError) throw err;
    throw storeIoError('check directory', dir, err);
  }
  const start = Date.now();
  const deadline = start + timeoutMs;
  let backoff = BACKOFF_START_MS + Math.random() * BACKOFF_START_MS;
  let lastHolder: LockHolder | undefined;
  let lastHolderId: string | undefined;
  // Set up once the lock is found held: the OS's notice of the lock file's removal or replacement.
  let changes: FileChanges | undefined;
  let onHeld = options.onHeld;
  try {
    for (;;) {
      if (options.signal?.aborted) throw options.signal.reason ?? new Error('aborted');
      const info: LockInfo = {
        pid: process.pid,
        hostname: HOSTNAME,
        nonce: newNonce(),
        acquiredAt: new Date().toISOString(),
        purpose: options.purpose ?? name,
        staleMs,
        ...(options.maxHoldMs !== undefined ? { maxHoldMs: options.maxHoldMs } : {}),
        ...processStartField(),
      };
      if (await createExclusive(file, info)) return startHolding(file, name, info, Date.now() - start, options.onLost);
      if (onHeld !== undefined) {
        const held = onHeld;
        onHeld = undefined;
        await held();
        if (options.signal?.aborted) throw options.signal.reason ?? new Error('aborted');
      }
      // Watch before looking at the holder, so a release after that look cannot go unnoticed.
      changes ??= watchFileChanges(file);

      const obs = await inspect(file);
      if (obs === undefined) continue; // released between our create and our read: try again now
      const now = Date.now();
      const stale = lockStaleReason(obs, staleMs, options.maxHoldMs, now);
      lastHolder = holderView(file, obs, stale, now);
      if (obs.id !== lastHolderId) {
        lastHolderId = obs.id;
        options.onWait?.(lastHolder);
        if (lockWaitChannel.hasSubscribers)
          lockWaitChannel.publish({ dir, name, holder: lastHolder } satisfies LockWaitMessage);
      }
      if (stale !== undefined) {
        const outcome = await removeInstance(
          file,
          obs,
          (cur) => lockStaleReason(cur, staleMs, options.maxHoldMs, Date.now()) !== undefined,
          0,
        );
        if (outcome === 'removed') options.onTakeover?.(lastHolder);
        if (outcome !== 'busy') continue;
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw timeoutError(name, timeoutMs, lastHolder);
      if (changes.notifies) {
        // The release (an unlink), a takeover or a heartbeat wakes us. Between notifications, on
        // the same backoff as polling, we only ask the OS whether a holder on this host is still
        // alive and within its bounds (a signal and a /proc read, no lock file opened): a holder
        // killed mid-holding is found as promptly as by polling, at a fraction of its CPU.
        for (;;) {
          const left = deadline - Date.now();
          const woke = await changes.next(Math.min(left, backoff + Math.random() * backoff), options.signal);
          backoff = Math.min(backoff * 1.5, BACKOFF_CAP_MS);
          if (woke !== 'timeout' || Date.now() >= deadline) break;
          if (obs.info?.hostname !== HOSTNAME) break; // judged by its file alone: look again
          if (lockStaleReason(obs, staleMs, options.maxHoldMs, Date.now()) !== undefined) break;
        }
      } else {
        // Jittered exponential backoff: 5-10 ms first, then up to 50-100 ms.
        await waitForWake(file, Math.min(remaining, backoff + Math.random() * backoff), options.signal);
        backoff = Math.min(backoff * 1.5, BACKOFF_CAP_MS);
      }
      await options.beforeRetry?.();
    }
  } finally {
    changes?.close();
  }
}

/** Every lock this process holds now, for releaseHeldLocks. */
const heldLocks = new Set<LockHandle>();

/**
 * Release every lock this process holds (each as its own `release()` does). For a process about to
 * exit on a signal (Ctrl-C during a sign-in): its finally blocks will never run, and a lock file
 * left behind makes the next process wait for the takeover and `authkeep doctor` report it.
 */
export async function releaseHeldLocks(): Promise<void> {
  await Promise.all([...heldLocks].map((handle) => handle.release()));
}

function startHolding(
  file: string,
  name: string,
  holder: LockInfo,
  waitedMs: number,
  onLost: (() => void) | undefined,
): LockHandle {
  let lost = false;
  let released = false;
  let beating = false;
  const markLost = (): void => {
    if (lost) return;
    lost = true;
    clearInterval(timer);
    try {
      onLost?.();
    } catch {
      // a callback's failure must not become an unhandled rejection in a timer
    }
  };
  const heartbeatMs = Math.max(5, Math.min((holder.staleMs ?? DEFAULT_STALE_MS) / 4, 5_000));
  const timer = setInterval(() => {
    if (beating || released) return;
    beating = true;
    void (async () => {
      try {
        const current = await inspect(file, holder.nonce);
        if (released) return;
        if (current?.info?.nonce !== holder.nonce) return markLost();
      } catch {
        // transient I/O trouble: the next beat retries; a long outage makes us stale, which is right
      } finally {
        beating = false;
      }
    })();
  }, heartbeatMs);
  timer.unref();

  const handle: LockHandle = {
    name,
    path: file,
    holder,
    waitedMs,
    get lost() {
      return lost;
    },
    holdUntil: holder.maxHoldMs === undefined ? undefined : Date.parse(holder.acquiredAt) + holder.maxHoldMs,
    async verify() {
      if (lost) return false;
      if (released) return false;
      const current = await inspect(file);
      if (current?.info?.nonce === holder.nonce) return true;
      markLost();
      return false;
    },
    async release() {
      if (released) return;
      released = true;
      heldLocks.delete(handle);
      clearInterval(timer);
      const ours: Observed = { id: holder.nonce, info: holder, mtimeMs: 0, ino: -1 };
      const giveUpAt = Date.now() + 2_000;
      try {
        // 'busy' means someone holds our holding's claim right now: a waiter re-checking whether we
        // are stale. It lets go within microseconds; then we remove our file ourselves.
        while ((await removeInstance(file, ours, () => true, 0)) === 'busy' && Date.now() < giveUpAt)
          await sleep(2 + Math.random() * 3);
      } catch {
        // Could not remove it: waiters will find it stale (we stop heartbeating) or our pid dead.
      }
      wakeWaiters(file);
    },
  };
  heldLocks.add(handle);
  return handle;
}

/**
 * Who holds lock `name` in `dir`, and whether a waiter would take it over now; undefined when the
 * lock is free. For `authkeep doctor`; `staleMs` is used only when the holder did not record one.
 */
export async function readLockHolder(
  dir: string,
  name: string,
  options: { staleMs?: number; maxHoldMs?: number } = {},
): Promise<LockHolder | undefined> {
  const file = lockFilePath(dir, name);
  const obs = await inspect(file);
  if (obs === undefined) return undefined;
  const now = Date.now();
  return holderView(file, obs, lockStaleReason(obs, options.staleMs ?? DEFAULT_STALE_MS, options.maxHoldMs, now), now);
}

/**
 * Every lock file in `dir` with its holder (for `authkeep doctor`), judged as a waiter with the
 * bounds `boundsFor(name)` would judge it (what the file declares capped by them).
 */
export async function listLocks(
  dir: string,
  boundsFor: (name: string) => { staleMs?: number; maxHoldMs?: number } = () => ({}),
): Promise<Array<LockHolder & { name: string }>> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if (errno(err) === 'ENOENT') return [];
    throw storeIoError('list', dir, err);
  }
  const out: Array<LockHolder & { name: string }> = [];
  for (const entry of names.sort()) {
    if (!entry.endsWith('.lock')) continue;
    const name = entry.slice(0, -'.lock'.length);
    if (!NAME_PATTERN.test(name)) continue;
    const holder = await readLockHolder(dir, name, boundsFor(name));
    if (holder !== undefined) out.push({ ...holder, name });
  }
  return out;
}

/**
 * Remove claim files left behind by processes that died mid-removal (harmless but untidy), using
 * the same exactly-once removal. Returns how many were removed.
 */
export async function sweepStaleClaims(dir: string): Promise<number> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if (errno(err) === 'ENOENT') return 0;
    throw storeIoError('list', dir, err);
  }
  let removed = 0;
  for (const entry of names) {
    if (!entry.endsWith('.claim')) continue;
    const file = path.join(dir, entry);
    const obs = await inspect(file);
    if (obs === undefined || !claimIsStale(obs, Date.now())) continue;
    if ((await removeInstance(file, obs, (cur) => claimIsStale(cur, Date.now()), 1)) === 'removed') removed++;
  }
  return removed;
}
