/**
 * store-lock-child: a child process for the cross-process lock tests. Not for anything else.
 *
 * Usage: store-lock-child.ts <mode> <json options>
 * - counter: {dir, name, counter, marker, iterations}: N times: take the lock, create `marker`
 *   exclusively (prints OVERLAP if it exists: someone else is inside), read-increment-write
 *   `counter` non-atomically, remove the marker, release. Prints DONE.
 * - hold: {dir, name, staleMs}: take the lock, print `ACQUIRED <nonce>`, stay alive; prints LOST
 *   if the heartbeat finds the lock taken over.
 * - starved: {dir, name, staleMs, maxHoldMs, stopFile}: take the lock, print `ACQUIRED <nonce>`
 *   and BLOCKING, then keep its event loop blocked (a process starved of CPU: alive, runnable,
 *   never heartbeating) until `stopFile` exists; then print HELD or LOST (the lock's `verify`),
 *   release, exit.
 * - waiter: {dir, name, staleMs, timeoutMs, holdMs, marker, log, waitForGo}: print READY; if
 *   waitForGo, wait for a line on stdin; take the lock (printing WAITING when blocked and
 *   `TOOKOVER <reason>` when it removed a stale holding), print `ACQUIRED <epoch ms>`, stay
 *   inside holdMs, append one JSON line {pid, enter, exit, overlap, tookOver} to `log`, release,
 *   exit.
 */
import { existsSync } from 'node:fs';
import { appendFile, open, readFile, unlink, writeFile } from 'node:fs/promises';
import { acquireLock } from '../../src/store/lock.js';

interface Options {
  dir: string;
  name: string;
  counter?: string;
  marker?: string;
  iterations?: number;
  staleMs?: number;
  maxHoldMs?: number;
  stopFile?: string;
  timeoutMs?: number;
  holdMs?: number;
  log?: string;
  waitForGo?: boolean;
}

const mode = process.argv[2];
const options = JSON.parse(process.argv[3] ?? '{}') as Options;
const now = (): number => performance.timeOrigin + performance.now();
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Enter the critical section: true if nobody else was inside. */
async function enter(marker: string): Promise<boolean> {
  try {
    await (await open(marker, 'wx')).close();
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
}

async function counterMode(): Promise<void> {
  for (let i = 0; i < (options.iterations ?? 50); i++) {
    const lock = await acquireLock(options.dir, options.name, { timeoutMs: 30_000, staleMs: options.staleMs ?? 5_000 });
    const alone = await enter(options.marker!);
    if (!alone) console.log('OVERLAP');
    const value = Number((await readFile(options.counter!, 'utf8').catch(() => '0')) || '0');
    await writeFile(options.counter!, String(value + 1));
    if (alone) await unlink(options.marker!);
    await lock.release();
  }
  console.log('DONE');
}

async function holdMode(): Promise<void> {
  const lock = await acquireLock(options.dir, options.name, {
    timeoutMs: 10_000,
    staleMs: options.staleMs ?? 10_000,
    onLost: () => console.log('LOST'),
  });
  console.log(`ACQUIRED ${lock.holder.nonce}`);
  setInterval(() => undefined, 1_000); // stay alive until killed
}

async function starvedMode(): Promise<void> {
  const lock = await acquireLock(options.dir, options.name, {
    timeoutMs: 10_000,
    staleMs: options.staleMs ?? 10_000,
    ...(options.maxHoldMs !== undefined ? { maxHoldMs: options.maxHoldMs } : {}),
  });
  console.log(`ACQUIRED ${lock.holder.nonce}`);
  console.log('BLOCKING');
  // Synchronous on purpose: no timer (the heartbeat included) runs until the test says stop.
  while (!existsSync(options.stopFile!)) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
  console.log((await lock.verify()) ? 'HELD' : 'LOST');
  await lock.release();
  process.exit(0);
}

async function waiterMode(): Promise<void> {
  console.log('READY');
  if (options.waitForGo) {
    await new Promise<void>((resolve) => process.stdin.once('data', () => resolve()));
    process.stdin.pause();
  }
  let tookOver = 0;
  const lock = await acquireLock(options.dir, options.name, {
    timeoutMs: options.timeoutMs ?? 20_000,
    staleMs: options.staleMs ?? 10_000,
    onWait: () => console.log('WAITING'),
    onTakeover: (stale) => {
      tookOver++;
      console.log(`TOOKOVER ${stale.stale}`);
    },
  });
  const enterAt = now();
  console.log(`ACQUIRED ${Date.now()}`);
  const alone = options.marker ? await enter(options.marker) : true;
  await sleep(options.holdMs ?? 0);
  const exitAt = now();
  if (alone && options.marker) await unlink(options.marker);
  if (options.log) {
    await appendFile(
      options.log,
      `${JSON.stringify({ pid: process.pid, enter: enterAt, exit: exitAt, overlap: !alone, tookOver })}\n`,
    );
  }
  await lock.release();
  process.exit(0);
}

const modes: Record<string, () => Promise<void>> = {
  counter: counterMode,
  hold: holdMode,
  starved: starvedMode,
  waiter: waiterMode,
};
const run = mode === undefined ? undefined : modes[mode];
if (run === undefined) {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
run().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
