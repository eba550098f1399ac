import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AuthkeepError } from '../../src/errors.js';
import type { Registration } from '../../src/oauth/types.js';
import type { ReadResult } from '../../src/store/credential-store.js';
import { FileCredentialStore } from '../../src/store/file-credential-store.js';
import { openStore } from '../../src/store/open-store.js';
import { recordKey } from '../../src/store/paths.js';
import type { ServerRecord } from '../../src/store/record.js';
import { redisTarget } from '../../src/store/redis/redis-connection.js';
import { RedisCredentialStore } from '../../src/store/redis/redis-credential-store.js';
import { storeKeyFromEnv } from '../../src/store/seal.js';
import { type Child, spawnTsx } from '../helpers/child-process.js';
import { makeStoreKey, persistenceArgs, type RedisServer, startRedis } from '../helpers/redis-server.js';
import { HELPERS_DIR, makeRecord } from '../helpers/store-fixtures.js';

const A = 'https://a.example.test/mcp';
const B = 'https://b.example.test/mcp';

function ok(result: ReadResult): ServerRecord {
  assert.equal(result.kind, 'ok', `expected ok, got ${result.kind}`);
  return (result as { record: ServerRecord }).record;
}

function isCode(code: string, check: (err: AuthkeepError) => void = () => undefined) {
  return (err: unknown) => {
    assert.ok(err instanceof AuthkeepError, String(err));
    assert.equal(err.code, code, err.message);
    check(err);
    return true;
  };
}

async function put(store: RedisCredentialStore, url: string, tag = 'x'): Promise<ServerRecord> {
  return store.transaction(url, 'write', async (tx) => {
    const cur = await tx.read();
    return tx.write(makeRecord(url, { tag, generation: cur.kind === 'ok' ? cur.record.generation : 0 }));
  });
}

