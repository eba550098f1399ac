/**
 * The cross-process lock. Timing is never measured: a wait is observed through `onWait`, a loss
 * through `onLost`, a takeover through `onTakeover` and the holder's heartbeat age as the lock saw
 * it; "at once" and "on release" are shown with the poll timers frozen (node:test's mock timers),
 * and the unreadable-file grace with a mocked clock against the file's own mtime. The only real
 * durations are the bounds under test (a hung holder's staleMs).
 */
import assert from 'node:assert/strict';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AuthkeepError } from '../../src/errors.js';
import { ensurePrivateDir } from '../../src/store/atomic-file.js';
import {
  acquireLock,
  type LockHolder,
  type LockInfo,
  lockFilePath,
  readLockHolder,
  sweepStaleClaims,
} from '../../src/store/lock.js';
import { ownProcessStart } from '../../src/store/process-alive.js';
import { type Child, deadPid, makeTempDir, spawnHelper } from '../helpers/store-fixtures.js';

const CHILD = 'store-lock-child.ts';
const posix = process.platform !== 'win32';
/** The real setTimeout, for failing a test that would otherwise hang while timers are mocked. */
const realSetTimeout = globalThis.setTimeout;

/** `promise`, or a failure saying `what` if it has not settled after `ms` of real time. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = realSetTimeout(() => reject(new Error(`${what} (not within ${ms} ms)`)), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}

/** Let `n` turns of the event loop pass (I/O callbacks included): interleaving without time. */
async function turns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve));
}

/** A promise and the function that resolves it. */
function signal(): { promise: Promise<void>; fire(): void } {
  let fire!: () => void;
  const promise = new Promise<void>((resolve) => (fire = resolve));
  return { promise, fire };
}

function staleInfo(pid: number, nonce = 'deadbeefdeadbeefdeadbeef'): LockInfo {
  return { pid, hostname: hostname(), nonce, acquiredAt: new Date().toISOString(), purpose: 'test', staleMs: 10_000 };
}

interface Visit {
  pid: number;
  enter: number;
  exit: number;
  overlap: boolean;
  tookOver: number;
}

function assertNoOverlap(visits: Visit[]): void {
  const sorted = [...visits].sort((a, b) => a.enter - b.enter);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    const cur = sorted[i]!;
    assert.ok(
      cur.enter >= prev.exit,
      `pid ${cur.pid} entered at ${cur.enter} before pid ${prev.pid} left at ${prev.exit}`,
    );
  }
  assert.ok(
    visits.every((v) => !v.overlap),
    'a waiter found the inside-marker of another',
  );
}

