/**
 * atomic-file: whole-or-nothing file writes (docs/DESIGN.md invariants 2 and 7).
 *
 * For: `writeFileAtomic` (temp file in the same directory, mode 0600, write, fsync, rename over
 * the target, fsync the directory: a reader, or a process after SIGKILL or power loss, sees the old
 * content or the new one, never a mix), `readFileIfExists`, `ensurePrivateDir` (directories 0700)
 * and `sweepTempFiles` (remove temp files left by killed writers).
 * Not for: deciding whether a write is allowed (compare-and-swap lives in credential-store.ts) or
 * serialising writers (lock.ts).
 */
import { randomBytes } from 'node:crypto';
import { chmod, type FileHandle, mkdir, open, readdir, readFile, rename, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { AuthkeepError } from '../errors.js';
import { isProcessAlive } from './process-alive.js';

export const PRIVATE_FILE_MODE = 0o600;
export const PRIVATE_DIR_MODE = 0o700;

const isWindows = process.platform === 'win32';

function errno(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

export function storeIoError(action: string, target: string, cause: unknown): AuthkeepError {
  return new AuthkeepError('store_io', `could not ${action} ${target}${errno(cause) ? ` (${errno(cause)})` : ''}`, {
    detail: { path: target, errno: errno(cause) },
    cause,
  });
}

/**
 * Create `dir` (and missing parents) with mode 0700. With `tighten` (the default), an existing
 * directory that is group- or world-accessible is chmod-ed to 0700; pass `tighten: false` for a
 * directory the user chose and may share (the home itself when it already existed).
 */
export async function ensurePrivateDir(dir: string, options: { tighten?: boolean } = {}): Promise<void> {
  try {
    const created = await mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
    if (isWindows) return;
    if (created !== undefined) {
      // mkdir's mode is filtered by the umask; a umask can only remove bits, but make it exact.
      await chmod(dir, PRIVATE_DIR_MODE);
    } else if (options.tighten !== false) {
      const st = await stat(dir);
      if ((st.mode & 0o077) !== 0 && st.uid === process.getuid?.()) await chmod(dir, PRIVATE_DIR_MODE);
    }
  } catch (cause) {
    throw storeIoError('create directory', dir, cause);
  }
}

const TEMP_PATTERN = /^\.(.+)\.(\d+)\.([0-9a-f]{12})\.tmp$/;

function tempPathFor(target: string): string {
  return path.join(
    path.dirname(target),
    `.${path.basename(target)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`,
  );
}

async function fsyncDirectory(dir: string): Promise<void> {
  if (isWindows) return; // directories cannot be opened for fsync on Windows; NTFS journals renames
  let fh: FileHandle | undefined;
  try {
    fh = await open(dir, 'r');
    await fh.sync();
  } catch (err) {
    // Some file systems refuse fsync on a directory; the rename itself has happened, so only a
    // genuine I/O error is worth failing the write for.
    if (!['EISDIR', 'EINVAL', 'EPERM', 'EACCES', 'ENOTSUP', 'EBADF'].includes(errno(err) ?? '')) {
      throw storeIoError('fsync directory', dir, err);
    }
  } finally {
    await fh?.close().catch(() => undefined);
  }
}

async function renameWithRetry(from: string, to: string): Promise<void> {
  // On Windows a rename over a file another process has open can fail transiently.
  for (let attempt = 0; ; attempt++) {
    try {
      await rename(from, to);
      return;
    } catch (err) {
      if (!isWindows || attempt >= 10 || !['EPERM', 'EACCES', 'EBUSY'].includes(errno(err) ?? '')) throw err;
      await new Promise((resolve) => setTimeout(resolve, 10 * (attempt + 1)));
    }
  }
}

/**
 * Replace `target` with `data` atomically and durably. The parent directory must exist (see
 * `ensurePrivateDir`). The file ends with mode `mode` (default 0600) whatever the umask. On failure
 * the target is untouched and the temp file removed; throws AuthkeepError `store_io`.
 */
export async function writeFileAtomic(
  target: string,
  data: string | Uint8Array,
  options: { mode?: number } = {},
): Promise<void> {
  const mode = options.mode ?? PRIVATE_FILE_MODE;
  const tmp = tempPathFor(target);
  let fh: FileHandle | undefined;
  try {
    fh = await open(tmp, 'wx', mode);
    if (!isWindows) await fh.chmod(mode);
    await fh.writeFile(data);
    await fh.sync();
    await fh.close();
    fh = undefined;
    await renameWithRetry(tmp, target);
  } catch (cause) {
    await fh?.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw storeIoError('write', target, cause);
  }
  await fsyncDirectory(path.dirname(target));
}

/** The file's bytes, or undefined when it does not exist. Other errors throw `store_io`. */
export async function readFileIfExists(file: string): Promise<Buffer | undefined> {
  try {
    return await readFile(file);
  } catch (err) {
    if (errno(err) === 'ENOENT') return undefined;
    throw storeIoError('read', file, err);
  }
}

/** True when `name` is a temp file made by `writeFileAtomic` (callers listing a directory skip these). */
export function isTempFileName(name: string): boolean {
  return TEMP_PATTERN.test(name);
}

/**
 * Remove temp files in `dir` left by writers that died between creating and renaming them (they
 * may hold secrets). A temp file is removed when its writer pid is dead on this host and it is older
 * than `deadWriterGraceMs` (default 10 s), or when it is older than `maxAgeMs` (default one hour).
 * Returns the names removed.
 */
export async function sweepTempFiles(
  dir: string,
  options: { maxAgeMs?: number; deadWriterGraceMs?: number } = {},
): Promise<string[]> {
  const maxAgeMs = options.maxAgeMs ?? 60 * 60 * 1000;
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if (errno(err) === 'ENOENT') return [];
    throw storeIoError('list', dir, err);
  }
  const removed: string[] = [];
  for (const name of names) {
    const match = TEMP_PATTERN.exec(name);
    if (!match) continue;
    const file = path.join(dir, name);
    const st = await stat(file).catch(() => undefined);
    if (st === undefined) continue;
    const ageMs = Date.now() - st.mtimeMs;
    // A write takes milliseconds; the grace keeps a writer on another host sharing this directory
    // (whose pid means nothing here) from losing its temp file mid-write.
    const abandoned =
      ageMs > maxAgeMs || (ageMs > (options.deadWriterGraceMs ?? 10_000) && !isProcessAlive(Number(match[2])));
    if (abandoned) {
      await unlink(file).then(
        () => removed.push(name),
        () => undefined,
      );
    }
  }
  return removed;
}
