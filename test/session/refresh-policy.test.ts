/**
 * refreshDueAt for tokens that arrive already due: a slow answer on a busy machine is never served
 * once expired (the calls would carry a dead token), while a token the AS issued to live an
 * instant is served for the minimum interval (a hostile AS cannot make every call a refresh).
 * Pure function; instants are numbers.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MIN_REFRESH_INTERVAL_MS, refreshDueAt } from '../../src/session/refresh-policy.js';

const SENT = 1_000_000;

test('a healthy token is due before it expires, however short', () => {
  for (const lifetime of [500, 1_000, 2_000, 3_600_000]) {
    const due = refreshDueAt({ obtainedAt: SENT, expiresAt: SENT + lifetime }, 1, 'on-demand', SENT + 5);
    assert.ok(due < SENT + lifetime, `a ${lifetime} ms token is due before it expires`);
  }
});

test('a 2 s token whose answer took 1.8 s is served only while valid, not for the minimum interval', () => {
  const tokens = { obtainedAt: SENT, expiresAt: SENT + 2_000 };
  const arrived = SENT + 1_800;
  assert.equal(refreshDueAt(tokens, 0, 'on-demand', arrived), SENT + 2_000);
});

test('a 2 s token whose answer took 2.5 s is due at once: the next call refreshes', () => {
  const tokens = { obtainedAt: SENT, expiresAt: SENT + 2_000 };
  assert.ok(refreshDueAt(tokens, 0, 'on-demand', SENT + 2_500) <= SENT + 2_500);
});

test('expires_in 0 (or an exp a moment after the request) is served for the minimum interval', () => {
  for (const lifetime of [0, 1, 50]) {
    const arrived = SENT + 3;
    assert.equal(
      refreshDueAt({ obtainedAt: SENT, expiresAt: SENT + lifetime }, 0, 'on-demand', arrived),
      arrived + MIN_REFRESH_INTERVAL_MS,
    );
  }
});
