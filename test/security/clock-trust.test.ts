/**
 * Attack class: clock trust. An authorization server with a skewed clock (or a broken or hostile
 * one) issues JWT access tokens whose `exp` is already past while expires_in says 3600, or tokens
 * that expire at once (expires_in 0). What must NOT happen: every getAccessToken spending a
 * refresh (10 calls, 10 refreshes), a server refreshed faster than the minimum interval, or the
 * keep-fresh timer chain stopping silently (after such a token, or when its timer fires while the
 * refresh that set it is still finishing). A real hostile token endpoint, a real store on disk,
 * and an injected clock (time and timers), so nothing here sleeps.
 */
import assert from 'node:assert/strict';
import { type TestContext, test } from 'node:test';
import type { Clock } from '../../src/session/clock.js';
import { type LogEvent, Logger } from '../../src/session/log.js';
import { MIN_REFRESH_INTERVAL_MS, type RefreshMode } from '../../src/session/refresh-policy.js';
import { TokenManager } from '../../src/session/token-manager.js';
import { FileCredentialStore } from '../../src/store/file-credential-store.js';
import { tempHome } from '../helpers/bed.js';
import { asRecord, type HostileServer, startHostileServer } from '../helpers/hostile-server.js';

/** Time that moves only when the test says, and timers that run only when the test says. */
class TestClock implements Clock {
  private timers: Array<{ at: number; fn: () => void }> = [];
  constructor(public time: number) {}
  now(): number {
    return this.time;
  }
  setTimer(fn: () => void, ms: number): () => void {
    const timer = { at: this.time + Math.max(0, ms), fn };
    this.timers.push(timer);
    return () => {
      this.timers = this.timers.filter((t) => t !== timer);
    };
  }
  /** Instants of the pending timers. */
  pending(): number[] {
    return this.timers.map((t) => t.at);
  }
  /** Run every timer due by now, in order. */
  runDue(): void {
    for (;;) {
      const due = this.timers.filter((t) => t.at <= this.time).sort((a, b) => a.at - b.at)[0];
      if (!due) return;
      this.timers = this.timers.filter((t) => t !== due);
      due.fn();
    }
  }
}

/** A JWT-shaped access token (the manager never checks signatures: the server does). */
function jwt(expSeconds: number, n: number): string {
  const part = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  return `${part({ alg: 'none' })}.${part({ exp: expSeconds, jti: n })}.sig`;
}

interface Rig {
  server: HostileServer;
  url: string;
  clock: TestClock;
  events: LogEvent[];
  manager: TokenManager;
  store: FileCredentialStore;
  refreshes(): number;
  /** Resolves at the first log event after which `condition` holds. */
  when(condition: () => boolean): Promise<void>;
}

/** A stored record whose access token is due, a hostile token endpoint, a manager on a test clock. */
async function rig(
  t: TestContext,
  mode: RefreshMode,
  answer: (n: number, clock: TestClock) => Record<string, unknown>,
  onEvent: (e: LogEvent, r: Rig) => void = () => {},
): Promise<Rig> {
  const server = await startHostileServer();
  t.after(() => server.close());
  const url = `${server.url}/mcp`;
  const clock = new TestClock(Date.now());
  let n = 0;
  server.on('POST', '/token', () => ({ json: answer(++n, clock) }));
  const store = new FileCredentialStore({ home: await tempHome(t) });
  await store.transaction(url, 'write', async (tx) => {
    await tx.write({
      version: 1,
      serverUrl: url,
      generation: 0,
      resource: url,
      authorizationServer: asRecord(server.url),
      registration: {
        issuer: server.url,
        clientId: 'client-1',
        method: 'dynamic',
        tokenEndpointAuthMethod: 'none',
        redirectUris: [],
        registeredAt: new Date(clock.time).toISOString(),
      },
      tokens: {
        accessToken: 'access-0',
        tokenType: 'Bearer',
        obtainedAt: clock.time - 3_600_000,
        expiresAt: clock.time - 1_000,
        refreshToken: 'refresh-0',
        clientId: 'client-1',
        issuer: server.url,
      },
      updatedAt: new Date(clock.time).toISOString(),
    });
  });
  const events: LogEvent[] = [];
  const waiters: Array<() => boolean> = [];
  const r: Rig = {
    server,
    url,
    clock,
    events,
    store,
    refreshes: () => server.requestsTo('POST', '/token').length,
    when: (condition) =>
      new Promise<void>((resolve) => {
        waiters.push(() => {
          if (!condition()) return false;
          resolve();
          return true;
        });
      }),
    manager: undefined as unknown as TokenManager,
  };
  r.manager = new TokenManager({
    store,
    http: () => ({ allowInsecureLoopback: true, timeoutMs: 10_000 }),
    logger: new Logger((e) => {
      events.push(e);
      onEvent(e, r);
      for (const waiter of [...waiters]) if (waiter()) waiters.splice(waiters.indexOf(waiter), 1);
    }),
    refreshMode: mode,
    transientRetryDelaysMs: [],
    clock,
  });
  return r;
}

