/**
 * Sign-in with the OAuth 2.0 device authorization grant (RFC 8628) against the real oidc-provider
 * with `features.deviceFlow` on: the robot user completes verification (arena/testbed/robot-device.ts);
 * tokens work at a protected MCP server and refresh; denial; fallback to the browser flow when the
 * AS or the stored registration cannot do it. oidc-provider sends no `interval`, so each device
 * sign-in waits the RFC's default 5 s before its first poll.
 */
import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { completeDeviceVerification } from '../../arena/testbed/robot-device.js';
import { isAuthkeepError } from '../../src/index.js';
import type { DeviceCodeInfo } from '../../src/session/device-sign-in.js';
import { callTool, jwtExpiresAt, startBed, untilPast } from '../helpers/bed.js';
import { assertNoSecrets, witnessSecrets } from '../helpers/secrets.js';

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

async function recordPath(home: string): Promise<string> {
  const files = (await readdir(path.join(home, 'servers'))).filter((f) => f.endsWith('.json'));
  assert.equal(files.length, 1, 'one record file');
  return path.join(home, 'servers', files[0] as string);
}

/** A showDeviceCode that has the robot approve (or not) at the verification URI. */
function robotUser(
  shown: DeviceCodeInfo[],
  robot: { abort?: boolean; useCompleteUri?: boolean; denied?: boolean } = {},
) {
  return async (info: DeviceCodeInfo) => {
    shown.push(info);
    const result =
      robot.useCompleteUri === false || info.verificationUriComplete === undefined
        ? await completeDeviceVerification(info.verificationUri, {
            userCode: info.userCode,
            ...(robot.abort ? { abort: true } : {}),
          })
        : await completeDeviceVerification(info.verificationUriComplete, robot.abort ? { abort: true } : {});
    if (!robot.abort && !robot.denied)
      assert.equal(result.approved, true, `the robot reached the success page (got ${result.status} ${result.title})`);
  };
}

test('mode device: signs in with a device code, calls a tool, refreshes, and the registration also serves the browser flow', async (t) => {
  // 5 s tokens: a call has a second of the token's life to reach the server on a saturated machine.
  const bed = await startBed(t, { as: { deviceFlow: true, accessTokenTtlSeconds: 5 } });
  const witness = witnessSecrets(bed.as);
  const server = bed.servers[0]!;
  const shown: DeviceCodeInfo[] = [];
  const keeper = bed.keeper({ showDeviceCode: robotUser(shown, { useCompleteUri: false }) });

  const status = await keeper.login(server.url, { mode: 'device' });
  assert.equal(status.state, 'ok');
  assert.equal(status.registration, 'dynamic');
  assert.equal(status.issuer, bed.as.issuer);
  assert.equal(bed.robotOpens(), 0, 'no browser was opened');
  assert.equal(shown.length, 1);
  assert.match(shown[0]!.verificationUri, /^http:\/\/127\.0\.0\.1:\d+\/device$/);
  assert.match(shown[0]!.userCode, /^[A-Z]{4}-[A-Z]{4}$/);
  assert.ok(shown[0]!.expiresInSeconds > 0);

  const record = JSON.parse(await readFile(await recordPath(bed.home), 'utf8'));
  assert.ok(record.registration.grantTypes.includes(DEVICE_GRANT), 'DCR asked for the device_code grant');
  assert.equal(record.authorizationServer.device_authorization_endpoint, `${bed.as.issuer}/device/auth`);
  assert.equal(record.tokens.clientId, record.registration.clientId);
  assert.equal(record.tokens.issuer, bed.as.issuer);
  assert.ok(record.tokens.refreshToken, 'a refresh token was issued');

  assert.equal((await callTool(keeper.fetch(server.url), server.url)).status, 200, 'the token works at the MCP server');
  const first = await keeper.getAccessToken(server.url);
  // (On a slow machine the sign-in's token may already have been refreshed once for `first`.)
  const refreshesBefore = bed.as.audit.counts().refreshGrants;
  await untilPast(jwtExpiresAt(first));
  const second = await keeper.getAccessToken(server.url);
  assert.notEqual(second, first, 'the expired token was refreshed');
  assert.equal(bed.as.audit.counts().refreshGrants, refreshesBefore + 1, 'once for the expiry');
  assert.equal((await callTool(keeper.fetch(server.url), server.url)).status, 200, 'the refreshed token works');
  const counts = bed.as.audit.counts();
  assert.equal(counts.registrations, 1);
  assert.equal(counts.refreshReuses, 0);

  // The same registration (it has a loopback redirect URI) serves a browser sign-in later.
  const browser = await keeper.login(server.url, { scope: 'mcp:write' });
  assert.equal(browser.clientId, status.clientId);
  assert.equal(bed.robotOpens(), 1);
  assert.equal(bed.as.audit.counts().registrations, 1, 'no second registration');

  // Every secret of the test, as the AS saw them: the device code, both sign-ins' tokens, the code
  // and verifier of the browser sign-in, every rotation's refresh token.
  assert.ok(witness.count('device_code received') >= 1 && witness.count('RefreshToken issued') >= 3);
  assertNoSecrets(bed.logs, witness.secrets(), 'the log');
  assert.ok(bed.logs.some((e) => e.event === 'login.device_code'));
});

