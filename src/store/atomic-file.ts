/**
 * atomic-file: whole-or-nothing file writes (docs/DESIGN.md invariants 2 and 7).
 *
 * For: `writeFileAtomic` (temp file in the same directory, mode 0600, write, fsync, rename over
 * the target, fsync the directory: a reader, or a process after SIGKILL or power loss, sees the old
 * content or the new one, never a mix), `readFileIfExists` (never through a symbolic link),
 * `ensurePrivateDir` (directories 0700, refused when not the user's own: store-trust.ts),
 * `checkStoreDirectories` (the same check before a read) and `sweepTempFiles` (remove temp files
 * left by killed writers).
 * Not for: deciding whether a write is allowed (compare-and-swap lives in credential-store.ts) or
 * serialising writers (lock.ts).
 */
import { randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { chmod, type FileHandle, lstat, mkdir, open, readdir, rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import { AuthkeepError } from '../errors.js';
import { isProcessAlive } from './process-alive.js';
import { checkDirectory, type DirectoryRole, openStoreFile } from './store-trust.js';

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
 * Create `dir` (and missing parents) with mode 0700, or check the one there: it must be the user's
 * own, not writable by group or others, and (but for the home) not a symbolic link, else
 * AuthkeepError `store_untrusted` naming it and the fix (store-trust.ts). With `tighten` (the
 * default), an existing directory that others may read or enter is chmod-ed to 0700; pass
 * `tighten: false` for the home, a directory the user chose and may share read-only (it may also
 * be a symbolic link the user made: it is judged by what it points to).
 */
export async function ensurePrivateDir(dir: string, options: { tighten?: boolean } = {}): Promise<void> {
  const role: DirectoryRole = options.tighten === false ? 'home' : 'directory';
  if (!(await checkDirectoryOrThrow(dir, role))) {
    try {
      const created = await mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
      // mkdir's mode is filtered by the umask; a umask can only remove bits, but make it exact.
      if (created !== undefined && !isWindows) await chmod(dir, PRIVATE_DIR_MODE);
    } catch (cause) {
      throw storeIoError('create directory', dir, cause);
    }
    // Another process may have made it meanwhile: judge what is there now.
    await checkDirectoryOrThrow(dir, role);
    return;
  }
  if (role === 'home' || isWindows) return;
  try {
    // Trusted (ours, not writable by others, not a link): only take away others' read and search.
    if (((await lstat(dir)).mode & 0o077) !== 0) await chmod(dir, PRIVATE_DIR_MODE);
  } catch (cause) {
    throw storeIoError('tighten directory', dir, cause);
  }
}

/**
 * Before reading from `dir` under `home`: both are checked like ensurePrivateDir checks them
 * (nothing is created or changed). False when either does not exist (there is nothing to read).
 */
export async function checkStoreDirectories(home: string, dir: string): Promise<boolean> {
  return (await checkDirectoryOrThrow(home, 'home')) && (await checkDirectoryOrThrow(dir, 'directory'));
}

async function checkDirectoryOrThrow(dir: string, role: DirectoryRole): Promise<boolean> {
  try {
    return await checkDirectory(dir, role);
  } catch (err) {
    if (err instanceof AuthkeepError) throw err;
    throw storeIoError('check directory', dir, err);
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

/**
 * The file's bytes, or undefined when it does not exist. A symbolic link or a file that is not the
 * user's own is refused (`store_untrusted`, store-trust.ts), never followed; other errors throw
 * `store_io`.
 */
export async function readFileIfExists(file: string): Promise<Buffer | undefined> {
  let fh: FileHandle;
  try {
    fh = await openStoreFile(file, fsConstants.O_RDONLY);
  } catch (err) {
    if (errno(err) === 'ENOENT') return undefined;
    if (err instanceof AuthkeepError) throw err;
    throw storeIoError('read', file, err);
  }
  try {
    return await fh.readFile();
  } catch (err) {
    throw storeIoError('read', file, err);
  } finally {
    await fh.close().catch(() => undefined);
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
    const st = await lstat(file).catch(() => undefined);
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
