import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AuthkeepError } from '../../src/errors.js';
import type { ReadResult } from '../../src/store/credential-store.js';
import { FileCredentialStore } from '../../src/store/file-credential-store.js';
import { acquireLock, type LockWaitMessage, lockWaitChannel } from '../../src/store/lock.js';
import { recordKey } from '../../src/store/paths.js';
import type { ServerRecord } from '../../src/store/record.js';
import { makeRecord, makeTempDir } from '../helpers/store-fixtures.js';

const A = 'https://a.example.test/mcp';
const B = 'https://b.example.test/mcp';
const posix = process.platform !== 'win32';

function ok(result: ReadResult): ServerRecord {
  assert.equal(result.kind, 'ok', `expected ok, got ${result.kind}`);
  return (result as { record: ServerRecord }).record;
}

function isCode(code: string) {
  return (err: unknown) => err instanceof AuthkeepError && err.code === code;
}

async function put(store: FileCredentialStore, url: string, tag = 'x'): Promise<ServerRecord> {
  return store.transaction(url, 'write', async (tx) => {
    const cur = await tx.read();
    return tx.write(makeRecord(url, { tag, generation: cur.kind === 'ok' ? cur.record.generation : 0 }));
  });
}

describe('FileCredentialStore', () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let home: string;
  let store: FileCredentialStore;
  before(async () => {
    tmp = await makeTempDir();
    home = path.join(tmp.dir, 'home');
    store = new FileCredentialStore({ home });
  });
  after(async () => tmp.cleanup());

  it('writes a new record as generation 1, reads it back; files 0600, directories 0700', async () => {
    assert.deepEqual(await store.read(A), { kind: 'missing' });
    const written = await put(store, A, 'one');
    assert.equal(written.generation, 1);
    const read = ok(await store.read(A));
    assert.deepEqual(read, written);
    assert.equal(read.tokens?.accessToken, 'at.one');
    const second = await put(store, A, 'two');
    assert.equal(second.generation, 2);
    if (posix) {
      const file = path.join(home, 'servers', `${recordKey(A)}.json`);
      assert.equal((await stat(file)).mode & 0o777, 0o600);
      for (const dir of ['', 'servers', 'locks'])
        assert.equal((await stat(path.join(home, dir))).mode & 0o777, 0o700, dir);
      assert.deepEqual(await readdir(path.join(home, 'servers')), [`${recordKey(A)}.json`], 'no temp files');
      assert.deepEqual(await readdir(path.join(home, 'locks')), [], 'locks released');
    }
  });

  it('compare-and-swap refuses a stale generation and leaves the file byte-for-byte unchanged', async () => {
    const file = path.join(home, 'servers', `${recordKey(A)}.json`);
    const stale = ok(await store.read(A)); // generation 2
    await put(store, A, 'three'); // another process moves it to 3
    const before = await readFile(file);
    await assert.rejects(
      store.transaction(A, 'refresh', (tx) =>
        tx.write({ ...stale, tokens: { ...stale.tokens!, accessToken: 'at.stale' } }),
      ),
      isCode('store_conflict'),
    );
    // A "new" record (generation 0) is refused when one exists.
    await assert.rejects(
      store.transaction(A, 'write', (tx) => tx.write(makeRecord(A, { tag: 'new' }))),
      isCode('store_conflict'),
    );
    // A write that states another generation than the one this transaction read is refused too.
    await assert.rejects(
      store.transaction(A, 'write', async (tx) => {
        const cur = ok(await tx.read());
        return tx.write({ ...cur, generation: cur.generation + 5 });
      }),
      isCode('store_conflict'),
    );
    assert.deepEqual(await readFile(file), before);
    if (posix) assert.equal((await stat(file)).mode & 0o777, 0o600);
  });

  it('a write must be a valid record for the transaction server', async () => {
    await assert.rejects(
      store.transaction(A, 'write', (tx) => tx.write(makeRecord(B, { generation: 3 }))),
      isCode('invalid_argument'),
    );
    const bad = { ...makeRecord(A, { generation: 3 }), tokens: { accessToken: '' } } as unknown as ServerRecord;
    await assert.rejects(
      store.transaction(A, 'write', (tx) => tx.write(bad)),
      (err: unknown) => isCode('invalid_argument')(err) && (err as AuthkeepError).field?.startsWith('tokens') === true,
    );
  });

  it('a corrupt record is reported by a read and left in place; a transaction moves it to quarantine', async () => {
    await put(store, B, 'bee');
    const fileA = path.join(home, 'servers', `${recordKey(A)}.json`);
    const garbage = '{"version":1,"tokens":{"accessToken":"SECRET-AT-VALUE"'; // truncated JSON
    await writeFile(fileA, garbage, { mode: 0o600 });
    const result = await store.read(A);
    assert.equal(result.kind, 'corrupt');
    if (result.kind !== 'corrupt') return;
    assert.equal(result.error.code, 'store_corrupt');
    assert.ok(!result.error.message.includes('SECRET'), 'no secret in the message');
    assert.equal(result.file, fileA, 'reported where it is');
    assert.equal(result.movedTo, undefined, 'a lock-free read moves nothing');
    assert.equal(result.problem, 'is not valid JSON');
    assert.equal(await readFile(fileA, 'utf8'), garbage, 'left in place');
    assert.deepEqual(await store.listQuarantine(A), [], 'nothing in quarantine');
    assert.equal((await store.list()).find((e) => e.key === recordKey(A))?.kind, 'corrupt', 'list reports it too');
    assert.deepEqual(await store.listQuarantine(A), [], 'and moves nothing either');
    assert.equal(ok(await store.read(B)).tokens?.accessToken, 'at.bee');

    // A transaction (a command that writes anyway) moves it aside, kept, not deleted.
    const inTx = await store.transaction(A, 'refresh', (tx) => tx.read());
    assert.ok(inTx.kind === 'corrupt' && inTx.movedTo !== undefined);
    if (inTx.kind !== 'corrupt' || inTx.movedTo === undefined) return;
    assert.equal(path.dirname(inTx.movedTo), path.join(home, 'quarantine'));
    assert.equal(await readFile(inTx.movedTo, 'utf8'), garbage, 'kept, not deleted');
    if (posix) assert.equal((await stat(path.join(home, 'quarantine'))).mode & 0o777, 0o700);
    assert.deepEqual(await store.read(A), { kind: 'missing' });
    assert.deepEqual(await store.listQuarantine(A), [path.basename(inTx.movedTo)]);
    const [q] = await store.quarantined(A);
    assert.equal(q?.file, inTx.movedTo);
    assert.equal(q?.problem, 'is not valid JSON', 'why');
    assert.ok(Math.abs(Date.parse(q?.at ?? '') - Date.now()) < 60_000, `when: ${q?.at}`);

    // Valid JSON that fails the schema names the field and the server; a record for another URL is refused too.
    await writeFile(fileA, JSON.stringify({ ...makeRecord(A, { generation: 4 }), registration: { clientId: 'c' } }));
    const invalid = await store.read(A);
    assert.equal(invalid.kind === 'corrupt' && invalid.error.field?.startsWith('registration'), true);
    assert.equal(invalid.kind === 'corrupt' && invalid.serverUrl, A, 'the server it names');
    await writeFile(fileA, JSON.stringify(makeRecord(B, { generation: 4 })));
    const foreign = await store.read(A);
    assert.equal(foreign.kind === 'corrupt' && foreign.error.field, 'serverUrl');
    assert.equal(foreign.kind === 'corrupt' ? foreign.serverUrl : 'x', undefined, 'never claims another server');
    await store.transaction(A, 'write', (tx) => tx.read());
    assert.equal((await store.listQuarantine(A)).length, 2);

    // After quarantine a new record can be written from scratch.
    assert.equal((await put(store, A, 'again')).generation, 1);
  });

  it('a corrupt record seen inside a transaction is quarantined too, and the write proceeds as new', async () => {
    const fileA = path.join(home, 'servers', `${recordKey(A)}.json`);
    await writeFile(fileA, 'not json');
    for (const purpose of ['refresh', 'login'] as const) {
      await writeFile(fileA, 'not json');
      const out = await store.transaction(A, purpose, async (tx) => {
        const cur = await tx.read();
        assert.equal(cur.kind, 'corrupt');
        return tx.write(makeRecord(A, { tag: purpose }));
      });
      assert.equal(out.generation, 1);
    }
  });

  it('a login holds only the sign-in lock: refreshes of this and other servers proceed; its write is still CAS-safe', async () => {
    const C = 'https://c.example.test/mcp';
    await put(store, C, 'c1');
    await assert.rejects(
      store.transaction(C, 'login', async (tx) => {
        const seen = ok(await tx.read());
        // While the (interactive) login is in progress, refreshes of this and another server run.
        await store.transaction(C, 'refresh', async (rtx) => {
          const cur = ok(await rtx.read());
          await rtx.write({ ...cur, tokens: { ...cur.tokens!, accessToken: 'at.refreshed' } });
        });
        await put(store, B, 'b2');
        // Another login for C waits for this one.
        await assert.rejects(
          store.transaction(C, 'login', async () => 0, { timeoutMs: 100 }),
          isCode('lock_timeout'),
        );
        // The login result, based on the generation it read, is refused: a refresh wrote meanwhile.
        await tx.write({ ...seen, tokens: { ...seen.tokens!, accessToken: 'at.login' } });
      }),
      isCode('store_conflict'),
    );
    assert.equal(ok(await store.read(C)).tokens?.accessToken, 'at.refreshed');
    // A login that re-reads after the refresh writes fine.
    const written = await store.transaction(C, 'login', async (tx) => {
      const cur = ok(await tx.read());
      return tx.write({ ...cur, tokens: { ...cur.tokens!, accessToken: 'at.login' } });
    });
    assert.equal(written.tokens?.accessToken, 'at.login');
  });

  it('a login write waits for an in-flight refresh of the same server (record lock)', async () => {
    const D = 'https://d.example.test/mcp';
    const lockName = `${recordKey(D)}.refresh`;
    const held = await acquireLock(path.join(home, 'locks'), lockName);
    // The login's write announces that it found the record lock held (the lock's wait channel).
    let blocked!: () => void;
    const writeBlocked = new Promise<void>((resolve) => (blocked = resolve));
    const onWait = (message: unknown): void => {
      if ((message as LockWaitMessage).name === lockName) blocked();
    };
    subscribe(lockWaitChannel.name, onWait);
    let wrote = false;
    try {
      const login = store.transaction(D, 'login', async (tx) => {
        await tx.write(makeRecord(D, { tag: 'login' }));
        wrote = true;
      });
      await writeBlocked;
      assert.equal(wrote, false, 'the write waits for the refresh holding the record lock');
      await held.release();
      await login;
    } finally {
      unsubscribe(lockWaitChannel.name, onWait);
    }
    assert.equal(ok(await store.read(D)).tokens?.accessToken, 'at.login');
  });

  it('list, findRegistrationsByIssuer, delete', async () => {
    const E = 'https://e.example.test/mcp';
    await store.transaction(E, 'write', (tx) =>
      tx.write(makeRecord(E, { issuer: 'https://other-as.test', clientId: 'other' })),
    );
    const listed = await store.list();
    const keys = listed.map((r) => r.key);
    assert.ok(keys.includes(recordKey(A)) && keys.includes(recordKey(B)) && keys.includes(recordKey(E)));
    assert.ok(listed.every((r) => r.kind === 'ok'));
    const found = await store.findRegistrationsByIssuer('https://other-as.test');
    assert.deepEqual(
      found.map((m) => [m.serverUrl, m.registration.clientId]),
      [[E, 'other']],
    );
    assert.ok((await store.findRegistrationsByIssuer('https://as.example.test/tenant')).length >= 2);
    assert.equal(await store.delete(E), true);
    assert.equal(await store.delete(E), false);
    assert.deepEqual(await store.read(E), { kind: 'missing' });
    assert.ok(!(await store.list()).some((r) => r.key === recordKey(E)));
  });

  it('tx.delete is compare-and-swap against what the transaction read', async () => {
    const F = 'https://f.example.test/mcp';
    await put(store, F);
    await assert.rejects(
      store.transaction(F, 'login', async (tx) => {
        await tx.read();
        await put(store, F, 'newer');
        await tx.delete();
      }),
      isCode('store_conflict'),
    );
    assert.equal(ok(await store.read(F)).tokens?.accessToken, 'at.newer');
  });

  it('login outcomes: written whole with mode 0600, read back; unreadable ones are ignored', async () => {
    const G = 'https://g.example.test/mcp';
    assert.equal(await store.readLoginOutcome(G), undefined);
    const failed = {
      status: 'failed' as const,
      at: Date.now(),
      pid: 42,
      code: 'callback_timeout' as const,
      message: 'the user did not finish',
    };
    await store.writeLoginOutcome(G, failed);
    assert.deepEqual(await store.readLoginOutcome(G), failed);
    const file = path.join(home, 'outcomes', `${recordKey(G)}.json`);
    if (posix) assert.equal((await stat(file)).mode & 0o777, 0o600);
    await writeFile(file, '{"status":"maybe"}');
    assert.equal(await store.readLoginOutcome(G), undefined);
    await assert.rejects(store.writeLoginOutcome(G, { status: 'ok' } as never), isCode('invalid_argument'));
  });

  it('a transaction cannot be used after it finished; list on an empty home is empty', async () => {
    let leaked: Parameters<Parameters<FileCredentialStore['transaction']>[2]>[0] | undefined;
    await store.transaction(A, 'write', async (tx) => {
      leaked = tx;
    });
    await assert.rejects(leaked!.read(), isCode('invalid_argument'));
    assert.deepEqual(await new FileCredentialStore({ home: path.join(tmp.dir, 'empty') }).list(), []);
  });
});
