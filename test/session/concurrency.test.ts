/**
 * Concurrency with real processes against oidc-provider with refresh-token rotation and reuse
 * revocation. The authorization server's own audit (its events and requests, not our logs) is
 * the judge: zero reuse, zero revoked grants, zero invalid_grant, refreshes of a server never
 * closer together than a token lifetime allows, and one sign-in for a storm of eight.
 *
 * Determinism: children start together on their READY lines (child-process.ts), not after a
 * guessed delay; a token loop runs until it has raced a number of expiries, not for a fixed time;
 * sign-in races are held open by a browser that waits for the test, which releases it once every
 * other process is waiting for that sign-in (their `login.waiting` events).
 */
import assert from 'node:assert/strict';
import { appendFile, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { robotBrowserCommand } from '../../arena/testbed/index.js';
import { startBed } from '../helpers/bed.js';
import {
  type Child,
  cleanStderr,
  go,
  lastJsonLine,
  runTogether,
  spawnTsx,
  startTogether,
} from '../helpers/child-process.js';
import type { TokenLoopSummary } from '../helpers/session-child.js';
import { assertNoReuse, assertOneRefreshPerExpiry, assertRacedCleanly } from '../helpers/token-loop-checks.js';

const CHILD = fileURLToPath(new URL('../helpers/session-child.ts', import.meta.url));

function spawnChildren(t: { after(fn: () => void): void }, count: number, args: string[], env = {}): Child[] {
  const children = Array.from({ length: count }, () => spawnTsx(CHILD, args, env));
  t.after(() => {
    for (const child of children) if (child.proc.exitCode === null) child.proc.kill('SIGKILL');
  });
  return children;
}

test('8 processes x 3 servers, each racing 6+ access-token expiries: one refresh per server per expiry, no reuse, no revocation', async (t) => {
  // Every process runs until it has been handed this many different tokens for every server.
  const lifetimes = 7;
  const bed = await startBed(t, {
    as: { accessTokenTtlSeconds: 2 },
    servers: [{ discovery: 'header' }, { discovery: 'well-known-path' }, { discovery: 'two-challenges' }],
  });
  const keeper = bed.keeper();
  for (const server of bed.servers) await keeper.login(server.url);
  const before = bed.servers.map((server) => bed.as.audit.counts({ resource: server.resource }).refreshGrants);
  const beforeAll = bed.as.audit.counts();

  const children = spawnChildren(t, 8, ['token-loop', bed.home, String(lifetimes), ...bed.servers.map((s) => s.url)]);
  const summaries = await runTogether<TokenLoopSummary>(children);
  const urls = bed.servers.map((s) => s.url);
  for (const summary of summaries) assertRacedCleanly(summary, urls, lifetimes);
  assertNoReuse(bed.as.audit.counts(), beforeAll);

  // One refresh per expiry, machine-wide: consecutive refreshes of a server, whichever processes
  // sent them, are at least a refresh interval apart (refresh-sends.ts), by the clients' clock.
  const sends = summaries.flatMap((s) => s.refreshSends);
  for (const [i, server] of bed.servers.entries()) {
    const refreshes = bed.as.audit.counts({ resource: server.resource }).refreshGrants - (before[i] as number);
    t.diagnostic(`${server.discovery}: ${assertOneRefreshPerExpiry(sends, server.resource, refreshes, lifetimes)}`);
  }
  const calls = summaries.reduce((n, s) => n + s.calls, 0);
  const inFlight = summaries.flatMap((s) => s.expiredInFlight);
  const probes = summaries.reduce((n, s) => n + s.probes, 0);
  t.diagnostic(
    `${calls} calls, ${probes} probes, ${inFlight.length} expired in flight (ms left when asked: ${inFlight.join(', ')})`,
  );
});

/** A $BROWSER that waits for `gate` to exist, then runs the robot browser on the URL. */
async function gatedRobotBrowser(dir: string): Promise<{ command: string; release(): Promise<void> }> {
  const gate = path.join(dir, 'browser.gate');
  const command = path.join(dir, 'gated-browser.sh');
  await writeFile(
    command,
    `#!/bin/sh\nwhile [ ! -e '${gate}' ]; do sleep 0.05; done\nexec ${robotBrowserCommand()} "$@"\n`,
    { mode: 0o755 },
  );
  return { command, release: () => writeFile(gate, '') };
}

test('sign-in storm: 8 processes log in to the same server at once; one authorization, one code exchange, one tab', async (t) => {
  const bed = await startBed(t);
  const server = bed.servers[0]!;
  const browserLog = path.join(bed.home, 'browser.log');
  await appendFile(browserLog, '');
  const browser = await gatedRobotBrowser(bed.home);
  const children = spawnChildren(t, 8, ['login', bed.home, server.url], {
    BROWSER: browser.command,
    ROBOT_BROWSER_LOG: browserLog,
  });
  await startTogether(children);
  // The leader's tab stays open until all eight have asked to sign in: each either runs the
  // sign-in or waits for the one running.
  const roles = await Promise.all(children.map((child) => child.waitForLine(/"event":"login\.(authorize|waiting)"/)));
  assert.deepEqual(
    roles.map((line) => JSON.parse(line).event).sort(),
    ['login.authorize', ...Array(7).fill('login.waiting')],
    'one process signs in, seven wait for it',
  );
  await browser.release();
  const exits = await Promise.all(children.map((child) => child.exited));

  const tokens = new Set<string>();
  for (const [i, child] of children.entries()) {
    assert.equal(exits[i]?.code, 0, cleanStderr(child));
    tokens.add(lastJsonLine<{ token: string }>(child).token);
  }
  assert.equal(tokens.size, 1, 'all 8 hold the same token');
  const counts = bed.as.audit.counts();
  assert.equal(counts.authorizationRequests, 1, 'the AS saw exactly one authorization request');
  assert.equal(counts.codeExchanges, 1, 'and exactly one code exchange');
  assert.equal(counts.registrations, 1, 'and one registration');
  const opens = (await readFile(browserLog, 'utf8')).split('\n').filter(Boolean);
  assert.equal(opens.length, 1, 'the browser was opened once');
});

test('an abandoned sign-in releases the process waiting for it with the reason, without a second tab', async (t) => {
  const bed = await startBed(t);
  const server = bed.servers[0]!;
  const opens = path.join(bed.home, 'opens.log');
  const browser = path.join(bed.home, 'abandoning-browser.sh');
  // A "browser" that records the open and never signs in: the user closed the tab. The leader
  // gives up after its callback timeout (the thing under test, in real time).
  await writeFile(browser, `#!/bin/sh\necho opened >> '${opens}'\n`, { mode: 0o755 });
  const env = { BROWSER: browser, AUTHKEEP_TEST_LOGIN_TIMEOUT_MS: '6000' };
  const [leader, waiter] = spawnChildren(t, 2, ['login', bed.home, server.url], env) as [Child, Child];
  await Promise.all([leader.waitForLine(/^READY$/), waiter.waitForLine(/^READY$/)]);
  await go(leader);
  await leader.waitForLine(/"event":"login\.authorize"/); // it holds the sign-in and waits for the redirect
  await go(waiter);
  await waiter.waitForLine(/"event":"login\.called"/); // it asked before the leader gave up
  const [leaderExit, waiterExit] = await Promise.all([leader.exited, waiter.exited]);
  t.diagnostic(
    `the waiter ${waiter.lines.some((l) => l.includes('login.waiting')) ? 'waited on' : 'found'} the sign-in`,
  );

  assert.equal(leaderExit.code, 3, cleanStderr(leader));
  assert.deepEqual(lastJsonLine<{ failed: unknown }>(leader).failed, { code: 'callback_timeout' });
  assert.equal(waiterExit.code, 3, cleanStderr(waiter));
  assert.deepEqual(lastJsonLine<{ failed: unknown }>(waiter).failed, {
    reason: 'login_failed',
    error: 'callback_timeout',
  });
  assert.equal((await readFile(opens, 'utf8')).split('\n').filter(Boolean).length, 1, 'one tab, not two');
  assert.equal(bed.as.audit.counts().codeExchanges, 0);
});
