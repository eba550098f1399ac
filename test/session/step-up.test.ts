/**
 * The step-up bound (AuthKeeperOptions.maxStepUps, src/session/authenticated-fetch.ts) actually
 * reached: a real protected MCP server whose tool demands `mcp:admin`, in front of the real
 * oidc-provider that will never grant `mcp:admin` for that resource (the resource only has
 * `mcp:read`), so the server keeps answering 403 insufficient_scope however often the user
 * re-authorizes. The exact number of re-authorizations (browser tabs, authorization requests at the
 * AS, 403s at the server) and the error are asserted for the default bound and for others, and for
 * a second request, which the server's step-up budget (sign-in-gate.ts) bounds as well.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AuthKeeper, AuthkeepError } from '../../src/index.js';
import { callTool, startBed, tempHome } from '../helpers/bed.js';
import { challenge401, forbidden403, type Policy, rpc, scopedWorld } from '../helpers/scoped-world.js';

for (const maxStepUps of [undefined, 0, 1, 3]) {
  const bound = maxStepUps ?? 2;
  test(`a server that keeps answering 403 insufficient_scope: exactly ${bound} re-authorization(s)${maxStepUps === undefined ? ' (the default)' : ''}, then step_up_exhausted`, async (t) => {
    // A pre-registered client may ask for any scope the AS knows; the resource grants mcp:read only.
    const bed = await startBed(t, {
      as: {
        staticClients: [
          {
            client_id: 'pre-registered',
            token_endpoint_auth_method: 'none',
            redirect_uris: ['http://127.0.0.1/callback'],
            application_type: 'native',
          },
        ],
      },
      servers: [{ discovery: 'header', scopesSupported: ['mcp:read'] }],
    });
    const server = bed.servers[0]!;
    const keeper = bed.keeper({
      staticClients: { [bed.as.issuer]: { clientId: 'pre-registered', tokenEndpointAuthMethod: 'none' } },
      ...(maxStepUps === undefined ? {} : { maxStepUps }),
    });
    await keeper.login(server.url);
    assert.equal(bed.robotOpens(), 1);
    const before = { authorize: bed.as.audit.counts().authorizationRequests, server: server.counts() };

    await assert.rejects(
      callTool(keeper.fetch(server.url), server.url, 'admin_echo', { text: 'root' }),
      (err: unknown) => {
        assert.ok(err instanceof AuthkeepError, String(err));
        assert.equal(err.code, 'step_up_exhausted', err.message);
        assert.equal(err.field, 'scope');
        assert.deepEqual(err.detail, { demanded: 'mcp:read mcp:admin' });
        assert.equal(
          err.message,
          `${server.url} still answers 403 insufficient_scope after ${bound} re-authorization(s)`,
        );
        return true;
      },
    );

    assert.equal(bed.robotOpens() - 1, bound, 'browser tabs opened for re-authorization');
    const authorize = bed.as.audit
      .http()
      .filter((e) => e.endpoint === 'authorization')
      .slice(1);
    assert.equal(authorize.length, bound, 'authorization requests the AS received for re-authorization');
    for (const request of authorize)
      assert.deepEqual(
        request.query.scope?.[0]?.split(' ').sort(),
        ['mcp:admin', 'mcp:read', 'offline_access'],
        'each asks for the union',
      );
    assert.equal(bed.as.audit.counts().authorizationRequests - before.authorize, bound);
    const counts = server.counts();
    assert.equal(
      counts.forbidden - before.server.forbidden,
      bound + 1,
      'the first attempt and one per re-authorization',
    );
    assert.equal(counts.toolCalls - before.server.toolCalls, 0, 'the tool never ran');
    assert.equal((await keeper.status(server.url))[0]?.scope?.includes('mcp:admin'), false, 'never granted');
    // The bound is per request; across requests the server's step-ups share a budget (default 3
    // per 10 minutes, src/session/sign-in-gate.ts): the next request steps up at most as often as
    // both allow, then ends with step_up_exhausted too.
    await assert.rejects(
      callTool(keeper.fetch(server.url), server.url, 'admin_echo', { text: 'again' }),
      (err: unknown) => err instanceof AuthkeepError && err.code === 'step_up_exhausted',
    );
    assert.equal(bed.robotOpens() - 1, Math.min(2 * bound, 3), 'both requests together');
  });
}

test('a step-up the AS refuses (the registration does not allow the scope) ends at the first refusal with the AS’s error', async (t) => {
  // Dynamic registration asked for the PRM's scopes (mcp:read): the AS refuses mcp:admin for it.
  const bed = await startBed(t, { servers: [{ discovery: 'header', scopesSupported: ['mcp:read'] }] });
  const server = bed.servers[0]!;
  const keeper = bed.keeper();
  await keeper.login(server.url);
  await assert.rejects(
    callTool(keeper.fetch(server.url), server.url, 'admin_echo', { text: 'root' }),
    (err: unknown) => {
      assert.ok(err instanceof AuthkeepError, String(err));
      assert.equal(err.code, 'authorization_denied');
      assert.equal(err.message, 'authorization server answered invalid_scope: requested scope is not allowed');
      return true;
    },
  );
  assert.equal(bed.robotOpens(), 2, 'one sign-in, one refused re-authorization, no more');
  assert.equal(server.counts().forbidden, 1);
});

/**
 * SEP-2350 against a server scripted like the MCP conformance suite's auth/scope-step-up:
 * `initialize` needs no token, anything else without one is answered 401 scope="mcp:basic",
 * tools/list needs mcp:basic and tools/call mcp:write, whose 403 names only mcp:write.
 */
