/**
 * file-transaction: one `StoreTransaction` of the file backend: reads under the transaction's
 * lock, and writes and deletes that are compare-and-swap on the record's generation (see
 * credential-store.ts), done while the record lock is held (the transaction's own for 'refresh'
 * and 'write', verified still ours just before: a holder paused past its bound finds out before it
 * writes, `lock_lost`; taken just for the compare-and-swap for 'login'). Its steps run one at a
 * time, and none after the transaction has finished.
 *
 * Not for: taking the transaction's lock (file-credential-store.ts) or touching files directly
 * (record-files.ts).
 */
import { AuthkeepError } from '../errors.js';
import type { ReadResult, StorePurpose, StoreTransaction } from './credential-store.js';
import type { LockHandle } from './lock.js';
import { recordKey } from './paths.js';
import { type ServerRecord, ServerRecordSchema } from './record.js';
import type { RecordFiles } from './record-files.js';

function conflict(key: string, message: string, expected: number, actual: number | 'missing'): AuthkeepError {
  return new AuthkeepError('store_conflict', `write to ${key} refused: ${message}`, {
    detail: { key, expected, actual },
  });
}

export class FileTransaction implements StoreTransaction {
  /** Generation this transaction last read or wrote: undefined = not read, 0 = no record. */
  private seen: number | undefined;
  private done = false;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly files: RecordFiles,
    readonly serverUrl: string,
    readonly key: string,
    readonly purpose: StorePurpose,
    private readonly lock: LockHandle,
  ) {}

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

  /** Called when the transaction's function settled: every later step is refused. */
  finish(): void {
    this.done = true;
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
        const current = await this.files.read(this.key, true);
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
            throw conflict(this.key, `on-disk generation ${onDisk} is not ${this.seen} (delete)`, this.seen, onDisk);
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
