/**
 * credential-store: the per-server record store (DESIGN.md invariants 2, 3, 4, 7), and the
 * `CredentialStore` interface a later keychain or Redis backend implements too.
 *
 * For: lock-free reads of a server's ONE record, locked read-modify-write transactions whose
 * writes are compare-and-swap on the record's generation, quarantine of corrupt records, listing,
 * and finding a reusable registration by issuer.
 * Not for: deciding what to write (session/), talking to the AS (oauth/), caching (the session's
 * hot path keeps tokens in memory and never touches this on a cache hit).
 *
 * Files under home (see paths.ts): `servers/<key>.json` (mode 0600), `locks/`, `quarantine/`,
 * `outcomes/<key>.json` (the last sign-in's outcome, see login-outcome.ts); directories 0700.
 * Every write is whole: temp file, fsync, rename, fsync dir (atomic-file.ts). The store stamps
 * `updatedAt` on every write.
 *
 * Which lock protects which write
 * - The RECORD lock (`locks/<key>.refresh.lock`) guards every change of `servers/<key>.json`: each
 *   compare-and-swap (read the on-disk generation, compare, rename) runs while it is held, so two
 *   writers can never both pass the check. Purposes 'refresh' and 'write' hold it for their whole
 *   transaction: a refresh keeps it across the token request, so the refresh token is spent once
 *   machine-wide and the next holder re-reads and adopts the result (invariant 3).
 * - The SIGN-IN lock (`locks/<key>.login.lock`) is held by a 'login' transaction for its whole,
 *   possibly minutes-long, interactive run, so one process signs in while the others wait. It does
 *   NOT hold the record lock meanwhile: refreshes keep working (for this server too; for other
 *   servers every lock is a different file anyway). Instead each `tx.write`/`tx.delete` of a login
 *   takes the record lock just for the compare-and-swap, so a login result is still refused if a
 *   refresh wrote in between.
 * - Reads take no lock: a rename is atomic, so a reader sees the old or the new file. The only
 *   exception is a corrupt record: it is moved to quarantine under the record lock, after a re-read
 *   under that lock, so a reader can never move aside a valid record a writer has just renamed in.
 * - Lock order, to stay deadlock-free: sign-in lock, then record lock, never the reverse; and no
 *   transaction inside another for the same server (the lock is not re-entrant).
 *
 * Compare-and-swap: `tx.write(next)` states the generation it is based on in `next.generation`
 * (normally the generation `tx.read()` returned; 0 means "there is no record"). It is refused with
 * `store_conflict`, leaving the file byte-for-byte unchanged, unless the on-disk generation (0 when
 * missing) still equals it, and unless it equals what this transaction read. It writes
 * generation + 1 and returns the record as written. The generation is also the fencing token that protects against a holder that was paused
 * past its lock's bound (see lock.ts).
 */

