/**
 * login-leader-child: another process signing in to one server, whose browser step the test
 * performs: instead of opening a browser it prints `open <authorization URL>` on stdout, then waits
 * for the callback like any sign-in (it holds the server's sign-in lock meanwhile). It ends by
 * printing `ok` or `failed <error code>`.
 *
 * Usage: login-leader-child <home> <serverUrl>
 * Not for: counting browser opens across processes (session-child.ts with $BROWSER does that).
 */
import { AuthKeeper, isAuthkeepError } from '../../src/index.js';

const [home, serverUrl] = process.argv.slice(2);
if (!home || !serverUrl) throw new Error('usage: login-leader-child <home> <serverUrl>');

const keeper = new AuthKeeper({
  home,
  allowInsecureLoopback: true,
  loginTimeoutMs: 60_000,
  openAuthorizationUrl: (url) => {
    process.stdout.write(`open ${url}\n`);
  },
});
try {
  await keeper.login(serverUrl);
  process.stdout.write('ok\n');
} catch (err) {
  process.stdout.write(`failed ${isAuthkeepError(err) ? err.code : 'unexpected'}\n`);
}
