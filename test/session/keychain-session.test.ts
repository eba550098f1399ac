/**
 * The keychain store end to end: AuthKeeper against the real authorization server (arena/testbed)
 * with `AUTHKEEP_STORE=keychain` and a real Secret Service (gnome-keyring on a private D-Bus,
 * test/helpers/secret-service.ts). No secret the AS issued or received (witnessSecrets: codes,
 * verifiers, every rotation's tokens, the client secret) is in any file under the home; 8
 * processes refreshing across expiries still make one refresh per expiry; a plaintext record is
 * sealed in place with no sign-in; a wrong key is needs-auth `store_corrupt`, never a re-login.
 *
 * Linux only (skips elsewhere, saying so); on Linux a Secret Service that cannot be started fails.
 */
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { NeedsAuthError } from '../../src/index.js';
import { forgetCachedDataKeys, KEYCHAIN_SERVICE, keychainAccount } from '../../src/store/keychain-key.js';
import { callTool, startBed } from '../helpers/bed.js';
import { type Child, runTogether, spawnTsx } from '../helpers/child-process.js';
import { expireStoredTokens } from '../helpers/records.js';
import { type SecretService, startSecretService, unavailableReason } from '../helpers/secret-service.js';
import { assertNoSecrets, witnessSecrets } from '../helpers/secrets.js';
import type { TokenLoopSummary } from '../helpers/session-child.js';
import { assertNoReuse, assertOneRefreshPerExpiry, assertRacedCleanly } from '../helpers/token-loop-checks.js';

const skip = unavailableReason() ?? false;
const CHILD = fileURLToPath(new URL('../helpers/session-child.ts', import.meta.url));
let service: SecretService | undefined;
const saved = { bus: process.env.DBUS_SESSION_BUS_ADDRESS, store: process.env.AUTHKEEP_STORE };

before(async () => {
  if (skip) return;
  service = await startSecretService();
  process.env.DBUS_SESSION_BUS_ADDRESS = service.env.DBUS_SESSION_BUS_ADDRESS;
  // This process and every child it spawns (they inherit the environment).
  process.env.AUTHKEEP_STORE = 'keychain';
});

after(async () => {
  await service?.stop();
  for (const [name, value] of [
    ['DBUS_SESSION_BUS_ADDRESS', saved.bus],
    ['AUTHKEEP_STORE', saved.store],
  ] as const) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
});

/** Every file under `dir`, recursively, with its bytes as text. */
async function filesUnder(dir: string): Promise<Array<[string, string]>> {
  const out: Array<[string, string]> = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    const file = path.join(entry.parentPath ?? (entry as { path?: string }).path ?? dir, entry.name);
    out.push([file, await readFile(file, 'utf8')]);
  }
  return out;
}

const CONFIDENTIAL = {
  client_id: 'keychain-confidential',
  client_secret: 'keychain-confidential-secret-0123456789',
  token_endpoint_auth_method: 'client_secret_basic',
  redirect_uris: ['http://127.0.0.1/callback'],
  application_type: 'native',
  grant_types: ['authorization_code', 'refresh_token'],
} as const;

test('keychain store: sign-ins (a registered and a confidential client), rotations and a step-up leave no token, code, verifier or client secret in any file under the home', {
  skip,
}, async (t) => {
  const bed = await startBed(t, {
    as: {
      staticClients: [
        { ...CONFIDENTIAL, redirect_uris: [...CONFIDENTIAL.redirect_uris], grant_types: [...CONFIDENTIAL.grant_types] },
      ],
    },
    servers: [{ discovery: 'header' }, { discovery: 'well-known-path' }],
  });
  const witness = witnessSecrets(bed.as);
  const [registered, confidential] = bed.servers as [(typeof bed.servers)[0], (typeof bed.servers)[0]];
  await bed.keeper().login(registered.url);
  await bed
    .keeper({
      staticClients: {
        [confidential.url]: {
          clientId: CONFIDENTIAL.client_id,
          clientSecret: CONFIDENTIAL.client_secret,
          tokenEndpointAuthMethod: 'client_secret_basic',
        },
      },
    })
    .login(confidential.url);
  for (const server of bed.servers) {
    for (let i = 0; i < 2; i++) {
      await expireStoredTokens(bed.home, server.url);
      await bed.keeper().getAccessToken(server.url);
    }
  }
  assert.equal(
    (await callTool(bed.keeper().fetch(registered.url), registered.url, 'admin_echo', { text: 'x' })).status,
    200,
  );

  assert.ok(witness.count('code_verifier received') >= 3, 'the AS saw the verifiers');
  assert.ok(witness.count('RefreshToken issued') >= 4, 'and rotated refresh tokens');
  assert.ok(witness.count('client_secret received') >= 1, 'and the client secret');
  const files = await filesUnder(bed.home);
  const records = files.filter(([file]) => file.includes(`${path.sep}servers${path.sep}`));
  assert.equal(records.length, 2, 'two records');
  for (const [, text] of records) assert.equal(JSON.parse(text).sealed, 'authkeep', 'each record is sealed');
  const checked = assertNoSecrets(
    files.map(([, text]) => text),
    witness.secrets(),
    'files under the home',
  );
  assert.ok(checked >= files.length);
  t.diagnostic(`${files.length} files checked against ${witness.secrets().size} secrets`);
});

