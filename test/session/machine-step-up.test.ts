/**
 * A machine identity's step-up (MCP authorization, Step-Up Authorization Flow: a client acting
 * on its own behalf MAY step up): a real MCP server answering 403 insufficient_scope for the tool
 * `admin_echo` (it needs `mcp:admin`), in front of the real oidc-provider with a client
 * credentials client allowed `mcp:read mcp:admin`. The keeper re-runs the client credentials grant
 * with the union of the granted and the challenged scopes, with no browser and no authorization
 * request, and the call goes through; for a client the AS does not allow `mcp:admin`, the AS's
 * refusal (invalid_scope) ends the call after one try, and the token it had keeps working.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AuthkeepError } from '../../src/index.js';
import { callTool, startBed } from '../helpers/bed.js';

const SECRET = 'machine-step-up-secret-0123456789';

function ccClient(clientId: string, scope: string) {
  return {
    client_id: clientId,
    client_secret: SECRET,
    token_endpoint_auth_method: 'client_secret_basic' as const,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    scope,
  };
}

test('client credentials: a 403 insufficient_scope re-runs the grant with the union of scopes, no browser, and the call succeeds', async (t) => {
  const bed = await startBed(t, {
    as: { clientCredentials: true, staticClients: [ccClient('ci-admin', 'mcp:read mcp:write mcp:admin')] },
    servers: [{ discovery: 'header' }],
  });
  const server = bed.servers[0]!;
  const keeper = bed.keeper({ secretReader: { env: { CI_SECRET: SECRET }, readFile: async () => '' } });
  await keeper.login(server.url, {
    grant: { type: 'client_credentials', clientId: 'ci-admin', clientSecret: { env: 'CI_SECRET' } },
  });
  const tokenRequests = () =>
    bed.as.audit
      .http()
      .filter((e) => e.endpoint === 'token' && e.grantType === 'client_credentials' && e.status === 200);
  assert.equal(tokenRequests().length, 1);
  assert.equal((await keeper.status(server.url))[0]?.scope?.includes('mcp:admin'), false, 'not granted at first');

  const response = await callTool(keeper.fetch(server.url), server.url, 'admin_echo', { text: 'root' });
  assert.equal(response.status, 200, 'the call went through after the step-up');
  const body = await response.text();
  assert.match(body, /root/);

  assert.equal(tokenRequests().length, 2, 'one more client credentials grant');
  const stepUp = tokenRequests().at(-1);
  assert.deepEqual(
    stepUp?.body?.scope?.[0]?.split(' ').sort(),
    ['mcp:admin', 'mcp:read'],
    'it asked for the union of what it had and what the server challenged',
  );
  assert.equal(bed.robotOpens(), 0, 'no browser');
  assert.equal(bed.as.audit.counts().authorizationRequests, 0, 'no authorization request');
  assert.equal(server.counts().forbidden, 1, 'one 403, then the tool ran');
  assert.equal((await keeper.status(server.url))[0]?.scope?.includes('mcp:admin'), true, 'the record holds it');
});

test('client credentials: a client the AS does not allow the challenged scope gets the AS refusal once, and keeps its token', async (t) => {
  const bed = await startBed(t, {
    as: { clientCredentials: true, staticClients: [ccClient('ci-reader', 'mcp:read')] },
    servers: [{ discovery: 'header' }],
  });
  const server = bed.servers[0]!;
  const keeper = bed.keeper({ secretReader: { env: { CI_SECRET: SECRET }, readFile: async () => '' } });
  await keeper.login(server.url, {
    grant: { type: 'client_credentials', clientId: 'ci-reader', clientSecret: { env: 'CI_SECRET' } },
  });
  const grantsBefore = bed.as.audit.counts().clientCredentialsGrants;

  await assert.rejects(
    callTool(keeper.fetch(server.url), server.url, 'admin_echo', { text: 'root' }),
    (err: unknown) => {
      assert.ok(err instanceof AuthkeepError, String(err));
      assert.equal(err.code, 'as_error', err.message);
      assert.match(err.message, /invalid_scope/);
      assert.doesNotMatch(err.message, new RegExp(SECRET));
      return true;
    },
  );
  assert.equal(bed.as.audit.counts().clientCredentialsGrants - grantsBefore, 1, 'the grant was tried once');
  assert.equal(bed.robotOpens(), 0, 'no browser');
  assert.equal(server.counts().toolCalls, 0, 'the tool never ran');
  const echo = await callTool(keeper.fetch(server.url), server.url);
  assert.equal(echo.status, 200, 'the token it had still serves what it may do');
  assert.equal((await keeper.status(server.url))[0]?.state, 'ok');
});
