/**
 * credential-store: the `CredentialStore` contract: what the session layer and the CLI may ask of
 * a store of per-server records (docs/DESIGN.md invariants 2, 3, 4, 7), whatever keeps them.
 * FileCredentialStore (file-credential-store.ts) is the backend for files under a home directory;
 * a keychain or Redis backend implements the same interface.
 *
 * For: lock-free reads of a server's ONE record, locked read-modify-write transactions whose
 * writes are compare-and-swap on the record's generation, listing, finding a reusable registration
 * by issuer, one registration per issuer machine-wide, the last sign-in's outcome, and read-only
 * inspection for `authkeep doctor`.
 * Not for: deciding what to write (session/), talking to the AS (oauth/), caching (the session's
 * hot path keeps tokens in memory and never touches the store on a cache hit).
 *
 * Compare-and-swap: `tx.write(next)` states the generation it is based on in `next.generation`
 * (normally the generation `tx.read()` returned; 0 means "there is no record"). It is refused with
 * `store_conflict`, leaving the stored record unchanged, unless the stored generation (0 when
 * missing) still equals it, and unless it equals what this transaction read. It writes
 * generation + 1 and returns the record as written. The generation is also the fencing token that
 * protects against a lock holder that was paused past its lock's bound (see lock.ts).
 */

import type { AuthkeepError } from '../errors.js';
import type { Registration } from '../oauth/types.js';
import type { FileChanges } from './file-change-watch.js';
import type { LockHolder } from './lock.js';
import type { LoginOutcome } from './login-outcome.js';
import type { ServerRecord } from './record.js';
import type { SealingState } from './sealer.js';

export type { LoginOutcome } from './login-outcome.js';

export type StorePurpose = 'refresh' | 'login' | 'write';

export type ReadResult =
  | { kind: 'missing' }
  | { kind: 'ok'; record: ServerRecord }
  /**
   * The record failed to parse or validate. A lock-free read leaves it where it is (`file`); a
   * transaction's read moves it to quarantine (`movedTo`, then also `file`), never deletes it.
   */
  | {
      kind: 'corrupt';
      /** Where the unreadable record is now. */
      file: string;
      /** Set when this read moved it to quarantine. */
      movedTo?: string;
      /** The server it names, when it parses that far and belongs to its key. */
      serverUrl?: string;
      /** What is wrong, by field path only (never the content: it may hold tokens). */
      problem: string;
      error: AuthkeepError;
    };

/** A record that was unreadable and was moved aside by a transaction (see CredentialStore.read). */
export interface QuarantinedRecord {
  /** The record key it was stored under. */
  key: string;
  /** Where it is now. */
  file: string;
  /** The server it names, when it parses that far and belongs to its key. */
  serverUrl?: string;
  /** When it was moved aside (ISO 8601). */
  at: string;
  /** What is wrong with it, by field path only. */
  problem: string;
}

export interface TransactionOptions {
  /** How long to wait for the lock before `lock_timeout`. */
  timeoutMs?: number;
  /** Heartbeat bound of our holding (see lock.ts). */
  staleMs?: number;
  /** Bound on our whole holding, even while heartbeating. */
  maxHoldMs?: number;
  /** Called when another process holds the lock and we wait (to say so to the user). */
  onWait?(holder: LockHolder): void;
  /**
   * Awaited after each wait for the lock, before the next attempt (the file store; see lock.ts):
   * the refresh's look at the record, woken by the same write, finishes first, and may end the
   * wait by adopting instead of taking the lock only to adopt under it. Optional for backends.
   */
  beforeRetry?(): Promise<void> | undefined;
  /**
   * Awaited once, when the lock is first found held, before the wait is set up (the file store;
   * see lock.ts): the refresh watches the record the holder writes instead of judging the holder
   * first, and may end the wait by adopting. Optional for backends.
   */
  onHeld?(): Promise<void>;
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
  /**
   * When another process may take this transaction's lock over even while it is alive (epoch
   * milliseconds), if the backend bounds holdings: work that must end under the lock (a refresh
   * spending the refresh token) bounds itself by it. Optional for backends.
   */
  readonly holdUntil?: number | undefined;
  /**
   * Throws AuthkeepError `lock_lost` when this transaction's lock has been taken over (checked now,
   * not at the last heartbeat). `write` and `delete` check it themselves before touching the
   * record under a lock held for the whole transaction. Optional for backends.
   */
  assertLockHeld?(): Promise<void>;
}

export interface RegistrationMatch {
  serverUrl: string;
  key: string;
  generation: number;
  registration: Registration;
}

/** A permission or ownership that lets another user read or tamper with stored credentials. */
export interface PermissionFinding {
  /** `home`: the store's home; `directory`: one of its subdirectories; `file`: a file in one. */
  kind: 'home' | 'directory' | 'file';
  path: string;
  /** The mode found (permission bits). */
  mode: number;
  /**
   * What is wrong: `mode` (a directory not 0700, a home writable by others, a file others can
   * read), `owner` (not the user's own), `symlink`, or `not_directory` / `not_file`. All but a
   * mode that only lets others read make the store refuse the path (`store_untrusted`).
   */
  problem: 'mode' | 'owner' | 'symlink' | 'not_directory' | 'not_file';
  /** The shell command that fixes it. */
  fix: string;
  /** True when the store refuses to use the path until it is fixed. */
  refused: boolean;
}

