/**
 * Attack class: terminal escape injection. A hostile MCP server or authorization server puts ESC
 * sequences (clear the screen, move the cursor, retitle the window), C1 controls, DEL, line breaks
 * and bidi overrides in every string it controls: the authorization response's and the token
 * endpoint's error_description, the device flow's user_code and verification URI, client_id and
 * scope. What must NOT happen: any of those characters reaching a terminal raw (CLI stdout and
 * stderr, `--debug`, the proxy's stderr and log file, an embedder printing NeedsAuthError), a
 * forged line ("✓ Signed in ...") of its own, markup in the loopback page, or `--json` output that
 * is not exact JSON of the stored value. The sanitiser is src/display-text.ts; the attacks here run
 * against a real hostile HTTP server through the real CLI (in-process) and the real proxy.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { type TestContext, test } from 'node:test';
import type { CliDeps } from '../../src/cli/deps.js';
import { runCli } from '../../src/cli/program.js';
import { displayJson, displayText } from '../../src/display-text.js';
import { AuthKeeper, AuthkeepError, NeedsAuthError } from '../../src/index.js';
import { runProxy } from '../../src/mcp/proxy.js';
import { watchFileChanges } from '../../src/store/file-change-watch.js';
import { tempHome } from '../helpers/bed.js';
import { BufferWriter } from '../helpers/cli-fakes.js';
import { asMetadata } from '../helpers/hostile-server.js';
import { type HostileWorld, hostileWorld } from '../helpers/hostile-world.js';
import { expireStoredTokens } from '../helpers/records.js';

/** Clear screen, home, retitle, a forged line, RLO, CSI as C1, DEL, and markup. */
const PAYLOAD =
  '\u001b[2J\u001b[H\u001b]0;pwned\u0007\r\n✓ Signed in to https://bank.example\u202egnp.exe\u009b31m\u007f<script>alert(1)</script>';

/** Everything a terminal acts on or reorders; a plain line break is ours to print. */
const UNSAFE = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]/u;

function assertPrintable(what: string, text: string): void {
  const found = UNSAFE.exec(text);
  assert.equal(
    found,
    null,
    `${what} holds U+${found?.[0].codePointAt(0)?.toString(16).padStart(4, '0')}: ${JSON.stringify(text)}`,
  );
  for (const line of text.split('\n')) {
    assert.ok(!line.startsWith('✓ Signed in to https://bank'), `${what} prints a forged line`);
  }
}

/** A real `$BROWSER` that follows the AS's redirects like a browser and saves the last page it got. */
async function followingBrowser(dir: string): Promise<{ script: string; page: string }> {
  const script = path.join(dir, 'following-browser');
  const page = path.join(dir, 'page.html');
  await writeFile(
    script,
    `#!${process.execPath}
fetch(process.argv[2]).then(async (r) => {
  const fs = require('node:fs');
  fs.writeFileSync(${JSON.stringify(`${page}.part`)}, await r.text());
  fs.renameSync(${JSON.stringify(`${page}.part`)}, ${JSON.stringify(page)});
});
`,
  );
  await chmod(script, 0o755);
  return { script, page };
}

/** The hostile AS's authorization endpoint: redirects back with `params` plus the state and iss. */
function authorizeAnswers(w: HostileWorld, params: Record<string, string>): void {
  w.server.on('GET', '/authorize', (req) => {
    const query = new URL(req.path, w.origin).searchParams;
    const back = new URL(query.get('redirect_uri') as string);
    for (const [k, v] of Object.entries(params)) back.searchParams.set(k, v);
    back.searchParams.set('state', query.get('state') as string);
    back.searchParams.set('iss', w.origin);
    return { status: 302, headers: { location: back.href } };
  });
}

