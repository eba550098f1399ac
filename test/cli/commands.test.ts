/**
 * The CLI's commands in-process, with fake dependencies: flag parsing and exit code 2, the
 * one-line errors with hints (stack traces only with --debug), the exact needs-auth line and
 * exit 4, output shapes of status / logout / login, --help on every command, NO_COLOR, the
 * --no-browser paste delivery, the proxy's mcp-remote flags, and doctor on a temp store.
 */
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { parseProxyOptions } from '../../src/cli/commands/proxy.js';
import { parseGlobalOptions } from '../../src/cli/global-options.js';
import { createSpinner, makeStyle, renderTable } from '../../src/cli/output.js';
import { deliveryUrl, pasteRedirectOpener } from '../../src/cli/paste-redirect.js';
import { runCli } from '../../src/cli/program.js';
import { AuthkeepError, NeedsAuthError } from '../../src/errors.js';
import type { ServerStatus } from '../../src/session/status.js';
import { recordKey, storeLayout } from '../../src/store/paths.js';
import { BufferWriter, fakeDeps } from '../helpers/cli-fakes.js';

const URL_A = 'https://mcp.example.com/mcp';
const NOW = Date.parse('2025-01-01T00:00:00Z');

const okStatus: ServerStatus = {
  serverUrl: URL_A,
  state: 'ok',
  issuer: 'https://as.example.com',
  clientId: 'client-123',
  registration: 'dynamic',
  scope: 'mcp:read offline_access',
  accessTokenExpiresAt: new Date(NOW + 59 * 60_000).toISOString(),
  accessTokenValid: true,
  hasRefreshToken: true,
  refreshTokenAgeSeconds: 3 * 86400 + 3600,
  lastRefreshAt: new Date(NOW - 120_000).toISOString(),
  generation: 4,
};

const needsAuthStatus: ServerStatus = {
  serverUrl: 'https://other.example.com/mcp',
  state: 'needs-auth',
  issuer: 'https://as.example.com',
  clientId: 'client-123',
  registration: 'dynamic',
  needsAuth: {
    reason: 'invalid_grant',
    error: 'invalid_grant',
    errorDescription: 'grant request is invalid',
    at: '2024-12-31T23:00:00.000Z',
    request: 'POST https://as.example.com/token (refresh_token)',
    fix: 'authkeep login https://other.example.com/mcp',
  },
};

test('usage errors exit 2 with one line and a hint', async () => {
  const cases: Array<[string[], RegExp]> = [
    [['token'], /missing required argument 'url'/],
    [['login', URL_A, '--bogus'], /unknown option '--bogus'/],
    [['frobnicate'], /unknown command 'frobnicate'/],
    [['token', 'not a url'], /not an absolute URL/],
    [['login', URL_A, '--client-secret-file', '/x'], /--client-secret-file needs --client-id/],
    [['login', URL_A, '--callback-port', 'http'], /--callback-port must be a port number/],
    [['proxy', URL_A, '--transport', 'carrier-pigeon'], /--transport must be one of/],
    [['proxy', URL_A, '--header', 'no colon here'], /is not "Name: value"/],
  ];
  for (const [argv, pattern] of cases) {
    const deps = fakeDeps();
    assert.equal(await runCli(argv, deps), 2, `${argv.join(' ')} exits 2`);
    assert.match(deps.stderr.text, /^authkeep: /, `${argv.join(' ')}: starts with authkeep:`);
    assert.match(deps.stderr.text, pattern);
    assert.match(deps.stderr.text, /\nhint: /, `${argv.join(' ')}: has a hint`);
    assert.equal(deps.stdout.text, '');
  }
});

test('--help on every command shows examples and the exit codes, and exits 0', async () => {
  for (const argv of [
    ['--help'],
    ...['login', 'token', 'status', 'logout', 'doctor', 'proxy'].map((c) => [c, '--help']),
  ]) {
    const deps = fakeDeps();
    assert.equal(await runCli(argv, deps), 0, argv.join(' '));
    assert.match(deps.stdout.text, /Examples:\n {2}\$ authkeep /, `${argv.join(' ')} has examples`);
    assert.match(
      deps.stdout.text,
      /Exit codes:\n {2}0 {2}ok\n {2}1 {2}error.*\n {2}2 {2}usage.*\n {2}4 {2}needs-auth/,
      `${argv.join(' ')} documents exit codes`,
    );
  }
  const version = fakeDeps();
  assert.equal(await runCli(['--version'], version), 0);
  assert.match(version.stdout.text, /^\d+\.\d+\.\d+\n$/);
});

