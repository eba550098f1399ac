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
 * A waiter that finds the lock already held takes no part in it while it watches (no exclusive
 * create, no look at the holder): the holder's tokens usually land first. It goes to the lock when
 * the holder releases it without storing tokens, when the record changes to something it cannot
 * adopt (needs-auth), or after a while (a holder killed mid-refresh leaves its lock file).
 */
import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { mkdir, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { test } from 'node:test';
import { NeedsAuthError } from '../../src/errors.js';
import { Logger } from '../../src/session/log.js';
import { markNeedsAuth, needsAuthInfo, TokenManager } from '../../src/session/token-manager.js';
import type { CredentialStore, StoreTransaction, TransactionOptions } from '../../src/store/credential-store.js';
import { FileCredentialStore } from '../../src/store/file-credential-store.js';
import { type LockInfo, type LockWaitMessage, lockFilePath, lockWaitChannel } from '../../src/store/lock.js';
import { recordKey, storeLayout } from '../../src/store/paths.js';
import type { Tokens } from '../../src/store/record.js';
import { redisTarget } from '../../src/store/redis/redis-connection.js';
import { RedisCredentialStore } from '../../src/store/redis/redis-credential-store.js';
import { tempHome } from '../helpers/bed.js';
import { recordLog } from '../helpers/log-events.js';
import { makeStoreKey, startRedis } from '../helpers/redis-server.js';
import { deadPid, makeRecord } from '../helpers/store-fixtures.js';

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

/**
 * The waiting process: a TokenManager on `store` whose token-endpoint requests are counted in
 * `requests` and fail (where it must adopt, a test asserts none was sent).
 */
function waiterOn(store: CredentialStore, log: ReturnType<typeof recordLog>, requests = { count: 0 }): TokenManager {
  return new TokenManager({
    store,
    http: () => ({
      allowInsecureLoopback: false,
      timeoutMs: 1_000,
      fetch: async () => {
        requests.count++;
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
  // A store that cannot tell whether the lock is held (as the fleet store): the waiter goes to the
  // lock at once, and this is its wait there.
  Object.defineProperty(waiterStore, 'refreshUnderWay', { value: undefined });
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

/** Every lock wait this process publishes for a lock in `home` (lock.ts's diagnostics channel) until `stop`. */
function lockWaitsIn(home: string): { messages: LockWaitMessage[]; stop(): void } {
  const messages: LockWaitMessage[] = [];
  const listener = (message: unknown): void => {
    const wait = message as LockWaitMessage;
    if (wait.dir.startsWith(home)) messages.push(wait);
  };
  subscribe(lockWaitChannel.name, listener);
  return { messages, stop: () => unsubscribe(lockWaitChannel.name, listener) };
}

/**
 * The holder's refresh on `holderStore` while `waiter` asks: once the waiter says it watches the
 * record (not the lock), the holder stores fresh tokens; returns what the waiter served, before
 * the holder released.
 */
async function watchThenAdopt(
  holderStore: CredentialStore,
  waiter: TokenManager,
  log: ReturnType<typeof recordLog>,
  dueTokens: Tokens,
): Promise<string> {
  return holderStore.transaction(URL_, 'refresh', async (tx) => {
    const asked = waiter.getAccessToken(URL_);
    const waiting = await log.next('refresh.waiting');
    assert.match(String(waiting.message), /watching its record/, 'it watches the record');
    const read = await tx.read();
    assert.ok(read.kind === 'ok');
    const fresh = { ...dueTokens, accessToken: 'at.fresh', obtainedAt: Date.now(), expiresAt: Date.now() + 3_600_000 };
    await tx.write({ ...read.record, tokens: fresh });
    return asked;
  });
}

test('a waiter that finds the lock held adopts the holder’s tokens without taking part in the lock', async (t) => {
  const { home, holderStore, dueTokens } = await dueRecord(t);
  const log = recordLog();
  const waits = lockWaitsIn(home);
  t.after(() => waits.stop());
  const requests = { count: 0 };
  const waiter = waiterOn(new FileCredentialStore({ home }), log, requests);

  const served = await watchThenAdopt(holderStore, waiter, log, dueTokens);

  assert.equal(served, 'at.fresh');
  assert.equal(waits.messages.length, 0, 'the waiter never looked at the holder’s lock file to wait for it');
  assert.equal(log.named('refresh.waiting').length, 1, 'it waited once, watching the record');
  assert.equal(requests.count, 0, 'the waiter did not refresh');
});

/** A file store whose look at the refresh lock always finds it free: the look came before the holder took it. */
class LateLookStore extends FileCredentialStore {
  override async refreshUnderWay(): Promise<boolean> {
    return false;
  }
}

test('a waiter whose exclusive create finds the lock held watches the record then, and adopts without waiting on the holder', async (t) => {
  const { home, holderStore, dueTokens } = await dueRecord(t);
  const log = recordLog();
  const waits = lockWaitsIn(home);
  t.after(() => waits.stop());
  const requests = { count: 0 };
  const waiter = waiterOn(new LateLookStore({ home }), log, requests);

  const served = await watchThenAdopt(holderStore, waiter, log, dueTokens);

  assert.equal(served, 'at.fresh');
  assert.equal(waits.messages.length, 0, 'it never looked at the holder’s lock file to wait for it');
  assert.equal(requests.count, 0, 'the waiter did not refresh');
});

test('a holder that releases the lock without storing tokens: the waiter stops watching, takes the lock and refreshes', async (t) => {
  const { home, holderStore } = await dueRecord(t);
  const log = recordLog();
  const requests = { count: 0 };
  const waiter = waiterOn(new FileCredentialStore({ home }), log, requests);

  let asked: Promise<string> | undefined;
  await holderStore.transaction(URL_, 'refresh', async () => {
    asked = waiter.getAccessToken(URL_);
    await log.next('refresh.waiting');
    assert.equal(requests.count, 0, 'no request while the holder holds the lock');
    // Released with the record unchanged (a holder whose refresh failed before it could store).
  });

  // The waiter's refresh is the one request; this test's token endpoint refuses it.
  await assert.rejects(asked as Promise<string>);
  assert.equal(requests.count, 1, 'the waiter refreshed once the lock was free');
});

test('a holder that stores needs-auth: the waiter ends with the stored reason and sends nothing', async (t) => {
  const { home, holderStore } = await dueRecord(t);
  const log = recordLog();
  const requests = { count: 0 };
  const waiter = waiterOn(new FileCredentialStore({ home }), log, requests);

  let asked: Promise<string> | undefined;
  await holderStore.transaction(URL_, 'refresh', async (tx) => {
    asked = waiter.getAccessToken(URL_);
    await log.next('refresh.waiting');
    const read = await tx.read();
    assert.ok(read.kind === 'ok');
    await tx.write(markNeedsAuth(read.record, needsAuthInfo(URL_, 'revoked', { error: 'invalid_grant' })));
  });

  await assert.rejects(asked as Promise<string>, (err: unknown) => {
    assert.ok(err instanceof NeedsAuthError);
    assert.equal(err.info.reason, 'revoked');
    return true;
  });
  assert.equal(requests.count, 0, 'the waiter did not refresh a grant the holder found revoked');
});

test('a holder killed mid-refresh (its lock file left behind): the waiter watches, then takes the lock over and refreshes', async (t) => {
  const { home } = await dueRecord(t);
  const log = recordLog();
  const requests = { count: 0 };
  const waiter = waiterOn(new FileCredentialStore({ home }), log, requests);
  const layout = storeLayout(home);
  await mkdir(layout.locksDir, { recursive: true, mode: 0o700 });
  const dead: LockInfo = {
    pid: await deadPid(),
    hostname: hostname(),
    nonce: 'deadbeefdeadbeefdeadbeef',
    acquiredAt: new Date().toISOString(),
    purpose: 'refresh',
    staleMs: 10_000,
  };
  await writeFile(lockFilePath(layout.locksDir, layout.lockName(recordKey(URL_), 'refresh')), JSON.stringify(dead), {
    mode: 0o600,
  });

  await assert.rejects(waiter.getAccessToken(URL_));
  const waiting = log.named('refresh.waiting');
  assert.match(String(waiting[0]?.message), /watching its record/, 'it watched first');
  assert.equal(waiting[1]?.holderPid, dead.pid, 'then waited at the lock, where the dead holder was found');
  assert.equal(requests.count, 1, 'and refreshed once, after taking the lock over');
});

test('fleet store: a waiter that finds the refresh lease held watches the record instead of waiting at the lease, and adopts what the holder wrote', async (t) => {
  const redis = await startRedis();
  const sealKey = Buffer.from(makeStoreKey(), 'base64');
  const stores: RedisCredentialStore[] = [];
  const open = (): RedisCredentialStore => {
    const store = new RedisCredentialStore({ target: redisTarget(redis.url), sealKey, prefix: 'authkeep:w:' });
    stores.push(store);
    return store;
  };
  t.after(async () => {
    for (const store of stores) await store.close();
    await redis.stop();
  });
  const holderStore = open();
  const due = makeRecord(URL_, { tag: 'due' });
  const dueTokens = { ...due.tokens!, obtainedAt: Date.now() - 3_600_000, expiresAt: Date.now() - 1_000 };
  await holderStore.transaction(URL_, 'write', (tx) => tx.write({ ...due, tokens: dueTokens }));
  const log = recordLog();
  const requests = { count: 0 };
  const waiter = waiterOn(open(), log, requests);

  const served = await watchThenAdopt(holderStore, waiter, log, dueTokens);

  assert.equal(served, 'at.fresh');
  assert.equal(log.named('refresh.waiting').length, 1, 'it never waited at the lease');
  assert.match(String(log.named('refresh.adopted')[0]?.message), /while waiting/);
  assert.equal(requests.count, 0, 'the waiter did not refresh');
});
