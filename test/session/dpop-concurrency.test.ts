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
import { startBed } from '../helpers/bed.js';
import { type Child, runTogether, spawnTsx } from '../helpers/child-process.js';
import type { TokenLoopSummary } from '../helpers/session-child.js';
import { assertNoReuse, assertOneRefreshPerExpiry, assertRacedCleanly } from '../helpers/token-loop-checks.js';

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
    // With SESSION_CHILD_PROBE=keeper, any probe answered other than 200 is a rejection.
    assertRacedCleanly(summary, [server.url], lifetimes);
    assert.ok(summary.probes > 0);
  }

  const after = bed.as.audit.counts();
  assertNoReuse(after, beforeAll);
  const sends = summaries.flatMap((s) => s.refreshSends);
  const refreshes = after.refreshGrants - beforeAll.refreshGrants;
  t.diagnostic(assertOneRefreshPerExpiry(sends, server.resource, refreshes, lifetimes));

  const proofs = server.dpopCounts();
  assert.deepEqual(proofs.dpopRefused, {}, 'no proof refused (no replayed jti, no other key)');
  assert.ok(proofs.dpopAccepted >= summaries.reduce((n, s) => n + s.probes, 0));
});
