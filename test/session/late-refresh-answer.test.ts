/**
 * A refresh whose answer comes late (after the generic request timeout, within 4 of them and
 * before the refresh deadline) is awaited, not abandoned and sent again: by the time the AS answers it has rotated
 * the refresh token, so a second request presents the old one, and the strict AS (rotation with
 * reuse revocation) revokes the whole grant. On a starved machine (the arena's `scale` scenario,
 * a load average of 100 on two cores) the answer comes late, not never; that is how the scenario
 * lost 5 grants before this.
 *
 * Real oidc-provider; the answer is held inside the client's own fetch after the AS has sent it,
 * until 2 request timeouts after the request was sent or until the client gives up on it (its
 * abort signal fires: the failure), whichever comes first. An answer that never comes (the request
 * lost on the way, the AS never reads it) is given up at 4 request timeouts, not held until the
 * refresh deadline: the other processes wait on that lock.
 */
import assert from 'node:assert/strict';
import { type TestContext, test } from 'node:test';
import { awaitSpentTokenAnswer } from '../../src/session/token-manager.js';
import { startBed } from '../helpers/bed.js';
import { recordLog } from '../helpers/log-events.js';
import { expireStoredTokens } from '../helpers/records.js';

const GENERIC_TIMEOUT_MS = 1_000;

/**
 * A signed-in bed whose stored token is due, and a keeper whose first refresh request is held in
 * its fetch: answered by the AS and handed over `answerAfterMs` after it was sent, or with `never`
 * lost on the way. `seen` counts the held request and says whether the client gave up on it.
 */
async function heldRefresh(t: TestContext, answerAfterMs: number | 'never') {
  const bed = await startBed(t);
  const server = bed.servers[0]!;
  await bed.keeper().login(server.url);
  await expireStoredTokens(bed.home, server.url);
  const seen = { held: 0, abandoned: false };
  const log = recordLog();
  const keeper = bed.keeper({
    httpTimeoutMs: GENERIC_TIMEOUT_MS,
    log: log.sink,
    fetch: async (input, init) => {
      if (seen.held > 0 || !String(init?.body ?? '').includes('grant_type=refresh_token')) return fetch(input, init);
      seen.held++;
      const sentAt = Date.now();
      // The AS rotates the token and answers; or, lost on the way, it never reads the request.
      const response = answerAfterMs === 'never' ? undefined : await fetch(input, init);
      await new Promise<void>((resolve) => {
        const late =
          answerAfterMs === 'never' ? undefined : setTimeout(resolve, Math.max(0, sentAt + answerAfterMs - Date.now()));
        init?.signal?.addEventListener(
          'abort',
          () => {
            seen.abandoned = true;
            clearTimeout(late);
            resolve();
          },
          { once: true },
        );
      });
      init?.signal?.throwIfAborted();
      if (response === undefined) throw new Error('a lost request has no answer');
      return response;
    },
  });
  return { bed, server, keeper, log, seen };
}

test('a late refresh answer is awaited beyond the request timeout: one refresh, no reuse, no retry', async (t) => {
  const { bed, server, keeper, log, seen } = await heldRefresh(t, 2 * GENERIC_TIMEOUT_MS);
  const before = bed.as.audit.counts();
  const token = await keeper.getAccessToken(server.url);
  const after = bed.as.audit.counts();
  assert.equal(seen.held, 1, 'the refresh went through the held fetch');
  assert.equal(seen.abandoned, false, 'the client gave up on the answer');
  assert.equal(log.named('refresh.retry').length, 0, 'the refresh was not sent again');
  assert.equal(after.refreshGrants - before.refreshGrants, 1, 'one refresh at the AS');
  assert.equal(after.refreshReuses, before.refreshReuses, 'no refresh token presented twice');
  assert.equal(after.revokedGrants, before.revokedGrants, 'no grant revoked');
  assert.equal(await bed.keeper().getAccessToken(server.url), token, 'the late answer is what the record holds');
  await keeper.close();
});

test('a refresh answer that never comes is given up at 4 request timeouts, then sent again', async (t) => {
  const { bed, server, keeper, log, seen } = await heldRefresh(t, 'never');
  const before = bed.as.audit.counts();
  const token = await keeper.getAccessToken(server.url);
  const after = bed.as.audit.counts();
  assert.equal(seen.held, 1, 'the refresh went through the held fetch');
  assert.equal(seen.abandoned, true, 'the client gave up on the answer');
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
