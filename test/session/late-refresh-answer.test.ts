/**
 * A refresh whose answer comes late (after the generic request timeout, within 4 of them and
 * before the refresh deadline) is awaited, not abandoned and sent again: by the time the AS answers it has rotated
 * the refresh token, so a second request presents the old one, and the strict AS (rotation with
 * reuse revocation) revokes the whole grant. On a starved machine (the arena's `scale` scenario,
 * a load average of 100 on two cores) the answer comes late, not never; that is how the scenario
 * lost 5 grants before this.
 *
 * Real oidc-provider; the answer is held inside the client's own fetch after the AS has sent it,
 * until the client gives up on it (its abort signal fires: the failure) or for 3 times the
 * generic request timeout, whichever comes first. An answer that never comes is given up at 4
 * request timeouts, not held until the refresh deadline: the other processes wait on that lock.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { awaitSpentTokenAnswer } from '../../src/session/token-manager.js';
import { startBed } from '../helpers/bed.js';
import { recordLog } from '../helpers/log-events.js';
import { expireStoredTokens } from '../helpers/records.js';

const GENERIC_TIMEOUT_MS = 200;

test('a late refresh answer is awaited beyond the request timeout: one refresh, no reuse, no retry', async (t) => {
  const bed = await startBed(t);
  const server = bed.servers[0]!;
  await bed.keeper().login(server.url);
  await expireStoredTokens(bed.home, server.url);

  let held = 0;
  let abandoned = false;
  const log = recordLog();
  const keeper = bed.keeper({
    httpTimeoutMs: GENERIC_TIMEOUT_MS,
    log: log.sink,
    fetch: async (input, init) => {
      const response = await fetch(input, init);
      if (held === 0 && String(init?.body ?? '').includes('grant_type=refresh_token')) {
        held++;
        // The AS has rotated the token and answered; the answer reaches the client late.
        await new Promise<void>((resolve) => {
          const late = setTimeout(resolve, 3 * GENERIC_TIMEOUT_MS);
          init?.signal?.addEventListener(
            'abort',
            () => {
              abandoned = true;
              clearTimeout(late);
              resolve();
            },
            { once: true },
          );
        });
        init?.signal?.throwIfAborted();
      }
      return response;
    },
  });

  const before = bed.as.audit.counts();
  const token = await keeper.getAccessToken(server.url);
  const after = bed.as.audit.counts();
  assert.equal(held, 1, 'the refresh went through the held fetch');
  assert.equal(abandoned, false, 'the client gave up on the answer at its generic timeout');
  assert.equal(log.named('refresh.retry').length, 0, 'the refresh was not sent again');
  assert.equal(after.refreshGrants - before.refreshGrants, 1, 'one refresh at the AS');
  assert.equal(after.refreshReuses, before.refreshReuses, 'no refresh token presented twice');
  assert.equal(after.revokedGrants, before.revokedGrants, 'no grant revoked');
  assert.equal(await bed.keeper().getAccessToken(server.url), token, 'the late answer is what the record holds');
  await keeper.close();
});

test('a refresh answer that never comes is given up at 4 request timeouts, then sent again', async (t) => {
  const bed = await startBed(t);
  const server = bed.servers[0]!;
  await bed.keeper().login(server.url);
  await expireStoredTokens(bed.home, server.url);

  let held = 0;
  let abandoned = false;
  const log = recordLog();
  const keeper = bed.keeper({
    httpTimeoutMs: GENERIC_TIMEOUT_MS,
    log: log.sink,
    fetch: async (input, init) => {
      if (held === 0 && String(init?.body ?? '').includes('grant_type=refresh_token')) {
        held++;
        // Lost on the way: the AS never reads it, and no answer comes until the client gives up.
        await new Promise<void>((resolve) =>
          init?.signal?.addEventListener(
            'abort',
            () => {
              abandoned = true;
              resolve();
            },
            { once: true },
          ),
        );
        init?.signal?.throwIfAborted();
      }
      return fetch(input, init);
    },
  });

  const before = bed.as.audit.counts();
  const token = await keeper.getAccessToken(server.url);
  const after = bed.as.audit.counts();
  assert.equal(held, 1, 'the refresh went through the held fetch');
  assert.equal(abandoned, true, 'the client gave up on the answer');
  assert.equal(log.named('refresh.retry').length, 1, 'the refresh was sent again once');
  assert.equal(after.refreshGrants - before.refreshGrants, 1, 'one refresh at the AS');
  assert.equal(after.refreshReuses, before.refreshReuses, 'no refresh token presented twice');
  assert.equal(await bed.keeper().getAccessToken(server.url), token, 'the second answer is what the record holds');
  await keeper.close();
});

test('the answer is awaited 4 request timeouts, never past the refresh deadline, and not at all without one', () => {
  const far = Date.now() + 3_600_000;
  assert.deepEqual(awaitSpentTokenAnswer({ timeoutMs: 3000 }, { deadline: far }), { timeoutMs: 12_000 });
  assert.deepEqual(awaitSpentTokenAnswer({}, { deadline: far }), { timeoutMs: 60_000 }, 'the default request timeout');
  const near = awaitSpentTokenAnswer({ timeoutMs: 30_000 }, { deadline: Date.now() + 5_000 }).timeoutMs;
  assert.ok(near !== undefined && near <= 5_000 && near > 0, `bounded by the deadline: ${near}`);
  assert.equal(awaitSpentTokenAnswer({ timeoutMs: 1 }, { deadline: Date.now() - 10 }).timeoutMs, 1);
  assert.deepEqual(awaitSpentTokenAnswer({ timeoutMs: 3000 }, {}), {}, 'no lock bound: the request timeout stands');
});