interface Cli {
  deps: CliDeps & { stdout: BufferWriter; stderr: BufferWriter };
  run(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
}

/** The real CLI in-process: real AuthKeeper, real fetch, a real `$BROWSER`. */
async function cli(t: TestContext, w: HostileWorld): Promise<Cli & { page: string }> {
  const browser = await followingBrowser(await tempHome(t));
  const env: NodeJS.ProcessEnv = { AUTHKEEP_HOME: w.home, BROWSER: browser.script, NO_COLOR: '1' };
  const make = () => ({
    stdout: new BufferWriter(),
    stderr: new BufferWriter(),
    stdin: new PassThrough(),
    env,
    createKeeper: (options: ConstructorParameters<typeof AuthKeeper>[0]) =>
      new AuthKeeper({ ...options, loginTimeoutMs: 20_000, transientRetryDelaysMs: [] }),
    fetch: globalThis.fetch,
    now: () => Date.now(),
  });
  const deps = make();
  return {
    deps,
    page: browser.page,
    async run(...args) {
      const d = make();
      const code = await runCli([...args, '--allow-http'], d);
      return { code, stdout: d.stdout.text, stderr: d.stderr.text };
    },
  };
}

test('sign-in: error_description in the authorization response reaches neither the terminal nor the page raw', async (t) => {
  const w = await hostileWorld(t);
  authorizeAnswers(w, { error: 'access_denied', error_description: PAYLOAD });
  const c = await cli(t, w);
  // The browser saves the page after the CLI has answered it: wait for the save, not a time.
  const saved = watchFileChanges(c.page);
  t.after(() => saved.close());
  const out = await c.run('login', w.mcpUrl);
  assert.equal(out.code, 1, out.stderr);
  assertPrintable('stderr', out.stderr);
  assertPrintable('stdout', out.stdout);
  assert.match(out.stderr, /access_denied/, 'the refusal is reported');
  assert.match(out.stderr, /\\x1b\[2J/, 'the escape is shown visibly, as evidence');
  if (!existsSync(c.page)) assert.equal(await saved.next(60_000), 'changed', 'the browser saved the page');
  const page = await readFile(c.page, 'utf8');
  assert.match(page, /Sign-in failed/);
  assert.ok(!page.includes('<script>'), 'no markup from the AS in the page');
  assertPrintable('the loopback page', page.replace(/\n/g, ' '));
});

test('refresh: error_description from the token endpoint is printed safely by token, status and doctor; status --json is exact JSON', async (t) => {
  const w = await hostileWorld(t);
  const keeper = new AuthKeeper({ home: w.home, allowInsecureLoopback: true, openAuthorizationUrl: w.approve() });
  await keeper.login(w.mcpUrl);
  await expireStoredTokens(w.home, w.mcpUrl);
  w.server.on('POST', '/token', { status: 400, json: { error: 'invalid_grant', error_description: PAYLOAD } });
  const c = await cli(t, w);

  const token = await c.run('token', w.mcpUrl, '--debug');
  assert.equal(token.code, 4, token.stderr);
  assert.equal(token.stdout, '', 'no token printed');
  assertPrintable('token stderr (with --debug)', token.stderr);

  // The marker stored in the record is printed again by status and doctor.
  for (const args of [['status'], ['status', w.mcpUrl], ['doctor', w.mcpUrl]]) {
    const out = await c.run(...(args as [string, ...string[]]));
    assertPrintable(`${args.join(' ')} stdout`, out.stdout);
    assertPrintable(`${args.join(' ')} stderr`, out.stderr);
  }
  const json = await c.run('status', '--json');
  assertPrintable('status --json', json.stdout);
  const statuses = JSON.parse(json.stdout) as Array<{ needsAuth?: { errorDescription?: string } }>;
  // `status --json` rows are the keeper's statuses with the account they belong to.
  const expected = (await keeper.status()).map((status) => ({ ...status, account: 'default' }));
  assert.deepEqual(statuses, JSON.parse(JSON.stringify(expected)), 'exact JSON of the status');
  assert.equal(statuses[0]?.needsAuth?.errorDescription, displayText(PAYLOAD), 'stored made safe, escapes visible');

  // An embedder printing the library's error gets safe text as well.
  await assert.rejects(new AuthKeeper({ home: w.home }).getAccessToken(w.mcpUrl), (err: unknown) => {
    assert.ok(err instanceof NeedsAuthError);
    assertPrintable('NeedsAuthError.message', err.message);
    assertPrintable('NeedsAuthError.info', JSON.stringify(err.info).replace(/\\u[0-9a-f]{4}/g, ''));
    assertPrintable('NeedsAuthError.info.errorDescription', err.info.errorDescription ?? '');
    return true;
  });
});

test('device sign-in: a user_code and verification URIs with escape sequences are printed safely', async (t) => {
  const w = await hostileWorld(t);
  w.server
    .json(
      '/.well-known/oauth-authorization-server',
      asMetadata(w.origin, w.origin, {
        revocation_endpoint: undefined,
        device_authorization_endpoint: `${w.origin}/device`,
        grant_types_supported: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
      }),
    )
    .on('POST', '/device', {
      json: {
        device_code: 'device-code-1',
        user_code: `\u001b[8m${PAYLOAD}`,
        verification_uri: `${w.origin}/device?x=\u001b[2J\u202e`,
        verification_uri_complete: `${w.origin}/device?user_code=${PAYLOAD}`,
        // A code that expires before the first poll: the failure comes at once, no polling.
        expires_in: 1,
        interval: 5,
      },
    });
  const c = await cli(t, w);
  const out = await c.run('login', w.mcpUrl, '--device');
  assert.equal(out.code, 1, out.stderr);
  assertPrintable('stderr', out.stderr);
  assertPrintable('stdout', out.stdout);
  assert.match(out.stderr, /enter the code: {2}\\x1b\[8m/, 'the code is shown, its escapes visible');
});

test('sign-in summary: a client_id and scope with escape sequences are printed safely; --json stays exact', async (t) => {
  const w = await hostileWorld(t, {
    access_token: 'access-token-1',
    token_type: 'Bearer',
    expires_in: 3600,
    refresh_token: 'refresh-token-1',
    scope: `mcp:read\u202e\u001b[2J`,
  });
  w.server.on('POST', '/register', {
    status: 201,
    json: { client_id: `client-${PAYLOAD}`, token_endpoint_auth_method: 'none' },
  });
  authorizeAnswers(w, { code: 'auth-code-1' });
  const c = await cli(t, w);
  const out = await c.run('login', w.mcpUrl);
  assert.equal(out.code, 0, out.stderr);
  assertPrintable('login stdout', out.stdout);
  assertPrintable('login stderr', out.stderr);
  assert.match(out.stdout, /client_id +client-\\x1b\[2J/);
  for (const args of [['status'], ['logout', w.mcpUrl]]) {
    const again = await c.run(...(args as [string, ...string[]]));
    assertPrintable(`${args[0]} stdout`, again.stdout);
  }
  // --json: the values exactly as stored (the client_id is an identifier, not shortened or rewritten).
  await new AuthKeeper({ home: w.home, allowInsecureLoopback: true, openAuthorizationUrl: w.approve() }).login(
    w.mcpUrl,
  );
  const json = await c.run('status', '--json');
  assertPrintable('status --json', json.stdout);
  const [status] = JSON.parse(json.stdout) as Array<{ clientId: string; scope: string }>;
  assert.equal(status?.clientId, `client-${PAYLOAD}`, 'exact value after JSON.parse');
  assert.equal(json.stdout, `${displayJson(JSON.parse(json.stdout), 2)}\n`);
});

test('proxy: what the server and its AS said reaches neither its stderr nor its log file raw', async (t) => {
  const w = await hostileWorld(t);
  w.server.on('POST', '/register', {
    status: 201,
    json: { client_id: `client-${PAYLOAD}`, token_endpoint_auth_method: 'none' },
  });
  w.server.on('POST', '/token', { status: 400, json: { error: 'invalid_grant', error_description: PAYLOAD } });
  const stderr = new BufferWriter();
  const logFile = path.join(await tempHome(t), 'proxy.log');
  const stdin = new PassThrough();
  await assert.rejects(
    runProxy({
      serverUrl: w.mcpUrl,
      allowHttp: true,
      home: w.home,
      keeperOptions: { home: w.home, allowInsecureLoopback: true, openAuthorizationUrl: w.approve() },
      stdin,
      stdout: new PassThrough(),
      stderr: stderr as unknown as NodeJS.WritableStream & PassThrough,
      logFile,
    }),
    (err: unknown) => err instanceof AuthkeepError && err.code === 'invalid_grant',
  );
  assert.match(stderr.text, /sign-in failed/);
  assertPrintable('proxy stderr', stderr.text);
  const log = await readFile(logFile, 'utf8');
  assertPrintable('proxy log file', log);
  const events = log
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as { clientId?: string });
  assert.ok(
    events.some((e) => e.clientId === `client-${PAYLOAD}`),
    'the log file keeps the exact value, as JSON escapes',
  );
});
