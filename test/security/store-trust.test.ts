/**
 * Attack class: another local user tampers with the store. On a shared machine a user who can
 * write to the store's home (or to one of its directories), or who planted a directory or a
 * symbolic link there before authkeep made it, can hand authkeep a record naming their own token
 * endpoint, redirect new records (tokens, client secrets) into a directory they read, make the
 * proxy append its log to a file of their choosing, or hold a lock through a link. What must NOT
 * happen: a record, registration, lock or log read or written through a symbolic link; a home or
 * store directory that is not the user's own, or that group or others may write, used as is; a
 * log file left readable by others; `doctor` silent about any store directory. Real file-system
 * setups (temp homes, modes, links, and ownership where the tests run as root), real hostile
 * servers on 127.0.0.1, the real proxy and CLI.
 */
import assert from 'node:assert/strict';
import { chmod, chown, mkdir, readdir, readFile, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { type TestContext, test } from 'node:test';
import type { CliDeps } from '../../src/cli/deps.js';
import { runCli } from '../../src/cli/program.js';
import { AuthKeeper, AuthkeepError } from '../../src/index.js';
import { runProxy } from '../../src/mcp/proxy.js';
import { canonicalServerUrl } from '../../src/session/canonical-url.js';
import { SessionKeeper } from '../../src/session/session-keeper.js';
import { acquireLock } from '../../src/store/lock.js';
import { recordKey, storeLayout } from '../../src/store/paths.js';
import { tempHome } from '../helpers/bed.js';
import { BufferWriter } from '../helpers/cli-fakes.js';
import { startHostileServer } from '../helpers/hostile-server.js';
import { hostileWorld } from '../helpers/hostile-world.js';
import { makeRecord } from '../helpers/store-fixtures.js';

const posix = typeof process.getuid === 'function';
const root = process.getuid?.() === 0;
const SERVER = 'https://mcp.example.test/mcp';

/** A store_untrusted refusal naming `where` and carrying a fix. */
function refusal(where: string, fix: RegExp): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof AuthkeepError, String(err));
    assert.equal(err.code, 'store_untrusted', err.message);
    assert.equal(err.field, 'path');
    assert.ok(err.message.includes(where), `the message names ${where}: ${err.message}`);
    assert.match(err.message, fix);
    return true;
  };
}

/** A directory of "another user": where the attacker keeps what they plant and reads what they steal. */
async function attackerDir(t: TestContext): Promise<string> {
  const dir = await tempHome(t);
  await chmod(dir, 0o777);
  return dir;
}

test('a planted symbolic link as a record, naming the attacker token endpoint, is not loaded and nothing is sent there', async (t) => {
  const attacker = await startHostileServer();
  t.after(() => attacker.close());
  attacker.on('POST', '/token', { json: { access_token: 'attacker-chosen', token_type: 'Bearer', expires_in: 3600 } });
  const home = await tempHome(t);
  const layout = storeLayout(home);
  await mkdir(layout.serversDir, { mode: 0o700 });
  // The attacker's record: a refresh is due, at the attacker's token endpoint.
  const planted = makeRecord(canonicalServerUrl(SERVER), { issuer: attacker.url, tag: 'planted' });
  planted.tokens = { ...planted.tokens!, expiresAt: Date.now() - 1 };
  const target = path.join(await attackerDir(t), 'record.json');
  await writeFile(target, JSON.stringify(planted));
  const link = layout.recordPath(recordKey(canonicalServerUrl(SERVER)));
  await symlink(target, link);

  const keeper = new AuthKeeper({ home, allowInsecureLoopback: true, openAuthorizationUrl: async () => {} });
  await assert.rejects(keeper.getAccessToken(SERVER), refusal(link, /symbolic link.*fix: rm /));
  await assert.rejects(keeper.status(), refusal(link, /fix: rm /));
  assert.deepEqual(attacker.lines(), [], 'the attacker token endpoint received nothing');
  assert.equal(await readFile(target, 'utf8'), JSON.stringify(planted), 'the link target is untouched');
});

