/**
 * The arena's audit detectors, fed by the real authorization server (oidc-provider): hand-made
 * authorize requests with the field report's defects must each be flagged with the right problem,
 * a well-formed one must not; a cross-client refresh, a cross-client code redemption, and a
 * refresh-token reuse (with the grant revocation it causes) must be found from the audit alone.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { type TestContext, test } from 'node:test';

import {
  authorizeProblems,
  detect,
  type Findings,
  type MalformedProblem,
  nearestKnownParameter,
} from '../../arena/detectors.js';
import {
  createRobotBrowser,
  type RunningAuthorizationServer,
  type RunningMcpServer,
  startAuthorizationServer,
  startLoopbackReceiver,
  startProtectedMcpServer,
} from '../../arena/testbed/index.js';

interface Bed {
  as: RunningAuthorizationServer;
  mcp: RunningMcpServer;
}

async function startBed(t: TestContext): Promise<Bed> {
  const as = await startAuthorizationServer();
  t.after(() => as.close());
  const mcp = await startProtectedMcpServer({ authorizationServer: as, discovery: 'header' });
  t.after(() => mcp.close());
  return { as, mcp };
}

async function register(
  as: RunningAuthorizationServer,
  redirectUri = 'http://127.0.0.1:4711/callback',
): Promise<string> {
  const res = await fetch(as.endpoints.registration, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      client_name: 'detector-test',
      application_type: 'native',
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    }),
  });
  assert.equal(res.status, 201);
  return ((await res.json()) as { client_id: string }).client_id;
}

function pkce(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

/** Send a raw authorize request: `query` is appended verbatim (names and values as the client wrote them). */
async function rawAuthorize(as: RunningAuthorizationServer, query: string): Promise<number> {
  const res = await fetch(`${as.endpoints.authorization}?${query}`, { redirect: 'manual' });
  await res.arrayBuffer();
  return res.status;
}

