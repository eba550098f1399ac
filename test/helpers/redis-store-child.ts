/**
 * redis-store-child: one process using the fleet store (AUTHKEEP_STORE, AUTHKEEP_STORE_KEY from the
 * environment, through openStore), for the lease tests. Prints READY, starts on "go". Modes:
 *   hold <serverUrl>      take the record lease (a 'refresh' transaction, lease ttl 1 s), print
 *                         {"held": true}, then wait until killed.
 *   refresh <serverUrl>   a 'refresh' transaction: read; if the record still holds refresh token
 *                         `rt.initial`, "spend" it and write `rt.next`; print {"wrote": bool,
 *                         "generation": n, "waited": bool}.
 */

import { openStore } from '../../src/store/open-store.js';
import type { ServerRecord } from '../../src/store/record.js';
import { readyForGo } from './child-process.js';

const [mode, serverUrl] = process.argv.slice(2);
if (!mode || !serverUrl) throw new Error('usage: redis-store-child <mode> <serverUrl>');
const store = openStore({ home: '/nonexistent-fleet-store-needs-no-home', account: 'default' });
await readyForGo();
if (mode === 'hold') {
  await store.transaction(
    serverUrl,
    'refresh',
    async (tx) => {
      await tx.read();
      process.stdout.write(`${JSON.stringify({ held: true })}\n`);
      // Until killed (an interval: the store's connection and lease timer keep no process alive).
      await new Promise(() => setInterval(() => undefined, 60_000));
    },
    { staleMs: 1_000 },
  );
} else if (mode === 'refresh') {
  let waited = false;
  const result: { wrote: boolean; generation: number } = await store.transaction(
    serverUrl,
    'refresh',
    async (tx) => {
      const read = await tx.read();
      if (read.kind !== 'ok') throw new Error(`expected a record, got ${read.kind}`);
      const record: ServerRecord = read.record;
      if (record.tokens?.refreshToken !== 'rt.initial') return { wrote: false, generation: record.generation };
      await tx.assertLockHeld?.();
      const written = await tx.write({ ...record, tokens: { ...record.tokens, refreshToken: 'rt.next' } });
      return { wrote: true, generation: written.generation };
    },
    {
      onWait: () => {
        if (!waited) process.stdout.write(`${JSON.stringify({ waiting: true })}\n`);
        waited = true;
      },
      timeoutMs: 30_000,
    },
  );
  process.stdout.write(`${JSON.stringify({ ...result, waited })}\n`);
  process.exit(0);
} else throw new Error(`unknown mode ${mode}`);
