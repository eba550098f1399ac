/**
 * Attack class: a hostile authorization server echoes a secret back in its error_description,
 * placed so that it crosses the point where authkeep cuts AS text. Redacting after cutting would
 * leave the secret's first part (which no longer matches the whole secret) in the error message,
 * the stored needs-auth marker, the sign-in outcome file and the log. Nothing of the secret may
 * reach any of them.
 */
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { AuthKeeper, type LogEvent } from '../../src/index.js';
import { hostileWorld } from '../helpers/hostile-world.js';

/** Random-looking, so no prefix of it occurs anywhere by chance. */
const REFRESH = 'rt-9f8e7d6c5b4a39281706f5e4d3c2b1a0ffee';
const CODE = 'cd-0a1b2c3d4e5f60718293a4b5c6d7e8f9beef';
/** Text before the secret: it starts 10 characters before the 300-character cut. */
const PAD = 'x'.repeat(290);

/** Every file under `dir`, as text. */
async function allFiles(dir: string): Promise<Array<[string, string]>> {
  const out: Array<[string, string]> = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    const file = path.join(entry.parentPath, entry.name);
    out.push([file, await readFile(file, 'utf8')]);
  }
  return out;
}

/** Where any 6-character piece of `secret` occurs in `places`, or undefined. */
function leak(secret: string, places: Array<[string, string]>): string | undefined {
  for (let i = 0; i + 6 <= secret.length; i++) {
    const piece = secret.slice(i, i + 6);
    for (const [where, text] of places) if (text.includes(piece)) return `${where} holds ${piece}`;
  }
  return undefined;
}

test('refresh: a refresh token echoed across the cut of error_description leaves no part of it in the error, the marker or the log', async (t) => {
  const w = await hostileWorld(t, {
    access_token: 'access-token-1',
    token_type: 'Bearer',
    expires_in: 1,
    refresh_token: REFRESH,
    scope: 'mcp:read',
  });
  const logs: LogEvent[] = [];
  const keeper = new AuthKeeper({
    home: w.home,
    allowInsecureLoopback: true,
    transientRetryDelaysMs: [],
    log: (e) => logs.push(e),
    openAuthorizationUrl: w.approve(),
  });
  await keeper.login(w.mcpUrl);
  w.server.on('POST', '/token', {
    status: 400,
    json: { error: 'invalid_grant', error_description: `${PAD}${REFRESH} was refused` },
  });
  // The token (expires_in 1) is due once it is a second old: no sleep, ask the refresh directly.
  const err = await keeper.recoverFromRejection(w.mcpUrl, 'access-token-1').then(
    () => assert.fail('the refresh was refused'),
    (e: unknown) => e as Error,
  );
  assert.equal(w.server.requestsTo('POST', '/token').at(-1)?.form.get('refresh_token'), REFRESH, 'it was sent');
  const places: Array<[string, string]> = [
    ['message', err.message],
    ['error as JSON', JSON.stringify(err)],
    ['stack', err.stack ?? ''],
    ['logs', JSON.stringify(logs)],
    ['status', JSON.stringify(await keeper.status(w.mcpUrl))],
  ];
  // The record no longer holds the refused tokens, so any trace of the refresh token in the
  // store is the echoed description.
  for (const [file, text] of await allFiles(w.home)) places.push([file, text]);
  assert.equal(leak(REFRESH, places), undefined);
  assert.match(err.message, /\[redacted\]/, 'the echoed secret was redacted, not just cut away');
});

test('sign-in: an authorization code echoed across the cut leaves no part of it in the error, the outcome file or the log', async (t) => {
  const w = await hostileWorld(t);
  w.server.on('POST', '/token', {
    status: 400,
    json: { error: 'invalid_grant', error_description: `${PAD}${CODE} is not a code we issued` },
  });
  const logs: LogEvent[] = [];
  const keeper = new AuthKeeper({
    home: w.home,
    allowInsecureLoopback: true,
    log: (e) => logs.push(e),
    openAuthorizationUrl: w.approve(CODE),
  });
  const err = await keeper.login(w.mcpUrl).then(
    () => assert.fail('the code exchange was refused'),
    (e: unknown) => e as Error,
  );
  assert.equal(w.server.requestsTo('POST', '/token')[0]?.form.get('code'), CODE, 'the code was redeemed');
  const files = await allFiles(w.home);
  assert.ok(
    files.some(([file]) => file.includes(`${path.sep}outcomes${path.sep}`)),
    'the failed outcome was written',
  );
  const places: Array<[string, string]> = [
    ['message', err.message],
    ['stack', err.stack ?? ''],
    ['logs', JSON.stringify(logs)],
    ...files,
  ];
  assert.equal(leak(CODE, places), undefined);
});
