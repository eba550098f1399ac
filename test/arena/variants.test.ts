/**
 * The arena's other columns, run briefly as the arena runs them (2 sessions as separate processes
 * x 2 servers, `header` and `well-known`, a tenth of a simulated day after the cold start, against
 * fresh oidc-providers with rotation and reuse revocation), all three at once:
 *   - `authkeep-proxy` (`authkeep proxy <url>` as each session's stdio proxy, one AUTHKEEP_HOME):
 *     the zeros: no refresh-token reuse, no revoked grant, no forced re-auth, one tab per server,
 *     every call ok (but for a token that expired on its way to the server twice, see below);
 *   - `mcp-remote` (the real package, pinned, as each session's stdio proxy, one config dir) and
 *     `naive-v2` (the 2.x SDK's own auth with the straightforward file provider): that they really
 *     ran: calls went through, and the AS's audit shows their sign-ins (a registration and an
 *     authorization code redeemed for each server). Their failures are races and are not asserted.
 *
 * Determinism: the tenth of a day starts once every session has made a successful call to every
 * server (`daysAfterColdStart`), so nothing depends on how long a slow machine takes to start
 * processes and sign in; nothing is asserted about how many calls fit in the run. With 1 s tokens
 * a request that takes longer than the proxy's margin on a busy machine arrives with an expired
 * token; the proxy retries once with another, and only if that one expires in flight too does the
 * call fail. So a failed authkeep-proxy call is allowed only when the servers' own counts show two
 * expired (never invalid) tokens for each, as in arena.test.ts.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { timeScale } from '../../arena/clock.js';
import { computeMetrics, type VariantMetrics } from '../../arena/metrics.js';
import { renderTable } from '../../arena/report.js';
import { runVariant, type VariantRun } from '../../arena/runner.js';
import type { Variant } from '../../arena/session.js';
import type { HttpAuditEntry } from '../../arena/testbed/audit.js';

const runs = new Map<Variant, Promise<{ run: VariantRun; m: VariantMetrics }>>();
for (const variant of ['authkeep-proxy', 'mcp-remote', 'naive-v2'] as const) {
  runs.set(
    variant,
    runVariant({
      variant,
      days: 0.1,
      sessions: 2,
      servers: 2,
      seed: 5,
      scale: timeScale(1),
      meanIntervalMs: 600,
      daysAfterColdStart: true,
    }).then((run) => ({ run, m: computeMetrics(run) })),
  );
}
// Every run is awaited by its test; none may reject unobserved meanwhile.
for (const r of runs.values()) r.catch(() => {});

async function result(variant: Variant, t: { diagnostic(s: string): void }) {
  const r = await (runs.get(variant) as Promise<{ run: VariantRun; m: VariantMetrics }>);
  for (const line of renderTable([r.m]).split('\n')) t.diagnostic(line);
  t.diagnostic(
    `cold start: ${r.run.coldStartEndedAt === undefined ? 'never ended' : `${r.run.coldStartEndedAt - r.run.startedAt} ms`}; wall ${r.run.wallMs} ms`,
  );
  assert.deepEqual(r.run.sessionErrors, [], 'no session died');
  return r;
}

/** Per server: registrations and authorization codes redeemed, from the AS's audit. */
function signInsInAudit(run: VariantRun): Array<{ server: string; codes: number }> {
  const http = run.audits.flatMap((a) => a.entries.filter((e): e is HttpAuditEntry => e.kind === 'http'));
  return run.servers.map((s) => ({
    server: s.name,
    codes: http.filter(
      (e) =>
        e.endpoint === 'token' &&
        e.grantType === 'authorization_code' &&
        e.status === 200 &&
        e.resources.includes(s.resource),
    ).length,
  }));
}

function registrations(run: VariantRun): number {
  return run.audits
    .flatMap((a) => a.entries)
    .filter((e) => e.kind === 'http' && e.endpoint === 'registration' && e.method === 'POST' && e.status === 201)
    .length;
}

test('authkeep-proxy: the zeros through `authkeep proxy` as the stdio proxy of every session', {
  timeout: 300_000,
}, async (t) => {
  const { run, m } = await result('authkeep-proxy', t);
  assert.ok(run.coldStartEndedAt !== undefined, 'every session made a call to every server');
  assert.equal(m.refreshReuses, 0, 'no refresh-token reuse');
  assert.equal(m.revokedGrants, 0, 'no revoked grant');
  assert.equal(m.forcedReauths, 0, 'no forced re-auth');
  assert.equal(m.crossClient, 0, 'no cross-client redemption');
  assert.equal(m.malformedAuthorize, 0, 'no malformed authorize request');
  assert.equal(m.coldStartTabs, m.servers, 'one browser tab per server at the cold start, for all sessions');
  assert.ok(m.refreshCalls > 0, 'tokens were refreshed through the run');
  for (const [index, counts] of run.mcpCounts.entries()) {
    assert.equal(counts.invalidTokens, 0, `server ${index} refused no token as invalid`);
    const failed = m.perServer[index]?.callsFailed ?? 0;
    assert.ok(
      2 * failed <= counts.expiredTokens,
      `${failed} failed calls to server ${index}, each refused twice for a token that expired in flight (${counts.expiredTokens} such refusals)`,
    );
  }
  assert.ok(m.callsOk > 0);
});

test('mcp-remote: the real package made the calls and signed in, as the audit shows', {
  timeout: 300_000,
}, async (t) => {
  const { run, m } = await result('mcp-remote', t);
  t.diagnostic(`token-endpoint refusals: ${JSON.stringify(m.tokenErrors)}`);
  assert.ok(m.callsOk > 0, 'calls went through mcp-remote');
  assert.ok(registrations(run) > 0, 'mcp-remote registered a client (DCR)');
  for (const s of signInsInAudit(run)) assert.ok(s.codes > 0, `an authorization code for ${s.server} was redeemed`);
  assert.ok(m.coldStartTabs > 0, 'mcp-remote opened the robot browser through $BROWSER');
  assert.ok(m.refreshCalls > 0, 'mcp-remote refreshed');
});

test('naive-v2: the 2.x SDK made the calls and signed in, as the audit shows', { timeout: 300_000 }, async (t) => {
  const { run, m } = await result('naive-v2', t);
  t.diagnostic(`token-endpoint refusals: ${JSON.stringify(m.tokenErrors)}`);
  assert.ok(m.callsOk > 0, 'calls went through the 2.x SDK');
  assert.ok(registrations(run) > 0, 'the 2.x SDK registered a client (DCR)');
  for (const s of signInsInAudit(run)) assert.ok(s.codes > 0, `an authorization code for ${s.server} was redeemed`);
  assert.ok(m.needsAuthWithoutReason > 0, "the SDK's UnauthorizedError (no reason) sent the user to the browser");
});
