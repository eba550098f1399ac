/**
 * Concurrency with real processes against oidc-provider with refresh-token rotation and reuse
 * revocation. The authorization server's own audit (its events and requests, not our logs) is
 * the judge: zero reuse, zero revoked grants, zero invalid_grant, at most one refresh per server
 * per expiry, and one sign-in for a storm of eight.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { appendFile, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { robotBrowserCommand } from '../../arena/testbed/index.js';
import { startBed } from '../helpers/bed.js';

const CHILD = fileURLToPath(new URL('../helpers/session-child.ts', import.meta.url));

interface ChildResult {
  code: number | null;
  lines: string[];
  stderr: string;
}

function runChild(args: string[], env: NodeJS.ProcessEnv = {}): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', reject);
    child.once('exit', (code) =>
      resolve({
        code,
        lines: stdout.split('\n').filter(Boolean),
        stderr: stderr.replace(/.*oidc-provider WARNING.*\n?/g, ''),
      }),
    );
  });
}

test('8 processes x 3 servers across 5+ access-token expiries: one refresh per server per expiry, no reuse, no revocation', async (t) => {
  const ttlSeconds = 2;
  const bed = await startBed(t, {
    as: { accessTokenTtlSeconds: ttlSeconds },
    servers: [{ discovery: 'header' }, { discovery: 'well-known-path' }, { discovery: 'two-challenges' }],
  });
  const keeper = bed.keeper();
  for (const server of bed.servers) await keeper.login(server.url);
  const before = bed.as.audit.counts();

  const durationMs = 12_000;
  const goAt = Date.now() + 2500; // every child loaded and waiting before the first expiry race
  const results = await Promise.all(
    Array.from({ length: 8 }, () =>
      runChild(['token-loop', bed.home, String(goAt), String(durationMs), ...bed.servers.map((s) => s.url)]),
    ),
  );

  for (const result of results) {
    assert.equal(result.code, 0, result.stderr);
    const summary = JSON.parse(result.lines.at(-1) ?? '{}') as {
      calls: number;
      expired: number;
      rejected: number;
      errors: string[];
      probes: number;
    };
    assert.ok(summary.calls > 100, `each process made many calls (${summary.calls})`);
    assert.deepEqual(summary.errors, [], 'every call returned a token');
    assert.equal(summary.expired, 0, 'no process was ever handed an expired token');
    assert.equal(summary.rejected, 0, 'the servers accepted every probed token');
  }

  const after = bed.as.audit.counts();
  assert.equal(after.refreshReuses, 0, 'zero refresh-token reuse');
  assert.equal(after.revokedGrants, 0, 'zero revoked grants');
  assert.equal(after.invalidGrants, 0, 'zero invalid_grant');
  assert.equal(after.authorizationRequests, before.authorizationRequests, 'no process had to sign in again');

  // A 2 s token lives 1-2 s (exp = floor(now) + 2, see refresh-policy.ts) and is refreshed a
  // quarter of that early, so each refresh buys at least 750 ms: the run spans at most this many
  // token lifetimes per server. More refreshes than that would mean two refreshes for one expiry.
  const windowMs = Date.now() - (goAt - 2500);
  const maxPerServer = Math.ceil(windowMs / 750) + 1;
  for (const server of bed.servers) {
    const refreshes = bed.as.audit.counts({ resource: server.resource }).refreshGrants;
    assert.ok(refreshes >= 5, `${server.url}: at least 5 expiries were crossed (${refreshes} refreshes)`);
    assert.ok(
      refreshes <= maxPerServer,
      `${server.url}: ${refreshes} refreshes <= ${maxPerServer} lifetimes in the window`,
    );
    // Per expiry: consecutive refreshes of one server are a token lifetime apart, never two for one expiry.
    const times = bed.as.audit
      .http()
      .filter((e) => e.endpoint === 'token' && e.grantType === 'refresh_token' && e.resources.includes(server.resource))
      .map((e) => e.time)
      .sort((a, b) => a - b);
    const gaps = times.slice(1).map((time, i) => time - (times[i] as number));
    const minGap = Math.min(...gaps);
    t.diagnostic(`${server.discovery}: ${refreshes} refreshes, min gap ${minGap} ms`);
    assert.ok(minGap >= 500, `${server.url}: two refreshes ${minGap} ms apart means one expiry was refreshed twice`);
  }
});

test('sign-in storm: 8 processes log in to the same server at once; one authorization, one code exchange, one tab', async (t) => {
  const bed = await startBed(t);
  const server = bed.servers[0]!;
  const browserLog = path.join(bed.home, 'browser.log');
  await appendFile(browserLog, '');
  const goAt = Date.now() + 2500;
  const results = await Promise.all(
    Array.from({ length: 8 }, () =>
      runChild(['login', bed.home, String(goAt), server.url], {
        BROWSER: robotBrowserCommand(),
        ROBOT_BROWSER_LOG: browserLog,
      }),
    ),
  );
  const tokens = new Set<string>();
  for (const result of results) {
    assert.equal(result.code, 0, result.stderr);
    tokens.add((JSON.parse(result.lines.at(-1) ?? '{}') as { token: string }).token);
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
  // A "browser" that records the open and never signs in: the user closed the tab.
  await writeFile(browser, `#!/bin/sh\necho opened >> '${opens}'\n`, { mode: 0o755 });
  const env = { BROWSER: browser, AUTHKEEP_TEST_LOGIN_TIMEOUT_MS: '2500' };
  const goAt = Date.now() + 2500;
  const [leader, waiter] = await Promise.all([
    runChild(['login', bed.home, String(goAt), server.url], env),
    runChild(['login', bed.home, String(goAt), server.url], { ...env, AUTHKEEP_TEST_START_DELAY_MS: '500' }),
  ]);
  assert.equal(leader.code, 3, leader.stderr);
  assert.deepEqual(JSON.parse(leader.lines.at(-1) ?? '{}').failed, { code: 'callback_timeout' });
  assert.equal(waiter.code, 3, waiter.stderr);
  assert.deepEqual(JSON.parse(waiter.lines.at(-1) ?? '{}').failed, {
    reason: 'login_failed',
    error: 'callback_timeout',
  });
  assert.equal((await readFile(opens, 'utf8')).split('\n').filter(Boolean).length, 1, 'one tab, not two');
  assert.equal(bed.as.audit.counts().codeExchanges, 0);
});