test('a group-writable home is refused before any sign-in starts: no browser, no record', {
  skip: !posix,
}, async (t) => {
  const w = await hostileWorld(t);
  await chmod(w.home, 0o770);
  let tabs = 0;
  const keeper = new AuthKeeper({
    home: w.home,
    allowInsecureLoopback: true,
    openAuthorizationUrl: async (url) => {
      tabs++;
      await w.approve()(url);
    },
  });
  await assert.rejects(keeper.login(w.mcpUrl), refusal(w.home, /writable by group.*fix: chmod go-w /));
  assert.equal(tabs, 0, 'no sign-in was started');
  assert.deepEqual(await readdir(w.home), [], 'nothing was written into the home');
  assert.equal(w.server.requestsTo('POST', '/token').length, 0);
});

test('a record stored before the home became group-writable is not read from it', { skip: !posix }, async (t) => {
  const w = await hostileWorld(t);
  const keeper = new AuthKeeper({ home: w.home, allowInsecureLoopback: true, openAuthorizationUrl: w.approve() });
  await keeper.login(w.mcpUrl);
  await chmod(w.home, 0o777);
  const later = new AuthKeeper({ home: w.home, allowInsecureLoopback: true });
  await assert.rejects(later.getAccessToken(w.mcpUrl), refusal(w.home, /writable by others|writable by group/));
});

test('servers/ planted as a symbolic link to the attacker directory: no token is written there', async (t) => {
  const w = await hostileWorld(t);
  const stolen = await attackerDir(t);
  await symlink(stolen, storeLayout(w.home).serversDir);
  const keeper = new AuthKeeper({ home: w.home, allowInsecureLoopback: true, openAuthorizationUrl: w.approve() });
  await assert.rejects(keeper.login(w.mcpUrl), refusal(storeLayout(w.home).serversDir, /symbolic link.*fix: rm /));
  assert.deepEqual(await readdir(stolen), [], 'the attacker directory received no record');
});

test('registrations/ writable by others is refused: no client registration is kept there', {
  skip: !posix,
}, async (t) => {
  const w = await hostileWorld(t);
  const layout = storeLayout(w.home);
  await mkdir(layout.registrationsDir, { mode: 0o700 });
  await chmod(layout.registrationsDir, 0o777);
  const keeper = new AuthKeeper({ home: w.home, allowInsecureLoopback: true, openAuthorizationUrl: w.approve() });
  await assert.rejects(keeper.login(w.mcpUrl), refusal(layout.registrationsDir, /fix: chmod 700 /));
  assert.deepEqual(await readdir(layout.registrationsDir), []);
});

test('a store directory owned by another user is refused (as root: chown)', { skip: !root }, async (t) => {
  const w = await hostileWorld(t);
  const layout = storeLayout(w.home);
  await mkdir(layout.serversDir, { mode: 0o700 });
  await chown(layout.serversDir, 65534, 65534);
  const keeper = new AuthKeeper({ home: w.home, allowInsecureLoopback: true, openAuthorizationUrl: w.approve() });
  await assert.rejects(keeper.login(w.mcpUrl), refusal(layout.serversDir, /owned by uid 65534.*fix: sudo chown -R 0 /));
  await chown(w.home, 65534, 65534);
  await assert.rejects(keeper.status(), refusal(w.home, /owned by uid 65534/));
});

test('a planted symbolic link at a lock path is not followed: its target is untouched and the lock is taken', async (t) => {
  const home = await tempHome(t);
  const layout = storeLayout(home);
  await mkdir(layout.locksDir, { mode: 0o700 });
  // The target claims a live holder (this very process) that promises to stay fresh for ever.
  const target = path.join(await attackerDir(t), 'forged.lock');
  const forged = JSON.stringify({
    pid: process.pid,
    hostname: hostname(),
    nonce: 'abcdef0123456789',
    acquiredAt: new Date().toISOString(),
    purpose: 'refresh',
    staleMs: 1e12,
  });
  await writeFile(target, forged);
  const future = new Date(Date.now() + 3_600_000);
  await utimes(target, future, future);
  const name = layout.lockName(recordKey(SERVER), 'refresh');
  await symlink(target, path.join(layout.locksDir, `${name}.lock`));
  const handle = await acquireLock(layout.locksDir, name, { timeoutMs: 10_000 });
  await handle.release();
  assert.equal(await readFile(target, 'utf8'), forged, 'the target keeps its content');
  assert.equal((await stat(target)).mtime.getTime(), future.getTime(), 'and its times (no heartbeat through the link)');
});

