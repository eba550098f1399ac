/**
 * file-transaction: one `StoreTransaction` of the file backend: reads under the transaction's
 * lock, and writes and deletes that are compare-and-swap on the record's generation (see
 * credential-store.ts), done while the record lock is held (the transaction's own for 'refresh'
 * and 'write', verified still ours just before: a holder paused past its bound finds out before it
 * writes, `lock_lost`; taken just for the compare-and-swap for 'login'). Its steps run one at a
 * time, and none after the transaction has finished (transaction-core.ts, shared with the fleet
 * store).
 *
 * Not for: taking the transaction's lock (file-credential-store.ts) or touching files directly
 * (record-files.ts).
 */
import { AuthkeepError } from '../errors.js';
import type { ReadResult, StorePurpose, StoreTransaction } from './credential-store.js';
import type { LockHandle } from './lock.js';
import type { ServerRecord } from './record.js';
import type { RecordFiles } from './record-files.js';
import { storeConflict, TransactionCore } from './transaction-core.js';

export class FileTransaction extends TransactionCore implements StoreTransaction {
  constructor(
    private readonly files: RecordFiles,
    serverUrl: string,
    key: string,
    purpose: StorePurpose,
    private readonly lock: LockHandle,
  ) {
    super(serverUrl, key, purpose);
  }

  get lockLost(): boolean {
    return this.lock.lost;
  }

  get holdUntil(): number | undefined {
    return this.lock.holdUntil;
  }

  async assertLockHeld(): Promise<void> {
    if (await this.lock.verify()) return;
    throw new AuthkeepError(
      'lock_lost',
      `the ${this.purpose} lock of ${this.key} was taken over by another process (held past its bound); nothing was written`,
      { field: 'lock', detail: { key: this.key, purpose: this.purpose } },
    );
  }

  read(): Promise<ReadResult> {
    return this.serial(async () => {
      const result = await this.files.read(this.key, this.holdsRecordLock);
      this.seen = result.kind === 'ok' ? result.record.generation : 0;
      return result;
    });
  }

  write(next: ServerRecord): Promise<ServerRecord> {
    return this.serial(async () => {
      const { record, stated } = this.checkedWrite(next);
      return this.underRecordLock('login-write', async () => {
        const current = await this.files.read(this.key, true);
        const onDisk = current.kind === 'ok' ? current.record.generation : 0;
        if (onDisk !== stated) {
          throw storeConflict(
            this.key,
            `on-disk generation ${current.kind === 'ok' ? onDisk : 'missing'} is not ${stated}`,
            stated,
            current.kind === 'ok' ? onDisk : 'missing',
          );
        }
        const written: ServerRecord = { ...record, generation: stated + 1, updatedAt: new Date().toISOString() };
        await this.files.write(this.key, written);
        this.seen = written.generation;
        return written;
      });
    });
  }

  delete(): Promise<boolean> {
    return this.serial(() =>
      this.underRecordLock('login-delete', async () => {
        if (this.seen !== undefined) {
          const current = await this.files.read(this.key, true);
          const onDisk = current.kind === 'ok' ? current.record.generation : 0;
          if (onDisk !== this.seen)
            throw storeConflict(
              this.key,
              `on-disk generation ${onDisk} is not ${this.seen} (delete)`,
              this.seen,
              onDisk,
            );
        }
        const removed = await this.files.remove(this.key);
        this.seen = 0;
        return removed;
      }),
    );
  }

  private get holdsRecordLock(): boolean {
    return this.purpose !== 'login';
  }

  /** Run `fn` under the record lock: ours, checked still ours first, or taken just for `fn`. */
  private async underRecordLock<T>(purpose: string, fn: () => Promise<T>): Promise<T> {
    if (!this.holdsRecordLock) return this.files.withRecordLock(this.key, purpose, fn);
    await this.assertLockHeld();
    return fn();
  }
}
