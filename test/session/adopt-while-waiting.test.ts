/**
 * A process waiting for another process's refresh lock adopts the holder's tokens as soon as the
 * record holds them, while the lock is still held: waiters do not queue on the lock one after
 * another only to adopt (the refresh storm of 32 processes at one expiry). The "other process"
 * is a refresh transaction of a second store on the same home; the waiter is a TokenManager whose
 * stored token is due. Nothing here talks to an AS: the waiter must never refresh. While the record
 * does not change, a waiter looks at its version (one stat), not its content: dozens of waiters
 * reading and parsing it every few milliseconds took the CPU the holder's refresh needed. Woken by
 * the holder's write and then by its release, a waiter finishes its look at the record before it
 * tries the lock again, so it adopts instead of taking the lock only to adopt under it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Logger } from '../../src/session/log.js';
import { TokenManager } from '../../src/session/token-manager.js';
import type { StoreTransaction, TransactionOptions } from '../../src/store/credential-store.js';
import { FileCredentialStore } from '../../src/store/file-credential-store.js';
import { tempHome } from '../helpers/bed.js';
import { recordLog } from '../helpers/log-events.js';
import { makeRecord } from '../helpers/store-fixtures.js';

const URL_ = 'https://mcp.example.test/mcp';

/** A home whose record of URL_ holds a due token, and the store of the "other process" on it. */
async function dueRecord(t: Parameters<typeof tempHome>[0]) {
  const home = await tempHome(t);
  const holderStore = new FileCredentialStore({ home });
  const due = makeRecord(URL_, { tag: 'due' });
  const dueTokens = { ...due.tokens!, obtainedAt: Date.now() - 3_600_000, expiresAt: Date.now() - 1_000 };
  await holderStore.transaction(URL_, 'write', (tx) => tx.write({ ...due, tokens: dueTokens }));
  return { home, holderStore, dueTokens };
}

/** The waiting process: a TokenManager on `store` for which any token-endpoint request fails the test. */
function waiterOn(store: FileCredentialStore, log: ReturnType<typeof recordLog>): TokenManager {
  return new TokenManager({
    store,
    // The waiter must adopt, never refresh.
    http: () => ({
      allowInsecureLoopback: false,
      timeoutMs: 1_000,
      fetch: async () => {
        throw new Error('the waiter sent a token request');
      },
    }),
    logger: new Logger(log.sink),
    transientRetryDelaysMs: [],
  });
}

test('a waiter adopts the tokens the lock holder stored, before the holder releases the lock', async (t) => {
  const { home, holderStore, dueTokens } = await dueRecord(t);
  const log = recordLog();
  const waiter = waiterOn(new FileCredentialStore({ home }), log);

  let adoptedWhileHeld = false;
  let served: string | undefined;
  await holderStore.transaction(URL_, 'refresh', async (tx) => {
    const asked = waiter.getAccessToken(URL_);
    await log.next('refresh.waiting'); // the waiter is blocked on our lock
    const read = await tx.read();
    assert.ok(read.kind === 'ok');
    const fresh = { ...dueTokens, accessToken: 'at.fresh', obtainedAt: Date.now(), expiresAt: Date.now() + 3_600_000 };
    await tx.write({ ...read.record, tokens: fresh });
    served = await asked; // resolves while this transaction still holds the lock
    adoptedWhileHeld = true;
  });

  assert.equal(adoptedWhileHeld, true);
  assert.equal(served, 'at.fresh', 'the holder’s token, adopted');
  assert.equal(log.named('refresh.ok').length, 0, 'the waiter did not refresh');
  assert.match(String(log.named('refresh.adopted')[0]?.message), /while waiting/);
});

/** A file store that counts the waiter's reads and version checks, and says when it made `n` checks. */
class CountingStore extends FileCredentialStore {
  versions = 0;
  readsSinceFirstVersion = 0;
  private readonly checked: Array<{ n: number; resolve(reads: number): void }> = [];

  override async read(serverUrl: string) {
    if (this.versions > 0) this.readsSinceFirstVersion++;
    return super.read(serverUrl);
  }

  override async recordVersion(serverUrl: string) {
    const version = await super.recordVersion(serverUrl);
    this.versions++;
    for (const w of this.checked) if (w.n === this.versions) w.resolve(this.readsSinceFirstVersion);
    return version;
  }

  /** The reads made since the first version check, when the `n`th check has been answered. */
  readsWhenChecked(n: number): Promise<number> {
    return new Promise((resolve) => this.checked.push({ n, resolve }));
  }
}

test('a waiter reads the record only when its version changed, then adopts what landed', async (t) => {
  const { home, holderStore, dueTokens } = await dueRecord(t);
  const log = recordLog();
  const waiterStore = new CountingStore({ home });
  const waiter = waiterOn(waiterStore, log);

  let served: string | undefined;
  await holderStore.transaction(URL_, 'refresh', async (tx) => {
    const asked = waiter.getAccessToken(URL_);
    // Eight looks at an unchanged record: only the lock-free look before the lock reads it (its
    // version taken first); the watcher's looks, its first included, compare versions only.
    assert.equal(await waiterStore.readsWhenChecked(8), 1, 'one read while the record stayed the same');
    const read = await tx.read();
    assert.ok(read.kind === 'ok');
    const fresh = { ...dueTokens, accessToken: 'at.fresh', obtainedAt: Date.now(), expiresAt: Date.now() + 3_600_000 };
    await tx.write({ ...read.record, tokens: fresh });
    served = await asked;
  });

  assert.equal(served, 'at.fresh', 'the holder’s token, adopted once the version changed');
  assert.equal(waiterStore.readsSinceFirstVersion, 2, 'the lock-free look, then the changed record');
  assert.equal(log.named('refresh.ok').length, 0, 'the waiter did not refresh');
});