test('token prints the token and a newline only; needs-auth is exit 4 with the reason line', async () => {
  const good = fakeDeps({ getAccessToken: async () => 'eyJ.token.value' });
  assert.equal(await runCli(['token', URL_A], good), 0);
  assert.equal(good.stdout.text, 'eyJ.token.value\n');
  assert.equal(good.stderr.text, '');

  const needs = fakeDeps({
    getAccessToken: async (serverUrl) => {
      throw new NeedsAuthError({
        reason: 'invalid_grant',
        error: 'invalid_grant',
        errorDescription: 'grant request is invalid',
        at: new Date(NOW).toISOString(),
        serverUrl,
      });
    },
  });
  assert.equal(await runCli(['token', URL_A], needs), 4);
  assert.equal(needs.stdout.text, '');
  assert.equal(
    needs.stderr.text,
    `authkeep: needs-auth (invalid_grant): the authorization server refused the refresh token (grant request is invalid). Run: authkeep login ${URL_A}\n`,
  );
});

test('other failures exit 1 with one line and a hint, and a stack trace only with --debug', async () => {
  const failing = () =>
    fakeDeps({
      getAccessToken: async () =>
        Promise.reject(new AuthkeepError('as_unreachable', 'POST https://as.example.com/token failed: ECONNREFUSED')),
    });
  const plain = failing();
  assert.equal(await runCli(['token', URL_A], plain), 1);
  const lines = plain.stderr.text.trimEnd().split('\n');
  assert.equal(lines.length, 2, plain.stderr.text);
  assert.match(
    lines[0] ?? '',
    /^authkeep: POST https:\/\/as\.example\.com\/token failed: ECONNREFUSED \[as_unreachable\]$/,
  );
  assert.match(
    lines[1] ?? '',
    /^hint: check the network.*authkeep doctor https:\/\/mcp\.example\.com\/mcp checks both servers$/,
  );
  assert.equal(plain.stdout.text, '');

  const debug = failing();
  assert.equal(await runCli(['token', URL_A, '--debug'], debug), 1);
  assert.match(debug.stderr.text, /\n {4}at /, 'stack trace with --debug');
  assert.match(debug.stderr.text, /"event":"cli\.token\.start"/, 'JSON log events with --debug');

  const bug = fakeDeps({ getAccessToken: async () => Promise.reject(new TypeError('x is undefined')) });
  assert.equal(await runCli(['token', URL_A], bug), 1);
  assert.equal(
    bug.stderr.text,
    'authkeep: unexpected error: x is undefined\nhint: rerun with --debug for details; if it persists, report it\n',
  );
});

test('global flags: --home, $AUTHKEEP_HOME, --allow-http reach the keeper, before or after the command', async () => {
  const deps = fakeDeps({ getAccessToken: async () => 't' });
  await runCli(['--home', '/tmp/a', 'token', URL_A], deps);
  await runCli(['token', URL_A, '--allow-http', '--home', '/tmp/b'], deps);
  await runCli(['token', URL_A], deps);
  assert.equal(deps.keeperOptions[0]?.home, '/tmp/a');
  assert.equal(deps.keeperOptions[0]?.allowInsecureLoopback, false);
  assert.equal(deps.keeperOptions[1]?.home, '/tmp/b');
  assert.equal(deps.keeperOptions[1]?.allowInsecureLoopback, true);
  assert.equal(deps.keeperOptions[2]?.home, '/tmp/authkeep-fake-home');
  assert.equal(deps.keeperOptions[2]?.log, undefined, 'no log sink without --debug');
  assert.equal(parseGlobalOptions({}, { XDG_DATA_HOME: '/xdg' }).home.endsWith(path.join('authkeep')), true);
});

