/**
 * transaction-core: the part of a `StoreTransaction` that does not depend on the backend: its
 * steps run one at a time and none after the transaction finished, the generation it last read
 * or wrote, and the checks a write passes before the backend's compare-and-swap (the record is
 * valid, belongs to this transaction's server, and states the generation this transaction read:
 * `store_conflict` otherwise; see credential-store.ts).
 *
 * For: file-transaction.ts and the fleet store's transaction (redis/redis-credential-store.ts).
 * Not for: locks or leases, or the compare-and-swap itself (each backend's own).
 */
import { AuthkeepError } from '../errors.js';
import type { StorePurpose } from './credential-store.js';
import { recordKey } from './paths.js';
import { type ServerRecord, ServerRecordSchema } from './record.js';

/** `store_conflict`: a write or delete refused because the generation is not the one it is based on. */
export function storeConflict(
  key: string,
  message: string,
  expected: number,
  actual: number | 'missing',
): AuthkeepError {
  return new AuthkeepError('store_conflict', `write to ${key} refused: ${message}`, {
    detail: { key, expected, actual },
  });
}

export abstract class TransactionCore {
  /** Generation this transaction last read or wrote: undefined = not read, 0 = no record. */
  protected seen: number | undefined;
  private done = false;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    readonly serverUrl: string,
    readonly key: string,
    readonly purpose: StorePurpose,
  ) {}

  /** Called when the transaction's function settled: every later step is refused. */
  finish(): void {
    this.done = true;
  }

  /**
   * `next` parsed and checked for a write by this transaction: valid, of this server, and stating
   * the generation this transaction read (if it read one). Returns it with the generation it states.
   */
  protected checkedWrite(next: ServerRecord): { record: ServerRecord; stated: number } {
    const parsed = ServerRecordSchema.safeParse(next);
    if (!parsed.success) {
      const field = parsed.error.issues[0]?.path.map(String).join('.') || undefined;
      throw new AuthkeepError(
        'invalid_argument',
        `record to write for ${this.key} is invalid${field ? ` at ${field}` : ''}`,
        field ? { field } : {},
      );
    }
    const record = parsed.data;
    if (recordKey(record.serverUrl) !== this.key)
      throw new AuthkeepError(
        'invalid_argument',
        `record serverUrl does not belong to this transaction's server (${this.key})`,
        { field: 'serverUrl' },
      );
    const stated = record.generation;
    if (this.seen !== undefined && stated !== this.seen)
      throw storeConflict(
        this.key,
        `it states generation ${stated} but this transaction read ${this.seen}`,
        this.seen,
        stated,
      );
    return { record, stated };
  }

  /** Run `fn` after the previous step settled; refused once the transaction finished. */
  protected serial<T>(fn: () => Promise<T>): Promise<T> {
    if (this.done)
      return Promise.reject(
        new AuthkeepError('invalid_argument', `transaction on ${this.key} is already finished`, { field: 'tx' }),
      );
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }
}