/** What `authkeep doctor` reports about the store itself (read-only; nothing is repaired). */
export interface StoreInspection {
  /** Where the store lives (the home directory of the file backend). */
  location: string;
  /** False when nothing was ever stored there. */
  exists: boolean;
  /** Records that were unreadable and were moved aside, oldest first, where they are now. */
  quarantined: string[];
  /** File permissions (only where the platform has Unix modes and the store exists). */
  permissions: { checked: boolean; filesChecked: number; findings: PermissionFinding[] };
  /** Locks present now, with their holders and whether a waiter would take them over. */
  locks: Array<LockHolder & { name: string }>;
  /** Where the locks live. */
  locksLocation: string;
  /**
   * How secrets are kept at rest (sealer.ts): the mode in force, where the data key lives, and the
   * secret-bearing files still in plaintext while in keychain mode. Absent for stores without it.
   */
  sealing?: SealingState & { plaintextFiles: string[] };
}

/** The store contract; FileCredentialStore is the file backend. */
export interface CredentialStore {
  /**
   * Lock-free read of the record. Never writes its content: a corrupt record is reported
   * (`corrupt`) and left where it is. (The one write: in keychain mode a plaintext record is sealed
   * in place, same content, if its record lock is free at that moment; record-files.ts.) Only a transaction's `tx.read()` (a command that writes anyway: a sign-in, a
   * refresh, a logout) moves it to quarantine, under the record lock after a re-read.
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
  /**
   * A cheap token that differs whenever the record was replaced since it was taken (undefined when
   * there is none), for a waiter polling for another process's write: it reads the record only
   * when the token changed. A hint, never a proof of content. Optional: a store without it is
   * polled by reading.
   */
  recordVersion?(serverUrl: string): Promise<string | undefined>;
  /**
   * Wake-ups when the record may have been replaced, from the backend's own notification (the file
   * store: the OS's file-change events), so a waiter needs no polling between them. A hint with a
   * timer backstop (file-change-watch.ts): the waiter still compares `recordVersion` and reads.
   * Optional: a store without it is polled.
   */
  watchRecord?(serverUrl: string): FileChanges;
  /**
   * Whether the record's refresh lock is held now (by a refresh or a write of another process, or
   * of another transaction of this one), from one cheap look that does not read the holder. A
   * hint: a waiter that finds it held watches the record (watchRecord) for a while before taking
   * any part in the lock, which judges the holder itself. Optional: a store without it is waited
   * for at the lock at once.
   */
  refreshUnderWay?(serverUrl: string): Promise<boolean>;
  list(): Promise<Array<ReadResult & { key: string }>>;
  /**
   * Records whose registration is at `issuer` and may be reused (not dropped by dropRegistration,
   * its client secret not expired, not a machine grant's client), newest registration first.
   */
  findRegistrationsByIssuer(issuer: string): Promise<RegistrationMatch[]>;
  /** Remove the record unconditionally (under the record lock). True if there was one. */
  delete(serverUrl: string): Promise<boolean>;
  /** The last sign-in's outcome for this server, if any (advisory; see login-outcome.ts). */
  readLoginOutcome(serverUrl: string): Promise<LoginOutcome | undefined>;
  /** Record a sign-in's outcome (written whole). Call it while holding the login lock. */
  writeLoginOutcome(serverUrl: string, outcome: LoginOutcome): Promise<void>;
  /**
   * One registration per issuer, machine-wide: under the issuer's registration lock, the one
   * already kept (or held by a record) for `issuer`, else `register()`'s, kept at once. Servers
   * signing in to the same issuer at the same time then share one client instead of each
   * registering its own.
   */
  registerOnce(issuer: string, register: () => Promise<Registration>): Promise<Registration>;
  /**
   * Forget the registration `clientId` at `issuer` (the AS refused it, its secret expired, or the
   * last server using it logged out): the kept one is removed if it is that client, and neither
   * registerOnce nor findRegistrationsByIssuer offers that registration again, whichever record
   * still holds it. A later registration that happens to carry the same client_id (a metadata
   * document URL, a pre-registered id) is not affected.
   */
  dropRegistration(issuer: string, clientId: string): Promise<void>;
  /** Where the record of `serverUrl` is kept, for people (a file path for the file backend). */
  locate(serverUrl: string): string;
  /** The store's health for `authkeep doctor`, or only `serverUrl`'s part of it. Read-only. */
  inspect(serverUrl?: string): Promise<StoreInspection>;
  /** Records moved to quarantine (for `serverUrl`, or all), oldest first. Read-only. Optional. */
  quarantined?(serverUrl?: string): Promise<QuarantinedRecord[]>;
  /** Remove `serverUrl`'s records from quarantine (on logout); returns where they were. Optional. */
  clearQuarantine?(serverUrl: string): Promise<string[]>;
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
  // A sign-in waits on a human: hold up to 10 minutes while alive and heartbeating (longer when the
  // keeper's loginTimeoutMs says so: the sign-in coordinator passes its own maxHoldMs).
  login: { timeoutMs: 11 * 60_000, staleMs: 10_000, maxHoldMs: 10 * 60_000 },
};
