/**
 * A process waiting for another process's refresh lock adopts the holder's tokens as soon as the
 * record holds them, while the lock is still held: waiters do not queue on the lock one after
 * another only to adopt (the refresh storm of 32 processes at one expiry). The "other process"
 * is a refresh transaction of a second store on the same home; the waiter is a TokenManager whose
 * stored token is due. Nothing here talks to an AS: the waiter must never refresh.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Logger } from '../../src/session/log.js';
import { TokenManager } from '../../src/session/token-manager.js';
import { FileCredentialStore } from '../../src/store/file-credential-store.js';
import { tempHome } from '../helpers/bed.js';
import { recordLog } from '../helpers/log-events.js';
import { makeRecord } from '../helpers/store-fixtures.js';

const URL_ = 'https://mcp.example.test/mcp';

test('a waiter adopts the tokens the lock holder stored, before the holder releases the lock', async (t) => {
  const home = await tempHome(t);
  const holderStore = new FileCredentialStore({ home });
  const due = makeRecord(URL_, { tag: 'due' });
  const dueTokens = { ...due.tokens!, obtainedAt: Date.now() - 3_600_000, expiresAt: Date.now() - 1_000 };
  await holderStore.transaction(URL_, 'write', (tx) => tx.write({ ...due, tokens: dueTokens }));

  const log = recordLog();
  const waiter = new TokenManager({
    store: new FileCredentialStore({ home }),
    // Any token-endpoint request fails the test: the waiter must adopt, never refresh.
    http: () => ({
      allowInsecureLoopback: false,
      timeoutMs: 1_000,
      fetch: async () => {
        throw new Error('the waiter sent a token request');
      },
    }),
    logger: new Logger(log.sink),
    transientRetryDelaysMs: [],
  });

  let adoptedWhileHeld = false;
  let served: string | undefined;
  await holderStore.transaction(URL_, 'refresh', async (tx) => {
    const asked = waiter.getAccessToken(URL_);
    await log.next('refresh.waiting'); // the waiter is blocked on our lock
    const read = await tx.read();
    assert.ok(read.kind === 'ok');
    const fresh = { ...dueTokens, accessToken: 'at.fresh', obtainedAt: Date.now(), expiresAt: Date.now() + 3_600_000 };
    await tx.write({ ...read.record, tokens: fresh });
    served = await asked; // resolves while this transaction still holds the lock
    adoptedWhileHeld = true;
  });

  assert.equal(adoptedWhileHeld, true);
  assert.equal(served, 'at.fresh', 'the holder’s token, adopted');
  assert.equal(log.named('refresh.ok').length, 0, 'the waiter did not refresh');
  assert.match(String(log.named('refresh.adopted')[0]?.message), /while waiting/);
});