test('keychain store: 8 processes x 2 servers racing 5 expiries: one refresh per server per expiry', {
  skip,
}, async (t) => {
  const lifetimes = 5;
  const bed = await startBed(t, {
    as: { accessTokenTtlSeconds: 2 },
    servers: [{ discovery: 'header' }, { discovery: 'well-known-path' }],
  });
  const keeper = bed.keeper();
  for (const server of bed.servers) await keeper.login(server.url);
  const before = bed.servers.map((server) => bed.as.audit.counts({ resource: server.resource }).refreshGrants);
  const beforeAll = bed.as.audit.counts();
  const children: Child[] = Array.from({ length: 8 }, () =>
    spawnTsx(CHILD, ['token-loop', bed.home, String(lifetimes), ...bed.servers.map((s) => s.url)], {
      AUTHKEEP_STORE: 'keychain',
    }),
  );
  t.after(() => {
    for (const child of children) if (child.proc.exitCode === null) child.proc.kill('SIGKILL');
  });
  const summaries = await runTogether<TokenLoopSummary>(children);
  const urls = bed.servers.map((s) => s.url);
  for (const summary of summaries) assertRacedCleanly(summary, urls, lifetimes);
  assertNoReuse(bed.as.audit.counts(), beforeAll);
  const sends = summaries.flatMap((s) => s.refreshSends);
  for (const [i, server] of bed.servers.entries()) {
    const refreshes = bed.as.audit.counts({ resource: server.resource }).refreshGrants - (before[i] as number);
    t.diagnostic(`${server.discovery}: ${assertOneRefreshPerExpiry(sends, server.resource, refreshes, lifetimes)}`);
  }
  for (const file of await readdir(path.join(bed.home, 'servers'))) {
    const text = await readFile(path.join(bed.home, 'servers', file), 'utf8');
    assert.equal(JSON.parse(text).sealed, 'authkeep', `${file} is sealed`);
  }
});

test('keychain store: a plaintext record is sealed in place on first use, with no sign-in', { skip }, async (t) => {
  const bed = await startBed(t);
  const server = bed.servers[0]!;
  const token = await (async () => {
    const plain = bed.keeper({ store: 'file' });
    await plain.login(server.url);
    return plain.getAccessToken(server.url);
  })();
  const [recordFile] = await readdir(path.join(bed.home, 'servers'));
  const file = path.join(bed.home, 'servers', recordFile as string);
  assert.equal((await readFile(file, 'utf8')).includes(token), true, 'plaintext to begin with');
  const before = bed.as.audit.counts();
  const keeper = bed.keeper({ store: 'keychain' });
  const inspection = await keeper.store.inspect();
  const [registration] = await readdir(path.join(bed.home, 'registrations'));
  const registrationFile = path.join(bed.home, 'registrations', registration as string);
  assert.deepEqual(
    inspection.sealing?.plaintextFiles,
    [file, registrationFile],
    'doctor sees the record and the kept registration in plaintext',
  );
  assert.equal(await keeper.getAccessToken(server.url), token, 'the same token, no refresh');
  assert.equal(JSON.parse(await readFile(file, 'utf8')).sealed, 'authkeep', 'sealed in place');
  // The kept registration is sealed at its next use (under its registration lock: a sign-in).
  assert.deepEqual((await keeper.store.inspect()).sealing?.plaintextFiles, [registrationFile]);
  assert.deepEqual(bed.as.audit.counts(), before, 'the AS saw nothing: no sign-in, no refresh');
  assert.equal(await bed.keeper().getAccessToken(server.url), token, 'another keeper reads the sealed record');
});

test('keychain store: a wrong key is needs-auth store_corrupt, never a silent sign-in', { skip }, async (t) => {
  const bed = await startBed(t);
  const server = bed.servers[0]!;
  await bed.keeper().login(server.url);
  const { AsyncEntry } = await import('@napi-rs/keyring');
  const entry = new AsyncEntry(KEYCHAIN_SERVICE, keychainAccount(bed.home), { linux: { store: 'secret-service' } });
  await entry.setPassword(Buffer.alloc(32, 7).toString('base64'));
  forgetCachedDataKeys();
  const before = bed.as.audit.counts();
  const opens = bed.robotOpens();
  await assert.rejects(
    bed.keeper().getAccessToken(server.url),
    (err) => err instanceof NeedsAuthError && err.reason === 'store_corrupt',
  );
  const [status] = await bed.keeper().status(server.url);
  assert.equal(status?.needsAuth?.reason, 'store_corrupt');
  assert.equal(bed.robotOpens(), opens, 'no browser was opened');
  assert.deepEqual(bed.as.audit.counts(), before, 'the AS saw nothing');
});