test('status prints a table with needs-auth reason and fix, or the ServerStatus array as JSON', async () => {
  const deps = fakeDeps({ status: async () => [okStatus, needsAuthStatus] });
  deps.env = { ...deps.env, COLUMNS: '200' }; // every column (80, the default, leaves some out)
  assert.equal(await runCli(['status'], deps), 0);
  const out = deps.stdout.text;
  assert.match(
    out,
    /^SERVER {2,}ISSUER {2,}CLIENT ID {2,}REGISTRATION {2,}ACCESS EXPIRES {2,}REFRESH AGE {2,}LAST REFRESH {2,}STATE\n/,
  );
  assert.match(
    out,
    /https:\/\/mcp\.example\.com\/mcp +https:\/\/as\.example\.com +client-123 +dynamic +in 59m +3d 1h +2m ago +ok\n/,
  );
  assert.match(out, /https:\/\/other\.example\.com\/mcp .* needs-auth \(invalid_grant\)\n/);
  assert.match(
    out,
    /needs-auth https:\/\/other\.example\.com\/mcp: the authorization server refused the refresh token \(grant request is invalid\)\n/,
  );
  assert.match(out, /on POST https:\/\/as\.example\.com\/token \(refresh_token\), error invalid_grant\n/);
  assert.match(out, / {2}fix: authkeep login https:\/\/other\.example\.com\/mcp\n/);
  assert.doesNotMatch(out, /\u001b\[/, 'no colors when stdout is not a TTY');

  const json = fakeDeps({ status: async () => [okStatus, needsAuthStatus] });
  assert.equal(await runCli(['status', '--json'], json), 0);
  assert.deepEqual(JSON.parse(json.stdout.text), [okStatus, needsAuthStatus]);

  const empty = fakeDeps({ status: async () => [] });
  assert.equal(await runCli(['status'], empty), 0);
  assert.match(empty.stdout.text, /No servers signed in .*\nRun: authkeep login <url>\n/);
});

test('logout says whether it revoked, deleted, or found nothing', async () => {
  const both = fakeDeps({
    status: async () => [okStatus],
    logout: async () => ({ revoked: true, deleted: true, revocation: 'revoked' }),
  });
  assert.equal(await runCli(['logout', URL_A], both), 0);
  assert.equal(
    both.stdout.text,
    `✓ Revoked the tokens at https://as.example.com and deleted the stored credentials for ${URL_A}\n`,
  );
  const local = fakeDeps({
    status: async () => [okStatus],
    logout: async () => ({ revoked: false, deleted: true, revocation: 'unsupported' }),
  });
  assert.equal(await runCli(['logout', URL_A], local), 0);
  assert.match(
    local.stdout.text,
    /Deleted the stored credentials .*\n {2}not revoked: the authorization server https:\/\/as\.example\.com offers no revocation/,
  );
  const none = fakeDeps({ logout: async () => ({ revoked: false, deleted: false, revocation: 'nothing' }) });
  assert.equal(await runCli(['logout', URL_A, '--json'], none), 0);
  assert.deepEqual(JSON.parse(none.stdout.text), {
    serverUrl: URL_A,
    revoked: false,
    deleted: false,
    revocation: 'nothing',
  });
});

test('login passes scope, callback port and a pre-registered client, and says where it stored what', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'authkeep-cli-unit-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const secretFile = path.join(dir, 'secret');
  await writeFile(secretFile, 's3cret-value\n');
  let seen: { scope?: string } | undefined;
  const deps = fakeDeps({
    home: '/tmp/h',
    login: async (_url, options) => {
      seen = options;
      return { ...okStatus, registration: 'pre_registered', clientId: 'my-app' };
    },
  });
  const code = await runCli(
    [
      'login',
      URL_A,
      '--scope',
      'mcp:write',
      '--client-id',
      'my-app',
      '--client-secret-file',
      secretFile,
      '--callback-port',
      '4567',
    ],
    deps,
  );
  assert.equal(code, 0, deps.stderr.text);
  assert.deepEqual(seen, { scope: 'mcp:write' });
  const options = deps.keeperOptions[0]!;
  assert.deepEqual(options.callback, { port: 4567 });
  assert.deepEqual(options.staticClients, { [URL_A]: { clientId: 'my-app', clientSecret: 's3cret-value' } });
  const record = storeLayout('/tmp/h').recordPath(recordKey(URL_A));
  assert.match(deps.stdout.text, /^✓ Signed in to https:\/\/mcp\.example\.com\/mcp\n/);
  assert.ok(deps.stdout.text.includes(`  home          /tmp/h\n  record        ${record}\n`));
  assert.ok(deps.stdout.text.includes('  client_id     my-app (pre-registered client)\n'));
  assert.ok(deps.stdout.text.includes('  scope         mcp:read offline_access\n'));
  assert.match(deps.stdout.text, / {2}access token {2}expires in 59m \(2025-01-01T00:59:00\.000Z\)\n/);
  assert.ok(!(deps.stdout.text + deps.stderr.text).includes('s3cret-value'), 'never prints the client secret');

  const json = fakeDeps({ home: '/tmp/h', login: async () => okStatus });
  assert.equal(await runCli(['login', URL_A, '--json'], json), 0);
  assert.deepEqual(JSON.parse(json.stdout.text), { ...okStatus, home: '/tmp/h', recordPath: record });
});