/** Let every settled promise's reactions run (no timers involved). */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

test('a JWT exp in the past with expires_in 3600: ten getAccessToken calls make one refresh, not ten', async (t) => {
  const r = await rig(t, 'on-demand', (n, clock) => ({
    access_token: jwt(Math.floor(clock.time / 1000) - 60, n), // the AS's clock is a minute and more behind
    token_type: 'Bearer',
    expires_in: 3600,
    refresh_token: `refresh-${n}`,
  }));
  const served = new Set<string>();
  for (let i = 0; i < 10; i++) served.add(await r.manager.getAccessToken(r.url));
  assert.equal(r.refreshes(), 1, 'one refresh for ten calls');
  assert.equal(served.size, 1, 'the one refreshed token served ten times');
  const read = await r.store.read(r.url);
  assert.ok(read.kind === 'ok' && read.record.tokens?.expiresAt !== undefined);
  assert.ok(
    read.record.tokens.expiresAt >= r.clock.time + 3_598_000,
    'expiry from expires_in, not from the inconsistent exp',
  );
});

test('an exp consistent with expires_in is still believed: it may shorten the expiry by the truncated second', async (t) => {
  const r = await rig(t, 'on-demand', (n, clock) => ({
    access_token: jwt((clock.time + 3_600_000 - 700) / 1000, n),
    token_type: 'Bearer',
    expires_in: 3600,
  }));
  await r.manager.getAccessToken(r.url);
  const read = await r.store.read(r.url);
  assert.ok(read.kind === 'ok');
  assert.equal(read.record.tokens?.expiresAt, r.clock.time + 3_600_000 - 700);
});

test('a broken AS answering expires_in 0: one server is refreshed at most once per minimum interval', async (t) => {
  const r = await rig(t, 'on-demand', (n) => ({
    access_token: `access-${n}`,
    token_type: 'Bearer',
    expires_in: 0,
    refresh_token: `refresh-${n}`,
  }));
  for (let i = 0; i < 10; i++) await r.manager.getAccessToken(r.url);
  assert.equal(r.refreshes(), 1, 'ten calls at one instant: one refresh');
  r.clock.time += MIN_REFRESH_INTERVAL_MS - 1;
  await r.manager.getAccessToken(r.url);
  assert.equal(r.refreshes(), 1, 'still inside the minimum interval');
  r.clock.time += 1;
  await r.manager.getAccessToken(r.url);
  assert.equal(r.refreshes(), 2, 'the next refresh once the interval has passed');
});

test('keep-fresh with an exp in the past: one refresh, then the timer chain goes on, next refresh just before expiry', async (t) => {
  const r = await rig(t, 'keep-fresh', (n, clock) => ({
    access_token: jwt(Math.floor(clock.time / 1000) - 60, n),
    token_type: 'Bearer',
    expires_in: 3600,
    refresh_token: `refresh-${n}`,
  }));
  await r.manager.getAccessToken(r.url);
  await settle();
  assert.equal(r.refreshes(), 1);
  const [next, ...more] = r.clock.pending();
  assert.equal(more.length, 0, 'one timer');
  assert.ok(next !== undefined && next > r.clock.time + 3_500_000, `next refresh near expiry, not at once (${next})`);

  r.clock.time = next;
  const refreshed = r.when(() => r.events.filter((e) => e.event === 'refresh.ok').length === 2);
  r.clock.runDue();
  await refreshed;
  await settle();
  assert.equal(r.refreshes(), 2, 'the timer refreshed');
  assert.equal(r.clock.pending().length, 1, 'and set the next timer');
});

test('keep-fresh: a timer that fires while the refresh that set it is still finishing joins it, and the chain goes on', async (t) => {
  let stalled = false;
  const r = await rig(
    t,
    'keep-fresh',
    (n) => ({ access_token: `access-${n}`, token_type: 'Bearer', expires_in: 3600, refresh_token: `refresh-${n}` }),
    (e, rig) => {
      // Just before the refresh sets its timer, the process stalls past the due instant (a
      // suspended laptop): that timer is due at once and fires before the refresh has finished
      // (released its lock), so it joins that refresh instead of starting one.
      if (e.event !== 'refresh.ok' || stalled) return;
      stalled = true;
      rig.clock.time += 3_600_000;
      queueMicrotask(() => rig.clock.runDue());
    },
  );
  await r.manager.getAccessToken(r.url);
  await settle();
  assert.equal(r.refreshes(), 1, 'the timer joined the running refresh');
  assert.equal(r.clock.pending().length, 1, 'a timer is set again after the joined refresh');
});