import { randomBytes } from 'node:crypto';
import { readdir, rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import { AuthkeepError } from '../errors.js';
import type { Registration } from '../oauth/types.js';
import { ensurePrivateDir, readFileIfExists, storeIoError, sweepTempFiles, writeFileAtomic } from './atomic-file.js';
import { acquireLock, type LockHandle, type LockHolder } from './lock.js';
import { type LoginOutcome, LoginOutcomeSchema, parseLoginOutcome } from './login-outcome.js';
import { defaultHome, RECORD_KEY_PATTERN, recordKey, type StoreLayout, storeLayout } from './paths.js';
import { RegistrationSchema, type ServerRecord, ServerRecordSchema } from './record.js';

export type { LoginOutcome } from './login-outcome.js';

export type StorePurpose = 'refresh' | 'login' | 'write';

export type ReadResult =
  | { kind: 'missing' }
  | { kind: 'ok'; record: ServerRecord }
  /** The file failed to parse or validate; it was moved to `movedTo` (never deleted). */
  | { kind: 'corrupt'; movedTo: string; error: AuthkeepError };

export interface TransactionOptions {
  /** How long to wait for the lock before `lock_timeout`. */
  timeoutMs?: number;
  /** Heartbeat bound of our holding (see lock.ts). */
  staleMs?: number;
  /** Bound on our whole holding, even while heartbeating. */
  maxHoldMs?: number;
  /** Called when another process holds the lock and we wait (to say so to the user). */
  onWait?(holder: LockHolder): void;
  signal?: AbortSignal;
}

export interface StoreTransaction {
  readonly serverUrl: string;
  readonly key: string;
  readonly purpose: StorePurpose;
  /** A fresh read (under the transaction's lock for 'refresh' and 'write'). */
  read(): Promise<ReadResult>;
  /** Compare-and-swap write (see the header); returns the record as written (generation + 1). */
  write(next: ServerRecord): Promise<ServerRecord>;
  /** Remove the record (compare-and-swap against what this transaction read, if it read). */
  delete(): Promise<boolean>;
  /** True once this transaction's lock was taken over by another process (we were too slow). */
  readonly lockLost: boolean;
}

export interface RegistrationMatch {
  serverUrl: string;
  key: string;
  generation: number;
  registration: Registration;
}

/** The store contract; FileCredentialStore is the file backend. */
export interface CredentialStore {
  /**
   * Lock-free read of the record. A corrupt record is moved to quarantine and reported once; the
   * next read says `missing`. Inside a transaction use `tx.read()` instead: moving a corrupt record
   * aside takes the record lock, which a 'refresh'/'write' transaction of this process already holds.
   */
  read(serverUrl: string): Promise<ReadResult>;
  /**
   * Run `fn` holding the server's lock for `purpose` ('refresh' and 'write': the record lock for
   * the whole of `fn`; 'login': the sign-in lock, with each write taking the record lock briefly).
   * The lock is released when `fn` settles. Throws `lock_timeout` if the lock cannot be taken.
   */
  transaction<T>(
    serverUrl: string,
    purpose: StorePurpose,
    fn: (tx: StoreTransaction) => Promise<T>,
    options?: TransactionOptions,
  ): Promise<T>;
  list(): Promise<Array<ReadResult & { key: string }>>;
  /** Records whose registration is at `issuer`, newest registration first. */
  findRegistrationsByIssuer(issuer: string): Promise<RegistrationMatch[]>;
  /** Remove the record unconditionally (under the record lock). True if there was one. */
  delete(serverUrl: string): Promise<boolean>;
  /** The last sign-in's outcome for this server, if any (advisory; see login-outcome.ts). */
  readLoginOutcome(serverUrl: string): Promise<LoginOutcome | undefined>;
  /** Record a sign-in's outcome (written whole, 0600). Call it while holding the login lock. */
  writeLoginOutcome(serverUrl: string, outcome: LoginOutcome): Promise<void>;
  /**
   * One registration per issuer, machine-wide: under the issuer's registration lock, the one
   * already kept (or held by a record) for `issuer`, else `register()`'s, kept at once. Servers
   * signing in to the same issuer at the same time then share one client instead of each
   * registering its own.
   */
  registerOnce(issuer: string, register: () => Promise<Registration>): Promise<Registration>;
}

export interface LockPolicy {
  timeoutMs: number;
  staleMs: number;
  maxHoldMs?: number;
}

/** Default lock bounds per purpose. 'write' shares the record lock with 'refresh'. */
export const DEFAULT_LOCK_POLICIES: Readonly<Record<StorePurpose, LockPolicy>> = {
  // Waiting out another process's refresh (a token request with retries) is normal.
  refresh: { timeoutMs: 60_000, staleMs: 10_000, maxHoldMs: 120_000 },
  write: { timeoutMs: 60_000, staleMs: 10_000, maxHoldMs: 120_000 },
  // A sign-in waits on a human: hold up to 10 minutes while alive and heartbeating.
  login: { timeoutMs: 11 * 60_000, staleMs: 10_000, maxHoldMs: 10 * 60_000 },
};

export interface FileCredentialStoreOptions {
  /** Default: `defaultHome()`. */
  home?: string;
  /** Override lock bounds per purpose. */
  locks?: Partial<Record<StorePurpose, Partial<LockPolicy>>>;
}

const PURPOSES: readonly StorePurpose[] = ['refresh', 'login', 'write'];

function conflict(key: string, message: string, expected: number, actual: number | 'missing'): AuthkeepError {
  return new AuthkeepError('store_conflict', `write to ${key} refused: ${message}`, {
    detail: { key, expected, actual },
  });
}

export class FileCredentialStore implements CredentialStore {
  readonly home: string;
  readonly layout: StoreLayout;
  private readonly policies: Record<StorePurpose, LockPolicy>;

  constructor(options: FileCredentialStoreOptions = {}) {
    this.home = path.resolve(options.home ?? defaultHome());
    this.layout = storeLayout(this.home);
    this.policies = {
      refresh: { ...DEFAULT_LOCK_POLICIES.refresh, ...options.locks?.refresh },
      write: { ...DEFAULT_LOCK_POLICIES.write, ...options.locks?.write },
      login: { ...DEFAULT_LOCK_POLICIES.login, ...options.locks?.login },
    };
  }

  async read(serverUrl: string): Promise<ReadResult> {
    return this.readKey(recordKey(serverUrl), false);
  }

  async transaction<T>(
    serverUrl: string,
    purpose: StorePurpose,
    fn: (tx: StoreTransaction) => Promise<T>,
    options: TransactionOptions = {},
  ): Promise<T> {
    if (!PURPOSES.includes(purpose))
      throw new AuthkeepError('invalid_argument', `unknown transaction purpose ${String(purpose)}`, {
        field: 'purpose',
      });
    const key = recordKey(serverUrl);
    const policy = this.policies[purpose];
    const maxHoldMs = options.maxHoldMs ?? policy.maxHoldMs;
    const lockOptions: TransactionOptions = {
      timeoutMs: options.timeoutMs ?? policy.timeoutMs,
      staleMs: options.staleMs ?? policy.staleMs,
      ...(maxHoldMs !== undefined ? { maxHoldMs } : {}),
      ...(options.onWait ? { onWait: options.onWait } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    };
    const lockName = this.layout.lockName(key, purpose === 'login' ? 'login' : 'refresh');
    const handle = await acquireLock(this.layout.locksDir, lockName, { ...lockOptions, purpose });
    const tx = new FileTransaction(this, serverUrl, key, purpose, handle);
    try {
      return await fn(tx);
    } finally {
      tx.finish();
      await handle.release();
    }
  }

  async list(): Promise<Array<ReadResult & { key: string }>> {
    let names: string[];
    try {
      names = await readdir(this.layout.serversDir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw storeIoError('list', this.layout.serversDir, err);
    }
    // Temp files of writers killed mid-write may hold secrets: sweep them while we are here.
    await sweepTempFiles(this.layout.serversDir).catch(() => undefined);
    const keys = names
      .filter((name) => name.endsWith('.json'))
      .map((name) => name.slice(0, -'.json'.length))
      .filter((key) => RECORD_KEY_PATTERN.test(key))
      .sort();
    const out: Array<ReadResult & { key: string }> = [];
    for (const key of keys) {
      const result = await this.readKey(key, false);
      if (result.kind !== 'missing') out.push({ ...result, key });
    }
    return out;
  }

  async findRegistrationsByIssuer(issuer: string): Promise<RegistrationMatch[]> {
    const matches: RegistrationMatch[] = [];
    for (const entry of await this.list()) {
      if (entry.kind !== 'ok' || entry.record.registration.issuer !== issuer) continue;
      const { record } = entry;
      matches.push({
        serverUrl: record.serverUrl,
        key: entry.key,
        generation: record.generation,
        registration: record.registration,
      });
    }
    return matches.sort((a, b) => b.registration.registeredAt.localeCompare(a.registration.registeredAt));
  }

  async delete(serverUrl: string): Promise<boolean> {
    return this.transaction(serverUrl, 'write', (tx) => tx.delete());
  }

  async readLoginOutcome(serverUrl: string): Promise<LoginOutcome | undefined> {
    const bytes = await readFileIfExists(this.layout.outcomePath(recordKey(serverUrl)));
    return bytes === undefined ? undefined : parseLoginOutcome(bytes);
  }

  async writeLoginOutcome(serverUrl: string, outcome: LoginOutcome): Promise<void> {
    const parsed = LoginOutcomeSchema.safeParse(outcome);
    if (!parsed.success) throw new AuthkeepError('invalid_argument', 'login outcome is invalid', { field: 'outcome' });
    await ensurePrivateDir(this.home, { tighten: false });
    await ensurePrivateDir(this.layout.outcomesDir);
    await writeFileAtomic(this.layout.outcomePath(recordKey(serverUrl)), `${JSON.stringify(parsed.data)}\n`);
  }

  async registerOnce(issuer: string, register: () => Promise<Registration>): Promise<Registration> {
    const issuerKey = recordKey(issuer);
    await ensurePrivateDir(this.home, { tighten: false });
    await ensurePrivateDir(this.layout.locksDir);
    const policy = DEFAULT_LOCK_POLICIES.write;
    const handle = await acquireLock(this.layout.locksDir, this.layout.lockName(issuerKey, 'register'), {
      timeoutMs: policy.timeoutMs,
      staleMs: policy.staleMs,
      ...(policy.maxHoldMs !== undefined ? { maxHoldMs: policy.maxHoldMs } : {}),
      purpose: 'register',
    });
    try {
      const kept = await this.readKeptRegistration(issuerKey, issuer);
      if (kept) return kept;
      const held = (await this.findRegistrationsByIssuer(issuer))[0]?.registration;
      if (held) return held;
      const registration = await register();
      await ensurePrivateDir(this.layout.registrationsDir);
      await writeFileAtomic(this.layout.registrationPath(issuerKey), `${JSON.stringify(registration)}\n`);
      return registration;
    } finally {
      await handle.release();
    }
  }

  /** The registration kept for `issuer`, or undefined when absent or unreadable (then re-registered). */
  private async readKeptRegistration(issuerKey: string, issuer: string): Promise<Registration | undefined> {
    const bytes = await readFileIfExists(this.layout.registrationPath(issuerKey));
    if (bytes === undefined) return undefined;
    try {
      const parsed = RegistrationSchema.safeParse(JSON.parse(bytes.toString('utf8')));
      return parsed.success && parsed.data.issuer === issuer ? parsed.data : undefined;
    } catch {
      return undefined;
    }
  }

  /** Names of files in quarantine/ for `serverUrl` (or all), oldest first: for status and doctor. */
  async listQuarantine(serverUrl?: string): Promise<string[]> {
    const prefix = serverUrl === undefined ? '' : `${recordKey(serverUrl)}.`;
    try {
      const names = await readdir(this.layout.quarantineDir);
      return names.filter((name) => name.startsWith(prefix) && name.endsWith('.json')).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw storeIoError('list', this.layout.quarantineDir, err);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Internals shared with FileTransaction

  /** Read `servers/<key>.json`; a corrupt file is moved aside (under the record lock). */
  async readKey(key: string, recordLockHeld: boolean): Promise<ReadResult> {
    const file = this.layout.recordPath(key);
    const bytes = await readFileIfExists(file);
    if (bytes === undefined) return { kind: 'missing' };
    const parsed = parseRecord(bytes, key);
    if (parsed.ok) return { kind: 'ok', record: parsed.record };
    if (!recordLockHeld) {
      // Re-check under the record lock: a writer may have just renamed a valid record in.
      return this.withRecordLock(key, 'quarantine', () => this.readKey(key, true));
    }
    const movedTo = await this.quarantine(file, key);
    return {
      kind: 'corrupt',
      movedTo,
      error: new AuthkeepError('store_corrupt', `stored record ${key} ${parsed.problem}; moved to ${movedTo}`, {
        ...(parsed.field !== undefined ? { field: parsed.field } : {}),
        detail: { key, movedTo },
      }),
    };
  }

  /** Hold the record lock for a short step (a login's write, a quarantine). */
  async withRecordLock<T>(key: string, purpose: string, fn: () => Promise<T>): Promise<T> {
    const policy = this.policies.write;
    const handle = await acquireLock(this.layout.locksDir, this.layout.lockName(key, 'refresh'), {
      timeoutMs: policy.timeoutMs,
      staleMs: policy.staleMs,
      ...(policy.maxHoldMs !== undefined ? { maxHoldMs: policy.maxHoldMs } : {}),
      purpose,
    });
    try {
      return await fn();
    } finally {
      await handle.release();
    }
  }

  /** Write a record file whole. Caller holds the record lock and has done the compare. */
  async writeRecordFile(key: string, record: ServerRecord): Promise<void> {
    await this.ensureDirs();
    await writeFileAtomic(this.layout.recordPath(key), `${JSON.stringify(record, null, 2)}\n`);
  }

  async removeRecordFile(key: string): Promise<boolean> {
    const file = this.layout.recordPath(key);
    try {
      await unlink(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw storeIoError('remove', file, err);
    }
    return true;
  }

  private async ensureDirs(): Promise<void> {
    await ensurePrivateDir(this.home, { tighten: false });
    await ensurePrivateDir(this.layout.serversDir);
  }

  private async quarantine(file: string, key: string): Promise<string> {
    await ensurePrivateDir(this.home, { tighten: false });
    await ensurePrivateDir(this.layout.quarantineDir);
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    const target = path.join(this.layout.quarantineDir, `${key}.${stamp}.${randomBytes(3).toString('hex')}.json`);
    try {
      await rename(file, target);
    } catch (err) {
      throw storeIoError('quarantine', file, err);
    }
    return target;
  }
}

type Parsed = { ok: true; record: ServerRecord } | { ok: false; problem: string; field?: string };

/**
 * Parse and validate a record file. Problems are described by field path only: JSON.parse and
 * some validators quote the input, and the input holds tokens.
 */
function parseRecord(bytes: Buffer, key: string): Parsed {
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch {
    return { ok: false, problem: 'is not valid JSON' };
  }
  const result = ServerRecordSchema.safeParse(json);
  if (!result.success) {
    const issue = result.error.issues[0];
    const field = issue && issue.path.length > 0 ? issue.path.map(String).join('.') : undefined;
    return { ok: false, problem: `failed validation${field ? ` at ${field}` : ''}`, ...(field ? { field } : {}) };
  }
  let belongs: boolean;
  try {
    belongs = recordKey(result.data.serverUrl) === key;
  } catch {
    belongs = false;
  }
  // A file copied or renamed onto another server's key must not hand its tokens to that server.
  if (!belongs) return { ok: false, problem: 'is for another server URL', field: 'serverUrl' };
  return { ok: true, record: result.data };
}

class FileTransaction implements StoreTransaction {
  /** Generation this transaction last read or wrote: undefined = not read, 0 = no record. */
  private seen: number | undefined;
  private done = false;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly store: FileCredentialStore,
    readonly serverUrl: string,
    readonly key: string,
    readonly purpose: StorePurpose,
    private readonly lock: LockHandle,
  ) {}

  get lockLost(): boolean {
    return this.lock.lost;
  }

  finish(): void {
    this.done = true;
  }

  read(): Promise<ReadResult> {
    return this.serial(async () => {
      const result = await this.store.readKey(this.key, this.holdsRecordLock);
      this.seen = result.kind === 'ok' ? result.record.generation : 0;
      return result;
    });
  }

  write(next: ServerRecord): Promise<ServerRecord> {
    return this.serial(async () => {
      const parsed = ServerRecordSchema.safeParse(next);
      if (!parsed.success) {
        const field = parsed.error.issues[0]?.path.map(String).join('.') || undefined;
        throw new AuthkeepError(
          'invalid_argument',
          `record to write for ${this.key} is invalid${field ? ` at ${field}` : ''}`,
          {
            ...(field ? { field } : {}),
          },
        );
      }
      const record = parsed.data;
      if (recordKey(record.serverUrl) !== this.key) {
        throw new AuthkeepError(
          'invalid_argument',
          `record serverUrl does not belong to this transaction's server (${this.key})`,
          {
            field: 'serverUrl',
          },
        );
      }
      const stated = record.generation;
      if (this.seen !== undefined && stated !== this.seen) {
        throw conflict(
          this.key,
          `it states generation ${stated} but this transaction read ${this.seen}`,
          this.seen,
          stated,
        );
      }
      return this.underRecordLock('login-write', async () => {
        const current = await this.store.readKey(this.key, true);
        const onDisk = current.kind === 'ok' ? current.record.generation : 0;
        if (onDisk !== stated) {
          throw conflict(
            this.key,
            `on-disk generation ${current.kind === 'ok' ? onDisk : 'missing'} is not ${stated}`,
            stated,
            current.kind === 'ok' ? onDisk : 'missing',
          );
        }
        const written: ServerRecord = { ...record, generation: stated + 1, updatedAt: new Date().toISOString() };
        await this.store.writeRecordFile(this.key, written);
        this.seen = written.generation;
        return written;
      });
    });
  }

  delete(): Promise<boolean> {
    return this.serial(() =>
      this.underRecordLock('login-delete', async () => {
        if (this.seen !== undefined) {
          const current = await this.store.readKey(this.key, true);
          const onDisk = current.kind === 'ok' ? current.record.generation : 0;
          if (onDisk !== this.seen)
            throw conflict(this.key, `on-disk generation ${onDisk} is not ${this.seen} (delete)`, this.seen, onDisk);
        }
        const removed = await this.store.removeRecordFile(this.key);
        this.seen = 0;
        return removed;
      }),
    );
  }

  private get holdsRecordLock(): boolean {
    return this.purpose !== 'login';
  }

  private underRecordLock<T>(purpose: string, fn: () => Promise<T>): Promise<T> {
    return this.holdsRecordLock ? fn() : this.store.withRecordLock(this.key, purpose, fn);
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    if (this.done) {
      return Promise.reject(
        new AuthkeepError('invalid_argument', `transaction on ${this.key} is already finished`, { field: 'tx' }),
      );
    }
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }
}
