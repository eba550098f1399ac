/**
 * The testbed's `preciseExpiry` options (added for the arena's compressed time): the AS gives JWT
 * access tokens a millisecond-precise `exp` (issuance + TTL), and a server started with the option
 * rejects a token from that instant on; without the options nothing changes.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { type TestContext, test } from 'node:test';

import {
  createRobotBrowser,
  type RunningAuthorizationServer,
  type RunningMcpServer,
  startAuthorizationServer,
  startLoopbackReceiver,
  startProtectedMcpServer,
} from '../../arena/testbed/index.js';
import { untilPast } from '../helpers/bed.js';

async function accessToken(
  t: TestContext,
  as: RunningAuthorizationServer,
  mcp: RunningMcpServer,
  ttlSeconds: number,
): Promise<{ token: string; requestedAt: number; receivedAt: number }> {
  const reg = await fetch(as.endpoints.registration, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      application_type: 'native',
      redirect_uris: ['http://127.0.0.1/callback'],
      grant_types: ['authorization_code', 'refresh_token'],
      token_endpoint_auth_method: 'none',
    }),
  });
  const clientId = ((await reg.json()) as { client_id: string }).client_id;
  const receiver = await startLoopbackReceiver();
  t.after(() => receiver.close());
  const verifier = randomBytes(32).toString('base64url');
  const url = new URL(as.endpoints.authorization);
  for (const [k, v] of Object.entries({
    response_type: 'code',
    client_id: clientId,
    redirect_uri: receiver.redirectUri,
    scope: 'mcp:read',
    code_challenge: createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
    resource: mcp.resource,
  }))
    url.searchParams.set(k, v);
  await createRobotBrowser().open(url.href);
  const code = (await receiver.waitForCallback()).get('code') ?? '';
  const requestedAt = Date.now();
  const res = await fetch(as.endpoints.token, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code,
      code_verifier: verifier,
      redirect_uri: receiver.redirectUri,
      client_id: clientId,
      resource: mcp.resource,
    }),
  });
  const json = (await res.json()) as { access_token: string; expires_in: number };
  assert.equal(json.expires_in, ttlSeconds);
  return { token: json.access_token, requestedAt, receivedAt: Date.now() };
}

function exp(token: string): number {
  return (JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as { exp: number }).exp;
}

async function call(mcp: RunningMcpServer, token: string): Promise<Response> {
  return fetch(mcp.url, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${token}`,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
    },
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'tools/call',
      params: { name: 'echo', arguments: { text: 'x' } },
    }),
  });
}

test('preciseExpiry: exp is issuance + TTL to the millisecond, and the server rejects the token from then on', async (t) => {
  // 3 s: the call that must be accepted has seconds to reach the server even on a saturated machine.
  const ttlMs = 3000;
  const as = await startAuthorizationServer({ accessTokenTtlSeconds: ttlMs / 1000, preciseExpiry: true });
  t.after(() => as.close());
  const mcp = await startProtectedMcpServer({ authorizationServer: as, preciseExpiry: true });
  t.after(() => mcp.close());
  const { token, requestedAt, receivedAt } = await accessToken(t, as, mcp, ttlMs / 1000);
  const expMs = exp(token) * 1000;
  assert.ok(
    expMs >= requestedAt + ttlMs && expMs <= receivedAt + ttlMs,
    `exp ${expMs} within [${requestedAt + ttlMs}, ${receivedAt + ttlMs}]`,
  );

  const before = await call(mcp, token);
  assert.equal(before.status, 200);
  await before.arrayBuffer();
  await untilPast(expMs); // the real lifetime, to the millisecond
  const after = await call(mcp, token);
  assert.equal(after.status, 401);
  assert.match(after.headers.get('www-authenticate') ?? '', /access token expired/);
});

test("without preciseExpiry, exp stays oidc-provider's whole seconds", async (t) => {
  const as = await startAuthorizationServer({ accessTokenTtlSeconds: 1 });
  t.after(() => as.close());
  const mcp = await startProtectedMcpServer({ authorizationServer: as });
  t.after(() => mcp.close());
  const { token } = await accessToken(t, as, mcp, 1);
  assert.ok(Number.isInteger(exp(token)));
});
