/**
 * Authorization-server migration (SEP-2352; MCP "Authorization Server Binding"): a server whose
 * protected resource metadata moves it to another authorization server, against tiny real HTTP
 * servers (scoped-world.ts) scripted like the MCP conformance suite's
 * auth/authorization-server-migration: the old AS issues no refresh token and the server refuses
 * its tokens once it has moved. Asserted: the needs-auth reason (`issuer_changed`, both issuers
 * named), that the next sign-in discovers afresh and registers at the new AS, that nothing of the
 * old AS's registration reaches the new one, and that a pre-registered client is never presented
 * to an AS other than its own.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AuthKeeper, AuthkeepError, NeedsAuthError } from '../../src/index.js';
import { tempHome } from '../helpers/bed.js';
import { challenge401, type Policy, rpc, type ScopedWorld, scopedWorld } from '../helpers/scoped-world.js';

/** Only tokens of the AS the PRM names now are accepted. */
const currentAsOnly: Policy = (_method, grant, world) =>
  grant?.issuer === world.current().issuer ? undefined : challenge401(world, 'mcp:basic');

function keeperFor(world: ScopedWorld, home: string, extra: ConstructorParameters<typeof AuthKeeper>[0] = {}) {
  return new AuthKeeper({ home, allowInsecureLoopback: true, openAuthorizationUrl: world.open, ...extra });
}

/** Every request an AS received that carries `clientId` anywhere (path, query, body, Basic). */
function sightings(world: ScopedWorld, asIndex: number, clientId: string): string[] {
  return (world.ases[asIndex]?.server.requests ?? [])
    .filter((r) => `${r.path} ${r.body} ${r.headers.authorization ?? ''}`.includes(clientId))
    .map((r) => `${r.method} ${r.pathname}`);
}

test('a server moved to another AS: needs-auth issuer_changed naming both issuers, then the sign-in registers at the new AS', async (t) => {
  const world = await scopedWorld(t, currentAsOnly, { asCount: 2 });
  const [as1, as2] = world.ases as [ScopedWorld['ases'][0], ScopedWorld['ases'][0]];
  const keeper = keeperFor(world, await tempHome(t));
  await keeper.login(world.mcpUrl);
  const fetchFn = keeper.fetch(world.mcpUrl);
  const before = await rpc(fetchFn, world.mcpUrl, 'tools/list');
  assert.equal(before.status, 200);
  await before.body?.cancel();

  world.moveTo(as2);
  await assert.rejects(rpc(fetchFn, world.mcpUrl, 'tools/list'), (err: unknown) => {
    assert.ok(err instanceof NeedsAuthError, String(err));
    assert.equal(err.reason, 'issuer_changed');
    assert.ok(err.info.errorDescription?.includes(as2.issuer), 'names the new issuer');
    assert.ok(err.info.errorDescription?.includes(as1.issuer), 'names the old issuer');
    return true;
  });
  const [status] = await keeper.status(world.mcpUrl);
  assert.equal(status?.needsAuth?.reason, 'issuer_changed');

  const after = await keeper.login(world.mcpUrl);
  assert.equal(after.issuer, as2.issuer);
  assert.equal(after.clientId, 'as2-client');
  assert.equal(as2.server.requestsTo('POST', '/register').length, 1, 'registered at the new AS');
  assert.deepEqual(world.authorizations.at(-1), { issuer: as2.issuer, clientId: 'as2-client', scope: 'mcp:basic' });
  assert.deepEqual(sightings(world, 1, 'as1-client'), [], "the old AS's client_id never reached the new AS");
  const served = await rpc(fetchFn, world.mcpUrl, 'tools/list');
  assert.equal(served.status, 200, 'the same fetch goes on with the new grant');
  await served.body?.cancel();
});

test('a pre-registered client keyed by the server URL does not follow the server to another AS', async (t) => {
  const world = await scopedWorld(t, currentAsOnly, { asCount: 2 });
  const [as1, as2] = world.ases as [ScopedWorld['ases'][0], ScopedWorld['ases'][0]];
  const home = await tempHome(t);
  const keeper = keeperFor(world, home, {
    staticClients: { [world.mcpUrl]: { clientId: 'pre-registered-at-as1', tokenEndpointAuthMethod: 'none' } },
  });
  const first = await keeper.login(world.mcpUrl);
  assert.equal(first.clientId, 'pre-registered-at-as1');
  assert.equal(first.issuer, as1.issuer);

  world.moveTo(as2);
  await assert.rejects(rpc(keeper.fetch(world.mcpUrl), world.mcpUrl, 'tools/list'), { reason: 'issuer_changed' });
  await assert.rejects(keeper.login(world.mcpUrl), (err: unknown) => {
    assert.ok(err instanceof AuthkeepError, String(err));
    assert.equal(err.code, 'registration_failed');
    assert.equal(err.field, 'issuer');
    assert.equal(err.detail?.expected, as1.issuer);
    assert.equal(err.detail?.actual, as2.issuer);
    assert.match(err.message, /pre-registered client pre-registered-at-as1/);
    return true;
  });
  assert.equal(world.authorizations.length, 1, 'no authorization request at the new AS');
  assert.deepEqual(sightings(world, 1, 'pre-registered-at-as1'), [], 'the new AS never saw the client');
  assert.equal(as2.server.requestsTo('POST', '/register').length, 0);
  const [status] = await keeper.status(world.mcpUrl);
  assert.equal(status?.needsAuth?.reason, 'issuer_changed', 'the record still says why');

  // A client of the new AS, keyed by its issuer, is used there.
  const rekeyed = keeperFor(world, home, {
    staticClients: { [as2.issuer]: { clientId: 'pre-registered-at-as2', tokenEndpointAuthMethod: 'none' } },
  });
  const moved = await rekeyed.login(world.mcpUrl);
  assert.equal(moved.clientId, 'pre-registered-at-as2');
  assert.equal(moved.issuer, as2.issuer);
});

test('a pre-registered client naming its issuer is used only there, even on a first sign-in', async (t) => {
  const world = await scopedWorld(t, currentAsOnly, { asCount: 2 });
  const [as1, as2] = world.ases as [ScopedWorld['ases'][0], ScopedWorld['ases'][0]];
  world.moveTo(as2);
  const keeper = keeperFor(world, await tempHome(t), {
    staticClients: { [world.mcpUrl]: { clientId: 'pre-registered-at-as1', issuer: as1.issuer } },
  });
  await assert.rejects(keeper.login(world.mcpUrl), { code: 'registration_failed', field: 'issuer' });
  assert.deepEqual(world.authorizations, []);
  assert.deepEqual(sightings(world, 1, 'pre-registered-at-as1'), []);
});
