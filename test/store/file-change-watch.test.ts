/**
 * file-change-watch: a subscription wakes on the OS's notification that its file was replaced (the
 * store's atomic write: temp file, rename) or removed (a lock's release), not on its timer, and
 * says whether the OS is watching (`notifies`); a sibling's replacement does not wake
 * it; a notification that arrives while nobody waits is kept for the next wait; closing or aborting
 * ends a wait; where no notification can be had (a directory that does not exist) the timer still
 * wakes it. Backstops are an hour wherever a notification must do the waking, so a missing one
 * fails the test (by its timeout) instead of passing late.
 */
import assert from 'node:assert/strict';
import { mkdir, unlink } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { writeFileAtomic } from '../../src/store/atomic-file.js';
import { watchFileChanges } from '../../src/store/file-change-watch.js';
import { tempHome } from '../helpers/bed.js';

const HOUR = 3_600_000;

async function dirWith(t: Parameters<typeof tempHome>[0]): Promise<string> {
  const dir = path.join(await tempHome(t), 'servers');
  await mkdir(dir, { recursive: true });
  return dir;
}

test('an atomic replacement of the file wakes a waiting subscription by notification', {
  timeout: 20_000,
}, async (t) => {
  const dir = await dirWith(t);
  const file = path.join(dir, 'a.json');
  await writeFileAtomic(file, '{"v":1}');
  const changes = watchFileChanges(file);
  t.after(() => changes.close());
  const woke = changes.next(HOUR);
  await writeFileAtomic(file, '{"v":2}');
  assert.equal(await woke, 'changed');
});

test('removing the file wakes a waiting subscription by notification (a lock released)', {
  timeout: 20_000,
}, async (t) => {
  const dir = await dirWith(t);
  const file = path.join(dir, 'a.lock');
  await writeFileAtomic(file, '{}');
  const changes = watchFileChanges(file);
  t.after(() => changes.close());
  assert.equal(changes.notifies, true, 'the OS watches an existing directory');
  const woke = changes.next(HOUR);
  await unlink(file);
  assert.equal(await woke, 'changed');
});

test('a file created after the subscription wakes it too', { timeout: 20_000 }, async (t) => {
  const dir = await dirWith(t);
  const file = path.join(dir, 'new.json');
  const changes = watchFileChanges(file);
  t.after(() => changes.close());
  const woke = changes.next(HOUR);
  await writeFileAtomic(file, '{"v":1}');
  assert.equal(await woke, 'changed');
});

test('a sibling’s replacement wakes only the sibling’s subscription', { timeout: 20_000 }, async (t) => {
  const dir = await dirWith(t);
  const mine = watchFileChanges(path.join(dir, 'mine.json'));
  const sibling = watchFileChanges(path.join(dir, 'sibling.json'));
  t.after(() => {
    mine.close();
    sibling.close();
  });
  const siblingWoke = sibling.next(HOUR);
  await writeFileAtomic(path.join(dir, 'sibling.json'), '{}');
  assert.equal(await siblingWoke, 'changed');
  // The notification that woke the sibling has been dispatched to every subscriber of the
  // directory by now: had it matched `mine`, its next wait would end at once with 'changed'.
  assert.equal(await mine.next(0), 'timeout');
});

test('a notification that arrives between two waits is kept for the next one', { timeout: 20_000 }, async (t) => {
  const dir = await dirWith(t);
  const file = path.join(dir, 'a.json');
  const changes = watchFileChanges(file);
  const witness = watchFileChanges(file);
  t.after(() => {
    changes.close();
    witness.close();
  });
  const witnessed = witness.next(HOUR);
  await writeFileAtomic(file, '{"v":1}');
  assert.equal(await witnessed, 'changed'); // delivered while `changes` was not waiting
  assert.equal(await changes.next(HOUR), 'changed');
});

test('closing or aborting ends a wait; a closed subscription does not wait', { timeout: 20_000 }, async (t) => {
  const dir = await dirWith(t);
  const file = path.join(dir, 'a.json');
  const closed = watchFileChanges(file);
  const waiting = closed.next(HOUR);
  closed.close();
  assert.equal(closed.notifies, false, 'a closed subscription is not notified');
  assert.equal(await waiting, 'ended');
  assert.equal(await closed.next(HOUR), 'ended');

  const aborted = watchFileChanges(file);
  t.after(() => aborted.close());
  const controller = new AbortController();
  const wait = aborted.next(HOUR, controller.signal);
  controller.abort();
  assert.equal(await wait, 'ended');
});

test('without notifications (no such directory) the timer still wakes a wait', async (t) => {
  const dir = await dirWith(t);
  const changes = watchFileChanges(path.join(dir, 'missing-dir', 'a.json'));
  t.after(() => changes.close());
  assert.equal(changes.notifies, false, 'nothing watches a directory that does not exist');
  assert.equal(await changes.next(1), 'timeout');
});
