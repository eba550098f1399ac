import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ensurePrivateDir, readFileIfExists, sweepTempFiles, writeFileAtomic } from '../../src/store/atomic-file.js';
import { deadPid, makeTempDir } from '../helpers/store-fixtures.js';

const posix = process.platform !== 'win32';

describe('atomic file', () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  before(async () => (tmp = await makeTempDir()));
  after(async () => tmp.cleanup());

  it('writes whole files with mode 0600 whatever the umask, in directories made 0700', { skip: !posix }, async () => {
    const dir = path.join(tmp.dir, 'a', 'b');
    const old = process.umask(0);
    try {
      await ensurePrivateDir(dir);
      const file = path.join(dir, 'f.json');
      await writeFileAtomic(file, '{"v":1}');
      await writeFileAtomic(file, '{"v":2}');
      assert.equal(await readFile(file, 'utf8'), '{"v":2}');
      assert.equal((await stat(file)).mode & 0o777, 0o600);
      assert.equal((await stat(dir)).mode & 0o777, 0o700);
      assert.equal((await stat(path.join(tmp.dir, 'a'))).mode & 0o777, 0o700);
      assert.deepEqual(await readdir(dir), ['f.json'], 'no temp file left behind');
    } finally {
      process.umask(old);
    }
  });

  it('tightens an existing group/world-readable directory to 0700 unless told not to', { skip: !posix }, async () => {
    const loose = path.join(tmp.dir, 'loose');
    await mkdir(loose, { mode: 0o755 });
    await ensurePrivateDir(loose, { tighten: false });
    assert.equal((await stat(loose)).mode & 0o777, 0o755);
    await ensurePrivateDir(loose);
    assert.equal((await stat(loose)).mode & 0o777, 0o700);
  });

  it('readFileIfExists: undefined for a missing file, bytes otherwise', async () => {
    assert.equal(await readFileIfExists(path.join(tmp.dir, 'nope')), undefined);
    const file = path.join(tmp.dir, 'yes');
    await writeFileAtomic(file, Buffer.from([1, 2, 3]));
    assert.deepEqual(await readFileIfExists(file), Buffer.from([1, 2, 3]));
  });

  it('a failed write leaves the target untouched and no temp file', async () => {
    const dir = path.join(tmp.dir, 'fail');
    await ensurePrivateDir(dir);
    const file = path.join(dir, 'target');
    await writeFileAtomic(file, 'old');
    // Renaming a file over a non-empty directory fails: the write must fail cleanly.
    await mkdir(path.join(dir, 'blocker', 'x'), { recursive: true });
    await assert.rejects(writeFileAtomic(path.join(dir, 'blocker'), 'new'), { code: 'store_io' });
    assert.equal(await readFile(file, 'utf8'), 'old');
    assert.deepEqual((await readdir(dir)).sort(), ['blocker', 'target']);
  });

  it('sweepTempFiles removes temp files of dead writers only', async () => {
    const dir = path.join(tmp.dir, 'sweep');
    await ensurePrivateDir(dir);
    const dead = `.r.json.${await deadPid()}.0123456789ab.tmp`;
    const live = `.r.json.${process.pid}.0123456789ab.tmp`;
    await writeFile(path.join(dir, dead), 'x');
    await writeFile(path.join(dir, live), 'x');
    await writeFile(path.join(dir, 'r.json'), 'x');
    assert.deepEqual(await sweepTempFiles(dir, { deadWriterGraceMs: 0 }), [dead]);
    assert.deepEqual((await readdir(dir)).sort(), [live, 'r.json'].sort());
  });
});
