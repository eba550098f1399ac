/**
 * The CLI on the fleet store: `authkeep status` and `authkeep doctor` name the store by its URL
 * without the password, say it is reachable and who holds its leases; an unreachable Redis is a
 * failed store check naming the host; without a sealing key every command refuses to start and
 * says how to make one. Real `authkeep` processes, a real redis-server with a password.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { redisTarget } from '../../src/store/redis/redis-connection.js';
import { RedisCredentialStore } from '../../src/store/redis/redis-credential-store.js';
import { cliEnv, runCliProcess } from '../helpers/cli-run.js';
import { makeStoreKey, startRedis } from '../helpers/redis-server.js';
import { makeRecord } from '../helpers/store-fixtures.js';

const PASSWORD = 'fleet-pw-7c1d9e';

test('status and doctor show the fleet store, its reachability and lease holders; never the password', async (t) => {
  const redis = await startRedis({ args: ['--requirepass', PASSWORD] });
  t.after(() => redis.stop());
  const ctx = await cliEnv(t);
  const key = makeStoreKey();
  const env = { AUTHKEEP_STORE: redis.url, AUTHKEEP_REDIS_PASSWORD: PASSWORD, AUTHKEEP_STORE_KEY: key };
  const store = new RedisCredentialStore({
    target: redisTarget(redis.url, { AUTHKEEP_REDIS_PASSWORD: PASSWORD }),
    sealKey: Buffer.from(key, 'base64'),
    prefix: 'authkeep:default:',
  });
  t.after(() => store.close());
  const url = 'https://fleet.example.test/mcp';
  await store.transaction(url, 'write', async (tx) => tx.write(makeRecord(url, { tag: 'f' })));

  // A lease held by this process while the commands look.
  let release!: () => void;
  let held!: () => void;
  const holding = new Promise<void>((resolve) => (held = resolve));
  const leased = store.transaction(url, 'refresh', async () => {
    held();
    await new Promise<void>((resolve) => (release = resolve));
  });
  await holding;
  const status = await runCliProcess(ctx, ['status'], { env });
  assert.equal(status.code, 0, status.stderr);
  assert.match(
    status.stdout,
    new RegExp(`fleet store redis://127\\.0\\.0\\.1:${redis.port}/0 .*reachable, 1 lease\\(s\\) held`),
  );
  assert.match(status.stdout, new RegExp(`pid ${process.pid} on .* \\(refresh\\)`));
  assert.match(status.stdout, /fleet\.example\.test/);
  assert.ok(!`${status.stdout}${status.stderr}`.includes(PASSWORD), 'no password in the output');
  release();
  await leased;

  await redis.stop();
  const doctor = await runCliProcess(ctx, ['doctor'], { env });
  assert.notEqual(doctor.code, 0);
  const out = `${doctor.stdout}${doctor.stderr}`;
  assert.match(out, new RegExp(`127\\.0\\.0\\.1:${redis.port}`));
  assert.match(out, /the fleet store at redis:\/\/127\.0\.0\.1:\d+\/0 /);
  assert.doesNotMatch(out, /\n\s+at /, 'a failed check, not a crash');
  assert.ok(!out.includes(PASSWORD), 'no password in the output');

  const noKey = await runCliProcess(ctx, ['status'], { env: { AUTHKEEP_STORE: redis.url } });
  assert.notEqual(noKey.code, 0);
  assert.match(`${noKey.stdout}${noKey.stderr}`, /openssl rand -base64 32/);
});