const conformanceLikePolicy: Policy = (method, grant, world) => {
  if (method === 'initialize' || method.startsWith('notifications/')) return undefined;
  if (grant === undefined) return challenge401(world, 'mcp:basic');
  const needed = method === 'tools/call' ? 'mcp:write' : 'mcp:basic';
  return grant.scopes.includes(needed) ? undefined : forbidden403(world, needed);
};

test('the first authorization asks for the scope of the 401 challenge, even where initialize needs no token (SEP-2350)', async (t) => {
  const world = await scopedWorld(t, conformanceLikePolicy, { scopesSupported: ['mcp:profile'] });
  const keeper = new AuthKeeper({
    home: await tempHome(t),
    allowInsecureLoopback: true,
    openAuthorizationUrl: world.open,
  });
  await keeper.login(world.mcpUrl);
  assert.deepEqual(world.authorizations, [
    { issuer: world.ases[0]?.issuer, clientId: 'as1-client', scope: 'mcp:basic' },
  ]);
  const listed = await rpc(keeper.fetch(world.mcpUrl), world.mcpUrl, 'tools/list');
  assert.equal(listed.status, 200, 'the granted scope is the one tools/list needs');
  await listed.body?.cancel();
});

test('a step-up asks for the challenged scope first, then every scope already granted (SEP-2350 union)', async (t) => {
  const world = await scopedWorld(t, conformanceLikePolicy, { scopesSupported: ['mcp:profile'] });
  const keeper = new AuthKeeper({
    home: await tempHome(t),
    allowInsecureLoopback: true,
    openAuthorizationUrl: world.open,
  });
  await keeper.login(world.mcpUrl);
  const fetchFn = keeper.fetch(world.mcpUrl);
  const called = await rpc(fetchFn, world.mcpUrl, 'tools/call');
  assert.equal(called.status, 200, 'the request that needed more scope went through after one step-up');
  await called.body?.cancel();
  assert.deepEqual(
    world.authorizations.map((a) => a.scope),
    ['mcp:basic', 'mcp:write mcp:basic'],
    'the challenge (mcp:write) first, then the granted mcp:basic the challenge did not repeat',
  );
  const listed = await rpc(fetchFn, world.mcpUrl, 'tools/list');
  assert.equal(listed.status, 200, 'nothing granted before was lost');
  await listed.body?.cancel();
  assert.equal(world.authorizations.length, 2, 'no further authorization');
});
