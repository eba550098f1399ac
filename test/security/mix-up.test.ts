/**
 * Attack class: mix-up (RFC 9207; MCP "Authorization Response Validation", "Mix-Up Attacks"). An
 * authorization response that names another issuer (or none, where the AS advertises
 * `authorization_response_iss_parameter_supported`) reaches the loopback redirect URI of a real
 * sign-in. What must NOT happen: its code being sent to any token endpoint, or anything it carries
 * (`error`, `error_description`, `error_uri`) being acted on or displayed: not on the page the
 * browser gets, not in the error the sign-in ends with. Against a real hostile HTTP server through
 * the public AuthKeeper API, with a "browser" that follows the AS's redirect and keeps the page.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AuthKeeper, AuthkeepError } from '../../src/index.js';
import { asMetadata } from '../helpers/hostile-server.js';
import { type HostileWorld, hostileWorld } from '../helpers/hostile-world.js';

const DESCRIPTION = 'Your session expired. Call +1-555-0100 to restore access';

/** The AS's authorization endpoint redirects back with `params`, the state, and `iss` if given. */
function authorizeAnswers(w: HostileWorld, params: Record<string, string>, iss: string | undefined): void {
  w.server.on('GET', '/authorize', (req) => {
    const query = new URL(req.path, w.origin).searchParams;
    const back = new URL(query.get('redirect_uri') as string);
    for (const [k, v] of Object.entries(params)) back.searchParams.set(k, v);
    back.searchParams.set('state', query.get('state') as string);
    if (iss !== undefined) back.searchParams.set('iss', iss);
    return { status: 302, headers: { location: back.href } };
  });
}

for (const [name, iss] of [
  ['another issuer', 'https://honest.example'],
  ['no iss although the AS advertises it', undefined],
] as const) {
  for (const response of ['an error response', 'a code'] as const) {
    test(`${response} with ${name}: not acted on, nothing of it shown on the page or in the error`, async (t) => {
      const w = await hostileWorld(t);
      w.server.json(
        '/.well-known/oauth-authorization-server',
        asMetadata(w.origin, w.origin, {
          revocation_endpoint: undefined,
          authorization_response_iss_parameter_supported: true,
        }),
      );
      authorizeAnswers(
        w,
        response === 'a code'
          ? { code: 'stolen-code-from-the-honest-as' }
          : { error: 'access_denied', error_description: DESCRIPTION, error_uri: 'https://help.example/unlock' },
        iss,
      );
      let page = '';
      const keeper = new AuthKeeper({
        home: w.home,
        allowInsecureLoopback: true,
        loginTimeoutMs: 20_000,
        openAuthorizationUrl: async (url) => {
          page = await (await fetch(url)).text(); // follows the AS's redirect to the loopback page
        },
      });
      await assert.rejects(keeper.login(w.mcpUrl), (err: unknown) => {
        assert.ok(err instanceof AuthkeepError, String(err));
        assert.equal(err.code, 'iss_mismatch');
        assert.equal(err.field, 'iss');
        const said = `${err.message} ${JSON.stringify(err.detail ?? {})}`;
        for (const word of ['access_denied', '555-0100', 'help.example']) assert.ok(!said.includes(word), word);
        return true;
      });
      assert.match(page, /did not come from the authorization server this sign-in was started with/);
      for (const word of ['access_denied', '555-0100', 'help.example', 'honest.example']) {
        assert.ok(!page.includes(word), `the page shows nothing of the response: ${word}`);
      }
      assert.deepEqual(w.server.requestsTo('POST', '/token'), [], 'no code was sent to a token endpoint');
    });
  }
}
