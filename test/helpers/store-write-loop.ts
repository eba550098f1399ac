/**
 * store-write-loop: a child that rewrites one server's record in a tight loop, for the SIGKILL
 * crash test. Not for anything else.
 *
 * Usage: store-write-loop.ts <home> <serverUrl> [wait]
 * With `wait`, it loads everything, prints READY and starts only when a line arrives on stdin
 * (so a test can keep warm spares and spend its time killing, not starting, processes).
 * Each iteration is a 'write' transaction: read generation g, write generation g+1 whose access
 * and refresh tokens both end in `.<g+1>.<pid>` (padded to a few KB so a torn write would show).
 * Prints WROTE after its first write, then keeps going (pausing 2-6 ms between writes, outside
 * the lock) until killed.
 */
import { FileCredentialStore } from '../../src/store/file-credential-store.js';
import { makeRecord } from './store-fixtures.js';

const [home, serverUrl, wait] = process.argv.slice(2);
if (home === undefined || serverUrl === undefined)
  throw new Error('usage: store-write-loop.ts <home> <serverUrl> [wait]');
const store = new FileCredentialStore({ home });
if (wait === 'wait') {
  console.log('READY');
  await new Promise<void>((resolve) => process.stdin.once('data', () => resolve()));
  process.stdin.pause();
}

let first = true;
for (;;) {
  await store.transaction(serverUrl, 'write', async (tx) => {
    const current = await tx.read();
    const generation = current.kind === 'ok' ? current.record.generation : 0;
    const next = generation + 1;
    // Vary the length so an old, longer file and a new, shorter one would mix visibly.
    const pad = 'p'.repeat(1_000 + ((next * 7919) % 3_000));
    const record = makeRecord(serverUrl, { generation, tag: `${pad}.${next}.${process.pid}` });
    await tx.write(record);
  });
  if (first) {
    console.log('WROTE');
    first = false;
  }
  // A short pause outside the lock lets the other writers in (the lock is not fair).
  await new Promise((resolve) => setTimeout(resolve, 2 + Math.random() * 4));
}
