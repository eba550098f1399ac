/**
 * What authkeep reads back from disk is validated by schema, never cast: a needs-auth marker must
 * carry one of NEEDS_AUTH_REASONS, a sign-in outcome one of the error codes, a lock file a holder
 * of the right types. The error code and needs-auth reason lists are disjoint.
 */
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { AUTHKEEP_ERROR_CODES, NEEDS_AUTH_REASONS, needsAuthHint } from '../../src/errors.js';
import { FileCredentialStore } from '../../src/store/file-credential-store.js';
import { readLockHolder } from '../../src/store/lock.js';
import { recordKey, storeLayout } from '../../src/store/paths.js';
import { makeRecord, makeTempDir } from '../helpers/store-fixtures.js';

const A = 'https://a.example.test/mcp';

test('error codes and needs-auth reasons are two disjoint lists; every reason has a hint', () => {
  const codes = new Set<string>(AUTHKEEP_ERROR_CODES);
  assert.deepEqual(
    NEEDS_AUTH_REASONS.filter((reason) => codes.has(reason)),
    [],
  );
  for (const reason of NEEDS_AUTH_REASONS) assert.ok(needsAuthHint(reason).length > 0, reason);
});

test('a record whose needs-auth marker names an unknown reason is refused at needsAuth.reason (and moved aside by a transaction)', async (t) => {
  const tmp = await makeTempDir();
  t.after(() => tmp.cleanup());
  const store = new FileCredentialStore({ home: tmp.dir });
  const layout = storeLayout(tmp.dir);
  await mkdir(layout.serversDir, { recursive: true, mode: 0o700 });
  const record = makeRecord(A, { generation: 3 });
  const file = layout.recordPath(recordKey(A));

  await writeFile(file, JSON.stringify({ ...record, needsAuth: { reason: 'drift', at: new Date().toISOString() } }));
  const known = await store.read(A);
  assert.equal(known.kind, 'ok');
  assert.equal(known.kind === 'ok' ? known.record.needsAuth?.reason : undefined, 'drift');

  await writeFile(
    file,
    JSON.stringify({ ...record, needsAuth: { reason: 'cosmic_rays', at: new Date().toISOString() } }),
  );
  const unknown = await store.read(A);
  assert.equal(unknown.kind, 'corrupt');
  assert.equal(unknown.kind === 'corrupt' ? unknown.error.field : undefined, 'needsAuth.reason');
  assert.doesNotMatch(unknown.kind === 'corrupt' ? unknown.error.message : '', /at\.x|rt\.x/, 'no token in the error');
  // A read leaves it in place; a transaction (a command that writes) moves it aside.
  assert.equal((await store.read(A)).kind, 'corrupt');
  const moved = await store.transaction(A, 'write', (tx) => tx.read());
  assert.ok(moved.kind === 'corrupt' && moved.movedTo !== undefined, 'moved aside by the transaction');
  assert.deepEqual(await store.read(A), { kind: 'missing' });
});

test('a sign-in outcome is read back only with a known error code', async (t) => {
  const tmp = await makeTempDir();
  t.after(() => tmp.cleanup());
  const store = new FileCredentialStore({ home: tmp.dir });
  const failed = { status: 'failed' as const, at: Date.now(), pid: 42, code: 'invalid_grant' as const, message: 'm' };
  await store.writeLoginOutcome(A, failed);
  assert.deepEqual(await store.readLoginOutcome(A), failed);
  await store.writeLoginOutcome(A, { ...failed, code: 'unexpected' });
  assert.equal((await store.readLoginOutcome(A))?.code, 'unexpected');

  await writeFile(storeLayout(tmp.dir).outcomePath(recordKey(A)), JSON.stringify({ ...failed, code: 'made_up' }));
  assert.equal(await store.readLoginOutcome(A), undefined, 'an unknown code makes the (advisory) outcome unreadable');
  await assert.rejects(
    store.writeLoginOutcome(A, { ...failed, code: 'made_up' } as never),
    (err: unknown) => err instanceof Error && /login outcome is invalid/.test(err.message),
  );
});

test('a lock file is read by schema: a holder of the wrong types names no holder', async (t) => {
  const tmp = await makeTempDir();
  t.after(() => tmp.cleanup());
  const holder = {
    pid: process.pid,
    hostname: hostname(),
    nonce: 'deadbeefdeadbeef',
    acquiredAt: new Date().toISOString(),
    purpose: 'refresh',
    staleMs: 10_000,
  };
  const write = (content: unknown) => writeFile(path.join(tmp.dir, 'x.lock'), JSON.stringify(content));

  await write(holder);
  assert.deepEqual((await readLockHolder(tmp.dir, 'x'))?.info, holder);
  // A bound that is not a positive number is not a bound: the reader's own applies.
  await write({ ...holder, staleMs: -1, maxHoldMs: 'soon' });
  const { staleMs: _s, ...withoutBounds } = holder;
  assert.deepEqual((await readLockHolder(tmp.dir, 'x'))?.info, withoutBounds);
  for (const bad of [
    { ...holder, pid: '123' },
    { ...holder, pid: 1.5 },
    { ...holder, nonce: 'not hex' },
    { ...holder, hostname: 7 },
    [holder],
    null,
  ]) {
    await write(bad);
    const read = await readLockHolder(tmp.dir, 'x');
    assert.ok(read, 'the lock file is there');
    assert.equal(read.info, undefined, JSON.stringify(bad));
  }
});
