/**
 * The device authorization grant (RFC 8628) happy path and denial against the REAL authorization
 * server's device flow (oidc-provider `features.deviceFlow`), not a scripted fetch: the device
 * authorization request, polling that meets the real AS's `authorization_pending` before the robot
 * user (arena/testbed/robot-device.ts) approves at the verification URI, then the tokens, which the
 * real protected MCP server accepts. Polling waits through PollOptions.sleep, the module's clock:
 * each wait is recorded (it must be the interval) and ends when the test says, so nothing sleeps.
 * The AS's audit is the judge of what was polled and answered, and holds no secret of the flow.
 */
import assert from 'node:assert/strict';
import { type TestContext, test } from 'node:test';
import {
  type RunningAuthorizationServer,
  type RunningMcpServer,
  startAuthorizationServer,
  startProtectedMcpServer,
} from '../../arena/testbed/index.js';
import { completeDeviceVerification } from '../../arena/testbed/robot-device.js';
import { isAuthkeepError } from '../../src/errors.js';
import { discoverAuthorizationServer } from '../../src/oauth/authorization-server-metadata.js';
import {
  type DeviceAuthorization,
  pollDeviceToken,
  requestDeviceAuthorization,
} from '../../src/oauth/device-authorization.js';
import { DEVICE_CODE_GRANT_TYPE, registerClient } from '../../src/oauth/registration.js';
import type { AuthorizationServer, Registration } from '../../src/oauth/types.js';
import { callTool } from '../helpers/bed.js';
import { assertNoSecrets, type SecretWitness, witnessSecrets } from '../helpers/secrets.js';

const http = { allowInsecureLoopback: true, timeoutMs: 10_000 };

interface Flow {
  as: RunningAuthorizationServer;
  mcp: RunningMcpServer;
  witness: SecretWitness;
  metadata: AuthorizationServer;
  registration: Registration;
  device: DeviceAuthorization;
}

async function startFlow(t: TestContext): Promise<Flow> {
  const as = await startAuthorizationServer({ deviceFlow: true });
  t.after(() => as.close());
  const witness = witnessSecrets(as);
  const mcp = await startProtectedMcpServer({ authorizationServer: as, discovery: 'header' });
  t.after(() => mcp.close());
  const metadata = await discoverAuthorizationServer(as.issuer, http);
  assert.equal(metadata.device_authorization_endpoint, `${as.issuer}/device/auth`);
  const registration = await registerClient(
    metadata,
    { clientName: 'device-test', redirectUris: ['http://127.0.0.1/callback'], scope: 'mcp:read offline_access' },
    http,
  );
  assert.ok(registration.grantTypes?.includes(DEVICE_CODE_GRANT_TYPE), 'registered with the device_code grant');
  const device = await requestDeviceAuthorization(
    metadata,
    registration,
    { scope: 'mcp:read offline_access', resource: mcp.resource },
    http,
  );
  return { as, mcp, witness, metadata, registration, device };
}

/** The device_code token requests the AS received, as [status, error]. */
function polls(as: RunningAuthorizationServer): Array<[number | undefined, string | undefined]> {
  return as.audit
    .http()
    .filter((e) => e.endpoint === 'token' && e.grantType === DEVICE_CODE_GRANT_TYPE)
    .map((e) => [e.status, e.error]);
}

test('device flow against the real AS: authorization_pending until the user approves, then tokens the MCP server accepts', async (t) => {
  const { as, mcp, witness, metadata, registration, device } = await startFlow(t);
  assert.equal(device.verificationUri, `${as.issuer}/device`);
  assert.match(device.userCode, /^[A-Z]{4}-[A-Z]{4}$/);
  assert.equal(device.intervalSeconds, 5, 'oidc-provider sends no interval: the RFC default');

  const waits: number[] = [];
  const tokens = await pollDeviceToken(
    metadata,
    registration,
    device.deviceCode,
    {
      intervalSeconds: device.intervalSeconds,
      expiresIn: device.expiresIn,
      resource: mcp.resource,
      sleep: async (ms) => {
        waits.push(ms);
        // Before the second poll, the user approves (after the AS said authorization_pending once).
        if (waits.length === 2) {
          assert.deepEqual(polls(as), [[400, 'authorization_pending']], 'the real AS said pending first');
          const robot = await completeDeviceVerification(device.verificationUri, { userCode: device.userCode });
          assert.equal(robot.approved, true, `the robot approved (got ${robot.status} ${robot.title})`);
        }
      },
    },
    http,
  );

  assert.deepEqual(waits, [5000, 5000], 'each poll waited the interval');
  assert.deepEqual(polls(as), [
    [400, 'authorization_pending'],
    [200, undefined],
  ]);
  assert.equal(tokens.tokenType, 'Bearer');
  assert.ok(tokens.refreshToken, 'a refresh token (offline_access)');
  assert.ok(tokens.expiresIn !== undefined && tokens.expiresIn > 0);
  assert.ok(tokens.requestedAt <= Date.now());
  const call = await callTool(
    (input, init) =>
      fetch(input, {
        ...init,
        headers: { ...(init?.headers as object), authorization: `Bearer ${tokens.accessToken}` },
      }),
    mcp.url,
  );
  assert.equal(call.status, 200, 'the MCP server accepts the access token (aud, iss, scope)');
  await call.arrayBuffer();

  // The device code is a credential: the AS's own audit keeps only its fingerprint.
  assert.ok(witness.count('device_code received') === 1 && witness.count('device_code issued') === 1);
  assertNoSecrets(as.audit.entries(), witness.secrets(), 'the AS audit');
});

test('device flow against the real AS: the user aborts at the confirmation page; the poll ends with authorization_denied', async (t) => {
  const { as, metadata, registration, device, mcp, witness } = await startFlow(t);
  let waits = 0;
  const denied = await pollDeviceToken(
    metadata,
    registration,
    device.deviceCode,
    {
      intervalSeconds: device.intervalSeconds,
      expiresIn: device.expiresIn,
      resource: mcp.resource,
      sleep: async () => {
        waits++;
        if (waits === 2) {
          const robot = await completeDeviceVerification(device.verificationUriComplete ?? device.verificationUri, {
            userCode: device.userCode,
            abort: true,
          });
          assert.equal(robot.approved, false);
        }
      },
    },
    http,
  ).then(
    () => assert.fail('the poll should be denied'),
    (err: unknown) => err,
  );
  assert.ok(isAuthkeepError(denied), String(denied));
  assert.equal(denied.code, 'authorization_denied');
  assert.equal(denied.field, 'error');
  assert.match(denied.message, new RegExp(`^the sign-in at ${as.issuer} was denied`));
  assert.deepEqual(polls(as), [
    [400, 'authorization_pending'],
    [400, 'access_denied'],
  ]);
  assertNoSecrets(denied, witness.secrets(), 'the error');
});
