/**
 * Attack class: locks and limits. A lock file says who holds it and for how long; an
 * authorization server says how much it sends and which redirect URIs it registered; a browser
 * decides which address `localhost` is. What must NOT happen: a forged lock file (a live pid, huge
 * or future limits) blocking refresh or sign-in for ever; a waiter taking over the refresh lock
 * while the holder's refresh request is still in flight (the same refresh token spent twice); a
 * holder that lost its lock writing under it; a revocation error body read without limit; a
 * registration kept with redirect URIs the AS swapped in; a `localhost` callback port on [::1]
 * left for another process to take. Real lock files, real hostile HTTP servers, real sockets.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { chmod, mkdir, readdir, utimes, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { hostname } from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { type TestContext, test } from 'node:test';
import type { CliDeps } from '../../src/cli/deps.js';
import { runCli } from '../../src/cli/program.js';
import { AuthKeeper, AuthkeepError, NeedsAuthError } from '../../src/index.js';
import { startLoopbackCallback } from '../../src/oauth/loopback-callback.js';
import { revokeToken } from '../../src/oauth/revocation.js';
import { canonicalServerUrl } from '../../src/session/canonical-url.js';
import { SessionKeeper } from '../../src/session/session-keeper.js';
import { FileCredentialStore } from '../../src/store/file-credential-store.js';
import { acquireLock } from '../../src/store/lock.js';
import { recordKey, storeLayout } from '../../src/store/paths.js';
import { BufferWriter } from '../helpers/cli-fakes.js';
import { asRecord } from '../helpers/hostile-server.js';
import { type HostileWorld, hostileWorld } from '../helpers/hostile-world.js';
import { editRecord, expireStoredTokens, readRecord } from '../helpers/records.js';

/** Signed in to a hostile world whose access token has expired (the next call refreshes). */
async function dueForRefresh(t: TestContext): Promise<HostileWorld> {
  const w = await hostileWorld(t);
  await new AuthKeeper({ home: w.home, allowInsecureLoopback: true, openAuthorizationUrl: w.approve() }).login(
    w.mcpUrl,
  );
  await expireStoredTokens(w.home, w.mcpUrl);
  return w;
}

/** Plant a lock file naming this very process (alive) as the holder, with `fields` on top. */
async function forgeLock(home: string, serverUrl: string, purpose: 'refresh' | 'login', fields = {}): Promise<string> {
  const layout = storeLayout(home);
  await mkdir(layout.locksDir, { recursive: true, mode: 0o700 });
  const file = path.join(layout.locksDir, `${layout.lockName(recordKey(canonicalServerUrl(serverUrl)), purpose)}.lock`);
  await writeFile(
    file,
    JSON.stringify({
      pid: process.pid,
      hostname: hostname(),
      nonce: '0123456789abcdef',
      acquiredAt: new Date().toISOString(),
      purpose,
      staleMs: 1e12,
      maxHoldMs: 1e12,
      ...fields,
    }),
    { mode: 0o600 },
  );
  await chmod(layout.locksDir, 0o700);
  return file;
}

function refreshes(w: HostileWorld): number {
  return w.server.requestsTo('POST', '/token').filter((r) => r.form.get('grant_type') === 'refresh_token').length;
}

test('a forged refresh lock (live pid, limits of 30 years, silent) is taken over within the capped bound', async (t) => {
  const w = await dueForRefresh(t);
  await forgeLock(w.home, w.mcpUrl, 'refresh');
  const keeper = new AuthKeeper({
    home: w.home,
    allowInsecureLoopback: true,
    store: new FileCredentialStore({ home: w.home, locks: { refresh: { staleMs: 200, timeoutMs: 5_000 } } }),
  });
  assert.equal(await keeper.getAccessToken(w.mcpUrl), 'access-token-1', 'the refresh went through');
  assert.equal(refreshes(w), 1);
});

test('a forged refresh lock kept fresh by a live forger is taken over after the capped max hold', async (t) => {
  const w = await dueForRefresh(t);
  const file = await forgeLock(w.home, w.mcpUrl, 'refresh');
  const beat = setInterval(() => {
    const now = new Date();
    void utimes(file, now, now).catch(() => undefined);
  }, 20);
  t.after(() => clearInterval(beat));
  const keeper = new AuthKeeper({
    home: w.home,
    allowInsecureLoopback: true,
    store: new FileCredentialStore({
      home: w.home,
      locks: { refresh: { staleMs: 10_000, maxHoldMs: 300, timeoutMs: 5_000 } },
    }),
  });
  assert.equal(await keeper.getAccessToken(w.mcpUrl), 'access-token-1');
  assert.equal(refreshes(w), 1);
});

test('a forged sign-in lock stamped an hour in the future does not block login', async (t) => {
  const w = await hostileWorld(t);
  const future = new Date(Date.now() + 3_600_000);
  const file = await forgeLock(w.home, w.mcpUrl, 'login', { acquiredAt: future.toISOString() });
  await utimes(file, future, future);
  let tabs = 0;
  const approve = w.approve();
  const keeper = new AuthKeeper({
    home: w.home,
    allowInsecureLoopback: true,
    loginTimeoutMs: 3_000,
    openAuthorizationUrl: async (url) => {
      tabs++;
      await approve(url);
    },
  });
  const status = await keeper.login(w.mcpUrl);
  assert.equal(status.state, 'ok');
  assert.equal(tabs, 1);
});