describe('cross-process lock', () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let dir: string;
  const children: Child[] = [];
  before(async () => {
    tmp = await makeTempDir('authkeep-lock-');
    dir = path.join(tmp.dir, 'locks');
    await ensurePrivateDir(dir);
  });
  after(async () => {
    for (const child of children) if (child.proc.exitCode === null) child.proc.kill('SIGKILL');
    await tmp.cleanup();
  });

  it('acquire, contend with a timeout naming the lock and holder pid, release', async () => {
    const first = await acquireLock(dir, 'basic', { purpose: 'refresh' });
    assert.equal(first.holder.pid, process.pid);
    const held = await readLockHolder(dir, 'basic');
    assert.equal(held?.info?.nonce, first.holder.nonce);
    assert.equal(held?.stale, undefined);
    let waited = 0;
    await assert.rejects(
      acquireLock(dir, 'basic', { timeoutMs: 150, onWait: () => waited++ }),
      (err: unknown) =>
        err instanceof AuthkeepError &&
        err.code === 'lock_timeout' &&
        err.message.includes('basic') &&
        err.message.includes(`pid ${process.pid}`) &&
        err.detail?.holderPid === process.pid,
    );
    assert.equal(waited, 1);
    await first.release();
    await first.release(); // idempotent
    assert.equal(await readLockHolder(dir, 'basic'), undefined);
    const second = await acquireLock(dir, 'basic', { timeoutMs: 0 });
    await second.release();
  });

  it('onHeld is awaited once, when the lock is first found held, before the holder is looked at; the lock is taken if it was released meanwhile', async () => {
    const first = await acquireLock(dir, 'on-held');
    const calls: string[] = [];
    const second = await acquireLock(dir, 'on-held', {
      timeoutMs: 5_000,
      onHeld: async () => {
        calls.push('held');
        await first.release();
      },
      onWait: () => calls.push('wait'),
    });
    assert.deepEqual(calls, ['held'], 'released while onHeld ran: taken without waiting on the holder');
    assert.equal(second.holder.pid, process.pid);
    await second.release();
  });

  it('onHeld that aborts the signal ends the acquisition with the abort reason, before any wait', async () => {
    const first = await acquireLock(dir, 'on-held-abort');
    const controller = new AbortController();
    const reason = new Error('adopted what the holder stored');
    let waited = 0;
    await assert.rejects(
      acquireLock(dir, 'on-held-abort', {
        timeoutMs: 5_000,
        signal: controller.signal,
        onHeld: async () => controller.abort(reason),
        onWait: () => waited++,
      }),
      (err: unknown) => err === reason,
    );
    assert.equal(waited, 0, 'the holder was never looked at');
    assert.equal((await readLockHolder(dir, 'on-held-abort'))?.info?.nonce, first.holder.nonce, 'the lock untouched');
    await first.release();
  });

  it('an in-process waiter gets the lock when it is released, not at its next poll', async (t) => {
    const first = await acquireLock(dir, 'handoff');
    // Poll timers frozen: only the release's wake-up can let the waiter in.
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const waiting = signal();
    const second = acquireLock(dir, 'handoff', { timeoutMs: 5_000, onWait: waiting.fire });
    await waiting.promise;
    await first.release();
    const handle = await within(second, 20_000, 'the release did not wake the waiter');
    t.mock.timers.reset();
    await handle.release();
  });

  it('release removes the lock only if it still carries our nonce; the heartbeat notices the loss', async () => {
    let lostCalls = 0;
    const lost = signal();
    const mine = await acquireLock(dir, 'nonce', {
      staleMs: 80,
      onLost: () => {
        lostCalls++;
        lost.fire();
      },
    });
    const file = lockFilePath(dir, 'nonce');
    const other = staleInfo(process.pid, 'abcdefabcdefabcdefabcdef');
    await writeFile(file, JSON.stringify(other)); // as if another process had taken it over
    await lost.promise; // the next heartbeat finds another nonce
    assert.equal(mine.lost, true);
    assert.equal(lostCalls, 1);
    await mine.release();
    assert.equal(JSON.parse(await readFile(file, 'utf8')).nonce, other.nonce);
    await writeFile(file, JSON.stringify(staleInfo(await deadPid())));
    await (await acquireLock(dir, 'nonce', { timeoutMs: 1_000 })).release();
  });

  it('reports a dead holder as stale and takes it over at once', async (t) => {
    await writeFile(lockFilePath(dir, 'dead'), JSON.stringify(staleInfo(await deadPid())));
    assert.equal((await readLockHolder(dir, 'dead'))?.stale, 'dead_pid');
    const takeovers: string[] = [];
    // Poll timers frozen: a takeover "at once" waits on none.
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const lock = await within(
      acquireLock(dir, 'dead', { timeoutMs: 2_000, onTakeover: (h) => takeovers.push(h.stale ?? '') }),
      20_000,
      'the dead holder was not taken over at once',
    );
    t.mock.timers.reset();
    assert.deepEqual(takeovers, ['dead_pid']);
    await lock.release();
  });

  it('takes over an unparseable lock file (creator killed mid-write) only after a short grace', async (t) => {
    const file = lockFilePath(dir, 'empty');
    await writeFile(file, '');
    const written = Math.ceil((await stat(file)).mtimeMs);
    const staleMs = 200; // the grace is min(staleMs, 500 ms)
    // The lock's clock, mocked: "now" relative to the file's own mtime.
    t.mock.timers.enable({ apis: ['Date'], now: written + staleMs - 50 });
    await assert.rejects(
      acquireLock(dir, 'empty', { timeoutMs: 0, staleMs }),
      { code: 'lock_timeout' },
      'within the grace its creator may still be writing it',
    );
    const takeovers: string[] = [];
    t.mock.timers.tick(100);
    const lock = await acquireLock(dir, 'empty', {
      timeoutMs: 0,
      staleMs,
      onTakeover: (h) => takeovers.push(h.stale ?? ''),
    });
    t.mock.timers.reset();
    assert.deepEqual(takeovers, ['unreadable']);
    await lock.release();
  });

  it('a claim left by a process killed mid-takeover does not wedge the lock', async () => {
    const stale = staleInfo(await deadPid());
    const file = lockFilePath(dir, 'claimed');
    await writeFile(file, JSON.stringify(stale));
    // The dead claimer had claimed the stale holding, then died before removing it.
    await writeFile(
      `${file}.${stale.nonce}.claim`,
      JSON.stringify({ ...staleInfo(await deadPid(), '0123456789abcdef01234567'), purpose: 'claim' }),
    );
    const lock = await acquireLock(dir, 'claimed', { timeoutMs: 2_000 });
    await lock.release();
    await sweepStaleClaims(dir);
    assert.deepEqual(
      (await readdir(dir)).filter((n) => n.startsWith('claimed')),
      [],
    );
  });

  it('in-process stress: 40 rounds x 12 concurrent acquirers on a dead holder: one takeover per round, never two inside', async () => {
    const dead = await deadPid();
    for (let round = 0; round < 40; round++) {
      const name = `stress-${round}`;
      await writeFile(lockFilePath(dir, name), JSON.stringify(staleInfo(dead)));
      let inside = 0;
      let maxInside = 0;
      let takeovers = 0;
      await Promise.all(
        Array.from({ length: 12 }, async (_, i) => {
          // Staggered arrivals, so that some waiters find the stale lock while others are in the
          // middle of removing it or creating the next one.
          await turns(i % 3 === 0 ? 0 : Math.floor(Math.random() * 4));
          const lock = await acquireLock(dir, name, { timeoutMs: 10_000, onTakeover: () => takeovers++ });
          inside++;
          maxInside = Math.max(maxInside, inside);
          await turns(Math.floor(Math.random() * 3));
          inside--;
          await lock.release();
        }),
      );
      assert.equal(maxInside, 1, `round ${round}: two holders at once`);
      assert.equal(takeovers, 1, `round ${round}: ${takeovers} takeovers`);
    }
    assert.deepEqual(
      (await readdir(dir)).filter((n) => n.startsWith('stress-')),
      [],
      'no lock or claim files left',
    );
  });

  it('mutual exclusion: 8 processes x 50 increments of a counter file inside the lock', async () => {
    const counter = path.join(tmp.dir, 'counter');
    const marker = path.join(tmp.dir, 'counter.inside');
    const opts = JSON.stringify({ dir, name: 'counter', counter, marker, iterations: 50 });
    const kids = Array.from({ length: 8 }, () => spawnHelper(CHILD, ['counter', opts]));
    children.push(...kids);
    const results = await Promise.all(kids.map((k) => k.exited));
    for (const [i, r] of results.entries()) assert.equal(r.code, 0, kids[i]!.stderr());
    assert.equal(await readFile(counter, 'utf8'), '400');
    assert.ok(
      kids.every((k) => !k.lines.includes('OVERLAP')),
      'two processes were inside at once',
    );
    assert.ok(kids.every((k) => k.lines.includes('DONE')));
  });

  it('SIGKILL of the holder lets a waiting process take over at once, as a dead holder', {
    skip: !posix,
  }, async (t) => {
    const holder = spawnHelper(CHILD, ['hold', JSON.stringify({ dir, name: 'killed' })]);
    children.push(holder);
    await holder.waitForLine(/^ACQUIRED /);
    const waiter = spawnHelper(CHILD, ['waiter', JSON.stringify({ dir, name: 'killed', timeoutMs: 20_000 })]);
    children.push(waiter);
    await waiter.waitForLine(/^WAITING$/);
    const killedAt = Date.now();
    holder.proc.kill('SIGKILL');
    const line = await waiter.waitForLine(/^ACQUIRED \d+$/);
    t.diagnostic(`waiter acquired ${Number(line.split(' ')[1]) - killedAt} ms after SIGKILL of the holder`);
    // Taken over for its dead pid, not after the holder's 10 s heartbeat bound.
    assert.deepEqual(
      waiter.lines.filter((l) => l.startsWith('TOOKOVER')),
      ['TOOKOVER dead_pid'],
    );
    assert.equal((await waiter.exited).code, 0);
  });

  it('a stale lock (dead pid) is taken over by exactly one of 8 waiters starting at once', async () => {
    const name = 'stale8';
    const log = path.join(tmp.dir, 'stale8.log');
    const marker = path.join(tmp.dir, 'stale8.inside');
    await writeFile(lockFilePath(dir, name), JSON.stringify(staleInfo(await deadPid())));
    const opts = JSON.stringify({ dir, name, log, marker, holdMs: 15, waitForGo: true, timeoutMs: 20_000 });
    const kids = Array.from({ length: 8 }, () => spawnHelper(CHILD, ['waiter', opts]));
    children.push(...kids);
    await Promise.all(kids.map((k) => k.waitForLine(/^READY$/)));
    for (const k of kids) k.proc.stdin!.write('go\n');
    const results = await Promise.all(kids.map((k) => k.exited));
    for (const [i, r] of results.entries()) assert.equal(r.code, 0, kids[i]!.stderr());
    const visits = (await readFile(log, 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Visit);
    assert.equal(visits.length, 8);
    assertNoOverlap(visits);
    assert.equal(
      visits.reduce((n, v) => n + v.tookOver, 0),
      1,
      'exactly one waiter removed the stale lock',
    );
  });

  it('a hung holder (alive, SIGSTOPped, no heartbeat) is taken over once its heartbeat is staleMs old', {
    skip: !posix,
  }, async (t) => {
    const staleMs = 1_000;
    const holder = spawnHelper(CHILD, ['hold', JSON.stringify({ dir, name: 'hung', staleMs })]);
    children.push(holder);
    await holder.waitForLine(/^ACQUIRED /);
    // Alive and heartbeating (every staleMs / 4): not taken over although held for longer than staleMs.
    await assert.rejects(acquireLock(dir, 'hung', { timeoutMs: 2 * staleMs, staleMs }), { code: 'lock_timeout' });
    holder.proc.kill('SIGSTOP');
    try {
      const takeovers: LockHolder[] = [];
      const lock = await acquireLock(dir, 'hung', {
        timeoutMs: 60_000,
        staleMs,
        onTakeover: (h) => takeovers.push(h),
      });
      t.diagnostic(
        `hung holder (staleMs ${staleMs}) taken over with a heartbeat ${takeovers[0]?.heartbeatAgeMs} ms old`,
      );
      assert.deepEqual(
        takeovers.map((h) => h.stale),
        ['heartbeat'],
      );
      assert.ok(
        (takeovers[0]?.heartbeatAgeMs ?? 0) >= staleMs,
        `taken over with a heartbeat ${takeovers[0]?.heartbeatAgeMs} ms old, not before staleMs`,
      );
      holder.proc.kill('SIGCONT');
      await holder.waitForLine(/^LOST$/); // the woken holder learns it lost the lock
      assert.equal((await readLockHolder(dir, 'hung'))?.info?.nonce, lock.holder.nonce);
      await lock.release();
    } finally {
      holder.proc.kill('SIGCONT');
      holder.proc.kill('SIGKILL');
    }
  });

  it('a holder starved of CPU on this host (alive, able to run, silent heartbeat) is not taken over while within its max hold', {
    skip: process.platform !== 'linux',
  }, async () => {
    const staleMs = 200;
    const stopFile = path.join(tmp.dir, 'starved.stop');
    const holder = spawnHelper(CHILD, [
      'starved',
      JSON.stringify({ dir, name: 'starved', staleMs, maxHoldMs: 120_000, stopFile }),
    ]);
    children.push(holder);
    await holder.waitForLine(/^BLOCKING$/);
    // The holder has not heartbeaten since it blocked; a waiter on the heartbeat rule alone would
    // take it over after 200 ms, while (in the field) its refresh request may be in flight.
    const takeovers: LockHolder[] = [];
    await assert.rejects(
      acquireLock(dir, 'starved', { timeoutMs: 10 * staleMs, staleMs, onTakeover: (h) => takeovers.push(h) }),
      { code: 'lock_timeout' },
    );
    assert.deepEqual(takeovers, []);
    const seen = await readLockHolder(dir, 'starved', { staleMs });
    assert.equal(typeof seen?.info?.processStart, 'number', 'the holder records its process start time');
    assert.ok((seen?.heartbeatAgeMs ?? 0) > staleMs, `heartbeat ${seen?.heartbeatAgeMs} ms old`);
    assert.equal(seen?.stale, undefined, 'a starved holder is not stale');
    await writeFile(stopFile, '');
    await holder.waitForLine(/^(HELD|LOST)$/);
    assert.ok(holder.lines.includes('HELD'), 'the starved holder still held its lock when it woke');
    assert.equal((await holder.exited).code, 0);
    assert.equal(await readLockHolder(dir, 'starved'), undefined);
  });

  it('a starved holder on this host is taken over once its max hold has passed', {
    skip: process.platform !== 'linux',
  }, async () => {
    const staleMs = 200;
    const maxHoldMs = 1_500;
    const stopFile = path.join(tmp.dir, 'overheld.stop');
    const holder = spawnHelper(CHILD, [
      'starved',
      JSON.stringify({ dir, name: 'overheld', staleMs, maxHoldMs, stopFile }),
    ]);
    children.push(holder);
    await holder.waitForLine(/^BLOCKING$/);
    const takeovers: LockHolder[] = [];
    const lock = await acquireLock(dir, 'overheld', {
      timeoutMs: 60_000,
      staleMs,
      maxHoldMs,
      onTakeover: (h) => takeovers.push(h),
    });
    assert.deepEqual(
      takeovers.map((h) => h.stale),
      ['max_hold'],
    );
    const heldFor = Date.parse(lock.holder.acquiredAt) - Date.parse(takeovers[0]?.info?.acquiredAt ?? '');
    assert.ok(heldFor >= maxHoldMs, `taken over ${heldFor} ms after it was acquired, not before its max hold`);
    await writeFile(stopFile, '');
    await holder.waitForLine(/^(HELD|LOST)$/);
    assert.ok(holder.lines.includes('LOST'), 'the holder learns it lost the lock');
    assert.equal((await holder.exited).code, 0);
    assert.equal((await readLockHolder(dir, 'overheld'))?.info?.nonce, lock.holder.nonce);
    await lock.release();
  });

  it('a lock naming a live pid that carries another start time (a reused pid) is taken over at once', {
    skip: process.platform !== 'linux',
  }, async () => {
    const own = ownProcessStart();
    assert.equal(typeof own, 'number');
    const forged: LockInfo = { ...staleInfo(process.pid), processStart: (own ?? 0) + 1 };
    await writeFile(lockFilePath(dir, 'reused'), JSON.stringify(forged));
    const takeovers: LockHolder[] = [];
    const lock = await acquireLock(dir, 'reused', { timeoutMs: 0, onTakeover: (h) => takeovers.push(h) });
    assert.deepEqual(
      takeovers.map((h) => h.stale),
      ['dead_pid'],
    );
    await lock.release();
  });
});