describe('RedisCredentialStore (a real redis-server)', () => {
  let redis: RedisServer;
  let key: string;
  let store: RedisCredentialStore;
  const opened: RedisCredentialStore[] = [];
  const open = (prefix = 'authkeep:t:', sealKey = key): RedisCredentialStore => {
    const s = new RedisCredentialStore({
      target: redisTarget(redis.url),
      sealKey: Buffer.from(sealKey, 'base64'),
      prefix,
    });
    opened.push(s);
    return s;
  };
  before(async () => {
    redis = await startRedis();
    key = makeStoreKey();
    store = open();
  });
  after(async () => {
    for (const s of opened) await s.close();
    await redis.stop();
  });

  it('writes generation 1 then 2, reads them back; Redis holds no token in clear', async () => {
    assert.deepEqual(await store.read(A), { kind: 'missing' });
    const first = await put(store, A, 'secret-one');
    assert.equal(first.generation, 1);
    assert.deepEqual(ok(await store.read(A)), first);
    const second = await put(store, A, 'secret-two');
    assert.equal(second.generation, 2);
    const raw = (await store.redis.send(['HGETALL', store.recordKeyName(recordKey(A))])) as unknown;
    const text = JSON.stringify(raw);
    assert.match(text, /"gen"/);
    assert.ok(!text.includes('secret-two') && !text.includes('at.') && !text.includes('client-1'), text.slice(0, 200));
    assert.deepEqual(await store.leases(), [], 'leases released');
  });

  it('recordVersion: none without a record, the same while it is unchanged, another after each write', async () => {
    const url = 'https://version.example.test/mcp';
    assert.equal(await store.recordVersion(url), undefined);
    await put(store, url, 'one');
    const first = await store.recordVersion(url);
    assert.ok(first !== undefined);
    assert.equal(await store.recordVersion(url), first, 'unchanged record, same version');
    await put(store, url, 'two');
    const second = await store.recordVersion(url);
    assert.ok(second !== undefined && second !== first, `${first} then ${second}`);
    await store.delete(url);
    assert.equal(await store.recordVersion(url), undefined, 'deleted: none');
  });

  it('watchRecord: a write by another connection wakes the watcher through the change channel, not its timer', async () => {
    const url = 'https://watched.example.test/mcp';
    await put(store, url, 'one');
    const other = open();
    const changes = store.watchRecord(url);
    try {
      // Until Redis confirms the subscription nothing notifies: look again until it has.
      while (!changes.notifies) assert.notEqual(await changes.next(5), 'ended');
      const woke = changes.next(3_600_000); // an hour: only a notice ends it in this test
      await put(other, url, 'two');
      assert.equal(await woke, 'changed');
      const next = changes.next(3_600_000);
      await other.delete(url);
      assert.equal(await next, 'changed', 'a delete is noticed too');
    } finally {
      changes.close();
    }
    assert.equal(changes.notifies, false, 'closed');
    assert.equal(await changes.next(3_600_000), 'ended');
  });

  it('refreshUnderWay: true while a refresh transaction holds the lease, false before and after', async () => {
    const url = 'https://under-way.example.test/mcp';
    await put(store, url, 'one');
    assert.equal(await store.refreshUnderWay(url), false);
    await store.transaction(url, 'refresh', async () => {
      assert.equal(await open().refreshUnderWay(url), true, 'seen from another connection');
    });
    assert.equal(await store.refreshUnderWay(url), false);
  });

  it('compare-and-swap: a stale generation is refused and the stored record is unchanged', async () => {
    const current = ok(await store.read(A));
    await assert.rejects(
      store.transaction(A, 'write', async (tx) => {
        await tx.read();
        return tx.write({ ...current, generation: current.generation - 1 });
      }),
      isCode('store_conflict'),
    );
    // A late writer: a sign-in that read generation n, while a refresh wrote n + 1 meanwhile.
    await assert.rejects(
      store.transaction(A, 'login', async (tx) => {
        const seen = ok(await tx.read());
        await put(store, A, 'refreshed-meanwhile');
        return tx.write(makeRecord(A, { tag: 'late', generation: seen.generation }));
      }),
      isCode('store_conflict'),
    );
    const after = ok(await store.read(A));
    assert.equal(after.generation, current.generation + 1);
    assert.equal(after.tokens?.accessToken, 'at.refreshed-meanwhile');
  });

  it('a holder that lost its lease finds out before it writes (lock_lost), and writes nothing', async () => {
    const before = ok(await store.read(A));
    await assert.rejects(
      store.transaction(A, 'refresh', async (tx) => {
        const seen = ok(await tx.read());
        // Its lease expires (a stall past its ttl) and another host takes it over.
        await store.redis.send(['DEL', store.leaseKeyName(recordKey(A), 'refresh')]);
        await store.transaction(A, 'refresh', async (other) => {
          const fresh = ok(await other.read());
          await other.write({
            ...fresh,
            tokens: { ...(fresh.tokens as NonNullable<ServerRecord['tokens']>), refreshToken: 'rt.other' },
          });
        });
        await assert.rejects(tx.assertLockHeld?.() ?? Promise.resolve(), isCode('lock_lost'));
        return tx.write({
          ...seen,
          tokens: { ...(seen.tokens as NonNullable<ServerRecord['tokens']>), refreshToken: 'rt.stale' },
        });
      }),
      isCode('lock_lost'),
    );
    const now = ok(await store.read(A));
    assert.equal(now.generation, before.generation + 1);
    assert.equal(now.tokens?.refreshToken, 'rt.other');
  });

  it('leases are exclusive: a second transaction waits (seeing the holder) until the first ends', async () => {
    const order: string[] = [];
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let entered!: () => void;
    const firstIn = new Promise<void>((resolve) => (entered = resolve));
    const first = store.transaction(B, 'refresh', async () => {
      order.push('first-in');
      entered();
      await released;
      order.push('first-out');
    });
    await firstIn;
    let sawHolder: string | undefined;
    const second = store.transaction(
      B,
      'refresh',
      async () => {
        order.push('second-in');
      },
      {
        onWait: (holder) => {
          sawHolder = `${holder.info?.pid}/${holder.info?.purpose}`;
          release();
        },
      },
    );
    await Promise.all([first, second]);
    assert.deepEqual(order, ['first-in', 'first-out', 'second-in']);
    assert.equal(sawHolder, `${process.pid}/refresh`);
  });

  it('a lease whose holder stopped renewing is taken over after its ttl, not before', async () => {
    const leaseKey = store.leaseKeyName(recordKey(B), 'refresh');
    const dead = JSON.stringify({
      pid: 999_999,
      hostname: 'gone',
      nonce: 'n'.repeat(32),
      acquiredAt: new Date().toISOString(),
      purpose: 'refresh',
      staleMs: 400,
    });
    assert.equal(await store.redis.send(['SET', leaseKey, dead, 'NX', 'PX', '400']), 'OK');
    let waitedOn: number | undefined;
    await store.transaction(
      B,
      'refresh',
      async () => {
        // We got in only once Redis expired the dead holder's lease.
        assert.equal(await store.redis.send(['EXISTS', leaseKey]), 1);
        const ours = (await store.redis.send(['GET', leaseKey])) as string;
        assert.equal(JSON.parse(ours).pid, process.pid);
      },
      { onWait: (holder) => (waitedOn = holder.info?.pid) },
    );
    assert.equal(waitedOn, 999_999);
  });

  it('a SIGKILLed lease holder is recovered by exactly one of three waiting processes', async () => {
    const url = 'https://killed.example.test/mcp';
    // The children's store: the default account's prefix.
    const fleet = new RedisCredentialStore({
      target: redisTarget(redis.url),
      sealKey: Buffer.from(key, 'base64'),
      prefix: 'authkeep:default:',
    });
    opened.push(fleet);
    await fleet.transaction(url, 'write', async (tx) => {
      await tx.read();
      const rec = makeRecord(url, { tag: 'k' });
      await tx.write({
        ...rec,
        tokens: { ...(rec.tokens as NonNullable<ServerRecord['tokens']>), refreshToken: 'rt.initial' },
      });
    });
    const env = { AUTHKEEP_STORE: redis.url, AUTHKEEP_STORE_KEY: key };
    const child = (mode: string): Child => spawnTsx(`${HELPERS_DIR}/redis-store-child.ts`, [mode, url], { ...env });
    const holder = child('hold');
    const waiters = [child('refresh'), child('refresh'), child('refresh')];
    try {
      await holder.waitForLine(/^READY$/);
      holder.proc.stdin?.write('go\n');
      await holder.waitForLine(/"held":true/);
      for (const w of waiters) await w.waitForLine(/^READY$/);
      for (const w of waiters) w.proc.stdin?.write('go\n');
      // Every waiter is blocked on the holder before it dies.
      for (const w of waiters) await w.waitForLine(/"waiting":true/);
      holder.proc.kill('SIGKILL');
      await holder.exited;
      const results = await Promise.all(
        waiters.map(async (w) => {
          await w.exited;
          const line = w.lines.find((l) => l.startsWith('{"wrote"'));
          assert.ok(line, `waiter printed nothing: ${w.stderr()}`);
          return JSON.parse(line) as { wrote: boolean; generation: number; waited: boolean };
        }),
      );
      assert.equal(results.filter((r) => r.wrote).length, 1, JSON.stringify(results));
      const final = ok(await fleet.read(url));
      assert.equal(final.tokens?.refreshToken, 'rt.next');
      assert.equal(final.generation, 2);
      assert.ok(
        results.every((r) => r.generation === 2),
        JSON.stringify(results),
      );
    } finally {
      for (const c of [holder, ...waiters]) if (c.proc.exitCode === null) c.proc.kill('SIGKILL');
    }
  });

  it('registerOnce: concurrent sign-ins to one issuer register once; a dropped client is not offered again', async () => {
    let calls = 0;
    const register = async (): Promise<Registration> => {
      calls++;
      await new Promise((resolve) => setImmediate(resolve));
      return {
        issuer: 'https://as.fleet.test',
        clientId: `client-${calls}`,
        method: 'dynamic',
        tokenEndpointAuthMethod: 'none',
        redirectUris: ['http://127.0.0.1/callback'],
        registeredAt: new Date(Date.now() - 1000).toISOString(),
      };
    };
    const other = open();
    const got = await Promise.all([
      store.registerOnce('https://as.fleet.test', register),
      other.registerOnce('https://as.fleet.test', register),
      store.registerOnce('https://as.fleet.test', register),
    ]);
    assert.equal(calls, 1);
    assert.deepEqual(new Set(got.map((r) => r.clientId)), new Set(['client-1']));
    await store.dropRegistration('https://as.fleet.test', 'client-1');
    const again = await other.registerOnce('https://as.fleet.test', register);
    assert.equal(again.clientId, 'client-2');
    assert.equal(calls, 2);
  });

  it('list, findRegistrationsByIssuer, login outcomes, delete', async () => {
    const listed = await store.list();
    assert.ok(listed.some((e) => e.kind === 'ok' && e.record.serverUrl === A));
    const matches = await store.findRegistrationsByIssuer(makeRecord(A).registration.issuer);
    assert.ok(matches.some((m) => m.serverUrl === A));
    await store.writeLoginOutcome(A, {
      status: 'failed',
      at: 1,
      pid: process.pid,
      code: 'authorization_denied',
      message: 'no',
    });
    assert.equal((await store.readLoginOutcome(A))?.code, 'authorization_denied');
    assert.equal(await store.delete(A), true);
    assert.deepEqual(await store.read(A), { kind: 'missing' });
    assert.equal(await store.delete(A), false);
  });

  it('a value that does not open (another key, or moved to another server) is corrupt; a transaction quarantines it', async () => {
    await put(store, A, 'sealed');
    const wrongKey = open('authkeep:t:', makeStoreKey());
    const seen = await wrongKey.read(A);
    assert.equal(seen.kind, 'corrupt');
    // The sealed value of A copied onto B's key fails its authenticated data.
    const data = (await store.redis.send(['HGET', store.recordKeyName(recordKey(A)), 'data'])) as string;
    await store.redis.send(['HSET', store.recordKeyName(recordKey(B)), 'gen', '1', 'data', data]);
    const moved = await store.read(B);
    assert.equal(moved.kind, 'corrupt');
    assert.ok(moved.kind === 'corrupt' && !moved.problem.includes('at.'), 'problem carries no secret');
    const inTx = await store.transaction(B, 'write', async (tx) => tx.read());
    assert.ok(inTx.kind === 'corrupt' && inTx.movedTo?.includes(':quarantine:'), JSON.stringify(inTx));
    assert.deepEqual(await store.read(B), { kind: 'missing' });
    assert.equal((await store.quarantined(B)).length, 1);
  });

  it('no sealing key: refused, saying how to make one; a malformed one is refused too', () => {
    assert.throws(
      () => storeKeyFromEnv({}),
      isCode('store_key_missing', (e) => assert.match(e.message, /openssl rand -base64 32/)),
    );
    assert.throws(() => storeKeyFromEnv({ AUTHKEEP_STORE_KEY: 'c2hvcnQ=' }), isCode('store_key_missing'));
    assert.throws(
      () => openStore({ home: '/tmp/x', account: 'default', env: { AUTHKEEP_STORE: redis.url } }),
      isCode('store_key_missing'),
    );
    assert.ok(openStore({ home: '/tmp/x', account: 'default', env: {} }) instanceof FileCredentialStore);
    assert.ok(
      openStore({
        home: '/tmp/x',
        account: 'default',
        env: { AUTHKEEP_STORE: redis.url, AUTHKEEP_STORE_KEY: key },
      }) instanceof RedisCredentialStore,
    );
  });

  it('Redis restarted (persistence on) in the middle of a refresh: the write waits for it and lands, once', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'authkeep-redis-aof-'));
    const args = persistenceArgs(dir);
    let server = await startRedis({ args });
    try {
      const s = new RedisCredentialStore({
        target: redisTarget(server.url),
        sealKey: Buffer.from(key, 'base64'),
        commandTimeoutMs: 2_000,
      });
      opened.push(s);
      const before = await put(s, A, 'before-restart');
      const written = await s.transaction(A, 'refresh', async (tx) => {
        const seen = ok(await tx.read());
        await tx.assertLockHeld?.(); // as before a token request: the lease is kept to its bound
        await server.stop(); // SIGKILL: gone mid-transaction
        const writing = tx.write({
          ...seen,
          tokens: { ...(seen.tokens as NonNullable<ServerRecord['tokens']>), refreshToken: 'rt.after-restart' },
        });
        server = await startRedis({ port: server.port, args });
        return writing;
      });
      assert.equal(written.generation, before.generation + 1);
      const now = ok(await s.read(A));
      assert.equal(now.generation, before.generation + 1);
      assert.equal(now.tokens?.refreshToken, 'rt.after-restart');
      assert.deepEqual(await s.leases(), [], 'the lease was released after the restart');
    } finally {
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('Redis unreachable, or gone mid-run: store_unreachable naming the host, never the password', async () => {
    const other = await startRedis({ args: ['--requirepass', 'pw-s3cret-value'] });
    const url = `redis://:pw-s3cret-value@127.0.0.1:${other.port}/0`;
    const s = new RedisCredentialStore({
      target: redisTarget(url),
      sealKey: Buffer.from(key, 'base64'),
      commandTimeoutMs: 2_000,
    });
    opened.push(s);
    const wrong = new RedisCredentialStore({
      target: redisTarget(`redis://:wrong-pw@127.0.0.1:${other.port}/0`),
      sealKey: Buffer.from(key, 'base64'),
    });
    opened.push(wrong);
    await assert.rejects(
      wrong.read(A),
      isCode('store_unreachable', (e) => assert.ok(!e.message.includes('wrong-pw'))),
    );
    await put(s, A, 'before-restart');
    await other.stop();
    for (const attempt of [() => s.read(A), () => put(s, A, 'after')]) {
      await assert.rejects(
        attempt(),
        isCode('store_unreachable', (e) => {
          assert.match(e.message, new RegExp(`127\\.0\\.0\\.1:${other.port}`));
          assert.ok(!JSON.stringify({ m: e.message, d: e.detail, s: e.stack }).includes('pw-s3cret-value'));
        }),
      );
    }
  });
});