/**
 * A CountingStore whose reads, once `holdReads` is called, wait until the waiter retries the lock
 * (its `beforeRetry`) or takes it: the waiter's look at the record is still running when the
 * holder's release wakes its lock wait, as it is for a waiter short of CPU in a refresh storm.
 */
class SlowLookStore extends CountingStore {
  private gate: { promise: Promise<void>; open(): void } | undefined;

  holdReads(): void {
    let open = (): void => {};
    const promise = new Promise<void>((resolve) => {
      open = resolve;
    });
    this.gate = { promise, open };
  }

  private openReads(): void {
    this.gate?.open();
  }

  override async read(serverUrl: string) {
    await this.gate?.promise;
    return super.read(serverUrl);
  }

  override transaction<T>(
    serverUrl: string,
    purpose: Parameters<FileCredentialStore['transaction']>[1],
    fn: (tx: StoreTransaction) => Promise<T>,
    options: TransactionOptions = {},
  ): Promise<T> {
    const { beforeRetry } = options;
    return super.transaction(
      serverUrl,
      purpose,
      (tx) => {
        this.openReads();
        return fn(tx);
      },
      {
        ...options,
        ...(beforeRetry
          ? {
              beforeRetry: () => {
                this.openReads();
                return beforeRetry();
              },
            }
          : {}),
      },
    );
  }
}

test('a waiter woken by the holder’s write and then by its release adopts the record instead of taking the lock', async (t) => {
  const { home, holderStore, dueTokens } = await dueRecord(t);
  const log = recordLog();
  const waiterStore = new SlowLookStore({ home });
  const waiter = waiterOn(waiterStore, log);

  let asked: Promise<string> | undefined;
  await holderStore.transaction(URL_, 'refresh', async (tx) => {
    asked = waiter.getAccessToken(URL_);
    // Check 1: before the lock-free read; check 2: the watcher's first look, once waiting.
    await waiterStore.readsWhenChecked(2);
    waiterStore.holdReads();
    const read = await tx.read();
    assert.ok(read.kind === 'ok');
    const fresh = { ...dueTokens, accessToken: 'at.fresh', obtainedAt: Date.now(), expiresAt: Date.now() + 3_600_000 };
    await tx.write({ ...read.record, tokens: fresh });
    // Released at once, as a refresh does: the waiter hears the write, then the release.
  });

  assert.equal(await asked, 'at.fresh');
  const adopted = log.named('refresh.adopted');
  assert.equal(adopted.length, 1);
  // Taking the lock on the release only to adopt under it is the queue this avoids.
  assert.match(String(adopted[0]?.message), /while waiting/, 'adopted from the record, not under the lock');
  assert.equal(log.named('refresh.ok').length, 0, 'the waiter did not refresh');
});

/** A file store whose record notifications have an hour's backstop, and which counts reads and says when a version check is done. */
class NotifiedOnlyStore extends FileCredentialStore {
  versions = 0;
  reads = 0;
  private readonly checked: Array<{ n: number; resolve(): void }> = [];

  override watchRecord(serverUrl: string) {
    const changes = super.watchRecord(serverUrl);
    return {
      next: (_ms: number, signal?: AbortSignal) => changes.next(3_600_000, signal),
      get notifies() {
        return changes.notifies;
      },
      close: () => changes.close(),
    };
  }

  override async recordVersion(serverUrl: string) {
    const version = await super.recordVersion(serverUrl);
    this.versions++;
    for (const w of this.checked) if (w.n === this.versions) w.resolve();
    return version;
  }

  override async read(serverUrl: string) {
    this.reads++;
    return super.read(serverUrl);
  }

  /** Resolves once the `n`th version check has been answered. */
  versionChecked(n: number): Promise<void> {
    return new Promise((resolve) => this.checked.push({ n, resolve }));
  }
}

test('a waiter is woken by the notification that the record was replaced, not by polling', {
  timeout: 30_000,
}, async (t) => {
  const { home, holderStore, dueTokens } = await dueRecord(t);
  const log = recordLog();
  const waiterStore = new NotifiedOnlyStore({ home });
  const waiter = waiterOn(waiterStore, log);

  let served: string | undefined;
  await holderStore.transaction(URL_, 'refresh', async (tx) => {
    const asked = waiter.getAccessToken(URL_);
    // Check 1: before the lock-free read; check 2: the watcher's first look, once waiting.
    await waiterStore.versionChecked(2);
    assert.equal(waiterStore.reads, 1, 'the watcher did not read the record it had just read');
    const versionsBefore = waiterStore.versions;
    const read = await tx.read();
    assert.ok(read.kind === 'ok');
    const fresh = { ...dueTokens, accessToken: 'at.fresh', obtainedAt: Date.now(), expiresAt: Date.now() + 3_600_000 };
    await tx.write({ ...read.record, tokens: fresh });
    // Its only other wake-up is an hour away: a waiter that does not hear the rename hangs here.
    served = await asked;
    assert.ok(waiterStore.versions > versionsBefore, 'it looked again after the write');
  });

  assert.equal(served, 'at.fresh');
  assert.match(String(log.named('refresh.adopted')[0]?.message), /while waiting/);
  assert.equal(log.named('refresh.ok').length, 0, 'the waiter did not refresh');
});
