/**
 * Two keepers on one store (two processes' view) signing in with the same machine grant at once:
 * the second decides it needs a sign-in after the first's token request has left, waits for the
 * first's login lock, and adopts its tokens instead of running the grant again. A sign-in with no
 * browser is nothing but its token request, so without this every process starting together
 * found the leader's tokens "older" than its own start (the arena's ci-workers scenario saw two
 * token requests for eight processes).
 *
 * The second test is the same race where the second never sees the lock held: it decides after the
 * first's request left, and reaches the lock only after the first has released it.
 *
 * Determinism: the first keeper's client secret is read after its request's send time is taken
 * and before the request goes out; the test holds that read until the second keeper says it waits
 * for the lock (its `login.waiting` event), and starts the second only once the clock has moved
 * past the first's send time. In the second test the second keeper's first request (discovery)
 * is held until the first sign-in has finished.
 */
import assert from 'node:assert/strict';
import { type TestContext, test } from 'node:test';
import type { ServerStatus } from '../../src/index.js';
import { type Bed, startBed } from '../helpers/bed.js';
import { recordLog } from '../helpers/log-events.js';

const SECRET = 'together-secret-0123456789abcdef';
const GRANT = { type: 'client_credentials' as const, clientId: 'ci-together', clientSecret: { file: '/secret' } };

/**
 * A bed with one pre-registered client-credentials client, and the first keeper's sign-in started
 * with its secret read held: `leading` settles once `releaseRead` is called; this resolves once
 * that read has begun and the clock has moved past the first's send time.
 */
async function firstSignInInFlight(
  t: TestContext,
): Promise<{ bed: Bed; url: string; leading: Promise<ServerStatus>; releaseRead: () => void }> {
  const bed = await startBed(t, {
    as: {
      clientCredentials: true,
      staticClients: [
        {
          client_id: 'ci-together',
          client_secret: SECRET,
          token_endpoint_auth_method: 'client_secret_basic' as const,
          grant_types: ['client_credentials'],
          response_types: [],
          redirect_uris: [],
          scope: 'mcp:read mcp:write mcp:admin',
        },
      ],
    },
    servers: [{ discovery: 'header' }],
  });
  const url = bed.servers[0]!.url;
  let readStarted!: (at: number) => void;
  const firstReadStarted = new Promise<number>((resolve) => {
    readStarted = resolve;
  });
  let releaseRead!: () => void;
  const held = new Promise<void>((resolve) => {
    releaseRead = resolve;
  });
  const first = bed.keeper({
    secretReader: {
      env: {},
      readFile: async () => {
        readStarted(Date.now());
        await held;
        return SECRET;
      },
    },
  });
  const leading = first.login(url, { grant: GRANT });
  const readAt = await firstReadStarted;
  // The clock past the first's send time (taken before this read): the second starts later.
  while (Date.now() <= readAt) await new Promise((resolve) => setImmediate(resolve));
  return { bed, url, leading, releaseRead };
}

test('a machine sign-in that starts while another one is in flight adopts its tokens: one token request', async (t) => {
  const { bed, url, leading, releaseRead } = await firstSignInInFlight(t);
  const secondLog = recordLog();
  const second = bed.keeper({ secretReader: { env: {}, readFile: async () => SECRET }, log: secondLog.sink });
  const following = second.login(url, { grant: GRANT });
  await secondLog.next('login.waiting');
  releaseRead();

  const [a, b] = await Promise.all([leading, following]);
  assert.equal(a.state, 'ok');
  assert.equal(b.state, 'ok');
  assert.equal(bed.as.audit.counts().clientCredentialsGrants, 1, 'one token request for both');
  assert.equal(secondLog.named('login.adopted').length, 1, 'the second adopted the first sign-in');
  assert.equal(await second.getAccessToken(url), await bed.keeper().getAccessToken(url), 'the same token');
});

test('a machine sign-in decided while another was in flight adopts it even when it reaches the lock after its release', async (t) => {
  const { bed, url, leading, releaseRead } = await firstSignInInFlight(t);
  let secondFetched!: () => void;
  const secondStarted = new Promise<void>((resolve) => {
    secondFetched = resolve;
  });
  let releaseSecond!: () => void;
  const secondGate = new Promise<void>((resolve) => {
    releaseSecond = resolve;
  });
  const secondLog = recordLog();
  const second = bed.keeper({
    secretReader: { env: {}, readFile: async () => SECRET },
    log: secondLog.sink,
    fetch: async (input, init) => {
      secondFetched();
      await secondGate;
      return fetch(input, init);
    },
  });
  const following = second.login(url, { grant: GRANT });
  await secondStarted; // the second has decided it needs a sign-in, and waits on its discovery
  releaseRead();
  const a = await leading; // the first has signed in and released the login lock
  releaseSecond();
  const b = await following;

  assert.equal(a.state, 'ok');
  assert.equal(b.state, 'ok');
  assert.equal(secondLog.named('login.waiting').length, 0, 'the second never saw the lock held');
  assert.equal(bed.as.audit.counts().clientCredentialsGrants, 1, 'one token request for both');
  assert.equal(secondLog.named('login.adopted').length, 1, 'the second adopted the first sign-in');
  assert.equal(await second.getAccessToken(url), await bed.keeper().getAccessToken(url), 'the same token');
});