function good(clientId: string, mcp: RunningMcpServer, overrides: Record<string, string | undefined> = {}): string {
  const params: Record<string, string | undefined> = {
    response_type: 'code',
    client_id: clientId,
    redirect_uri: 'http://127.0.0.1:5555/callback',
    scope: 'mcp:read',
    state: 'st',
    code_challenge: pkce().challenge,
    code_challenge_method: 'S256',
    resource: mcp.resource,
    ...overrides,
  };
  return Object.entries(params)
    .filter((kv): kv is [string, string] => kv[1] !== undefined)
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`)
    .join('&');
}

function findings(bed: Bed): Findings {
  return detect(bed.as.audit.entries(), { publishedResources: [bed.mcp.resource] });
}

/** The problems flagged for the authorize request whose query contained `marker`. */
function problemsOf(all: Findings, bed: Bed, marker: string): MalformedProblem[] {
  const entry = bed.as.audit.http().find((e) => e.endpoint === 'authorization' && e.query.state?.[0] === marker);
  assert.ok(entry, `authorize request ${marker} was audited`);
  return all.malformed.find((f) => f.seq === entry.seq)?.problems.map((p) => p.problem) ?? [];
}

/** Authorization code flow through the robot browser; returns the token response. */
async function login(
  t: TestContext,
  bed: Bed,
  clientId: string,
): Promise<{ refresh_token: string; access_token: string }> {
  const receiver = await startLoopbackReceiver();
  t.after(() => receiver.close());
  const { verifier, challenge } = pkce();
  const url = new URL(bed.as.endpoints.authorization);
  for (const [k, v] of Object.entries({
    response_type: 'code',
    client_id: clientId,
    redirect_uri: receiver.redirectUri,
    scope: 'mcp:read',
    state: 'login',
    code_challenge: challenge,
    code_challenge_method: 'S256',
    resource: bed.mcp.resource,
  }))
    url.searchParams.set(k, v);
  await createRobotBrowser().open(url.href);
  const code = (await receiver.waitForCallback()).get('code');
  assert.ok(code);
  const json = await token(bed.as, {
    grant_type: 'authorization_code',
    code,
    code_verifier: verifier,
    redirect_uri: receiver.redirectUri,
    client_id: clientId,
    resource: bed.mcp.resource,
  });
  assert.ok(json.refresh_token, 'refresh token issued');
  return json as { refresh_token: string; access_token: string };
}

async function token(as: RunningAuthorizationServer, body: Record<string, string>): Promise<Record<string, string>> {
  const res = await fetch(as.endpoints.token, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(body),
  });
  return (await res.json()) as Record<string, string>;
}

test("the field report's malformed authorize requests are each flagged; a well-formed one is not", async (t) => {
  const bed = await startBed(t);
  const clientId = await register(bed.as);
  const port = new URL(bed.mcp.resource).port;
  const cases: Array<{ state: string; query: string; expect: MalformedProblem[] }> = [
    {
      state: 'method_method',
      query: good(clientId, bed.mcp, {
        state: 'method_method',
        code_challenge_method: undefined,
        code_challenge_method_method: 'S256',
      }),
      expect: ['unknown_parameter', 'code_challenge_method_missing'],
    },
    {
      state: 'method_space',
      query: `${good(clientId, bed.mcp, { state: 'method_space', code_challenge_method: undefined })}&code_challenge%20_method=S256`,
      expect: ['unknown_parameter', 'code_challenge_method_missing'],
    },
    {
      state: 'truncated',
      query: good(clientId, bed.mcp, { state: 'truncated', code_challenge: pkce().challenge.slice(0, 8) }),
      expect: ['code_challenge_invalid'],
    },
    {
      state: 'method_S',
      query: good(clientId, bed.mcp, { state: 'method_S', code_challenge_method: 'S' }),
      expect: ['code_challenge_method_invalid'],
    },
    {
      state: 'resource_space',
      query: good(clientId, bed.mcp, { state: 'resource_space', resource: `http://127.0. 0.1:${port}/mcp` }),
      expect: ['resource_mismatch'],
    },
    {
      state: 'no_scope',
      query: good(clientId, bed.mcp, { state: 'no_scope', scope: undefined }),
      expect: ['scope_missing'],
    },
    {
      state: 'redirect_colon',
      query: good(clientId, bed.mcp, { state: 'redirect_colon', redirect_uri: 'http://localhost/:' }),
      expect: ['redirect_uri_no_port', 'redirect_uri_mismatch'],
    },
    {
      state: 'other_path',
      query: good(clientId, bed.mcp, { state: 'other_path', redirect_uri: 'http://127.0.0.1:4711/elsewhere' }),
      expect: ['redirect_uri_mismatch'],
    },
    {
      state: 'no_resource',
      query: good(clientId, bed.mcp, { state: 'no_resource', resource: undefined }),
      expect: ['resource_missing'],
    },
  ];
  for (const c of cases) await rawAuthorize(bed.as, c.query);
  // Well-formed, on another loopback port than the registered one (RFC 8252 section 7.3).
  await rawAuthorize(bed.as, good(clientId, bed.mcp, { state: 'well_formed' }));

  const all = findings(bed);
  for (const c of cases) {
    assert.deepEqual(problemsOf(all, bed, c.state).sort(), [...c.expect].sort(), c.state);
  }
  assert.deepEqual(
    problemsOf(all, bed, 'well_formed'),
    [],
    'a well-formed request on another loopback port is not flagged',
  );
  assert.equal(all.malformed.length, cases.length);

  const misspelled = all.malformed.find((f) =>
    f.problems.some((p) => p.detail.includes('code_challenge_method_method')),
  );
  assert.match(misspelled?.problems[0]?.detail ?? '', /misspelled code_challenge_method\?/);
  assert.equal(all.crossClient.length, 0);
});

test('the misspelling hint finds the intended parameter', () => {
  assert.equal(nearestKnownParameter('code_challenge_method_method'), 'code_challenge_method');
  assert.equal(nearestKnownParameter('code_challenge _method'), 'code_challenge_method');
  assert.equal(nearestKnownParameter('redirect_url'), 'redirect_uri');
  assert.equal(nearestKnownParameter('resourse'), 'resource');
  assert.equal(nearestKnownParameter('x_completely_different'), undefined);
});

test('duplicate parameters are flagged; the scope check can be switched off', () => {
  const entry = {
    queryNames: [
      'response_type',
      'client_id',
      'redirect_uri',
      'code_challenge',
      'code_challenge_method',
      'resource',
      'resource',
    ],
    query: {
      response_type: ['code'],
      client_id: ['c'],
      redirect_uri: ['http://127.0.0.1:1/cb'],
      code_challenge: ['a'.repeat(43)],
      code_challenge_method: ['S256'],
      resource: ['https://mcp.example/mcp', 'https://mcp.example/mcp'],
    },
  };
  const problems = authorizeProblems(entry, new Map(), {
    publishedResources: ['https://mcp.example/mcp'],
    scopeRequired: false,
  });
  assert.deepEqual(
    problems.map((p) => p.problem),
    ['duplicate_parameter'],
  );
});