test('login --no-browser prints the URL, reads the pasted redirect and GETs it on the loopback listener', async () => {
  const authorize = `https://as.example.com/auth?client_id=c&redirect_uri=${encodeURIComponent('http://localhost:5555/callback')}&state=abc`;
  const deps = fakeDeps();
  deps.fetch = async (input) => {
    deps.fetched.push(String(input));
    return new Response('ok', { status: 200 });
  };
  const opened = pasteRedirectOpener({ stderr: deps.stderr, stdin: deps.stdinStream, fetch: deps.fetch })(authorize);
  deps.stdinStream.write('  http://localhost:5555/callback?code=SECRET&state=abc&iss=x  \n');
  await opened;
  assert.deepEqual(deps.fetched, ['http://127.0.0.1:5555/callback?code=SECRET&state=abc&iss=x']);
  assert.ok(deps.stderr.text.includes(`\n  ${authorize}\n`));
  assert.ok(!deps.stderr.text.includes('SECRET'));

  assert.throws(
    () => deliveryUrl('https://evil.example/callback?code=x', 'http://127.0.0.1:5555/callback'),
    /not this sign-in's redirect URL/,
  );
  assert.throws(
    () => deliveryUrl('http://127.0.0.1:5556/callback?code=x', 'http://127.0.0.1:5555/callback'),
    /not this sign-in's redirect URL/,
  );
  assert.throws(
    () => deliveryUrl('http://127.0.0.1:5555/callback', 'http://127.0.0.1:5555/callback'),
    /neither code nor error/,
  );
  assert.throws(() => deliveryUrl('garbage', 'http://127.0.0.1:5555/callback'), /not a URL/);

  const closed = fakeDeps();
  const waiting = pasteRedirectOpener({ stderr: closed.stderr, stdin: closed.stdinStream, fetch: closed.fetch })(
    authorize,
  );
  closed.stdinStream.end();
  await assert.rejects(waiting, /no redirect URL was pasted/);
});

test('proxy accepts mcp-remote flags: headers with ${ENV}, client info as JSON or @file, transport, host', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'authkeep-cli-unit-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const info = path.join(dir, 'client.json');
  await writeFile(info, JSON.stringify({ client_id: 'pre', client_secret: 'shh' }));
  const stderr = new BufferWriter();
  const global = parseGlobalOptions({ home: dir, allowHttp: true }, {});
  const { proxy } = parseProxyOptions(
    'http://127.0.0.1:9999/mcp',
    '3334',
    {
      header: ['Authorization-Extra: Bearer ${API_KEY}', 'X-Trace: a:b:c', 'X-Missing: ${NOPE}x'],
      staticOauthClientInfo: `@${info}`,
      staticOauthClientMetadata: '{"client_name":"My Client","scope":"mcp:read"}',
      host: '127.0.0.1',
      transport: 'sse-only',
      resource: 'https://isolate.example/',
    },
    global,
    { env: { API_KEY: 'k-123' }, stderr },
  );
  assert.equal(proxy.serverUrl, 'http://127.0.0.1:9999/mcp');
  assert.equal(proxy.callbackPort, 3334);
  assert.deepEqual(proxy.headers, { 'Authorization-Extra': 'Bearer k-123', 'X-Trace': 'a:b:c', 'X-Missing': 'x' });
  assert.match(stderr.text, /authkeep: warning: environment variable NOPE .*is not set/);
  assert.deepEqual(proxy.staticClientInfo, { client_id: 'pre', client_secret: 'shh' });
  assert.deepEqual(proxy.staticClientMetadata, { client_name: 'My Client', scope: 'mcp:read' });
  assert.equal(proxy.transport, 'sse-only');
  assert.equal(proxy.resource, 'https://isolate.example/');
  assert.equal(proxy.allowHttp, true);
  assert.equal(proxy.host, '127.0.0.1');
  assert.equal(proxy.home, dir);
});

