/**
 * record-files: the only code that touches `servers/<key>.json` and `quarantine/`. Lock-free reads
 * that validate a record (a rename is atomic, so a reader sees the old file or the new one), the
 * record lock for a short step, whole-file writes and removals, and moving an unreadable record
 * aside, under the record lock after a re-read, so a reader never moves aside a valid record a
 * writer has just renamed in.
 *
 * Every byte read or written goes through the store's Sealer (sealer.ts): in keychain mode a file
 * is sealed on write and opened on read, and a file that does not open (torn, tampered, moved from
 * another key, sealed under another key) is as corrupt as one that fails to parse. A plaintext
 * record found in keychain mode is sealed in place, under the record lock, after a re-read
 * (sealInPlace): no sign-in needed, the record's content unchanged.
 *
 * Not for: compare-and-swap (file-transaction.ts) or what a store offers (credential-store.ts).
 * Problems are described by field path only: JSON.parse and some validators quote their input,
 * and the input holds tokens.
 */
import { randomBytes } from 'node:crypto';
import { readdir, rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import { AuthkeepError } from '../errors.js';
import {
  checkStoreDirectories,
  ensurePrivateDir,
  readFileIfExists,
  storeIoError,
  sweepTempFiles,
  writeFileAtomic,
} from './atomic-file.js';
import type { LockPolicy, QuarantinedRecord, ReadResult } from './credential-store.js';
import { acquireLock } from './lock.js';
import { RECORD_KEY_PATTERN, recordKey, type StoreLayout } from './paths.js';
import { type ServerRecord, ServerRecordSchema } from './record.js';
import type { Opened, SealContext, Sealer } from './sealer.js';

/** How a read may seal a plaintext record it finds in keychain mode. */
export type MigrateMode =
  /** Not at all (list(): status and doctor report what is on disk). */
  | 'never'
  /** Under the record lock, waiting for it (or holding it already): transactions. */
  | 'wait'
  /** Only if the record lock is free right now (a lock-free read; the next use tries again). */
  | 'try';

export class RecordFiles {
  constructor(
    readonly layout: StoreLayout,
    /** Bounds of the record lock (the 'write' policy). */
    private readonly recordLock: LockPolicy,
    readonly sealer: Sealer,
  ) {}

  private context(key: string): SealContext {
    return { role: 'record', key };
  }

  /** What a record file's bytes hold; a sealed file whose key cannot be had here throws its keychain error. */
  private async open(bytes: Buffer, key: string): Promise<Exclude<Opened, { kind: 'unavailable' }>> {
    const opened = await this.sealer.open(bytes, this.context(key));
    if (opened.kind === 'unavailable') throw opened.error;
    return opened;
  }

  /**
   * Read `servers/<key>.json`. A corrupt file is reported; with `quarantine` (transactions only)
   * it is also moved aside, under the record lock after a re-read. Lock-free reads never write.
   * The home and servers/ must be the user's own and the file not a symbolic link (`store_untrusted`).
   */
  async read(
    key: string,
    recordLockHeld: boolean,
    quarantine = true,
    migrate: MigrateMode = quarantine ? 'wait' : 'try',
  ): Promise<ReadResult> {
    const file = this.layout.recordPath(key);
    if (!(await checkStoreDirectories(this.layout.home, this.layout.serversDir))) return { kind: 'missing' };
    const bytes = await readFileIfExists(file);
    if (bytes === undefined) return { kind: 'missing' };
    const opened = await this.open(bytes, key);
    const parsed: Parsed =
      opened.kind === 'unreadable' ? { ok: false, problem: opened.problem } : parseRecord(opened.text, key);
    if (parsed.ok) {
      if (opened.kind === 'plaintext' && migrate !== 'never') await this.migrate(key, recordLockHeld, migrate);
      return { kind: 'ok', record: parsed.record };
    }
    const found = {
      problem: parsed.problem,
      ...(parsed.serverUrl !== undefined ? { serverUrl: parsed.serverUrl } : {}),
    };
    if (!quarantine) {
      return {
        kind: 'corrupt',
        file,
        ...found,
        error: new AuthkeepError('store_corrupt', `stored record ${key} ${parsed.problem} (${file})`, {
          ...(parsed.field !== undefined ? { field: parsed.field } : {}),
          detail: { key, file },
        }),
      };
    }
    if (!recordLockHeld) {
      // Re-check under the record lock: a writer may have just renamed a valid record in.
      return this.withRecordLock(key, 'quarantine', () => this.read(key, true));
    }
    const movedTo = await this.quarantine(file, key);
    return {
      kind: 'corrupt',
      file: movedTo,
      movedTo,
      ...found,
      error: new AuthkeepError('store_corrupt', `stored record ${key} ${parsed.problem}; moved to ${movedTo}`, {
        ...(parsed.field !== undefined ? { field: parsed.field } : {}),
        detail: { key, movedTo },
      }),
    };
  }

  /** Seal a plaintext record found in keychain mode (see MigrateMode). */
  private async migrate(key: string, recordLockHeld: boolean, how: Exclude<MigrateMode, 'never'>): Promise<void> {
    if ((await this.sealer.state()).mode !== 'keychain') return;
    if (recordLockHeld) {
      await this.sealInPlace(key);
      return;
    }
    try {
      await this.withRecordLock(key, 'seal', () => this.sealInPlace(key), how === 'try' ? 0 : undefined);
    } catch (err) {
      // The lock is busy (perhaps held by this very process): the next use seals it.
      if (how === 'try' && err instanceof AuthkeepError && err.code === 'lock_timeout') return;
      throw err;
    }
  }

  /**
   * Under the record lock: re-read, and if the record is still a valid plaintext record, write
   * the same text sealed. Its generation is unchanged: nothing but its form on disk changes.
   */
  async sealInPlace(key: string): Promise<boolean> {
    const file = this.layout.recordPath(key);
    const bytes = await readFileIfExists(file);
    if (bytes === undefined) return false;
    const opened = await this.open(bytes, key);
    if (opened.kind !== 'plaintext' || !parseRecord(opened.text, key).ok) return false;
    await writeFileAtomic(file, await this.sealer.seal(opened.text, this.context(key)));
    return true;
  }

  /** Keys of the record files still in plaintext (doctor, in keychain mode). Lock-free, never writes. */
  async plaintextKeys(): Promise<string[]> {
    const out: string[] = [];
    for (const key of await this.keys()) {
      const bytes = await readFileIfExists(this.layout.recordPath(key)).catch(() => undefined);
      if (bytes === undefined) continue;
      if ((await this.sealer.open(bytes, this.context(key))).kind === 'plaintext') out.push(key);
    }
    return out;
  }

  /** Hold the record lock for a short step (a login's write, a quarantine, sealing in place). */
  async withRecordLock<T>(key: string, purpose: string, fn: () => Promise<T>, timeoutMs?: number): Promise<T> {
    const handle = await acquireLock(this.layout.locksDir, this.layout.lockName(key, 'refresh'), {
      timeoutMs: timeoutMs ?? this.recordLock.timeoutMs,
      staleMs: this.recordLock.staleMs,
      ...(this.recordLock.maxHoldMs !== undefined ? { maxHoldMs: this.recordLock.maxHoldMs } : {}),
      purpose,
    });
    try {
      return await fn();
    } finally {
      await handle.release();
    }
  }

  /** Write a record file whole. The caller holds the record lock and has done the compare. */
  async write(key: string, record: ServerRecord): Promise<void> {
    await ensurePrivateDir(this.layout.home, { tighten: false });
    await ensurePrivateDir(this.layout.serversDir);
    const text = `${JSON.stringify(record, null, 2)}\n`;
    await writeFileAtomic(this.layout.recordPath(key), await this.sealer.seal(text, this.context(key)));
  }

  /** Remove a record file. The caller holds the record lock. True if there was one. */
  async remove(key: string): Promise<boolean> {
    const file = this.layout.recordPath(key);
    try {
      await unlink(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw storeIoError('remove', file, err);
    }
    return true;
  }

  /** The keys of the record files present, sorted. Sweeps temp files of killed writers on the way. */
  async keys(): Promise<string[]> {
    if (!(await checkStoreDirectories(this.layout.home, this.layout.serversDir))) return [];
    let names: string[];
    try {
      names = await readdir(this.layout.serversDir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw storeIoError('list', this.layout.serversDir, err);
    }
    // Temp files of writers killed mid-write may hold secrets: sweep them while we are here.
    await sweepTempFiles(this.layout.serversDir).catch(() => undefined);
    return names
      .filter((name) => name.endsWith('.json'))
      .map((name) => name.slice(0, -'.json'.length))
      .filter((key) => RECORD_KEY_PATTERN.test(key))
      .sort();
  }

  /** Names of files in quarantine/ for `serverUrl` (or all), oldest first. */
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

  /** Records in quarantine/ (for `serverUrl`, or all), oldest first: which server, when, why. */
  async quarantinedRecords(serverUrl?: string): Promise<QuarantinedRecord[]> {
    const out: QuarantinedRecord[] = [];
    for (const name of await this.listQuarantine(serverUrl)) {
      const match = QUARANTINE_NAME.exec(name);
      if (!match) continue;
      const [, key = '', stamp = ''] = match;
      const file = path.join(this.layout.quarantineDir, name);
      let bytes: Buffer | undefined;
      try {
        bytes = await readFileIfExists(file);
      } catch (err) {
        // Not a file of ours (a planted link, another owner): doctor's file checks report it.
        if (err instanceof AuthkeepError && err.code === 'store_untrusted') continue;
        throw err;
      }
      if (bytes === undefined) continue; // removed meanwhile
      const opened = await this.sealer.open(bytes, this.context(key));
      const parsed: Parsed =
        opened.kind === 'unavailable'
          ? { ok: false, problem: 'is sealed, and its key cannot be had here' }
          : opened.kind === 'unreadable'
            ? { ok: false, problem: opened.problem }
            : parseRecord(opened.text, key);
      // A record that parses in quarantine was moved aside for a reason no longer visible (a
      // schema an older version refused): say so rather than guess.
      const problem = parsed.ok ? 'was unreadable when it was moved aside' : parsed.problem;
      const serverUrl = parsed.ok ? parsed.record.serverUrl : parsed.serverUrl;
      out.push({ key, file, at: stampToIso(stamp), problem, ...(serverUrl !== undefined ? { serverUrl } : {}) });
    }
    return out;
  }

  /** Remove `serverUrl`'s files from quarantine/ (a logout forgets them too). Their paths. */
  async clearQuarantine(serverUrl: string): Promise<string[]> {
    const removed: string[] = [];
    for (const name of await this.listQuarantine(serverUrl)) {
      const file = path.join(this.layout.quarantineDir, name);
      try {
        await unlink(file);
        removed.push(file);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw storeIoError('remove', file, err);
      }
    }
    return removed;
  }

  private async quarantine(file: string, key: string): Promise<string> {
    await ensurePrivateDir(this.layout.home, { tighten: false });
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

/** `<key>.<stamp>.<random>.json`, as quarantine() names them. */
const QUARANTINE_NAME = /^(.+)\.(\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z)\.[0-9a-f]+\.json$/;

/** `2025-01-01T00-00-00-000Z` (a file-safe ISO time) back to `2025-01-01T00:00:00.000Z`. */
function stampToIso(stamp: string): string {
  return stamp.replace(/^(\d{4}-\d{2}-\d{2}T\d{2})-(\d{2})-(\d{2})-(\d{3})Z$/, '$1:$2:$3.$4Z');
}

type Parsed =
  | { ok: true; record: ServerRecord }
  | { ok: false; problem: string; field?: string; serverUrl?: string | undefined };

/** The `serverUrl` an unreadable record names, when it is a string of this key's server. */
function claimedServerUrl(json: unknown, key: string): string | undefined {
  const url = (json as { serverUrl?: unknown } | null)?.serverUrl;
  if (typeof url !== 'string') return undefined;
  try {
    return recordKey(url) === key ? url : undefined;
  } catch {
    return undefined;
  }
}

/** Parse and validate a record file, and check it belongs to `key`. */
function parseRecord(text: string, key: string): Parsed {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { ok: false, problem: 'is not valid JSON' };
  }
  const result = ServerRecordSchema.safeParse(json);
  if (!result.success) {
    const issue = result.error.issues[0];
    const field = issue && issue.path.length > 0 ? issue.path.map(String).join('.') : undefined;
    return {
      ok: false,
      problem: `failed validation${field ? ` at ${field}` : ''}`,
      ...(field ? { field } : {}),
      serverUrl: claimedServerUrl(json, key),
    };
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
