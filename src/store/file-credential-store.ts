/**
 * file-credential-store: FileCredentialStore, the CredentialStore backend for files under a home
 * directory (docs/DESIGN.md invariants 2, 3, 4, 7). It takes the locks; record-files.ts reads and
 * writes the record files, file-transaction.ts does the compare-and-swap, registrations.ts keeps
 * one registration per issuer, login-outcome.ts the last sign-in's outcome, store-inspection.ts
 * answers doctor.
 *
 * Files under home (see paths.ts): `servers/<key>.json` (mode 0600), `locks/`, `quarantine/`,
 * `outcomes/<key>.json`, `registrations/<issuerKey>.json`, `logs/` (the proxy's); directories
 * 0700. Every directory must be the user's own and not writable by others, and no file is read or
 * written through a symbolic link (store-trust.ts): else `store_untrusted`, naming the path and fix. Every write is whole:
 * temp file, fsync, rename, fsync dir (atomic-file.ts), so a failed compare-and-swap leaves the
 * file byte-for-byte unchanged. The store stamps `updatedAt` on every write.
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
 *   under that lock (record-files.ts).
 * - Lock order, to stay deadlock-free: sign-in lock, then record lock, never the reverse; and no
 *   transaction inside another for the same server (the lock is not re-entrant).
 *
 * At rest: every record and kept registration goes through the store's Sealer (sealer.ts), chosen
 * by the store mode (store-mode.ts: `auto`, `keychain`, `file`): sealed with AES-256-GCM under a
 * data key in the OS keychain (keychain-key.ts), or plaintext. Sealing happens at the one byte
 * boundary (record-files.ts, registrations.ts), so locks, atomic writes and compare-and-swap are
 * the same in every mode.
 *
 * Not for: what a store offers and guarantees (credential-store.ts, the contract).
 */
import { lstat, stat } from 'node:fs/promises';
import path from 'node:path';
import { AuthkeepError } from '../errors.js';
import type { Registration } from '../oauth/types.js';
import { ensurePrivateDir } from './atomic-file.js';
import {
  type CredentialStore,
  DEFAULT_LOCK_POLICIES,
  type LockPolicy,
  type LoginOutcome,
  type QuarantinedRecord,
  type ReadResult,
  type RegistrationMatch,
  type StoreInspection,
  type StorePurpose,
  type StoreTransaction,
  type TransactionOptions,
} from './credential-store.js';
import { type FileChanges, watchFileChanges } from './file-change-watch.js';
import { FileTransaction } from './file-transaction.js';
import { acquireLock, lockFilePath } from './lock.js';
import { readLoginOutcome, writeLoginOutcome } from './login-outcome.js';
import { defaultHome, recordKey, type StoreLayout, storeLayout } from './paths.js';
import { RecordFiles } from './record-files.js';
import {
  dropRegistration,
  plaintextRegistrations,
  readDropped,
  registerOnce,
  reusableRegistrations,
} from './registrations.js';
import type { Sealer } from './sealer.js';
import { inspectFileStore } from './store-inspection.js';
import { parseStoreMode, type StoreMode, sealerFor } from './store-mode.js';

export interface FileCredentialStoreOptions {
  /** Default: `defaultHome()`. */
  home?: string;
  /** Override lock bounds per purpose. */
  locks?: Partial<Record<StorePurpose, Partial<LockPolicy>>>;
  /** How files are kept at rest. Default: `$AUTHKEEP_STORE`, else `auto` (store-mode.ts). */
  store?: StoreMode;
  /**
   * The home whose data key seals this store (its keychain account). Default: `home`. Accounts
   * under one home share its key: AuthKeeper passes the root home.
   */
  keyHome?: string;
  /** A Sealer to use instead of the one `store` names (tests, embedders with their own key). */
  sealer?: Sealer;
}

const PURPOSES: readonly StorePurpose[] = ['refresh', 'login', 'write'];

export class FileCredentialStore implements CredentialStore {
  readonly home: string;
  private readonly layout: StoreLayout;
  private readonly policies: Record<StorePurpose, LockPolicy>;
  private readonly files: RecordFiles;
  /** How records and registrations are kept at rest. */
  readonly sealer: Sealer;

  constructor(options: FileCredentialStoreOptions = {}) {
    this.home = path.resolve(options.home ?? defaultHome());
    this.layout = storeLayout(this.home);
    this.policies = {
      refresh: { ...DEFAULT_LOCK_POLICIES.refresh, ...options.locks?.refresh },
      write: { ...DEFAULT_LOCK_POLICIES.write, ...options.locks?.write },
      login: { ...DEFAULT_LOCK_POLICIES.login, ...options.locks?.login },
    };
    this.sealer =
      options.sealer ??
      sealerFor(
        options.store ?? parseStoreMode(process.env.AUTHKEEP_STORE),
        path.resolve(options.keyHome ?? this.home),
      );
    this.files = new RecordFiles(this.layout, this.policies.write, this.sealer);
  }

