/**
 * Attack class: loops a hostile MCP server can drive. Its answers decide what authkeep does next:
 * a 403 insufficient_scope starts a re-authorization (a browser tab), a 401 a refresh (which spends
 * and rotates the refresh token) and, when the fresh token is refused too, a rediscovery. What
 * must NOT happen: a tab per request (a server demanding a new scope every time, or a step-up that
 * keeps failing), or a refresh and a rediscovery per request for a server that refuses every
 * token. A real hostile server plays the MCP server and its authorization server; time is an
 * injected clock.
 */
import assert from 'node:assert/strict';
import { type TestContext, test } from 'node:test';
import { AuthKeeper, AuthkeepError } from '../../src/index.js';
import type { Clock } from '../../src/session/clock.js';
import { type HostileWorld, hostileWorld } from '../helpers/hostile-world.js';

/** A clock whose time moves only when the test says (its timers are never needed here). */
function testClock(): Clock & { time: number } {
  return {
    time: Date.now(),
    now() {
      return this.time;
    },
    setTimer: () => () => {},
  };
}

interface Scenario {
  w: HostileWorld;
  keeper: AuthKeeper;
  clock: ReturnType<typeof testClock>;
  /** Browser tabs opened (authorization URLs handed to the opener). */
  tabs(): number;
  /** One MCP request through keeper.fetch; the response, or the error it threw. */
  request(): Promise<Response | Error>;
}

/** Signed in to a hostile world whose MCP endpoint answers authenticated requests with `answer`. */
async function signedIn(
  t: TestContext,
  answer: (n: number) => { status: number; headers?: Record<string, string>; body?: string },
  options: { approve?: boolean } = {},
): Promise<Scenario> {
  const w = await hostileWorld(t);
  let tabs = 0;
  let authenticated = 0;
  const clock = testClock();
  const approve = w.approve();
  let allowApproval = true;
  const keeper = new AuthKeeper({
    home: w.home,
    allowInsecureLoopback: true,
    clock,
    openAuthorizationUrl: async (url) => {
      tabs++;
      if (!allowApproval) throw new Error('the user closed the tab');
      await approve(url);
    },
  });
  await keeper.login(w.mcpUrl);
  allowApproval = options.approve !== false;
  w.server.on('POST', '/mcp', (req) =>
    req.headers.authorization === undefined
      ? {
          status: 401,
          headers: { 'www-authenticate': `Bearer resource_metadata="${w.origin}/prm", scope="mcp:read"` },
          body: '',
        }
      : { body: '', ...answer(++authenticated) },
  );
  const fetchMcp = keeper.fetch(w.mcpUrl);
  return {
    w,
    keeper,
    clock,
    tabs: () => tabs,
    request: () =>
      fetchMcp(w.mcpUrl, { method: 'POST', body: '{"jsonrpc":"2.0","id":1,"method":"ping"}' }).then(
        async (r) => {
          await r.text();
          return r;
        },
        (err: unknown) => {
          if (err instanceof Error) return err;
          throw err;
        },
      ),
  };
}

test('a server demanding a new scope on every request: ten requests open at most the per-server budget of tabs', async (t) => {
  const s = await signedIn(t, (n) => ({
    status: 403,
    headers: { 'www-authenticate': `Bearer error="insufficient_scope", scope="mcp:read extra-${n}"` },
  }));
  const before = s.tabs();
  const results = [];
  for (let i = 0; i < 10; i++) results.push(await s.request());
  const opened = s.tabs() - before;
  assert.ok(opened <= 3, `${opened} tabs for 10 requests; the budget is 3`);
  assert.ok(
    results.every((r) => r instanceof AuthkeepError && r.code === 'step_up_exhausted'),
    'each request ends in step_up_exhausted',
  );
});

test('a step-up that fails (the user closed the tab) is not retried per request', async (t) => {
  const s = await signedIn(
    t,
    () => ({ status: 403, headers: { 'www-authenticate': 'Bearer error="insufficient_scope", scope="mcp:write"' } }),
    { approve: false },
  );
  const before = s.tabs();
  for (let i = 0; i < 10; i++) assert.ok((await s.request()) instanceof Error, 'the request fails');
  assert.equal(s.tabs() - before, 1, 'one tab, then the failure is reported during the cool-down');
});

test('a server refusing every token, fresh ones too: ten requests cost one refresh and one rediscovery, then one more after the back-off', async (t) => {
  const s = await signedIn(t, () => ({
    status: 401,
    headers: { 'www-authenticate': 'Bearer error="invalid_token"' },
  }));
  const refreshes = () =>
    s.w.server.requestsTo('POST', '/token').filter((r) => r.form.get('grant_type') === 'refresh_token').length;
  // A rediscovery starts from the 401's challenge (no resource_metadata here), so it asks the
  // path-based well-known URI for the protected resource metadata (RFC 9728 section 3.1).
  const rediscoveries = () => s.w.server.requestsTo('GET', '/.well-known/oauth-protected-resource/mcp').length;
  const prmBefore = rediscoveries();
  for (let i = 0; i < 10; i++) {
    const r = await s.request();
    assert.ok(r instanceof Response && r.status === 401, 'the caller sees the server answer');
  }
  assert.equal(refreshes(), 1, 'one refresh token spent, not ten');
  assert.equal(rediscoveries() - prmBefore, 1, 'one rediscovery, not ten');

  s.clock.time += 10_000; // the first back-off has passed
  await s.request();
  assert.equal(refreshes(), 2, 'one more try after the back-off');
  await s.request();
  assert.equal(refreshes(), 2, 'and the back-off doubled');
});

test('while refreshing is backed off, a token another process stored is still adopted', async (t) => {
  let accept: string | undefined;
  const s = await signedIn(t, () => ({ status: 401 }));
  s.w.server.on('POST', '/mcp', (req) =>
    req.headers.authorization === `Bearer ${accept}` ? { body: 'ok' } : { status: 401, body: '' },
  );
  await s.request(); // refresh, still refused: backing off
  // Another process signs in again: a new token in the store.
  accept = 'access-token-from-another-process';
  s.w.server.on('POST', '/token', {
    json: { access_token: accept, token_type: 'Bearer', expires_in: 3600, refresh_token: 'refresh-other' },
  });
  await new AuthKeeper({ home: s.w.home, allowInsecureLoopback: true, openAuthorizationUrl: s.w.approve() }).login(
    s.w.mcpUrl,
  );
  const r = await s.request();
  assert.ok(r instanceof Response && r.status === 200, 'the stored token was adopted and accepted');
});
