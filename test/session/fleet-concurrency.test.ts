/**
 * The fleet store with real processes on three "hosts" (separate AUTHKEEP_HOMEs, nothing shared on
 * disk; only a real redis-server), against oidc-provider with refresh-token rotation and reuse
 * revocation. The authorization server's own audit is the judge: zero reuse, zero revoked grants,
 * zero invalid_grant, refreshes of a server never closer together than a token lifetime allows,
 * and one sign-in (one tab, one code exchange, one registration) for the whole fleet.
 *
 * Determinism: children start together on their READY lines; token loops run until they have
 * raced a number of expiries; the sign-in's browser waits for the test, which releases it once
 * every other process on every host is waiting for that sign-in.
 */
import assert from 'node:assert/strict';
import { appendFile, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { robotBrowserCommand } from '../../arena/testbed/index.js';
import { MIN_REFRESH_SPACING_MS, refreshSpacing } from '../../arena/testbed/refresh-sends.js';
import { openStore } from '../../src/store/open-store.js';
import type { RedisCredentialStore } from '../../src/store/redis/redis-credential-store.js';
import { startBed, tempHome } from '../helpers/bed.js';
import { type Child, cleanStderr, lastJsonLine, spawnTsx, startTogether } from '../helpers/child-process.js';
import { makeStoreKey, startRedis } from '../helpers/redis-server.js';
import type { TokenLoopSummary } from '../helpers/session-child.js';

const CHILD = fileURLToPath(new URL('../helpers/session-child.ts', import.meta.url));
const HOSTS = 3;

async function fleet(t: { after(fn: () => Promise<void> | void): void }) {
  const redis = await startRedis();
  t.after(() => redis.stop());
  const env = { AUTHKEEP_STORE: redis.url, AUTHKEEP_STORE_KEY: makeStoreKey() };
  const store = openStore({ home: '/nonexistent', account: 'default', env }) as RedisCredentialStore;
  t.after(() => store.close());
  return { redis, env, store };
}

function spawnHosts(
  t: { after(fn: () => void): void },
  homes: string[],
  perHost: number,
  args: (home: string) => string[],
  env: NodeJS.ProcessEnv,
): Child[] {
  const children = homes.flatMap((home) => Array.from({ length: perHost }, () => spawnTsx(CHILD, args(home), env)));
  t.after(() => {
    for (const child of children) if (child.proc.exitCode === null) child.proc.kill('SIGKILL');
  });
  return children;
}

test('fleet: 3 hosts x 4 processes x 2 servers racing 4+ expiries through Redis: one refresh per server per expiry, no reuse, no revocation', async (t) => {
  const lifetimes = 4;
  const { env, store } = await fleet(t);
  const bed = await startBed(t, {
    as: { accessTokenTtlSeconds: 2 },
    servers: [{ discovery: 'header' }, { discovery: 'well-known-path' }],
  });
  const keeper = bed.keeper({ store });
  for (const server of bed.servers) await keeper.login(server.url);
  const before = bed.servers.map((server) => bed.as.audit.counts({ resource: server.resource }).refreshGrants);
  const beforeAll = bed.as.audit.counts();
  const homes = await Promise.all(Array.from({ length: HOSTS }, () => tempHome(t as never)));

  const children = spawnHosts(
    t,
    homes,
    4,
    (home) => ['token-loop', home, String(lifetimes), ...bed.servers.map((s) => s.url)],
    env,
  );
  await startTogether(children);
  const exits = await Promise.all(children.map((child) => child.exited));

  const summaries: TokenLoopSummary[] = [];
  for (const [i, child] of children.entries()) {
    assert.equal(exits[i]?.code, 0, cleanStderr(child));
    const summary = lastJsonLine<TokenLoopSummary>(child);
    summaries.push(summary);
    assert.equal(summary.capped, false, `pid ${summary.pid} was not handed ${lifetimes} tokens per server`);
    assert.deepEqual(summary.errors, [], 'every call returned a token');
    assert.equal(summary.stale, 0, 'no process was handed a token that had expired when it asked');
    assert.deepEqual(summary.rejected, [], 'the servers accepted every probed token');
    for (const server of bed.servers)
      assert.ok((summary.tokens[server.url] ?? 0) >= lifetimes, `pid ${summary.pid} raced the expiries`);
  }

  const after = bed.as.audit.counts();
  assert.equal(after.refreshReuses, 0, 'zero refresh-token reuse');
  assert.equal(after.revokedGrants, 0, 'zero revoked grants');
  assert.equal(after.invalidGrants, 0, 'zero invalid_grant');
  assert.equal(after.authorizationRequests, beforeAll.authorizationRequests, 'no host had to sign in again');

  // One refresh per expiry, fleet-wide: consecutive refreshes of a server, whichever host and
  // process sent them, are at least a refresh interval apart.
  const sends = summaries.flatMap((s) => s.refreshSends);
  const pidsThatRefreshed = new Set<number>();
  for (const s of summaries) if (s.refreshSends.length > 0) pidsThatRefreshed.add(s.pid);
  for (const [i, server] of bed.servers.entries()) {
    const spacing = refreshSpacing(sends, server.resource);
    const refreshes = bed.as.audit.counts({ resource: server.resource }).refreshGrants - (before[i] as number);
    t.diagnostic(
      `${server.discovery}: ${refreshes} refreshes over ${spacing.spanMs} ms, min gap ${spacing.minGapMs} ms`,
    );
    assert.equal(spacing.count, refreshes, `${server.url}: every refresh the AS saw was sent by a child`);
    assert.ok(refreshes >= lifetimes - 1, `${server.url}: ${lifetimes - 1} expiries were crossed (${refreshes})`);
    assert.ok(spacing.minGapMs >= MIN_REFRESH_SPACING_MS, `${server.url}: one expiry was refreshed twice`);
    assert.ok(refreshes <= spacing.maxCount, `${server.url}: ${refreshes} refreshes, at most ${spacing.maxCount}`);
  }
  t.diagnostic(
    `${summaries.reduce((n, s) => n + s.calls, 0)} calls; ${pidsThatRefreshed.size} of ${children.length} processes sent a refresh`,
  );
  assert.deepEqual(await store.leases(), [], 'no lease left behind');
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

test('fleet sign-in: 3 hosts x 2 processes log in at once; one tab, one code exchange, one registration; the others adopt', async (t) => {
  const { env } = await fleet(t);
  const bed = await startBed(t);
  const server = bed.servers[0]!;
  const browserLog = path.join(bed.home, 'browser.log');
  await appendFile(browserLog, '');
  const browser = await gatedRobotBrowser(bed.home);
  const homes = await Promise.all(Array.from({ length: HOSTS }, () => tempHome(t as never)));
  const children = spawnHosts(t, homes, 2, (home) => ['login', home, server.url], {
    ...env,
    BROWSER: browser.command,
    ROBOT_BROWSER_LOG: browserLog,
  });
  await startTogether(children);
  const roles = await Promise.all(children.map((child) => child.waitForLine(/"event":"login\.(authorize|waiting)"/)));
  assert.deepEqual(
    roles.map((line) => JSON.parse(line).event).sort(),
    ['login.authorize', ...Array(children.length - 1).fill('login.waiting')],
    'one process in the fleet signs in, the others wait for it',
  );
  await browser.release();
  const exits = await Promise.all(children.map((child) => child.exited));
  const tokens = new Set<string>();
  for (const [i, child] of children.entries()) {
    assert.equal(exits[i]?.code, 0, cleanStderr(child));
    tokens.add(lastJsonLine<{ token: string }>(child).token);
  }
  assert.equal(tokens.size, 1, 'every process on every host holds the same token');
  const counts = bed.as.audit.counts();
  assert.equal(counts.authorizationRequests, 1, 'one authorization request');
  assert.equal(counts.codeExchanges, 1, 'one code exchange');
  assert.equal(counts.registrations, 1, 'one registration');
  assert.equal((await readFile(browserLog, 'utf8')).split('\n').filter(Boolean).length, 1, 'one tab');
});
