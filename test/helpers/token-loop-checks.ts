/**
 * token-loop-checks: the assertions every multi-process token-loop test makes (session-child.ts
 * `token-loop`), in one place: each process raced its expiries and was handed no stale or refused
 * token; the authorization server saw no reuse, no revoked grant, no invalid_grant and no new
 * sign-in; and a server's refreshes were one per expiry (refresh-sends.ts spacing, by the
 * clients' own dating, matched against the AS's count).
 *
 * Not for: what only one test checks (outages across a Redis restart, whose tokens, DPoP probes).
 */
import assert from 'node:assert/strict';
import type { AuditCounts } from '../../arena/testbed/audit.js';
import { MIN_REFRESH_SPACING_MS, type RefreshSend, refreshSpacing } from '../../arena/testbed/refresh-sends.js';
import type { TokenLoopSummary } from './session-child.js';

/**
 * One process's summary: not capped, handed `lifetimes` different tokens for every URL, none
 * stale, none refused by its server, and (unless `failuresChecked`: the caller judges them) no
 * failed call.
 */
export function assertRacedCleanly(
  summary: TokenLoopSummary,
  urls: string[],
  lifetimes: number,
  options: { failuresChecked?: boolean } = {},
): void {
  assert.equal(summary.capped, false, `pid ${summary.pid} was not handed ${lifetimes} tokens per server`);
  if (!options.failuresChecked) assert.deepEqual(summary.errors, [], 'every call returned a token');
  assert.equal(summary.stale, 0, 'no process was handed a token that had expired when it asked');
  assert.deepEqual(
    summary.rejected,
    [],
    'the servers accepted every probed token (a token that expired during the probe is not a rejection)',
  );
  for (const url of urls)
    assert.ok((summary.tokens[url] ?? 0) >= lifetimes, `pid ${summary.pid} raced ${lifetimes - 1} expiries of ${url}`);
}

/** The AS's audit since `before`: zero reuse, zero revoked grants, zero invalid_grant, no new sign-in. */
export function assertNoReuse(after: AuditCounts, before: AuditCounts): void {
  assert.equal(after.refreshReuses, 0, 'zero refresh-token reuse');
  assert.equal(after.revokedGrants, 0, 'zero revoked grants');
  assert.equal(after.invalidGrants, 0, 'zero invalid_grant');
  assert.equal(after.authorizationRequests, before.authorizationRequests, 'no process had to sign in again');
}

/**
 * One refresh per expiry of `resource`: every refresh the AS saw (`refreshes`) was sent by a
 * child, at least `lifetimes - 1` expiries were crossed, consecutive refreshes (whichever process
 * sent them) are at least a refresh interval apart, and no more than the span allows. Returns a
 * line for the test's diagnostics.
 */
export function assertOneRefreshPerExpiry(
  sends: RefreshSend[],
  resource: string,
  refreshes: number,
  lifetimes: number,
): string {
  const spacing = refreshSpacing(sends, resource);
  assert.equal(spacing.count, refreshes, `${resource}: every refresh the AS saw was sent by a child`);
  assert.ok(refreshes >= lifetimes - 1, `${resource}: ${lifetimes - 1} expiries were crossed (${refreshes})`);
  assert.ok(
    spacing.minGapMs >= MIN_REFRESH_SPACING_MS,
    `${resource}: two refreshes ${spacing.minGapMs} ms apart means one expiry was refreshed twice`,
  );
  assert.ok(
    refreshes <= spacing.maxCount,
    `${resource}: ${refreshes} refreshes in ${spacing.spanMs} ms, at most ${spacing.maxCount} lifetimes`,
  );
  return `${refreshes} refreshes over ${spacing.spanMs} ms, min gap ${spacing.minGapMs} ms`;
}