test('mode device: the user denying consent ends the sign-in with authorization_denied', async (t) => {
  const bed = await startBed(t, { as: { deviceFlow: true, denyConsent: true } });
  const server = bed.servers[0]!;
  const keeper = bed.keeper({ showDeviceCode: robotUser([], { denied: true }) });
  await assert.rejects(keeper.login(server.url, { mode: 'device' }), (err: unknown) => {
    assert.ok(isAuthkeepError(err), String(err));
    assert.equal(err.code, 'authorization_denied', err.message);
    return true;
  });
  const status = await keeper.status(server.url);
  assert.notEqual(status[0]?.state, 'ok');
});

test('mode device: pressing Abort on the confirmation page ends the sign-in with authorization_denied', async (t) => {
  const bed = await startBed(t, { as: { deviceFlow: true } });
  const server = bed.servers[0]!;
  const keeper = bed.keeper({ showDeviceCode: robotUser([], { abort: true }) });
  await assert.rejects(
    keeper.login(server.url, { mode: 'device' }),
    (err: unknown) => isAuthkeepError(err) && err.code === 'authorization_denied',
  );
});

test('mode device without a device endpoint falls back to the browser flow; requireDevice refuses', async (t) => {
  const bed = await startBed(t);
  const server = bed.servers[0]!;
  const shown: DeviceCodeInfo[] = [];
  const keeper = bed.keeper({ showDeviceCode: robotUser(shown) });

  await assert.rejects(keeper.login(server.url, { mode: 'device', requireDevice: true }), (err: unknown) => {
    assert.ok(isAuthkeepError(err));
    assert.equal(err.code, 'device_flow_unavailable');
    assert.match(err.message, /no device_authorization_endpoint/);
    return true;
  });
  assert.equal(bed.robotOpens(), 0);

  const status = await keeper.login(server.url, { mode: 'device' });
  assert.equal(status.state, 'ok');
  assert.equal(bed.robotOpens(), 1, 'the browser flow ran');
  assert.equal(shown.length, 0, 'no device code was shown');
  const fallback = bed.logs.find((e) => e.event === 'login.device_unavailable');
  assert.ok(fallback, 'the fallback was logged');
  assert.equal(fallback.level, 'warn');
});

test('a stored registration made without the device_code grant falls back to the browser flow', async (t) => {
  const bed = await startBed(t, { as: { deviceFlow: true } });
  const server = bed.servers[0]!;
  const shown: DeviceCodeInfo[] = [];
  const keeper = bed.keeper({ showDeviceCode: robotUser(shown) });
  await keeper.login(server.url);
  // Simulate a registration stored before device-flow support: grant types unknown.
  const file = await recordPath(bed.home);
  const record = JSON.parse(await readFile(file, 'utf8'));
  delete record.registration.grantTypes;
  record.tokens = undefined;
  await writeFile(file, JSON.stringify(record));

  const status = await keeper.login(server.url, { mode: 'auto' });
  assert.equal(status.state, 'ok');
  assert.equal(bed.robotOpens(), 2, 'the browser flow ran again');
  assert.equal(shown.length, 0);
  assert.ok(
    bed.logs.some(
      (e) => e.event === 'login.device_unavailable' && /was made without the device_code grant/.test(e.message),
    ),
  );
});