/** runProxy in front of a server that needs no OAuth, with a client that closes stdin at once. */
async function proxyOnce(t: TestContext, home: string): Promise<string> {
  const server = await startHostileServer();
  t.after(() => server.close());
  server.on('POST', '/mcp', { json: { jsonrpc: '2.0', id: 0, result: {} } });
  const stdin = new PassThrough();
  const stderr = new BufferWriter();
  stdin.end();
  await runProxy({
    serverUrl: `${server.url}/mcp`,
    allowHttp: true,
    home,
    keeperOptions: { home, allowInsecureLoopback: true },
    stdin,
    stdout: new PassThrough(),
    stderr: stderr as unknown as NodeJS.WritableStream & PassThrough,
  });
  return stderr.text;
}

test('a planted symbolic link at the proxy log path is not followed: the target is unchanged', async (t) => {
  const home = await tempHome(t);
  const logsDir = path.join(home, 'logs');
  await mkdir(logsDir, { mode: 0o700 });
  const victim = path.join(await attackerDir(t), 'precious.txt');
  await writeFile(victim, 'precious\n');
  const link = path.join(logsDir, `proxy-${process.pid}.log`);
  await symlink(victim, link);
  const stderr = await proxyOnce(t, home);
  assert.equal(await readFile(victim, 'utf8'), 'precious\n', 'nothing was appended through the link');
  assert.match(stderr, /not logging to .*proxy-\d+\.log: .*symbolic link/);
});

test('the proxy log file is created 0600, and an existing one left 0644 is made 0600', { skip: !posix }, async (t) => {
  const home = await tempHome(t);
  const logsDir = path.join(home, 'logs');
  const file = path.join(logsDir, `proxy-${process.pid}.log`);
  await proxyOnce(t, home);
  assert.equal((await stat(file)).mode & 0o777, 0o600);
  assert.equal((await stat(logsDir)).mode & 0o777, 0o700);
  await chmod(file, 0o644);
  await proxyOnce(t, home);
  assert.equal((await stat(file)).mode & 0o777, 0o600, 'an old log of a reused pid is no longer readable by others');
});

test('a logs/ directory writable by others is refused for the proxy log (stderr says so)', {
  skip: !posix,
}, async (t) => {
  const home = await tempHome(t);
  const logsDir = path.join(home, 'logs');
  await mkdir(logsDir, { mode: 0o700 });
  await chmod(logsDir, 0o777);
  const stderr = await proxyOnce(t, home);
  assert.deepEqual(await readdir(logsDir), [], 'no log file was created there');
  assert.match(stderr, /not logging to .*writable by group and others.*fix: chmod 700 /);
});

test('doctor checks every store directory: registrations/ and logs/ too, with the fix', { skip: !posix }, async (t) => {
  const home = await tempHome(t);
  const layout = storeLayout(home);
  const logsDir = path.join(home, 'logs');
  await mkdir(layout.registrationsDir, { mode: 0o700 });
  await chmod(layout.registrationsDir, 0o755);
  const registration = path.join(layout.registrationsDir, 'issuer-0123456789abcdef.json');
  await writeFile(registration, '{}', { mode: 0o644 });
  await mkdir(logsDir, { mode: 0o700 });
  await chmod(logsDir, 0o777);
  await mkdir(layout.serversDir, { mode: 0o700 });
  await symlink(path.join(home, 'elsewhere.json'), path.join(layout.serversDir, 'x-0123456789abcdef.json'));
  const stdout = new BufferWriter();
  const deps: CliDeps = {
    stdout,
    stderr: new BufferWriter(),
    stdin: new PassThrough(),
    env: { AUTHKEEP_HOME: home },
    createKeeper: (options) => new SessionKeeper(options),
    fetch: (input, init) => globalThis.fetch(input, init),
    now: () => Date.now(),
  };
  assert.equal(await runCli(['doctor', '--json'], deps), 1);
  const report = JSON.parse(stdout.text) as { checks: Array<{ status: string; subject: string; fix?: string }> };
  const failed = new Map(report.checks.filter((c) => c.status === 'fail').map((c) => [c.subject, c.fix]));
  assert.equal(failed.get(layout.registrationsDir), `chmod 700 ${layout.registrationsDir}`);
  assert.equal(failed.get(registration), `chmod 600 ${registration}`, 'a client secret file readable by others');
  assert.equal(failed.get(logsDir), `chmod 700 ${logsDir}`);
  const link = path.join(layout.serversDir, 'x-0123456789abcdef.json');
  assert.equal(failed.get(link), `rm ${link}`, 'a symbolic link in servers/');
});
