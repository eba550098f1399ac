import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AuthkeepError } from '../../src/errors.js';
import { ensurePrivateDir } from '../../src/store/atomic-file.js';
import { acquireLock, type LockInfo, lockFilePath, readLockHolder, sweepStaleClaims } from '../../src/store/lock.js';
import { type Child, deadPid, makeTempDir, sleep, spawnHelper } from '../helpers/store-fixtures.js';

const CHILD = 'store-lock-child.ts';
const posix = process.platform !== 'win32';

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

  it('an in-process waiter gets the lock as soon as it is released', async () => {
    const first = await acquireLock(dir, 'handoff');
    const started = Date.now();
    const waiting = acquireLock(dir, 'handoff', { timeoutMs: 5_000 });
    await sleep(300);
    await first.release();
    const second = await waiting;
    const handoffMs = Date.now() - started - 300;
    await second.release();
    assert.ok(handoffMs < 100, `handoff took ${handoffMs} ms`);
  });

  it('release removes the lock only if it still carries our nonce; the heartbeat notices the loss', async () => {
    let lostCalls = 0;
    const mine = await acquireLock(dir, 'nonce', { staleMs: 80, onLost: () => lostCalls++ });
    const file = lockFilePath(dir, 'nonce');
    const other = staleInfo(process.pid, 'abcdefabcdefabcdefabcdef');
    await writeFile(file, JSON.stringify(other)); // as if another process had taken it over
    await sleep(120);
    assert.equal(mine.lost, true);
    assert.equal(lostCalls, 1);
    await mine.release();
    assert.equal(JSON.parse(await readFile(file, 'utf8')).nonce, other.nonce);
    await writeFile(file, JSON.stringify(staleInfo(await deadPid())));
    await (await acquireLock(dir, 'nonce', { timeoutMs: 1_000 })).release();
  });

  it('reports a dead holder as stale and takes it over at once', async () => {
    await writeFile(lockFilePath(dir, 'dead'), JSON.stringify(staleInfo(await deadPid())));
    assert.equal((await readLockHolder(dir, 'dead'))?.stale, 'dead_pid');
    const takeovers: string[] = [];
    const started = Date.now();
    const lock = await acquireLock(dir, 'dead', { timeoutMs: 2_000, onTakeover: (h) => takeovers.push(h.stale ?? '') });
    assert.ok(Date.now() - started < 200);
    assert.deepEqual(takeovers, ['dead_pid']);
    await lock.release();
  });

  it('takes over an unparseable lock file (creator killed mid-write) after a short grace', async () => {
    await writeFile(lockFilePath(dir, 'empty'), '');
    const started = Date.now();
    const lock = await acquireLock(dir, 'empty', { timeoutMs: 3_000, staleMs: 200 });
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 150 && elapsed < 1_500, `took ${elapsed} ms`);
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
          await sleep(i % 3 === 0 ? 0 : Math.random() * 3);
          const lock = await acquireLock(dir, name, { timeoutMs: 10_000, onTakeover: () => takeovers++ });
          inside++;
          maxInside = Math.max(maxInside, inside);
          await sleep(Math.random() * 2);
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

  it('SIGKILL of the holder lets a waiting process acquire within 2 s of the kill', { skip: !posix }, async (t) => {
    const holder = spawnHelper(CHILD, ['hold', JSON.stringify({ dir, name: 'killed' })]);
    children.push(holder);
    await holder.waitForLine(/^ACQUIRED /);
    const waiter = spawnHelper(CHILD, ['waiter', JSON.stringify({ dir, name: 'killed', timeoutMs: 20_000 })]);
    children.push(waiter);
    await waiter.waitForLine(/^WAITING$/);
    const killedAt = Date.now();
    holder.proc.kill('SIGKILL');
    const line = await waiter.waitForLine(/^ACQUIRED \d+$/, 5_000);
    const elapsed = Number(line.split(' ')[1]) - killedAt;
    t.diagnostic(`waiter acquired ${elapsed} ms after SIGKILL of the holder`);
    assert.ok(elapsed < 2_000, `acquired ${elapsed} ms after the kill`);
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

  it('a hung holder (alive, SIGSTOPped, no heartbeat) is taken over after staleMs', { skip: !posix }, async (t) => {
    const staleMs = 400;
    const holder = spawnHelper(CHILD, ['hold', JSON.stringify({ dir, name: 'hung', staleMs })]);
    children.push(holder);
    await holder.waitForLine(/^ACQUIRED /);
    // Alive and heartbeating: not taken over although it is held for longer than staleMs.
    await assert.rejects(acquireLock(dir, 'hung', { timeoutMs: 3 * staleMs, staleMs }), { code: 'lock_timeout' });
    holder.proc.kill('SIGSTOP');
    const stoppedAt = Date.now();
    try {
      const takeovers: string[] = [];
      const lock = await acquireLock(dir, 'hung', {
        timeoutMs: 5_000,
        staleMs,
        onTakeover: (h) => takeovers.push(h.stale ?? ''),
      });
      const elapsed = Date.now() - stoppedAt;
      t.diagnostic(`hung holder (staleMs ${staleMs}) taken over ${elapsed} ms after SIGSTOP`);
      assert.deepEqual(takeovers, ['heartbeat']);
      // The last heartbeat was at most staleMs/4 before the stop.
      assert.ok(elapsed >= staleMs * 0.7 && elapsed < staleMs + 1_500, `taken over ${elapsed} ms after SIGSTOP`);
      holder.proc.kill('SIGCONT');
      await holder.waitForLine(/^LOST$/, 3_000); // the woken holder learns it lost the lock
      assert.equal((await readLockHolder(dir, 'hung'))?.info?.nonce, lock.holder.nonce);
      await lock.release();
    } finally {
      holder.proc.kill('SIGCONT');
      holder.proc.kill('SIGKILL');
    }
  });
});
