/**
 * DPoP through the SDK adapters and the proxy's fetch: real SDK Clients (@modelcontextprotocol/sdk
 * 1.x with the provider's `fetch`, @modelcontextprotocol/client 2.x with the provider's dpop())
 * against a server that requires DPoP-bound tokens and its nonce, and checks every proof itself.
 * Without the proof the same SDK setup is refused, so the proofs are what let the calls through.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  Client as ClientV2,
  StreamableHTTPClientTransport as StreamableHTTPClientTransportV2,
} from '@modelcontextprotocol/client';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { authProviderV2 } from '../../src/sdk-v2.js';
import { jwtExpiresAt, startBed, untilPast } from '../helpers/bed.js';
import { resultText } from '../helpers/mcp-proxy-client.js';

async function dpopBed(t: Parameters<typeof startBed>[0]) {
  const bed = await startBed(t, {
    as: { dpop: { requireNonce: true }, accessTokenTtlSeconds: 2 },
    servers: [{ discovery: 'header', dpop: { required: true, nonce: true } }],
  });
  const server = bed.servers[0];
  assert.ok(server);
  const keeper = bed.keeper();
  t.after(() => keeper.close());
  await keeper.login(server.url);
  assert.equal((await keeper.getToken(server.url)).tokenType, 'DPoP');
  return { bed, server, keeper };
}

test('SDK 1.x: keeper.authProvider() with its fetch presents the DPoP-bound token with a proof (nonce retried), across an expiry', async (t) => {
  const { server, keeper } = await dpopBed(t);
  const provider = keeper.authProvider(server.url);
  assert.equal((await provider.tokens())?.token_type, 'DPoP');
  const client = new Client({ name: 'authkeep-test', version: '0.0.0' });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(server.url), { authProvider: provider, fetch: provider.fetch }),
  );
  t.after(() => client.close());
  assert.equal(resultText(await client.callTool({ name: 'echo', arguments: { text: 'one' } })), 'one');
  await untilPast(jwtExpiresAt(await keeper.getAccessToken(server.url)));
  assert.equal(resultText(await client.callTool({ name: 'echo', arguments: { text: 'two' } })), 'two');
  const seen = server.dpopCounts();
  assert.ok(seen.dpopAccepted >= 3, `proofs accepted: ${seen.dpopAccepted}`);
  assert.ok(seen.dpopNonceChallenges >= 1, 'the server asked for its nonce and got it');
  assert.deepEqual(seen.dpopRefused, {});
});

test('SDK 1.x without the provider fetch: the transport writes Bearer and the DPoP server refuses it', async (t) => {
  const { server, keeper } = await dpopBed(t);
  const provider = keeper.authProvider(server.url, { interactive: false });
  const client = new Client({ name: 'authkeep-test', version: '0.0.0' });
  await assert.rejects(
    client.connect(new StreamableHTTPClientTransport(new URL(server.url), { authProvider: provider })),
  );
  assert.equal(server.dpopCounts().dpopAccepted, 0);
});

test("SDK 2.x: authProviderV2() implements dpop(): 2.x's transport signs the proofs with the stored key (nonce retried), across an expiry", async (t) => {
  const { server, keeper } = await dpopBed(t);
  const provider = authProviderV2(keeper, server.url);
  const session = await provider.dpop();
  assert.ok(session, 'a DPoP session for DPoP-bound tokens');
  const client = new ClientV2({ name: 'authkeep-test', version: '0.0.0' });
  await client.connect(new StreamableHTTPClientTransportV2(new URL(server.url), { authProvider: provider }));
  t.after(() => client.close());
  assert.equal(resultText(await client.callTool({ name: 'echo', arguments: { text: 'one' } })), 'one');
  await untilPast(jwtExpiresAt(await keeper.getAccessToken(server.url)));
  assert.equal(resultText(await client.callTool({ name: 'echo', arguments: { text: 'two' } })), 'two');
  const seen = server.dpopCounts();
  assert.ok(seen.dpopAccepted >= 2, `proofs accepted: ${seen.dpopAccepted}`);
  assert.ok(seen.dpopNonceChallenges >= 1);
  assert.deepEqual(seen.dpopRefused, {});
  assert.equal((await provider.dpop())?.thumbprint, session.thumbprint, 'one key for the grant');
});
