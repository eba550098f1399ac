/**
 * DPoP under concurrency: 8 real processes share one DPoP-bound grant (the key in the record) of
 * a server that requires DPoP, against oidc-provider with DPoP and refresh-token rotation with
 * reuse revocation, across several access-token expiries. The AS's audit and the server's proof
 * checks judge: zero reuse, zero revoked grants, zero invalid_grant, one refresh per expiry, every
 * proof accepted (a replayed jti or a proof of another key would be refused).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { MIN_REFRESH_SPACING_MS, refreshSpacing } from '../../arena/testbed/refresh-sends.js';
import { startBed } from '../helpers/bed.js';
import { type Child, runTogether, spawnTsx } from '../helpers/child-process.js';
import type { TokenLoopSummary } from '../helpers/session-child.js';

const CHILD = fileURLToPath(new URL('../helpers/session-child.ts', import.meta.url));

test('8 processes racing 5+ expiries of one DPoP-bound grant: no reuse, no revocation, one refresh per expiry, every proof accepted', async (t) => {
  const lifetimes = 6;
  const bed = await startBed(t, {
    as: { dpop: {}, accessTokenTtlSeconds: 2 },
    servers: [{ discovery: 'header', dpop: { required: true } }],
  });
  const server = bed.servers[0];
  assert.ok(server);
  const keeper = bed.keeper();
  t.after(() => keeper.close());
  await keeper.login(server.url);
  const beforeAll = bed.as.audit.counts();

  const children: Child[] = Array.from({ length: 8 }, () =>
    spawnTsx(CHILD, ['token-loop', bed.home, String(lifetimes), server.url], { SESSION_CHILD_PROBE: 'keeper' }),
  );
  t.after(() => {
    for (const child of children) if (child.proc.exitCode === null) child.proc.kill('SIGKILL');
  });
  const summaries = await runTogether<TokenLoopSummary>(children);
  for (const summary of summaries) {
    assert.equal(summary.capped, false, `pid ${summary.pid} was not handed ${lifetimes} tokens`);
    assert.deepEqual(summary.errors, [], 'every call returned a token');
    assert.equal(summary.stale, 0, 'no process was handed an expired token');
    assert.deepEqual(summary.rejected, [], 'every probe through keeper.fetch was answered 200');
    assert.ok((summary.tokens[server.url] ?? 0) >= lifetimes);
    assert.ok(summary.probes > 0);
  }

  const after = bed.as.audit.counts();
  assert.equal(after.refreshReuses, 0, 'zero refresh-token reuse');
  assert.equal(after.revokedGrants, 0, 'zero revoked grants');
  assert.equal(after.invalidGrants, 0, 'zero invalid_grant');
  assert.equal(after.authorizationRequests, beforeAll.authorizationRequests, 'no process had to sign in again');

  const sends = summaries.flatMap((s) => s.refreshSends);
  const spacing = refreshSpacing(sends, server.resource);
  const refreshes = after.refreshGrants - beforeAll.refreshGrants;
  t.diagnostic(`${refreshes} refreshes over ${spacing.spanMs} ms, min gap ${spacing.minGapMs} ms`);
  assert.equal(spacing.count, refreshes, 'every refresh the AS saw was sent by a child');
  assert.ok(refreshes >= lifetimes - 1, `${lifetimes - 1} expiries were crossed (${refreshes})`);
  assert.ok(spacing.minGapMs >= MIN_REFRESH_SPACING_MS, 'no expiry was refreshed twice');
  assert.ok(refreshes <= spacing.maxCount, `${refreshes} refreshes, at most ${spacing.maxCount} lifetimes`);

  const proofs = server.dpopCounts();
  assert.deepEqual(proofs.dpopRefused, {}, 'no proof refused (no replayed jti, no other key)');
  assert.ok(proofs.dpopAccepted >= summaries.reduce((n, s) => n + s.probes, 0));
});