test('a refresh token presented by another client is flagged as cross-client (fingerprint and client mismatch)', async (t) => {
  const bed = await startBed(t);
  const alice = await register(bed.as);
  const bob = await register(bed.as);
  const tokens = await login(t, bed, alice);

  const stolen = await token(bed.as, {
    grant_type: 'refresh_token',
    refresh_token: tokens.refresh_token,
    client_id: bob,
  });
  assert.equal(stolen.error, 'invalid_grant');

  const all = findings(bed);
  assert.equal(all.crossClient.length, 1);
  const [finding] = all.crossClient;
  assert.equal(finding?.grantType, 'refresh_token');
  assert.equal(finding?.presentedBy, bob);
  assert.equal(finding?.issuedTo, alice);
  assert.equal(finding?.errorDetail, 'client mismatch');
  assert.deepEqual(finding?.resources, [bed.mcp.resource]);
  assert.equal(all.malformed.length, 0, 'the robot login itself is well-formed');

  // The rightful owner can still refresh: a mismatch does not consume the token.
  const own = await token(bed.as, {
    grant_type: 'refresh_token',
    refresh_token: tokens.refresh_token,
    client_id: alice,
  });
  assert.ok(own.access_token);
  assert.equal(findings(bed).crossClient.length, 1);
});

test('an authorization code redeemed by another client is flagged as cross-client', async (t) => {
  const bed = await startBed(t);
  const alice = await register(bed.as);
  const bob = await register(bed.as);
  const receiver = await startLoopbackReceiver();
  t.after(() => receiver.close());
  const { verifier, challenge } = pkce();
  const url = new URL(bed.as.endpoints.authorization);
  for (const [k, v] of Object.entries({
    response_type: 'code',
    client_id: alice,
    redirect_uri: receiver.redirectUri,
    scope: 'mcp:read',
    code_challenge: challenge,
    code_challenge_method: 'S256',
    resource: bed.mcp.resource,
  }))
    url.searchParams.set(k, v);
  await createRobotBrowser().open(url.href);
  const code = (await receiver.waitForCallback()).get('code') ?? '';
  const res = await token(bed.as, {
    grant_type: 'authorization_code',
    code,
    code_verifier: verifier,
    redirect_uri: receiver.redirectUri,
    client_id: bob,
  });
  assert.equal(res.error, 'invalid_grant');
  const all = findings(bed);
  assert.equal(all.crossClient.length, 1);
  assert.equal(all.crossClient[0]?.grantType, 'authorization_code');
  assert.equal(all.crossClient[0]?.issuedTo, alice);
  assert.equal(all.crossClient[0]?.presentedBy, bob);
});

test("refresh-token reuse and the grant revocation it causes are found from the server's own events", async (t) => {
  const bed = await startBed(t);
  const alice = await register(bed.as);
  const tokens = await login(t, bed, alice);
  const first = await token(bed.as, {
    grant_type: 'refresh_token',
    refresh_token: tokens.refresh_token,
    client_id: alice,
  });
  assert.ok(first.refresh_token && first.refresh_token !== tokens.refresh_token, 'rotated');
  const reused = await token(bed.as, {
    grant_type: 'refresh_token',
    refresh_token: tokens.refresh_token,
    client_id: alice,
  });
  assert.equal(reused.error, 'invalid_grant');
  const after = await token(bed.as, {
    grant_type: 'refresh_token',
    refresh_token: first.refresh_token,
    client_id: alice,
  });
  assert.equal(after.error, 'invalid_grant', 'the whole grant is gone');

  const all = findings(bed);
  assert.equal(all.refreshReuses.length, 1);
  assert.equal(all.refreshReuses[0]?.clientId, alice);
  assert.deepEqual(all.refreshReuses[0]?.resources, [bed.mcp.resource]);
  assert.equal(all.revokedGrants.length, 1);
  assert.equal(all.revokedGrants[0]?.cause, 'refresh_reuse');
  assert.equal(all.revokedGrants[0]?.grantId, all.refreshReuses[0]?.grantId);
  assert.equal(all.crossClient.length, 0);
  assert.equal(all.malformed.length, 0);
});

test('a grant revoked by the client itself (RFC 7009) is a revocation with cause other', async (t) => {
  const bed = await startBed(t);
  const alice = await register(bed.as);
  const tokens = await login(t, bed, alice);
  const res = await fetch(bed.as.endpoints.revocation, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token: tokens.refresh_token, client_id: alice }),
  });
  assert.equal(res.status, 200);
  const all = findings(bed);
  assert.equal(all.refreshReuses.length, 0);
  assert.ok(all.revokedGrants.every((r) => r.cause === 'other'));
});
