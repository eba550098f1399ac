/**
 * Corrupt records (issue 14, item 4), as real `authkeep` processes after real sign-ins: with an
 * unreadable record as the first thing it meets, `doctor` reports it (no crash); `status`,
 * `doctor` and `token` (which only reads) never write to the store; a command that writes (a
 * sign-in) moves the record to quarantine, and `status` / `doctor` then keep showing it (which
 * server, when, why) until the server is signed in to again; `logout` forgets it.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmod, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { startAuthorizationServer, startProtectedMcpServer } from '../../arena/testbed/index.js';
import { canonicalServerUrl } from '../../src/session/canonical-url.js';
import { recordKey, storeLayout } from '../../src/store/paths.js';
import { cliEnv, collect, runCliProcess, spawnCli, waitForOutput } from '../helpers/cli-run.js';

/** Every file under `dir`: path -> size, mtime and a hash of its bytes. */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    const file = path.join(entry.parentPath, entry.name);
    const st = await stat(file);
    out[path.relative(dir, file)] = entry.isFile()
      ? `${st.size} ${st.mtimeMs} ${createHash('sha256')
          .update(await readFile(file))
          .digest('hex')}`
      : `dir ${st.mode}`;
  }
  return out;
}

interface Status {
  serverUrl: string;
  state: string;
  needsAuth?: { reason: string; errorDescription?: string; at: string; fix: string };
  unreadable?: { file: string; problem: string; movedAt?: string };
}

test('unreadable records: reported by read-only commands without a write; shown from quarantine until signed in again', async (t) => {
  const as = await startAuthorizationServer();
  t.after(() => as.close());
  const servers = [];
  for (let i = 0; i < 2; i++) {
    const server = await startProtectedMcpServer({ authorizationServer: as, discovery: 'header' });
    t.after(() => server.close());
    servers.push(server);
  }
  const [cut, invalid] = servers.map((s) => s.url) as [string, string];
  const cli = await cliEnv(t);
  for (const url of [cut, invalid]) {
    const login = await runCliProcess(cli, ['login', url, '--allow-http']);
    assert.equal(login.code, 0, login.stderr);
  }
  const layout = storeLayout(cli.home);
  const fileOf = (url: string) => layout.recordPath(recordKey(canonicalServerUrl(url)));
  // One record cut off (no server named in it), one that parses but fails validation.
  const text = await readFile(fileOf(cut), 'utf8');
  await writeFile(fileOf(cut), text.slice(0, text.length / 2));
  const record = JSON.parse(await readFile(fileOf(invalid), 'utf8')) as Record<string, unknown>;
  await writeFile(fileOf(invalid), JSON.stringify({ ...record, registration: { clientId: 42 } }));

  const before = await snapshot(cli.home);
  // doctor first, as the issue found it crashing.
  const doctor = await runCliProcess(cli, ['doctor']);
  assert.equal(doctor.code, 1, `doctor reports the problem and exits 1\n${doctor.stdout}${doctor.stderr}`);
  assert.equal(doctor.stderr, '', 'no crash');
  assert.ok(doctor.stdout.includes(`${fileOf(cut)} is not valid JSON`), doctor.stdout);
  assert.ok(doctor.stdout.includes(`${fileOf(invalid)} failed validation at registration`), doctor.stdout);
  assert.match(
    doctor.stdout,
    new RegExp(`✗ store +${invalid.replace(/[.:/]/g, '\\$&')}: needs-auth \\(store_corrupt\\)`),
  );

  const status = await runCliProcess(cli, ['status', '--json']);
  assert.equal(status.code, 0, status.stderr);
  const rows = JSON.parse(status.stdout) as Status[];
  assert.equal(rows.length, 2);
  const named = rows.find((r) => r.serverUrl === invalid);
  assert.equal(named?.needsAuth?.reason, 'store_corrupt');
  assert.equal(named?.needsAuth?.fix, `authkeep login ${invalid}`);
  const unnamed = rows.find((r) => r.unreadable?.file === fileOf(cut));
  assert.equal(unnamed?.serverUrl, recordKey(canonicalServerUrl(cut)), 'its record key, when it names no server');
  assert.equal(unnamed?.needsAuth?.fix, `rm ${fileOf(cut)}`);
  const table = await runCliProcess(cli, ['status'], { env: { COLUMNS: '200' } });
  assert.match(table.stdout, /needs-auth \(store_corrupt\)/);
  assert.doesNotMatch(table.stdout, /No servers signed in|\(unknown\)/);

  const token = await runCliProcess(cli, ['token', invalid]);
  assert.equal(token.code, 4, token.stderr);
  assert.match(token.stderr, /needs-auth \(store_corrupt\): the stored record is unreadable/);
  assert.deepEqual(await snapshot(cli.home), before, 'doctor, status and token wrote nothing to the store');

  // A sign-in (a command that writes) moves the unreadable record aside; interrupted, it leaves
  // the server without a record, and status and doctor say what was lost, where, when and why.
  const silent = path.join(path.dirname(cli.home), 'silent-browser');
  await writeFile(silent, '#!/bin/sh\nexit 0\n');
  await chmod(silent, 0o755);
  const child = spawnCli(cli, ['login', invalid, '--allow-http'], { env: { BROWSER: silent } });
  const done = collect(child);
  await waitForOutput(child.stderr, /Waiting for you to finish signing in/);
  child.kill('SIGINT');
  assert.equal((await done).code, 130);
  const [moved] = await readdir(layout.quarantineDir);
  assert.ok(moved?.startsWith(recordKey(canonicalServerUrl(invalid))), `moved aside: ${moved}`);

  for (let i = 0; i < 2; i++) {
    const again = JSON.parse((await runCliProcess(cli, ['status', invalid, '--json'])).stdout) as Status[];
    assert.equal(again[0]?.serverUrl, invalid, 'which server');
    assert.equal(again[0]?.needsAuth?.reason, 'store_corrupt');
    assert.match(again[0]?.unreadable?.problem ?? '', /^failed validation at registration\./, 'why');
    assert.equal(again[0]?.unreadable?.file, path.join(layout.quarantineDir, moved as string));
    assert.ok(Math.abs(Date.parse(again[0]?.unreadable?.movedAt ?? '') - Date.now()) < 600_000, 'when');
  }
  const all = JSON.parse((await runCliProcess(cli, ['status', '--json'])).stdout) as Status[];
  assert.ok(
    all.some((r) => r.serverUrl === invalid && r.needsAuth?.reason === 'store_corrupt'),
    'status lists it',
  );
  const doctorAgain = await runCliProcess(cli, ['doctor', invalid]);
  assert.match(
    doctorAgain.stdout,
    /✗ store .*needs-auth \(store_corrupt\).*moved aside to .*quarantine.*; moved aside at /,
  );

  // Signed in again: the server is ok; the quarantined copy is a leftover (a warning).
  const relogin = await runCliProcess(cli, ['login', invalid, '--allow-http']);
  assert.equal(relogin.code, 0, relogin.stderr);
  const ok = JSON.parse((await runCliProcess(cli, ['status', invalid, '--json'])).stdout) as Status[];
  assert.equal(ok[0]?.state, 'ok');
  const leftover = await runCliProcess(cli, ['doctor', invalid]);
  assert.equal(leftover.code, 0, leftover.stdout);
  assert.match(leftover.stdout, /! quarantine +quarantined record .*: it was unreadable and was moved aside/);

  // logout forgets the server and its quarantined copies.
  const logout = await runCliProcess(cli, ['logout', invalid]);
  assert.equal(logout.code, 0, logout.stderr);
  assert.deepEqual(await readdir(layout.quarantineDir), []);
});
