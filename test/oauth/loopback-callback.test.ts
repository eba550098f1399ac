/**
 * Tests for the loopback redirect server (loopback-callback.ts), with real sockets, and for the
 * validation of what it receives (authorization-response.ts), which a pasted redirect URL shares.
 *
 * Not for: the authorize URL (authorize-url.test.ts) or the code exchange.
 */
import assert from 'node:assert/strict';
import { connect, createServer as createNetServer, type Socket } from 'node:net';
import { describe, test } from 'node:test';
import { AuthkeepError } from '../../src/errors.js';
import { validateAuthorizationResponse } from '../../src/oauth/authorization-response.js';
import { type LoopbackCallback, startLoopbackCallback } from '../../src/oauth/loopback-callback.js';
import { assertNoSecrets } from '../helpers/secrets.js';

const STATE = 'state-7f3a';
const ISSUER = 'https://as.example/tenant';
const CODE = 'c0de-SECRET-value-42';

function callbackUrl(cb: LoopbackCallback, query: Record<string, string>, path?: string): string {
  const url = new URL(cb.redirectUri);
  if (path !== undefined) url.pathname = path;
  for (const [k, v] of Object.entries(query)) url.searchParams.append(k, v);
  return url.href;
}

async function get(url: string): Promise<{ status: number; body: string; headers: Headers }> {
  const res = await fetch(url, { redirect: 'manual' });
  return { status: res.status, body: await res.text(), headers: res.headers };
}

/** Resolves true when nothing accepts a TCP connection at host:port. */
function refusesConnections(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(true));
  });
}

/** Whether this host can listen on [::1] at all. */
function ipv6Loopback(): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createNetServer();
    probe.once('error', () => resolve(false));
    probe.listen(0, '::1', () => probe.close(() => resolve(true)));
  });
}

function connected(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port }, () => resolve(socket));
    socket.once('error', reject);
  });
}

/** The raw HTTP response read from `socket` until the server closes it. */
function readAll(socket: Socket): Promise<string> {
  return new Promise((resolve) => {
    let data = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (data += chunk));
    socket.once('close', () => resolve(data));
    socket.once('error', () => undefined);
  });
}

function isPending(promise: Promise<unknown>): Promise<boolean> {
  const marker = Symbol('pending');
  return Promise.race([
    promise.then(
      () => false,
      () => false,
    ),
    new Promise<typeof marker>((r) => setImmediate(() => r(marker))),
  ]).then((v) => v === marker);
}