test('a holder whose lock was taken over finds out before it writes: lock_lost, the record unchanged', async (t) => {
  const w = await dueForRefresh(t);
  const url = canonicalServerUrl(w.mcpUrl);
  const before = await readRecord(w.home, url);
  const store = new FileCredentialStore({ home: w.home });
  const layout = storeLayout(w.home);
  const lockName = layout.lockName(recordKey(url), 'refresh');
  await assert.rejects(
    store.transaction(
      url,
      'refresh',
      async (tx) => {
        const read = await tx.read();
        assert.equal(read.kind, 'ok');
        // Another process takes the lock over once our max hold has passed (we were paused).
        const taker = await acquireLock(layout.locksDir, lockName, { maxHoldMs: 200, timeoutMs: 5_000 });
        try {
          if (read.kind === 'ok') await tx.write({ ...read.record, lastRefreshAt: Date.now() });
        } finally {
          await taker.release();
        }
      },
      { maxHoldMs: 200 },
    ),
    (err: unknown) => err instanceof AuthkeepError && err.code === 'lock_lost' && err.field === 'lock',
  );
  assert.equal((await readRecord(w.home, url)).generation, before.generation, 'nothing was written');
});

test('doctor calls a forged lock stale exactly when the next command would take it over', async (t) => {
  const w = await hostileWorld(t);
  // Taken an hour ago, heartbeating now, promising to stay for 30 years: past 4x the refresh max hold.
  await forgeLock(w.home, w.mcpUrl, 'refresh', { acquiredAt: new Date(Date.now() - 3_600_000).toISOString() });
  const stdout = new BufferWriter();
  const deps: CliDeps = {
    stdout,
    stderr: new BufferWriter(),
    stdin: new PassThrough(),
    env: { AUTHKEEP_HOME: w.home },
    createKeeper: (options) => new SessionKeeper(options),
    fetch: (input, init) => globalThis.fetch(input, init),
    now: () => Date.now(),
  };
  assert.equal(await runCli(['doctor', '--json'], deps), 1);
  const report = JSON.parse(stdout.text) as { checks: Array<{ check: string; status: string; message: string }> };
  const lock = report.checks.find((c) => c.check === 'lock');
  assert.equal(lock?.status, 'fail', JSON.stringify(lock));
  assert.match(lock?.message ?? '', /held longer than its bound/);
  // And the next command does take it over.
  const keeper = new AuthKeeper({ home: w.home, allowInsecureLoopback: true, openAuthorizationUrl: w.approve() });
  assert.equal((await keeper.login(w.mcpUrl)).state, 'ok');
});

/** A token endpoint that never answers, counting requests in flight at once. */
async function hangingTokenEndpoint(
  t: TestContext,
): Promise<{ url: string; received: () => number; maxInFlight: () => number; first: Promise<unknown> }> {
  let inFlight = 0;
  let max = 0;
  let received = 0;
  const server: Server = createServer((req) => {
    received++;
    inFlight++;
    max = Math.max(max, inFlight);
    req.socket.once('close', () => inFlight--);
    server.emit('arrived');
  });
  const first = once(server, 'arrived');
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}/token`, received: () => received, maxInFlight: () => max, first };
}

test('a refresh is bounded by the lock max hold: a waiter never sends the same refresh token while the holder request is in flight', async (t) => {
  const w = await dueForRefresh(t);
  const endpoint = await hangingTokenEndpoint(t);
  await editRecord(w.home, w.mcpUrl, (record) => ({
    ...record,
    authorizationServer: asRecord(w.origin, { token_endpoint: endpoint.url }),
  }));
  // Two processes (each keeper has its own single-flight), an AS that never answers: without a
  // bound, each refresh would keep its request open for the 3 s timeout, 4 times.
  const keeper = () =>
    new AuthKeeper({
      home: w.home,
      allowInsecureLoopback: true,
      httpTimeoutMs: 3_000,
      transientRetryDelaysMs: [20, 20, 20],
      store: new FileCredentialStore({
        home: w.home,
        locks: { refresh: { staleMs: 10_000, maxHoldMs: 600, timeoutMs: 30_000 } },
      }),
    });
  const a = keeper().getAccessToken(w.mcpUrl);
  await endpoint.first;
  const b = keeper().getAccessToken(w.mcpUrl);
  const results = await Promise.allSettled([a, b]);
  for (const r of results) {
    assert.equal(r.status, 'rejected');
    const err = (r as PromiseRejectedResult).reason;
    assert.ok(err instanceof NeedsAuthError && err.reason === 'as_unreachable', String(err));
  }
  assert.ok(endpoint.received() >= 2, 'both processes tried');
  assert.equal(endpoint.maxInFlight(), 1, 'never two refresh requests in flight at once');
});

/** An AS whose revocation endpoint answers 400 with a JSON error that never ends. */
async function endlessErrorBody(t: TestContext): Promise<{ url: string; closed: Promise<unknown> }> {
  let closedResolve!: () => void;
  const closed = new Promise<void>((resolve) => {
    closedResolve = resolve;
  });
  const server = createServer((req, res) => {
    req.resume();
    res.writeHead(400, { 'content-type': 'application/json' });
    res.write('{"error":"invalid_request","error_description":"');
    const chunk = 'A'.repeat(16 * 1024);
    const pump = (): void => {
      while (!res.destroyed && res.write(chunk)) {
        // keep the socket buffer full
      }
      if (!res.destroyed) res.once('drain', pump);
    };
    res.once('close', () => closedResolve());
    pump();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}`, closed };
}

