import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sweepTempFiles } from '../../src/store/atomic-file.js';
import { FileCredentialStore } from '../../src/store/file-credential-store.js';
import { readLockHolder } from '../../src/store/lock.js';
import { recordKey } from '../../src/store/paths.js';
import { ServerRecordSchema } from '../../src/store/record.js';
import { type Child, makeTempDir, sleep, spawnHelper } from '../helpers/store-fixtures.js';

const SERVER = 'https://crash.example.test/mcp';
const KILLS = 32;
const WRITERS = 2;
const SPARES = 3;

/** The record on disk parses, validates, and is not mixed: both tokens and the generation agree. */
async function assertWhole(store: FileCredentialStore, file: string, context: string): Promise<number> {
  const raw = await readFile(file, 'utf8');
  const json: unknown = JSON.parse(raw); // throws on a torn file
  const record = ServerRecordSchema.parse(json);
  const at = /^at\.p+\.(\d+)\.(\d+)$/.exec(record.tokens?.accessToken ?? '');
  const rt = /^rt\.p+\.(\d+)\.(\d+)$/.exec(record.tokens?.refreshToken ?? '');
  assert.ok(at && rt, `${context}: token shape`);
  assert.equal(at[1], rt[1], `${context}: tokens from different writes (generation suffix)`);
  assert.equal(at[2], rt[2], `${context}: tokens from different writers`);
  assert.equal(Number(at[1]), record.generation, `${context}: tokens do not belong to the record's generation`);
  assert.equal(record.tokens!.accessToken.length, record.tokens!.refreshToken!.length, `${context}: padding differs`);
  const read = await store.read(SERVER);
  assert.notEqual(read.kind, 'corrupt', `${context}: store reports corrupt`);
  return record.generation;
}

describe('crash safety', () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  const children: Child[] = [];
  before(async () => (tmp = await makeTempDir('authkeep-crash-')));
  after(async () => {
    for (const child of children)
      if (child.proc.exitCode === null && child.proc.signalCode === null) child.proc.kill('SIGKILL');
    await tmp.cleanup();
  });

  it(`SIGKILL at random points of ${WRITERS} concurrent write loops, ${KILLS} times: the record is always whole`, {
    skip: process.platform === 'win32',
  }, async (t) => {
    const home = path.join(tmp.dir, 'home');
    const store = new FileCredentialStore({ home });
    const file = path.join(home, 'servers', `${recordKey(SERVER)}.json`);
    const spawnWriter = (): Child => {
      const child = spawnHelper('store-write-loop.ts', [home, SERVER, 'wait']);
      children.push(child);
      return child;
    };
    const start = async (child: Child): Promise<Child> => {
      await child.waitForLine(/^READY$/);
      child.proc.stdin!.write('go\n');
      return child;
    };
    // WRITERS write concurrently; SPARES are started ahead (loaded, waiting) to replace victims.
    const pool = await Promise.all(Array.from({ length: WRITERS }, () => start(spawnWriter())));
    const spares = Array.from({ length: SPARES }, spawnWriter);
    let lastGeneration = 0;
    let killedHolding = 0;
    const locksDir = path.join(home, 'locks');
    const lockName = `${recordKey(SERVER)}.refresh`;
    for (let kill = 0; kill < KILLS; kill++) {
      const victimIndex = kill % WRITERS;
      const victim = pool[victimIndex]!;
      await victim.waitForLine(/^WROTE$/);
      await sleep(Math.random() * 30); // a random point of its loop
      victim.proc.kill('SIGKILL');
      const exit = await victim.exited;
      assert.equal(exit.signal, 'SIGKILL', victim.stderr());
      // Evidence that kills land inside transactions: the victim still "holds" the record lock.
      if ((await readLockHolder(locksDir, lockName))?.info?.pid === victim.pid) killedHolding++;
      const generation = await assertWhole(store, file, `after kill ${kill + 1}`);
      assert.ok(generation >= lastGeneration, 'generation never goes back');
      lastGeneration = generation;
      pool[victimIndex] = await start(spares.shift()!);
      spares.push(spawnWriter());
    }
    for (const child of [...pool, ...spares]) {
      child.proc.kill('SIGKILL');
      await child.exited;
    }
    await assertWhole(store, file, 'at the end');
    // After all those killed holders the lock can still be taken at once.
    const final = await store.transaction(SERVER, 'write', async (tx) => tx.read(), { timeoutMs: 5_000 });
    assert.equal(final.kind, 'ok');
    assert.deepEqual(await store.listQuarantine(), [], 'nothing was ever found corrupt');
    assert.ok(lastGeneration > KILLS, `writers made progress (generation ${lastGeneration})`);
    t.diagnostic(
      `${KILLS} kills, ${killedHolding} while the victim held the record lock; final generation ${lastGeneration}`,
    );
    assert.ok(killedHolding > 0, 'no kill landed inside a transaction');
    // Temp files of killed writers are swept (they may hold secrets).
    const leftovers = (await readdir(path.join(home, 'servers'))).filter((n) => n.endsWith('.tmp'));
    if (leftovers.length > 0) {
      await sweepTempFiles(path.join(home, 'servers'), { deadWriterGraceMs: 0 });
      assert.deepEqual(
        (await readdir(path.join(home, 'servers'))).filter((n) => n.endsWith('.tmp')),
        [],
      );
    }
  });
});