  /** Lock-free; never writes (a corrupt record is reported, not moved: see the contract). */
  async read(serverUrl: string): Promise<ReadResult> {
    return this.files.read(recordKey(serverUrl), false, false);
  }

  /**
   * The record file's identity (inode, modification time in ns, size): every write renames a new
   * file in (atomic-file.ts), so a replaced record has another inode. One stat, no read, no checks
   * (the read that follows a change makes them).
   */
  async recordVersion(serverUrl: string): Promise<string | undefined> {
    try {
      const stats = await stat(this.layout.recordPath(recordKey(serverUrl)), { bigint: true });
      return `${stats.ino}:${stats.mtimeNs}:${stats.size}`;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  /**
   * Whether the record's refresh lock is held now: its lock file exists (one lstat, no read). A
   * hint for a waiter deciding whether to wait for another process's refresh before taking any
   * part in the lock (the lock itself judges its holder: lock.ts).
   */
  async refreshUnderWay(serverUrl: string): Promise<boolean> {
    try {
      await lstat(lockFilePath(this.layout.locksDir, this.layout.lockName(recordKey(serverUrl), 'refresh')));
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
  }

  /** The OS's notifications of the record file's replacement (the rename that lands a write). */
  watchRecord(serverUrl: string): FileChanges {
    return watchFileChanges(this.layout.recordPath(recordKey(serverUrl)));
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
    const lockName = this.layout.lockName(key, purpose === 'login' ? 'login' : 'refresh');
    // The home and locks/ must be the user's own before anything is locked, read or written there.
    await ensurePrivateDir(this.home, { tighten: false });
    await ensurePrivateDir(this.layout.locksDir);
    const handle = await acquireLock(this.layout.locksDir, lockName, {
      timeoutMs: options.timeoutMs ?? policy.timeoutMs,
      staleMs: options.staleMs ?? policy.staleMs,
      ...(maxHoldMs !== undefined ? { maxHoldMs } : {}),
      ...(options.onWait ? { onWait: options.onWait } : {}),
      ...(options.beforeRetry ? { beforeRetry: options.beforeRetry } : {}),
      ...(options.onHeld ? { onHeld: options.onHeld } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
      purpose,
    });
    const tx = new FileTransaction(this.files, serverUrl, key, purpose, handle);
    try {
      return await fn(tx);
    } finally {
      tx.finish();
      await handle.release();
    }
  }

  async list(): Promise<Array<ReadResult & { key: string }>> {
    const out: Array<ReadResult & { key: string }> = [];
    for (const key of await this.files.keys()) {
      const result = await this.files.read(key, false, false, 'never');
      if (result.kind !== 'missing') out.push({ ...result, key });
    }
    return out;
  }

  async findRegistrationsByIssuer(issuer: string): Promise<RegistrationMatch[]> {
    return reusableRegistrations(await this.list(), issuer, await readDropped(this.layout, issuer));
  }

  async delete(serverUrl: string): Promise<boolean> {
    return this.transaction(serverUrl, 'write', (tx) => tx.delete());
  }

  readLoginOutcome(serverUrl: string): Promise<LoginOutcome | undefined> {
    return readLoginOutcome(this.layout, serverUrl);
  }

  writeLoginOutcome(serverUrl: string, outcome: LoginOutcome): Promise<void> {
    return writeLoginOutcome(this.layout, serverUrl, outcome);
  }

  registerOnce(issuer: string, register: () => Promise<Registration>): Promise<Registration> {
    return registerOnce(this.layout, this.sealer, issuer, register, async (at) => {
      return (await this.findRegistrationsByIssuer(at))[0]?.registration;
    });
  }

  dropRegistration(issuer: string, clientId: string): Promise<void> {
    return dropRegistration(this.layout, this.sealer, issuer, clientId);
  }

  locate(serverUrl: string): string {
    return this.layout.recordPath(recordKey(serverUrl));
  }

  async inspect(serverUrl?: string): Promise<StoreInspection> {
    const inspection = await inspectFileStore(this.layout, this.files, serverUrl);
    const state = await this.sealer.state();
    const plaintextFiles =
      state.mode === 'keychain' && state.unavailable === undefined
        ? [
            ...(await this.files.plaintextKeys())
              .filter((key) => serverUrl === undefined || key === recordKey(serverUrl))
              .map((key) => this.layout.recordPath(key)),
            ...(serverUrl === undefined ? await plaintextRegistrations(this.layout, this.sealer) : []),
          ]
        : [];
    return { ...inspection, sealing: { ...state, plaintextFiles } };
  }

  quarantined(serverUrl?: string): Promise<QuarantinedRecord[]> {
    return this.files.quarantinedRecords(serverUrl);
  }

  clearQuarantine(serverUrl: string): Promise<string[]> {
    return this.files.clearQuarantine(serverUrl);
  }

  /** Names of files in quarantine/ for `serverUrl` (or all), oldest first. */
  listQuarantine(serverUrl?: string): Promise<string[]> {
    return this.files.listQuarantine(serverUrl);
  }
}
