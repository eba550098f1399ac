/**
 * keychain: the store's data key in a real Secret Service (gnome-keyring on a private D-Bus,
 * test/helpers/secret-service.ts). The key is made once, under service `authkeep` and a hash of
 * the home, and read back by a fresh process view; a wrong or missing key makes a sealed record
 * corrupt (`store_corrupt`), never a crash; keychain mode without a Secret Service is a
 * `keychain_unavailable` error, and auto falls back to plaintext files, saying why.
 *
 * Linux only (skips elsewhere, saying so); on Linux a Secret Service that cannot be started fails.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { AuthkeepError } from '../../src/errors.js';
import { FileCredentialStore } from '../../src/store/file-credential-store.js';
import { forgetCachedDataKeys, KEYCHAIN_SERVICE, keychainAccount } from '../../src/store/keychain-key.js';
import { lastJsonLine, spawnTsx } from '../helpers/child-process.js';
import { type SecretService, startSecretService, unavailableReason } from '../helpers/secret-service.js';
import { HELPERS_DIR, makeRecord, makeTempDir } from '../helpers/store-fixtures.js';

const skip = unavailableReason() ?? false;
const A = 'https://a.example.test/mcp';
const CHILD = path.join(HELPERS_DIR, 'store-mode-child.ts');
let service: SecretService | undefined;
const saved = { bus: process.env.DBUS_SESSION_BUS_ADDRESS, store: process.env.AUTHKEEP_STORE };

before(async () => {
  if (skip) return;
  service = await startSecretService();
  process.env.DBUS_SESSION_BUS_ADDRESS = service.env.DBUS_SESSION_BUS_ADDRESS;
  delete process.env.AUTHKEEP_STORE;
});

after(async () => {
  await service?.stop();
  if (saved.bus === undefined) delete process.env.DBUS_SESSION_BUS_ADDRESS;
  else process.env.DBUS_SESSION_BUS_ADDRESS = saved.bus;
  if (saved.store !== undefined) process.env.AUTHKEEP_STORE = saved.store;
});

/** The value kept under service `authkeep` for `home` (secret-tool: another client of the service). */
async function keptKey(home: string): Promise<string> {
  const { stdout } = await promisify(execFile)(
    'secret-tool',
    ['lookup', 'service', KEYCHAIN_SERVICE, 'username', keychainAccount(home)],
    { env: process.env },
  ).catch(() => ({ stdout: '' }));
  return stdout.trim();
}

/** Put `value` (or nothing) under the home's keychain entry, as another program could. */
async function replaceKey(home: string, value: string | undefined): Promise<void> {
  const { AsyncEntry } = await import('@napi-rs/keyring');
  const entry = new AsyncEntry(KEYCHAIN_SERVICE, keychainAccount(home), { linux: { store: 'secret-service' } });
  if (value === undefined) await entry.deletePassword();
  else await entry.setPassword(value);
  forgetCachedDataKeys();
}

test('keychain: the data key is made once in the Secret Service, and another process view opens the sealed record', {
  skip,
}, async () => {
  const { dir, cleanup } = await makeTempDir();
  try {
    assert.equal(await keptKey(dir), '', 'no key before the first write');
    const store = new FileCredentialStore({ home: dir, store: 'keychain' });
    await store.transaction(A, 'write', (tx) => tx.write(makeRecord(A, { tag: 'sealed-by-keychain' })));
    const kept = await keptKey(dir);
    assert.equal(Buffer.from(kept, 'base64').length, 32, 'a 32-byte key under service authkeep');
    const onDisk = await readFile(store.locate(A), 'utf8');
    assert.equal(onDisk.includes('sealed-by-keychain'), false);
    const sealing = (await store.inspect()).sealing;
    assert.equal(sealing?.mode, 'keychain');
    assert.match(sealing?.keyLocation ?? '', new RegExp(`Secret Service.*${keychainAccount(dir)}`));

    forgetCachedDataKeys(); // as a new process: the key comes from the keychain again
    const again = new FileCredentialStore({ home: dir, store: 'auto' });
    const read = await again.read(A);
    assert.equal(read.kind === 'ok' && read.record.tokens?.accessToken, 'at.sealed-by-keychain');
    await again.transaction(A, 'write', async (tx) => {
      const cur = await tx.read();
      assert.equal(cur.kind, 'ok');
      return tx.write(makeRecord(A, { tag: 'second', generation: cur.kind === 'ok' ? cur.record.generation : 0 }));
    });
    assert.equal(await keptKey(dir), kept, 'the key was not made again');
  } finally {
    await cleanup();
  }
});