describe('startLoopbackCallback', () => {
  test('binds 127.0.0.1 only, with the actual port in the redirect URI', async () => {
    const cb = await startLoopbackCallback({ expectedState: STATE });
    try {
      assert.equal(cb.address.address, '127.0.0.1');
      assert.ok(cb.address.port > 0);
      assert.equal(cb.redirectUri, `http://127.0.0.1:${cb.address.port}/callback`);
      assert.equal(await refusesConnections('127.0.0.1', cb.address.port), false);
      assert.equal(await refusesConnections('::1', cb.address.port), true);
    } finally {
      await cb.close();
    }
  });

  test('host localhost changes the redirect URI, and binds [::1] on the same port too (where the host has it)', async () => {
    const cb = await startLoopbackCallback({ expectedState: STATE, host: 'localhost', path: '/oauth/cb' });
    try {
      assert.equal(cb.address.address, '127.0.0.1');
      assert.equal(cb.redirectUri, `http://localhost:${cb.address.port}/oauth/cb`);
      assert.equal(await refusesConnections('127.0.0.1', cb.address.port), false);
      // Browsers resolve localhost to ::1 too (test/security/locks-and-limits.test.ts: a sign-in through it).
      if (await ipv6Loopback()) assert.equal(await refusesConnections('::1', cb.address.port), false);
    } finally {
      await cb.close();
    }
  });

  test('success: answers a success page, resolves with the query, then closes', async () => {
    const cb = await startLoopbackCallback({ expectedState: STATE, serverName: 'Files MCP' });
    const res = await get(callbackUrl(cb, { code: CODE, state: STATE, iss: ISSUER }));
    assert.equal(res.status, 200);
    assert.match(res.body, /Signed in to Files MCP\./);
    assert.match(res.body, /You can close this tab\./);
    assert.ok(!res.body.includes(CODE), 'the page never echoes the code');
    assert.equal(res.headers.get('cache-control'), 'no-store');
    assert.equal(res.headers.get('referrer-policy'), 'no-referrer');
    const params = await cb.result;
    assert.deepStrictEqual(
      validateAuthorizationResponse(params, { state: STATE, issuer: ISSUER, issParameterSupported: true }),
      { code: CODE },
    );
    await cb.close();
    assert.equal(await refusesConnections('127.0.0.1', cb.address.port), true);
  });

  test('a wrong state gets a 400 and does not end the flow; the right state then succeeds', async () => {
    const cb = await startLoopbackCallback({ expectedState: STATE });
    try {
      const wrong = await get(callbackUrl(cb, { code: 'attacker-code', state: 'other-state' }));
      assert.equal(wrong.status, 400);
      assert.match(wrong.body, /does not belong to the sign-in in progress/);
      for (const query of [{ code: 'x' }, { code: 'x', state: `${STATE}x` }] as Array<Record<string, string>>) {
        assert.equal((await get(callbackUrl(cb, query))).status, 400);
      }
      const twice = new URL(cb.redirectUri);
      twice.search = `code=x&state=${STATE}&state=other`;
      assert.equal((await get(twice.href)).status, 400, 'a repeated state is refused');
      assert.equal(await isPending(cb.result), true);
      const right = await get(callbackUrl(cb, { code: CODE, state: STATE }));
      assert.equal(right.status, 200);
      assert.equal((await cb.result).get('code'), CODE);
    } finally {
      await cb.close();
    }
  });

  test('a wrong path or method gets refused and does not end the flow', async () => {
    const cb = await startLoopbackCallback({ expectedState: STATE });
    try {
      assert.equal((await get(callbackUrl(cb, { code: CODE, state: STATE }, '/favicon.ico'))).status, 400);
      assert.equal((await get(callbackUrl(cb, { code: CODE, state: STATE }, '/callback/'))).status, 400);
      const post = await fetch(callbackUrl(cb, { code: CODE, state: STATE }), { method: 'POST' });
      await post.text();
      assert.equal(post.status, 405);
      assert.equal(await isPending(cb.result), true);
      assert.equal((await get(callbackUrl(cb, { code: CODE, state: STATE }))).status, 200);
      assert.equal((await cb.result).get('code'), CODE);
    } finally {
      await cb.close();
    }
  });

  test('a second request is refused and does not change the result', async () => {
    const cb = await startLoopbackCallback({ expectedState: STATE });
    const first = await connected(cb.address.port);
    const second = await connected(cb.address.port);
    // Both handshakes are complete, so both connections wait in the listen queue: one pass of the
    // event loop's I/O phase (the callback server runs in this process) accepts them.
    for (let i = 0; i < 2; i++) await new Promise((resolve) => setImmediate(resolve));
    const firstResponse = readAll(first);
    const secondResponse = readAll(second);
    const request = (code: string): string =>
      `GET /callback?code=${code}&state=${STATE} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`;
    first.write(request('first-code'));
    second.write(request('second-code'));
    const [a, b] = await Promise.all([firstResponse, secondResponse]);
    assert.match(a, /^HTTP\/1\.1 200 /);
    assert.match(b, /^HTTP\/1\.1 400 /);
    assert.match(b, /already finished/);
    assert.equal((await cb.result).get('code'), 'first-code');
    await cb.close();
    // After the flow has ended nothing listens any more: a late request cannot reach anything.
    assert.equal(await refusesConnections('127.0.0.1', cb.address.port), true);
    assert.equal((await cb.result).get('code'), 'first-code');
  });

  test('times out with callback_timeout and closes', async () => {
    const cb = await startLoopbackCallback({ expectedState: STATE, timeoutMs: 50 });
    await assert.rejects(cb.result, (err: unknown) => {
      assert.ok(err instanceof AuthkeepError);
      assert.equal(err.code, 'callback_timeout');
      assert.ok(err.message.includes(cb.redirectUri));
      return true;
    });
    await cb.close();
    assert.equal(await refusesConnections('127.0.0.1', cb.address.port), true);
  });

  test('close() before any response rejects the result and frees the port', async () => {
    const cb = await startLoopbackCallback({ expectedState: STATE });
    await cb.close();
    await assert.rejects(cb.result, (err: unknown) => err instanceof AuthkeepError && err.code === 'callback_timeout');
    const again = await startLoopbackCallback({ expectedState: STATE, port: cb.address.port });
    assert.equal(again.address.port, cb.address.port);
    await again.close();
  });

  test("an error response from the expected issuer shows a failure page with the AS's error, escaped", async () => {
    const cb = await startLoopbackCallback({
      expectedState: STATE,
      expectedIssuer: { issuer: ISSUER, issParameterSupported: true },
    });
    const res = await get(
      callbackUrl(cb, { error: 'access_denied', error_description: 'The user said <no>', state: STATE, iss: ISSUER }),
    );
    assert.equal(res.status, 400);
    assert.match(res.body, /Sign-in failed/);
    assert.match(res.body, /access_denied: The user said &#60;no&#62;/);
    assert.ok(!res.body.includes('<no>'));
    const params = await cb.result;
    assert.throws(
      () => validateAuthorizationResponse(params, { state: STATE, issuer: ISSUER, issParameterSupported: true }),
      (err: unknown) => {
        assert.ok(err instanceof AuthkeepError);
        assert.equal(err.code, 'authorization_denied');
        assert.equal(err.detail?.error, 'access_denied');
        assert.equal(err.detail?.error_description, 'The user said <no>');
        return true;
      },
    );
    await cb.close();
  });

  for (const [name, iss] of [
    ['another issuer', 'https://evil.example'],
    ['the issuer with a trailing slash', `${ISSUER}/`],
    ['no iss while the AS advertises it', undefined],
  ] as const) {
    test(`an error response with ${name} (RFC 9207): nothing it says is shown, the sign-in ends with iss_mismatch`, async () => {
      const cb = await startLoopbackCallback({
        expectedState: STATE,
        expectedIssuer: { issuer: ISSUER, issParameterSupported: true },
      });
      const res = await get(
        callbackUrl(cb, {
          error: 'access_denied',
          error_description: 'Call +1-555-0100 to unlock your account',
          error_uri: 'https://evil.example/help',
          state: STATE,
          ...(iss === undefined ? {} : { iss }),
        }),
      );
      assert.equal(res.status, 400);
      assert.match(res.body, /did not come from the authorization server this sign-in was started with/);
      for (const said of ['access_denied', '555-0100', 'unlock', 'evil.example']) {
        assert.ok(!res.body.includes(said), `the page shows nothing of the response: ${said}`);
      }
      const params = await cb.result;
      assert.throws(
        () => validateAuthorizationResponse(params, { state: STATE, issuer: ISSUER, issParameterSupported: true }),
        { code: 'iss_mismatch', field: 'iss' },
      );
      await cb.close();
    });
  }

  test("without an issuer to check, an error response is shown without the AS's words", async () => {
    const cb = await startLoopbackCallback({ expectedState: STATE });
    const res = await get(
      callbackUrl(cb, { error: 'access_denied', error_description: 'Call +1-555-0100', state: STATE }),
    );
    assert.equal(res.status, 400);
    assert.match(res.body, /answered with an error/);
    assert.ok(!res.body.includes('555-0100') && !res.body.includes('access_denied'));
    await cb.close();
  });

  test('a response with the right state but no code shows a failure page', async () => {
    const cb = await startLoopbackCallback({ expectedState: STATE });
    const res = await get(callbackUrl(cb, { state: STATE }));
    assert.equal(res.status, 400);
    assert.match(res.body, /no authorization code/);
    await cb.close();
  });

  test('a port in use is a typed error', async () => {
    const cb = await startLoopbackCallback({ expectedState: STATE });
    try {
      await assert.rejects(startLoopbackCallback({ expectedState: STATE, port: cb.address.port }), (err: unknown) => {
        return err instanceof AuthkeepError && err.code === 'invalid_argument' && err.field === 'callback.port';
      });
    } finally {
      await cb.close();
    }
  });

  test('options are checked', async () => {
    await assert.rejects(startLoopbackCallback({ expectedState: STATE, path: 'callback' }), /callback path/);
    await assert.rejects(startLoopbackCallback({ expectedState: STATE, path: '/cb?x=1' }), /callback path/);
    await assert.rejects(
      startLoopbackCallback({ expectedState: STATE, host: '0.0.0.0' as '127.0.0.1' }),
      /callback host/,
    );
    await assert.rejects(startLoopbackCallback({ expectedState: '' }), /expectedState/);
  });
});

describe('validateAuthorizationResponse (RFC 6749 section 4.1.2, RFC 9207 section 2.4)', () => {
  const expected = { state: STATE, issuer: ISSUER, issParameterSupported: true };

  function assertCode(params: string, options: typeof expected, code: string, field: string): void {
    assert.throws(
      () => validateAuthorizationResponse(new URLSearchParams(params), options),
      (err: unknown) => {
        assert.ok(err instanceof AuthkeepError, String(err));
        assert.equal(err.code, code);
        assert.equal(err.field, field);
        assertNoSecrets(err, { 'the code': CODE }, 'error');
        return true;
      },
    );
  }

  test('accepts the expected state and issuer', () => {
    const params = new URLSearchParams({ code: CODE, state: STATE, iss: ISSUER });
    assert.deepStrictEqual(validateAuthorizationResponse(params, expected), { code: CODE });
  });

  test('a pasted redirect URL validates the same way', () => {
    const pasted = new URL(
      `http://127.0.0.1:5000/callback?code=${CODE}&state=${STATE}&iss=${encodeURIComponent(ISSUER)}`,
    );
    assert.deepStrictEqual(validateAuthorizationResponse(pasted.searchParams, expected), { code: CODE });
  });

  test('state: wrong, missing or repeated is state_mismatch', () => {
    assertCode(`code=${CODE}&state=other&iss=${ISSUER}`, expected, 'state_mismatch', 'state');
    assertCode(`code=${CODE}&iss=${ISSUER}`, expected, 'state_mismatch', 'state');
    assertCode(`code=${CODE}&state=${STATE}&state=${STATE}&iss=${ISSUER}`, expected, 'state_mismatch', 'state');
  });

  test('iss: compared by exact string, required when advertised', () => {
    assertCode(`code=${CODE}&state=${STATE}&iss=https://evil.example/tenant`, expected, 'iss_mismatch', 'iss');
    assertCode(`code=${CODE}&state=${STATE}&iss=${ISSUER}/`, expected, 'iss_mismatch', 'iss');
    assertCode(`code=${CODE}&state=${STATE}&iss=HTTPS://as.example/tenant`, expected, 'iss_mismatch', 'iss');
    assertCode(`code=${CODE}&state=${STATE}`, expected, 'iss_mismatch', 'iss');
    assertCode(`code=${CODE}&state=${STATE}&iss=${ISSUER}&iss=${ISSUER}`, expected, 'iss_mismatch', 'iss');
    const notAdvertised = { ...expected, issParameterSupported: false };
    assert.deepStrictEqual(
      validateAuthorizationResponse(new URLSearchParams(`code=${CODE}&state=${STATE}`), notAdvertised),
      { code: CODE },
    );
    assertCode(`code=${CODE}&state=${STATE}&iss=https://evil.example`, notAdvertised, 'iss_mismatch', 'iss');
  });

  test('the issuer is checked before an error is believed (RFC 9207 section 2.4)', () => {
    assertCode(`error=access_denied&state=${STATE}&iss=https://evil.example`, expected, 'iss_mismatch', 'iss');
  });

  test("an error response is authorization_denied with the AS's error", () => {
    assertCode(
      `error=invalid_scope&error_description=unknown+scope&state=${STATE}&iss=${ISSUER}`,
      expected,
      'authorization_denied',
      'error',
    );
  });

  test('code missing, empty or repeated names the code field', () => {
    assertCode(`state=${STATE}&iss=${ISSUER}`, expected, 'invalid_argument', 'code');
    assertCode(`code=&state=${STATE}&iss=${ISSUER}`, expected, 'invalid_argument', 'code');
    assertCode(`code=${CODE}&code=${CODE}&state=${STATE}&iss=${ISSUER}`, expected, 'invalid_argument', 'code');
  });
});
