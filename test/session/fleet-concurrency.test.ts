/**
 * The fleet store with real processes on three "hosts" (separate AUTHKEEP_HOMEs, nothing shared on
 * disk; only a real redis-server), against oidc-provider with refresh-token rotation and reuse
 * revocation. The authorization server's own audit is the judge: zero reuse, zero revoked grants,
 * zero invalid_grant, no refresh token presented twice, refreshes of a server never closer
 * together than a token lifetime allows, no stale token and none of another client or issuer
 * handed out, also across a crash and restart of Redis (persistence on) in the middle of the run;
 * and one sign-in (one tab, one code exchange, one registration) for the whole fleet.
 *
 * Determinism: children start together on their READY lines; token loops run until they have
 * raced a number of expiries; Redis crashes when the AS answers a given refresh (its audit, an
 * event), not after a delay; the sign-in's browser waits for the test, which releases it once
 * every other process on every host is waiting for that sign-in.
 */
import assert from 'node:assert/strict';
import { appendFile, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { AuditEntry, HttpAuditEntry } from '../../arena/testbed/audit.js';
import { robotBrowserCommand } from '../../arena/testbed/index.js';
import { openStore } from '../../src/store/open-store.js';
import type { RedisCredentialStore } from '../../src/store/redis/redis-credential-store.js';
import { startBed, tempHome } from '../helpers/bed.js';
import {
  type Child,
  cleanStderr,
  lastJsonLine,
  runTogether,
  spawnTsx,
  startTogether,
} from '../helpers/child-process.js';
import { makeStoreKey, persistenceArgs, startRedis } from '../helpers/redis-server.js';
import type { TokenLoopSummary } from '../helpers/session-child.js';
import { assertNoReuse, assertOneRefreshPerExpiry, assertRacedCleanly } from '../helpers/token-loop-checks.js';

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

/** A successful refresh grant, as the authorization server recorded it. */
function isRefresh(entry: AuditEntry): entry is HttpAuditEntry {
  return entry.kind === 'http' && entry.endpoint === 'token' && entry.grantType === 'refresh_token';
}

test('fleet: 3 hosts x 8 processes x 3 servers racing 6 expiries through Redis, which crashes and restarts (persistence on) mid-refresh: one refresh per server per expiry, no reuse, no revocation, no stale or foreign token', async (t) => {
  const lifetimes = 6;
  const perHost = 8;
  // The crash comes when the AS answers this refresh (the second expiry of the three servers),
  // before its holder has written the answer to Redis: an event, not a timer.
  const crashAtRefresh = 4;
  const redisDir = await tempHome(t as never);
  const args = persistenceArgs(redisDir);
  let redis = await startRedis({ args });
  t.after(() => redis.stop());
  const env = { AUTHKEEP_STORE: redis.url, AUTHKEEP_STORE_KEY: makeStoreKey() };
  const store = openStore({ home: '/nonexistent', account: 'default', env }) as RedisCredentialStore;
  t.after(() => store.close());

  let refreshesAnswered = 0;
  let restart: Promise<{ stoppedAt: number; readyAt: number }> | undefined;
  const crashAndRestart = async (): Promise<{ stoppedAt: number; readyAt: number }> => {
    const stoppedAt = Date.now();
    await redis.stop(); // SIGKILL: a crash, not a shutdown
    redis = await startRedis({ port: redis.port, args });
    return { stoppedAt, readyAt: Date.now() };
  };
  const bed = await startBed(t, {
    as: {
      accessTokenTtlSeconds: 2,
      auditSink: (entry) => {
        if (isRefresh(entry) && entry.status === 200 && ++refreshesAnswered === crashAtRefresh)
          restart = crashAndRestart();
      },
    },
    servers: [{ discovery: 'header' }, { discovery: 'well-known-path' }, { discovery: 'two-challenges' }],
  });
  const keeper = bed.keeper({ store });
  for (const server of bed.servers) await keeper.login(server.url);
  const clientIds = new Set<string>();
  for (const server of bed.servers) {
    const read = await store.read(server.url);
    assert.equal(read.kind, 'ok');
    if (read.kind === 'ok') clientIds.add(read.record.registration.clientId);
  }
  assert.equal(clientIds.size, 1, 'one registration for the issuer');
  const [clientId] = clientIds;
  const beforeAll = bed.as.audit.counts();
  const homes = await Promise.all(Array.from({ length: HOSTS }, () => tempHome(t as never)));
  const urls = bed.servers.map((s) => s.url);

  const children = spawnHosts(t, homes, perHost, (home) => ['token-loop', home, String(lifetimes), ...urls], env);
  const startedAt = Date.now();
  const summaries = await runTogether<TokenLoopSummary>(children);
  const ranMs = Date.now() - startedAt;
  assert.ok(restart, `Redis was restarted (at refresh ${crashAtRefresh} of ${refreshesAnswered})`);
  const { stoppedAt, readyAt } = await restart;

  for (const summary of summaries) {
    assertRacedCleanly(summary, urls, lifetimes, { failuresChecked: true });
    for (const server of bed.servers) {
      assert.deepEqual(
        summary.claims[server.url],
        [`${bed.as.issuer} ${clientId} ${server.resource}`],
        `pid ${summary.pid} was handed only tokens of the one client and issuer, for ${server.url}`,
      );
    }
    // Calls fail only in the outage, typed, and the process recovers: every run of failures all
    // store_unreachable and not over before Redis was killed, the last one followed by a token. (A
    // process may meet it after Redis is back: its connection reconnects with a backoff. A token
    // still valid in the process's memory needs no store, so one outage can show as two runs of
    // failures with a call served between them, as a CI run saw.)
    assert.equal(
      summary.errors.length,
      summary.outages.reduce((n, o) => n + o.calls, 0),
    );
    for (const outage of summary.outages) {
      assert.deepEqual(outage.codes, ['store_unreachable'], `pid ${summary.pid}: ${summary.errors.join('; ')}`);
      assert.ok(outage.lastFailedAt >= stoppedAt, `pid ${summary.pid} failed before Redis was stopped`);
    }
    const last = summary.outages.at(-1);
    if (last) assert.ok(last.recoveredAt !== null, `pid ${summary.pid} was handed a token again after the outage`);
  }

  const after = bed.as.audit.counts();
  assertNoReuse(after, beforeAll);
  assert.equal(after.clientMismatches, 0, 'zero tokens presented by another client');
  assert.equal(after.registrations, beforeAll.registrations, 'no host registered again');

  // One refresh per expiry, fleet-wide. From the AS's audit: every refresh grant presented a
  // refresh token no other had presented, and succeeded. From the clients' own dating of their
  // requests: consecutive refreshes of a server, whichever host and process sent them, are at
  // least a refresh interval apart (refresh-sends.ts).
  const sends = summaries.flatMap((s) => s.refreshSends);
  const refreshGrants = bed.as.audit.http().filter(isRefresh);
  const pidsThatRefreshed = new Set<number>();
  for (const s of summaries) if (s.refreshSends.length > 0) pidsThatRefreshed.add(s.pid);
  for (const server of bed.servers) {
    const grants = refreshGrants.filter((e) => e.resources.includes(server.resource));
    const refreshes = grants.length;
    const presented = new Set(grants.map((e) => e.body?.refresh_token?.[0]));
    const afterRestart = grants.filter((e) => e.time > readyAt).length;
    assert.deepEqual(
      grants.map((e) => e.status),
      grants.map(() => 200),
      `${server.url}: every refresh succeeded`,
    );
    assert.equal(presented.size, refreshes, `${server.url}: no refresh token was presented twice`);
    assert.ok(afterRestart >= 1, `${server.url}: refreshed again after the restart`);
    const spacing = assertOneRefreshPerExpiry(sends, server.resource, refreshes, lifetimes);
    t.diagnostic(`${server.discovery}: ${spacing} (${afterRestart} refreshes after the restart)`);
  }
  const outages = summaries.flatMap((s) => s.outages);
  const lastFailure = Math.max(readyAt, ...outages.map((o) => o.lastFailedAt));
  t.diagnostic(
    `${children.length} processes ran ${ranMs} ms (from spawn); ${summaries.reduce((n, s) => n + s.calls, 0)} calls; ${pidsThatRefreshed.size} processes sent a refresh; Redis down ${readyAt - stoppedAt} ms at refresh ${crashAtRefresh}: ${outages.length} processes met it (${outages.reduce((n, o) => n + o.calls, 0)} failed calls, store_unreachable, the last ${lastFailure - readyAt} ms after Redis was back), the others met no failure`,
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
