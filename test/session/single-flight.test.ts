/**
 * The in-process single flight of src/session/token-manager.ts: concurrent calls in ONE process
 * that all need a refresh share one refresh transaction. The cross-process file lock would also
 * keep the AS at one refresh (the others would wait for the lock, re-read and adopt), so the AS's
 * count alone cannot tell; these tests also count what only the single flight saves: the store's
 * reads and refresh transactions (through a counting CredentialStore around the file store) and
 * the log's `refresh.waiting` / `refresh.adopted` events. Without the single flight each call
 * reads the record and takes the lock itself: N reads, N transactions, N-1 waits and adoptions.
 *
 * Real oidc-provider with rotation and reuse revocation; "at an expiry" is the stored record past
 * its expiry (records.ts), met by an AuthKeeper that has cached nothing, as after a restart.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { CredentialStore } from '../../src/index.js';
import type { StorePurpose } from '../../src/store/credential-store.js';
import { FileCredentialStore } from '../../src/store/file-credential-store.js';
import { callTool, startBed } from '../helpers/bed.js';
import { recordLog } from '../helpers/log-events.js';
import { editTokens, expireStoredTokens, readRecord } from '../helpers/records.js';

/** The file store, counting lock-free reads and transactions by purpose. */
function countingStore(home: string): { store: CredentialStore; reads: () => number; tx: (p: StorePurpose) => number } {
  const inner = new FileCredentialStore({ home });
  let reads = 0;
  const transactions = new Map<StorePurpose, number>();
  const store: CredentialStore = {
    read: (serverUrl) => {
      reads++;
      return inner.read(serverUrl);
    },
    transaction: (serverUrl, purpose, fn, options) => {
      transactions.set(purpose, (transactions.get(purpose) ?? 0) + 1);
      return inner.transaction(serverUrl, purpose, fn, options);
    },
    list: () => inner.list(),
    findRegistrationsByIssuer: (issuer) => inner.findRegistrationsByIssuer(issuer),
    delete: (serverUrl) => inner.delete(serverUrl),
    readLoginOutcome: (serverUrl) => inner.readLoginOutcome(serverUrl),
    writeLoginOutcome: (serverUrl, outcome) => inner.writeLoginOutcome(serverUrl, outcome),
    registerOnce: (issuer, register) => inner.registerOnce(issuer, register),
    locate: (serverUrl) => inner.locate(serverUrl),
    inspect: (serverUrl) => inner.inspect(serverUrl),
    dropRegistration: (issuer, clientId) => inner.dropRegistration(issuer, clientId),
  };
  return { store, reads: () => reads, tx: (purpose) => transactions.get(purpose) ?? 0 };
}

const N = 8;

test(`${N} concurrent getAccessToken calls in one process at an expiry: one read, one transaction, one refresh`, async (t) => {
  const bed = await startBed(t);
  const server = bed.servers[0]!;
  await bed.keeper().login(server.url);
  const expired = (await expireStoredTokens(bed.home, server.url)).tokens!;
  const before = bed.as.audit.counts();

  const counting = countingStore(bed.home);
  const log = recordLog();
  const keeper = bed.keeper({ store: counting.store, log: log.sink });
  const tokens = await Promise.all(Array.from({ length: N }, () => keeper.getAccessToken(server.url)));

  assert.equal(new Set(tokens).size, 1, 'every call got the same token');
  assert.notEqual(tokens[0], expired.accessToken, 'a new one: the expired token was refreshed');
  assert.equal(tokens[0], (await readRecord(bed.home, server.url)).tokens?.accessToken, 'the one stored');
  const after = bed.as.audit.counts();
  assert.equal(after.refreshGrants - before.refreshGrants, 1, 'one refresh request at the AS');
  assert.equal(after.refreshReuses, 0);
  // What the file lock alone would not save:
  assert.equal(counting.reads(), 1, `one lock-free read, not ${N}`);
  assert.equal(counting.tx('refresh'), 1, `one refresh transaction, not ${N}`);
  assert.equal(log.named('refresh.waiting').length, 0, 'no call waited for the lock held by another call');
  assert.equal(log.named('refresh.adopted').length, 0, 'no call adopted what another call of this process refreshed');
  assert.equal(log.named('refresh.ok').length, 1);
  assert.equal((await callTool(keeper.fetch(server.url), server.url)).status, 200, 'the refreshed token works');
});

test(`${N} concurrent recoveries from the same rejected token in one process: one transaction, one refresh`, async (t) => {
  const bed = await startBed(t);
  const server = bed.servers[0]!;
  await bed.keeper().login(server.url);
  // The server refuses the stored access token (revoked on its side), though it has not expired.
  const rejected = 'refused-by-the-server-0123456789';
  await editTokens(bed.home, server.url, (tokens) => ({ ...tokens, accessToken: rejected }));
  const before = bed.as.audit.counts();

  const counting = countingStore(bed.home);
  const log = recordLog();
  const keeper = bed.keeper({ store: counting.store, log: log.sink });
  const tokens = await Promise.all(Array.from({ length: N }, () => keeper.recoverFromRejection(server.url, rejected)));

  assert.equal(new Set(tokens).size, 1, 'every call got the same token');
  assert.notEqual(tokens[0], rejected);
  assert.equal(bed.as.audit.counts().refreshGrants - before.refreshGrants, 1, 'one refresh request at the AS');
  assert.equal(counting.reads(), 1, `one lock-free read, not ${N}`);
  assert.equal(counting.tx('refresh'), 1, `one refresh transaction, not ${N}`);
  assert.equal(log.named('refresh.waiting').length + log.named('refresh.adopted').length, 0);
});

test('a refresh the first call started is shared by calls that arrive while it runs', async (t) => {
  const bed = await startBed(t);
  const server = bed.servers[0]!;
  await bed.keeper().login(server.url);
  await expireStoredTokens(bed.home, server.url);
  const before = bed.as.audit.counts();

  const counting = countingStore(bed.home);
  // Calls arrive one after another, each once the refresh request has reached the AS.
  let arrived!: () => void;
  const atTheAs = new Promise<void>((resolve) => {
    arrived = resolve;
  });
  const keeper = bed.keeper({
    store: counting.store,
    fetch: async (input, init) => {
      if (String(input instanceof Request ? input.url : input) === bed.as.endpoints.token) arrived();
      return fetch(input, init);
    },
  });
  const first = keeper.getAccessToken(server.url);
  await atTheAs;
  const later = await Promise.all(Array.from({ length: N - 1 }, () => keeper.getAccessToken(server.url)));
  assert.deepEqual(later, Array(N - 1).fill(await first), 'the later calls got the first call’s token');
  assert.equal(bed.as.audit.counts().refreshGrants - before.refreshGrants, 1);
  assert.equal(counting.tx('refresh'), 1, 'one refresh transaction');
});