test('keychain: a wrong key makes the sealed record corrupt (store_corrupt), not a crash', { skip }, async () => {
  const { dir, cleanup } = await makeTempDir();
  try {
    const store = new FileCredentialStore({ home: dir, store: 'keychain' });
    await store.transaction(A, 'write', (tx) => tx.write(makeRecord(A)));
    await replaceKey(dir, randomBytes(32).toString('base64'));
    const read = await new FileCredentialStore({ home: dir, store: 'keychain' }).read(A);
    assert.equal(read.kind, 'corrupt');
    assert.equal(read.kind === 'corrupt' && read.error.code, 'store_corrupt');
    assert.match(read.kind === 'corrupt' ? read.problem : '', /does not open with the data key/);
  } finally {
    await cleanup();
  }
});

test('keychain: a missing key makes the sealed record corrupt (store_corrupt), and the next write makes a new key', {
  skip,
}, async () => {
  const { dir, cleanup } = await makeTempDir();
  try {
    await new FileCredentialStore({ home: dir, store: 'keychain' }).transaction(A, 'write', (tx) =>
      tx.write(makeRecord(A)),
    );
    await replaceKey(dir, undefined);
    const store = new FileCredentialStore({ home: dir, store: 'keychain' });
    const read = await store.read(A);
    assert.equal(read.kind === 'corrupt' && read.error.code, 'store_corrupt');
    assert.match(read.kind === 'corrupt' ? read.problem : '', /holds no data key/);
    assert.equal(await keptKey(dir), '', 'a read does not make a key');
    // A sign-in's write (after the transaction quarantined the unreadable record) seals anew.
    await store.transaction(A, 'write', async (tx) => {
      assert.equal((await tx.read()).kind, 'corrupt');
      return tx.write(makeRecord(A, { tag: 'fresh' }));
    });
    assert.equal(Buffer.from(await keptKey(dir), 'base64').length, 32);
    assert.equal((await store.read(A)).kind, 'ok');
  } finally {
    await cleanup();
  }
});

test('keychain: a malformed keychain entry is a clear keychain_unavailable error', { skip }, async () => {
  const { dir, cleanup } = await makeTempDir();
  try {
    await new FileCredentialStore({ home: dir, store: 'keychain' }).transaction(A, 'write', (tx) =>
      tx.write(makeRecord(A)),
    );
    await replaceKey(dir, 'not a key');
    const store = new FileCredentialStore({ home: dir, store: 'keychain' });
    await assert.rejects(
      store.read(A),
      (err) =>
        err instanceof AuthkeepError &&
        err.code === 'keychain_unavailable' &&
        /other than a data key/.test(err.message),
    );
  } finally {
    await cleanup();
  }
});

test('keychain mode with no Secret Service answering: keychain_unavailable; auto falls back to files and says why', {
  skip,
}, async () => {
  const { dir, cleanup } = await makeTempDir();
  try {
    // A process connects to its session bus once: each mode runs in a fresh child without one.
    const env = { DBUS_SESSION_BUS_ADDRESS: `unix:path=${dir}/no-bus-here` };
    const strict = spawnTsx(CHILD, ['write', 'keychain', dir, A, 'never-written'], env);
    assert.equal((await strict.exited).code, 0, strict.stderr());
    const refused = lastJsonLine<{ ok: boolean; code?: string; message?: string }>(strict);
    assert.equal(refused.ok, false);
    assert.equal(refused.code, 'keychain_unavailable');
    assert.match(refused.message ?? '', /no persistent OS keychain is available/);
    const auto = spawnTsx(CHILD, ['write', 'auto', dir, A, 'plain-fallback'], env);
    assert.equal((await auto.exited).code, 0, auto.stderr());
    const fellBack = lastJsonLine<{ ok: boolean; sealing?: { mode: string; fallbackReason?: string } }>(auto);
    assert.equal(fellBack.ok, true);
    assert.equal(fellBack.sealing?.mode, 'file');
    assert.match(fellBack.sealing?.fallbackReason ?? '', /Secret Service/);
    assert.equal(
      (await readFile(new FileCredentialStore({ home: dir, store: 'file' }).locate(A), 'utf8')).includes(
        'plain-fallback',
      ),
      true,
    );
  } finally {
    await cleanup();
  }
});

test('keychain: every account under one home shares its data key (the keychain account is the root home)', {
  skip,
}, async () => {
  const { dir, cleanup } = await makeTempDir();
  try {
    const { AuthKeeper } = await import('../../src/index.js');
    const work = new AuthKeeper({ home: dir, account: 'work', store: 'keychain' });
    const sealing = (await work.store.inspect()).sealing;
    assert.match(sealing?.keyLocation ?? '', new RegExp(`account "${keychainAccount(dir)}"`));
    assert.notEqual(work.home, dir, 'the account keeps its own files');
  } finally {
    await cleanup();
  }
});
