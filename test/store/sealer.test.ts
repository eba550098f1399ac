/**
 * sealer: AES-256-GCM sealing of records and registrations at the store's byte boundary, with a
 * fixed key (the keychain itself is tested in test/store/keychain.test.ts). Round trip, a tampered
 * byte, a wrong key, a sealed file moved onto another name, and each handled as a corrupt record
 * (`corrupt` / needs-auth `store_corrupt`, quarantined by a transaction), never a crash.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { copyFile, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { AuthkeepError } from '../../src/errors.js';
import { FileCredentialStore } from '../../src/store/file-credential-store.js';
import { recordKey } from '../../src/store/paths.js';
import { fixedKeySealer, openEnvelope, parseEnvelope, sealText } from '../../src/store/sealer.js';
import { parseStoreMode } from '../../src/store/store-mode.js';
import { ISSUER, makeRecord, makeTempDir } from '../helpers/store-fixtures.js';

const A = 'https://a.example.test/mcp';
const B = 'https://b.example.test/mcp';

async function seeded(key: Buffer, home: string, url = A, tag = 'secret-tag-123') {
  const store = new FileCredentialStore({ home, sealer: fixedKeySealer(key) });
  await store.transaction(url, 'write', (tx) => tx.write(makeRecord(url, { tag })));
  return store;
}

test('sealText/openEnvelope: round trip; the AAD binds role and key', () => {
  const key = randomBytes(32);
  const sealed = sealText('{"hello":"world"}', key, { role: 'record', key: 'k1' });
  const envelope = parseEnvelope(Buffer.from(sealed));
  assert.ok(envelope && !('problem' in envelope));
  assert.equal(openEnvelope(envelope, key, { role: 'record', key: 'k1' }), '{"hello":"world"}');
  assert.equal(openEnvelope(envelope, key, { role: 'record', key: 'k2' }), undefined, 'another key name');
  assert.equal(openEnvelope(envelope, key, { role: 'registration', key: 'k1' }), undefined, 'another role');
  assert.equal(openEnvelope(envelope, randomBytes(32), { role: 'record', key: 'k1' }), undefined, 'another key');
  assert.equal(sealed.includes('world'), false);
  assert.deepEqual(Object.keys(JSON.parse(sealed)).sort(), ['ciphertext', 'iv', 'sealed', 'tag', 'version']);
});

test('sealed store: a record round-trips, and no token is on disk', async () => {
  const { dir, cleanup } = await makeTempDir();
  try {
    const store = await seeded(randomBytes(32), dir);
    const read = await store.read(A);
    assert.equal(read.kind, 'ok');
    assert.equal(read.kind === 'ok' && read.record.tokens?.refreshToken, 'rt.secret-tag-123');
    const onDisk = await readFile(store.locate(A), 'utf8');
    assert.equal(onDisk.includes('secret-tag-123'), false, 'the token is not in the file');
    assert.equal(onDisk.includes(A), false, 'nor is the server URL');
    assert.equal(JSON.parse(onDisk).sealed, 'authkeep');
    const inspection = await store.inspect();
    assert.equal(inspection.sealing?.mode, 'keychain');
    assert.deepEqual(inspection.sealing?.plaintextFiles, []);
  } finally {
    await cleanup();
  }
});

test('sealed store: a tampered byte is corrupt (store_corrupt), and a transaction quarantines it', async () => {
  const { dir, cleanup } = await makeTempDir();
  try {
    const store = await seeded(randomBytes(32), dir);
    const file = store.locate(A);
    const envelope = JSON.parse(await readFile(file, 'utf8'));
    const ct = Buffer.from(envelope.ciphertext, 'base64url');
    ct[5] = (ct[5] ?? 0) ^ 1;
    envelope.ciphertext = ct.toString('base64url');
    await writeFile(file, JSON.stringify(envelope));
    const read = await store.read(A);
    assert.equal(read.kind, 'corrupt');
    assert.equal(read.kind === 'corrupt' && read.error.code, 'store_corrupt');
    assert.match(read.kind === 'corrupt' ? read.problem : '', /does not open/);
    const inTx = await store.transaction(A, 'write', (tx) => tx.read());
    assert.equal(inTx.kind, 'corrupt');
    assert.equal((await store.quarantined(A)).length, 1);
    assert.equal((await store.read(A)).kind, 'missing');
  } finally {
    await cleanup();
  }
});

test('sealed store: a torn file (truncated envelope) is corrupt, not a crash', async () => {
  const { dir, cleanup } = await makeTempDir();
  try {
    const store = await seeded(randomBytes(32), dir);
    const file = store.locate(A);
    const text = await readFile(file, 'utf8');
    await writeFile(file, text.slice(0, Math.floor(text.length / 2)));
    const read = await store.read(A);
    assert.equal(read.kind === 'corrupt' && read.error.code, 'store_corrupt');
  } finally {
    await cleanup();
  }
});

test('sealed store: another key cannot open it (corrupt, store_corrupt)', async () => {
  const { dir, cleanup } = await makeTempDir();
  try {
    await seeded(randomBytes(32), dir);
    const other = new FileCredentialStore({ home: dir, sealer: fixedKeySealer(randomBytes(32)) });
    const read = await other.read(A);
    assert.equal(read.kind === 'corrupt' && read.error.code, 'store_corrupt');
    const listed = await other.list();
    assert.equal(listed[0]?.kind, 'corrupt');
  } finally {
    await cleanup();
  }
});

test("sealed store: a sealed record copied onto another server's name does not open", async () => {
  const { dir, cleanup } = await makeTempDir();
  try {
    const key = randomBytes(32);
    const store = await seeded(key, dir);
    await copyFile(store.locate(A), store.locate(B));
    const read = await store.read(B);
    assert.equal(read.kind === 'corrupt' && read.error.code, 'store_corrupt');
    assert.equal((await store.read(A)).kind, 'ok');
  } finally {
    await cleanup();
  }
});

test('sealed store: a kept registration is sealed; one copied to another issuer is re-registered', async () => {
  const { dir, cleanup } = await makeTempDir();
  try {
    const store = new FileCredentialStore({ home: dir, sealer: fixedKeySealer(randomBytes(32)) });
    const registration = {
      ...makeRecord(A).registration,
      tokenEndpointAuthMethod: 'client_secret_basic' as const,
      clientSecret: 'client-secret-value-42',
    };
    let registered = 0;
    const register = async () => {
      registered++;
      return registration;
    };
    await store.registerOnce(ISSUER, register);
    assert.equal((await store.registerOnce(ISSUER, register)).clientId, registration.clientId);
    assert.equal(registered, 1, 'the kept sealed registration was reused');
    const regDir = path.join(dir, 'registrations');
    const [name] = await readdir(regDir);
    assert.ok(name);
    const text = await readFile(path.join(regDir, name), 'utf8');
    assert.equal(text.includes('client-secret-value-42'), false);
    const other = 'https://other-as.example.test';
    await copyFile(path.join(regDir, name), path.join(regDir, `${recordKey(other)}.json`));
    await store.registerOnce(other, async () => {
      registered++;
      return { ...registration, issuer: other };
    });
    assert.equal(registered, 2, 'the moved file did not open: registered anew');
  } finally {
    await cleanup();
  }
});

test('sealed store: a plaintext record is sealed in place on first use (same content, same generation)', async () => {
  const { dir, cleanup } = await makeTempDir();
  try {
    const plain = new FileCredentialStore({ home: dir, store: 'file' });
    await plain.transaction(A, 'write', (tx) => tx.write(makeRecord(A, { tag: 'migrate-me-1' })));
    const before = await plain.read(A);
    assert.equal((await readFile(plain.locate(A), 'utf8')).includes('migrate-me-1'), true);
    const sealed = new FileCredentialStore({ home: dir, sealer: fixedKeySealer(randomBytes(32)) });
    assert.deepEqual(
      (await sealed.inspect()).sealing?.plaintextFiles,
      [sealed.locate(A)],
      'doctor sees the plaintext record',
    );
    assert.equal((await sealed.list())[0]?.kind, 'ok', 'list reads it but does not write');
    assert.equal((await readFile(plain.locate(A), 'utf8')).includes('migrate-me-1'), true);
    const read = await sealed.read(A);
    assert.equal(read.kind, 'ok');
    assert.deepEqual(read, before);
    assert.equal((await readFile(plain.locate(A), 'utf8')).includes('migrate-me-1'), false, 'sealed on disk now');
    assert.deepEqual(await sealed.read(A), before);
    assert.deepEqual((await sealed.inspect()).sealing?.plaintextFiles, []);
    // File mode cannot read it any more, and says why (not corrupt: the file is fine).
    await assert.rejects(plain.read(A), (err) => err instanceof AuthkeepError && err.code === 'keychain_unavailable');
  } finally {
    await cleanup();
  }
});

test('parseStoreMode: auto by default; redis:// is reserved; anything else is refused', () => {
  assert.equal(parseStoreMode(undefined), 'auto');
  assert.equal(parseStoreMode(''), 'auto');
  assert.equal(parseStoreMode('keychain'), 'keychain');
  assert.equal(parseStoreMode('file'), 'file');
  assert.throws(
    () => parseStoreMode('redis://fleet.example:6379'),
    (err) => err instanceof AuthkeepError && err.code === 'store_unsupported' && /not supported yet/.test(err.message),
  );
  assert.throws(
    () => parseStoreMode('vault'),
    (err) => err instanceof AuthkeepError && err.code === 'invalid_argument',
  );
});

test('auto without a session bus on Linux: plaintext files, and the reason is kept for doctor', {
  skip: process.platform !== 'linux' ? 'Linux only: elsewhere the OS keychain has no session bus to miss' : false,
}, async () => {
  const { dir, cleanup } = await makeTempDir();
  const saved = process.env.DBUS_SESSION_BUS_ADDRESS;
  try {
    delete process.env.DBUS_SESSION_BUS_ADDRESS;
    const store = new FileCredentialStore({ home: dir, store: 'auto' });
    await store.transaction(A, 'write', (tx) => tx.write(makeRecord(A, { tag: 'plain-auto' })));
    assert.equal((await readFile(store.locate(A), 'utf8')).includes('plain-auto'), true);
    const sealing = (await store.inspect()).sealing;
    assert.equal(sealing?.mode, 'file');
    assert.equal(sealing?.requested, 'auto');
    assert.match(sealing?.fallbackReason ?? '', /DBUS_SESSION_BUS_ADDRESS/);
    const strict = new FileCredentialStore({ home: dir, store: 'keychain' });
    await assert.rejects(
      strict.read(A),
      (err) => err instanceof AuthkeepError && err.code === 'keychain_unavailable' && /no persistent/.test(err.message),
    );
  } finally {
    if (saved !== undefined) process.env.DBUS_SESSION_BUS_ADDRESS = saved;
    await cleanup();
  }
});

test('the store option: redis:// selects the fleet store, which refuses to start without a sealing key', async () => {
  const { dir, cleanup } = await makeTempDir();
  const saved = { key: process.env.AUTHKEEP_STORE_KEY, file: process.env.AUTHKEEP_STORE_KEY_FILE };
  try {
    delete process.env.AUTHKEEP_STORE_KEY;
    delete process.env.AUTHKEEP_STORE_KEY_FILE;
    const { AuthKeeper } = await import('../../src/index.js');
    assert.throws(
      () => new AuthKeeper({ home: dir, store: 'redis://fleet.example:6379' }),
      (err) =>
        err instanceof AuthkeepError && err.code === 'store_key_missing' && /openssl rand -base64 32/.test(err.message),
    );
    assert.equal((await new AuthKeeper({ home: dir, store: 'file' }).store.inspect()).sealing?.mode, 'file');
  } finally {
    if (saved.key !== undefined) process.env.AUTHKEEP_STORE_KEY = saved.key;
    if (saved.file !== undefined) process.env.AUTHKEEP_STORE_KEY_FILE = saved.file;
    await cleanup();
  }
});
