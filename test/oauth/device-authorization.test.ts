/**
 * RFC 8628 client steps against a scripted AS (fake fetch, fake sleep): the device authorization
 * request's parameters and response checks, and polling through authorization_pending, slow_down
 * (+5 s for good), transient failures, access_denied and expired_token. No secret in any message.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isAuthkeepError } from '../../src/errors.js';
import { pollDeviceToken, requestDeviceAuthorization } from '../../src/oauth/device-authorization.js';
import type { AuthorizationServer, Registration } from '../../src/oauth/types.js';
import { assertNoSecrets } from '../helpers/secrets.js';

const AS: AuthorizationServer = {
  issuer: 'https://as.example',
  authorization_endpoint: 'https://as.example/auth',
  token_endpoint: 'https://as.example/token',
  device_authorization_endpoint: 'https://as.example/device/auth',
  grant_types_supported: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
};
const REGISTRATION: Registration = {
  issuer: AS.issuer,
  clientId: 'client-1',
  method: 'dynamic',
  tokenEndpointAuthMethod: 'none',
  redirectUris: ['http://127.0.0.1:1234/callback'],
  registeredAt: '2025-01-01T00:00:00.000Z',
};
const DEVICE_CODE = 'dc-SECRET-device-code-value';
const RESOURCE = 'https://mcp.example/mcp';

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
}

function scripted(answers: Array<() => Response>) {
  const requests: URLSearchParams[] = [];
  const fetchFn = (async (_url: string | URL | Request, init?: RequestInit) => {
    requests.push(new URLSearchParams(String(init?.body ?? '')));
    const next = answers.shift();
    if (!next) throw new Error('no more scripted answers');
    return next();
  }) as typeof fetch;
  return { fetchFn, requests };
}

const TOKENS = {
  access_token: 'at-SECRET',
  token_type: 'Bearer',
  expires_in: 3600,
  refresh_token: 'rt-SECRET',
  scope: 'mcp:read',
};

test('requestDeviceAuthorization sends client_id, scope and resource and validates the answer', async () => {
  const { fetchFn, requests } = scripted([
    () =>
      json(200, {
        device_code: DEVICE_CODE,
        user_code: 'ABCD-EFGH',
        verification_uri: 'https://as.example/device',
        verification_uri_complete: 'https://as.example/device?user_code=ABCD-EFGH',
        expires_in: 600,
      }),
  ]);
  const device = await requestDeviceAuthorization(
    AS,
    REGISTRATION,
    { scope: 'mcp:read offline_access', resource: RESOURCE },
    {
      allowInsecureLoopback: false,
      fetch: fetchFn,
    },
  );
  assert.equal(requests[0]?.get('client_id'), 'client-1');
  assert.equal(requests[0]?.get('scope'), 'mcp:read offline_access');
  assert.equal(requests[0]?.get('resource'), RESOURCE);
  assert.deepEqual(device, {
    deviceCode: DEVICE_CODE,
    userCode: 'ABCD-EFGH',
    verificationUri: 'https://as.example/device',
    verificationUriComplete: 'https://as.example/device?user_code=ABCD-EFGH',
    expiresIn: 600,
    intervalSeconds: 5,
  });
});

test('requestDeviceAuthorization: unauthorized_client is device_flow_unavailable; an http verification_uri is refused', async () => {
  const refused = scripted([() => json(400, { error: 'unauthorized_client', error_description: 'grant not allowed' })]);
  await assert.rejects(
    requestDeviceAuthorization(
      AS,
      REGISTRATION,
      { resource: RESOURCE },
      { allowInsecureLoopback: false, fetch: refused.fetchFn },
    ),
    (err: unknown) =>
      isAuthkeepError(err) &&
      err.code === 'device_flow_unavailable' &&
      /unauthorized_client: grant not allowed/.test(err.message),
  );
  const phishy = scripted([
    () =>
      json(200, {
        device_code: DEVICE_CODE,
        user_code: 'X',
        verification_uri: 'http://evil.example/device',
        expires_in: 600,
      }),
  ]);
  await assert.rejects(
    requestDeviceAuthorization(
      AS,
      REGISTRATION,
      { resource: RESOURCE },
      { allowInsecureLoopback: false, fetch: phishy.fetchFn },
    ),
    (err: unknown) => {
      assert.ok(isAuthkeepError(err) && err.field === 'verification_uri', String(err));
      assertNoSecrets(err, { 'the device code': DEVICE_CODE }, 'error');
      return true;
    },
  );
});

test('pollDeviceToken waits through authorization_pending, slow_down (+5 s for good) and a 503, then returns tokens', async () => {
  const { fetchFn, requests } = scripted([
    () => json(400, { error: 'authorization_pending' }),
    () => json(400, { error: 'slow_down' }),
    () => json(400, { error: 'authorization_pending' }),
    () => json(503, { error: 'temporarily_unavailable' }),
    () => json(200, TOKENS),
  ]);
  const waits: number[] = [];
  const tokens = await pollDeviceToken(
    AS,
    REGISTRATION,
    DEVICE_CODE,
    { intervalSeconds: 2, expiresIn: 600, resource: RESOURCE, sleep: async (ms) => void waits.push(ms) },
    { allowInsecureLoopback: false, fetch: fetchFn },
  );
  assert.equal(tokens.accessToken, 'at-SECRET');
  assert.equal(tokens.refreshToken, 'rt-SECRET');
  assert.equal(typeof tokens.requestedAt, 'number');
  // 2 s, then pending: 2 s; slow_down: 7 s from then on; the 503 backs off on top of the interval.
  assert.deepEqual(waits, [2000, 2000, 7000, 7000, 14000]);
  for (const r of requests) {
    assert.equal(r.get('grant_type'), 'urn:ietf:params:oauth:grant-type:device_code');
    assert.equal(r.get('device_code'), DEVICE_CODE);
    assert.equal(r.get('resource'), RESOURCE);
    assert.equal(r.get('client_id'), 'client-1');
  }
});

test('pollDeviceToken: access_denied is authorization_denied, expired_token is device_code_expired, the deadline too', async () => {
  const options = (answers: Array<() => Response>) => ({
    allowInsecureLoopback: false,
    fetch: scripted(answers).fetchFn,
  });
  const poll = { intervalSeconds: 1, expiresIn: 600, resource: RESOURCE, sleep: async () => {} };
  await assert.rejects(
    pollDeviceToken(
      AS,
      REGISTRATION,
      DEVICE_CODE,
      poll,
      options([() => json(400, { error: 'access_denied', error_description: `no ${DEVICE_CODE}` })]),
    ),
    (err: unknown) => {
      assert.ok(isAuthkeepError(err) && err.code === 'authorization_denied', String(err));
      assertNoSecrets(err, { 'the device code': DEVICE_CODE }, 'error');
      return true;
    },
  );
  await assert.rejects(
    pollDeviceToken(AS, REGISTRATION, DEVICE_CODE, poll, options([() => json(400, { error: 'expired_token' })])),
    (err: unknown) => isAuthkeepError(err) && err.code === 'device_code_expired',
  );
  await assert.rejects(
    pollDeviceToken(AS, REGISTRATION, DEVICE_CODE, { ...poll, intervalSeconds: 5, expiresIn: 4 }, options([])),
    (err: unknown) => isAuthkeepError(err) && err.code === 'device_code_expired',
  );
  await assert.rejects(
    pollDeviceToken(AS, REGISTRATION, DEVICE_CODE, poll, options([() => json(400, { error: 'invalid_grant' })])),
    (err: unknown) => isAuthkeepError(err) && err.code === 'invalid_grant',
  );
  const controller = new AbortController();
  controller.abort(new Error('stopped'));
  await assert.rejects(
    pollDeviceToken(
      AS,
      REGISTRATION,
      DEVICE_CODE,
      { intervalSeconds: 1, expiresIn: 600, resource: RESOURCE, signal: controller.signal },
      options([]),
    ),
    /stopped/,
  );
});