test('doctor on a temp store: a stale lock and a loose directory each come with their fix; exit 1', async (t) => {
  const home = await mkdtemp(path.join(tmpdir(), 'authkeep-cli-doctor-'));
  t.after(() => rm(home, { recursive: true, force: true }));
  const layout = storeLayout(home);
  await mkdir(layout.locksDir, { mode: 0o700 });
  await mkdir(layout.serversDir, { mode: 0o700 });
  await chmod(layout.serversDir, 0o755);
  const lockName = layout.lockName(recordKey(URL_A), 'refresh');
  // A holder on this host whose pid cannot exist: a waiter would take it over at once.
  await writeFile(
    path.join(layout.locksDir, `${lockName}.lock`),
    JSON.stringify({
      pid: 2 ** 22 + 12345,
      hostname: hostname(),
      nonce: 'deadbeefdeadbeef',
      acquiredAt: new Date().toISOString(),
      purpose: 'refresh',
      staleMs: 10000,
    }),
    { mode: 0o600 },
  );
  const deps = fakeDeps({ home, status: async () => [okStatus] });
  deps.env = { AUTHKEEP_HOME: home };
  assert.equal(await runCli(['doctor', '--home', home], deps), 1, deps.stdout.text + deps.stderr.text);
  const out = deps.stdout.text;
  assert.match(out, new RegExp(`✗ lock +stale lock ${lockName}: its holder process is gone; held by pid \\d+`));
  assert.ok(
    out.includes(
      `fix: the next authkeep command takes it over by itself; to clear it now: rm ${path.join(layout.locksDir, `${lockName}.lock`)}`,
    ),
  );
  assert.match(out, /✗ file_mode +directory .*servers is 0755, should be 0700/);
  assert.ok(out.includes(`fix: chmod 700 ${layout.serversDir}`));
  assert.match(
    out,
    /✓ state +https:\/\/mcp\.example\.com\/mcp: signed in \(access token valid for 59m, refresh token stored\)/,
  );
  assert.match(out, /✓ reachability +server https:\/\/mcp\.example\.com answered HTTP 401/);
  assert.deepEqual(deps.fetched.sort(), ['https://as.example.com/.well-known/oauth-authorization-server', URL_A]);
  assert.match(out, /\n2 problems found\.\n$/);
});

test('output: NO_COLOR and non-TTY disable colors; the spinner animates only on a TTY', () => {
  const tty = new BufferWriter(true);
  assert.equal(makeStyle(tty, {}).color, true);
  assert.equal(makeStyle(tty, { NO_COLOR: '1' }).color, false);
  assert.equal(makeStyle(tty, { TERM: 'dumb' }).color, false);
  assert.equal(makeStyle(new BufferWriter(false), {}).color, false);
  assert.equal(renderTable(['A', 'BB'], [['xxx', 'y']]), 'A    BB\nxxx  y\n');

  const plain = new BufferWriter(false);
  const s1 = createSpinner(plain, {});
  s1.start('Waiting...');
  s1.stop();
  assert.equal(plain.text, 'Waiting...\n');
  const term = new BufferWriter(true);
  const s2 = createSpinner(term, { NO_COLOR: '1' });
  s2.start('Waiting...');
  s2.stop();
  assert.match(term.text, /^\r\u001b\[2K⠋ Waiting\.\.\.\r\u001b\[2K$/);
  assert.doesNotMatch(term.text, /\u001b\[3\dm/, 'no color codes');
});