test('a revocation error body that never ends is read up to its limit, not to the timeout', async (t) => {
  const as = await endlessErrorBody(t);
  const registration = {
    issuer: as.url,
    clientId: 'client-1',
    method: 'dynamic' as const,
    tokenEndpointAuthMethod: 'none' as const,
    redirectUris: [],
    registeredAt: new Date().toISOString(),
  };
  await assert.rejects(
    revokeToken(asRecord(as.url, { revocation_endpoint: `${as.url}/revoke` }), registration, 'rt-1', 'refresh_token', {
      allowInsecureLoopback: true,
      timeoutMs: 20_000,
    }),
    (err: unknown) => {
      assert.ok(err instanceof AuthkeepError, String(err));
      assert.equal(err.code, 'as_error', `not a timeout: ${err.message}`);
      assert.match(err.message, /HTTP 400 with an error body over \d+ bytes/);
      return true;
    },
  );
  await as.closed; // the client let go of the connection
});

test('a registration answer with redirect_uris the AS swapped in is refused: nothing kept, no browser', async (t) => {
  const w = await hostileWorld(t);
  w.server.on('POST', '/register', {
    status: 201,
    json: {
      client_id: 'client-1',
      token_endpoint_auth_method: 'none',
      redirect_uris: ['https://attacker.example/callback'],
    },
  });
  let tabs = 0;
  const keeper = new AuthKeeper({
    home: w.home,
    allowInsecureLoopback: true,
    openAuthorizationUrl: async () => {
      tabs++;
    },
  });
  await assert.rejects(
    keeper.login(w.mcpUrl),
    (err: unknown) =>
      err instanceof AuthkeepError && err.code === 'registration_failed' && err.field === 'redirect_uris',
  );
  assert.equal(tabs, 0, 'no sign-in with that client');
  const kept = await readdir(storeLayout(w.home).registrationsDir).catch(() => []);
  assert.deepEqual(kept, [], 'no registration kept');
});

test('a registration answer adding a redirect URI to the one sent is refused too', async (t) => {
  const w = await hostileWorld(t);
  w.server.on('POST', '/register', (req) => ({
    status: 201,
    json: {
      client_id: 'client-1',
      token_endpoint_auth_method: 'none',
      redirect_uris: [...((req.json as { redirect_uris: string[] }).redirect_uris ?? []), 'http://127.0.0.1:1/cb'],
    },
  }));
  const keeper = new AuthKeeper({ home: w.home, allowInsecureLoopback: true, openAuthorizationUrl: w.approve() });
  await assert.rejects(
    keeper.login(w.mcpUrl),
    (err: unknown) => err instanceof AuthkeepError && err.field === 'redirect_uris',
  );
});

/** Whether this host can listen on [::1] at all. */
function ipv6Loopback(): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createNetServer();
    probe.once('error', () => resolve(false));
    probe.listen(0, '::1', () => probe.close(() => resolve(true)));
  });
}

test('--host localhost: a browser resolving localhost to ::1 reaches the callback', async (t) => {
  if (!(await ipv6Loopback())) return t.skip('no IPv6 loopback on this host');
  const cb = await startLoopbackCallback({ expectedState: 'state-1', host: 'localhost', timeoutMs: 10_000 });
  t.after(() => cb.close());
  const response = await fetch(`http://[::1]:${cb.address.port}/callback?code=c&state=state-1`);
  await response.text();
  assert.equal(response.status, 200);
  assert.equal((await cb.result).get('code'), 'c');
});

test('--host localhost with a port another process holds on ::1: refused, not half-listening', async (t) => {
  if (!(await ipv6Loopback())) return t.skip('no IPv6 loopback on this host');
  // Another local process got to [::1]:port first; a browser trying ::1 would hand it the code.
  const squatter = createNetServer();
  await new Promise<void>((resolve) => squatter.listen(0, '::1', resolve));
  t.after(() => squatter.close());
  const { port } = squatter.address() as { port: number };
  await assert.rejects(
    startLoopbackCallback({ expectedState: 'state-1', host: 'localhost', port }),
    (err: unknown) => err instanceof AuthkeepError && err.field === 'callback.port' && /\[::1\]/.test(err.message),
  );
  // An ephemeral port is picked where both are free instead.
  const cb = await startLoopbackCallback({ expectedState: 'state-1', host: 'localhost', timeoutMs: 10_000 });
  t.after(() => cb.close());
  assert.notEqual(cb.address.port, port);
});
