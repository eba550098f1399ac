/**
 * store-trust: the store is the user's own (docs/SECURITY.md, item 4). Another local user must not
 * be able to plant, swap or redirect what authkeep reads and writes there:
 * - every store directory is owned by the current user and not writable by group or others; the
 *   home may be a symbolic link the user made (it is judged by what it points to) and readable by
 *   others, but its subdirectories (servers/, registrations/, locks/, logs/ ...) are real
 *   directories, never symbolic links;
 * - store files (records, registrations, outcomes, locks, logs) are opened without following a
 *   symbolic link (O_NOFOLLOW) and must be regular files owned by the user.
 * A violation is AuthkeepError `store_untrusted` (field `path`), naming the path and the command
 * that fixes it. Where the platform has no POSIX owners (process.getuid is absent: Windows) the
 * owner and mode checks are skipped; symbolic links are refused everywhere.
 *
 * Not for: making directories or writing files (atomic-file.ts); doctor's read-only report
 * (store-inspection.ts uses `directoryProblem` and `fileProblem`, so both say the same).
 */
import { closeSync, constants as fsConstants, fstatSync, lstatSync, openSync, type Stats, statSync } from 'node:fs';
import { type FileHandle, lstat, open, stat } from 'node:fs/promises';
import { AuthkeepError } from '../errors.js';

/** What is wrong with a store path, and the command that fixes it. */
export interface TrustProblem {
  kind: 'symlink' | 'not_directory' | 'not_file' | 'owner' | 'mode';
  /** Completes "<path> ...". */
  message: string;
  fix: string;
}

/** A home (chosen by the user; may be a symbolic link) or a directory authkeep made in it. */
export type DirectoryRole = 'home' | 'directory';

/** O_NOFOLLOW where the platform has it (not Windows: there a symbolic link is refused by lstat first). */
const O_NOFOLLOW: number = fsConstants.O_NOFOLLOW ?? 0;

/** The current user's uid, or undefined where the platform has no POSIX owners. */
export function currentUid(): number | undefined {
  return process.getuid?.();
}

/** A path quoted for a POSIX shell when it needs it (the fixes are shell commands). */
export function quoted(p: string): string {
  return /^[A-Za-z0-9_./:@%+=,-]+$/.test(p) ? p : `'${p.replace(/'/g, `'\\''`)}'`;
}

function mode(st: Stats): string {
  return `0${(st.mode & 0o777).toString(8).padStart(3, '0')}`;
}

function writers(st: Stats): string {
  return [st.mode & 0o020 ? 'group' : '', st.mode & 0o002 ? 'others' : ''].filter(Boolean).join(' and ');
}

function symlinkProblem(p: string): TrustProblem {
  return {
    kind: 'symlink',
    message: 'is a symbolic link; authkeep follows none inside its store',
    fix: `rm ${quoted(p)}`,
  };
}

function ownerProblem(p: string, st: Stats, uid: number): TrustProblem {
  return {
    kind: 'owner',
    message: `is owned by uid ${st.uid}, not by you (uid ${uid}): another user may have planted it; remove it unless it is yours (made with sudo)`,
    fix: `sudo chown -R ${uid} ${quoted(p)}`,
  };
}

/**
 * What is wrong with the directory at `p` (`st` from lstat, or from stat for the home), or
 * undefined when it may be trusted.
 */
export function directoryProblem(p: string, st: Stats, role: DirectoryRole): TrustProblem | undefined {
  if (st.isSymbolicLink()) return symlinkProblem(p);
  if (!st.isDirectory()) return { kind: 'not_directory', message: 'is not a directory', fix: `rm ${quoted(p)}` };
  const uid = currentUid();
  if (uid === undefined) return undefined;
  if (st.uid !== uid) return ownerProblem(p, st, uid);
  if ((st.mode & 0o022) !== 0) {
    return {
      kind: 'mode',
      message: `is writable by ${writers(st)} (mode ${mode(st)}): another user could plant or swap files in it`,
      fix: role === 'home' ? `chmod go-w ${quoted(p)}` : `chmod 700 ${quoted(p)}`,
    };
  }
  return undefined;
}

/** What is wrong with the store file at `p` (`st` from lstat or fstat), or undefined. */
export function fileProblem(p: string, st: Stats): TrustProblem | undefined {
  if (st.isSymbolicLink()) return symlinkProblem(p);
  if (!st.isFile()) return { kind: 'not_file', message: 'is not a regular file', fix: `rm ${quoted(p)}` };
  const uid = currentUid();
  if (uid !== undefined && st.uid !== uid) return ownerProblem(p, st, uid);
  return undefined;
}

/** AuthkeepError `store_untrusted` for `problem` at `p`. */
export function untrusted(p: string, problem: TrustProblem): AuthkeepError {
  return new AuthkeepError('store_untrusted', `${p} ${problem.message}; fix: ${problem.fix}`, {
    field: 'path',
    detail: { path: p, problem: problem.kind, fix: problem.fix },
  });
}

function errno(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

/** Errors that mean "the last component is a symbolic link" for an O_NOFOLLOW open. */
function isSymlinkRefusal(err: unknown): boolean {
  return errno(err) === 'ELOOP' || errno(err) === 'EMLINK';
}

/**
 * Check the directory `dir` in `role`: true when it exists and may be trusted, false when it does
 * not exist; throws `store_untrusted` otherwise.
 */
export async function checkDirectory(dir: string, role: DirectoryRole): Promise<boolean> {
  let st: Stats;
  try {
    st = role === 'home' ? await stat(dir) : await lstat(dir);
  } catch (err) {
    if (errno(err) === 'ENOENT') return false;
    throw err;
  }
  const problem = directoryProblem(dir, st, role);
  if (problem) throw untrusted(dir, problem);
  return true;
}

/** checkDirectory, synchronously (the proxy log is opened in a constructor). */
export function checkDirectorySync(dir: string, role: DirectoryRole): boolean {
  let st: Stats;
  try {
    st = role === 'home' ? statSync(dir) : lstatSync(dir);
  } catch (err) {
    if (errno(err) === 'ENOENT') return false;
    throw err;
  }
  const problem = directoryProblem(dir, st, role);
  if (problem) throw untrusted(dir, problem);
  return true;
}

/**
 * Open the store file `file` with `flags` (fs.constants bits) without following a symbolic link,
 * and check it is a regular file of the user's own. Throws `store_untrusted` for a symbolic link
 * or a foreign file; other errors (ENOENT, EEXIST) as the file system raised them.
 */
export async function openStoreFile(file: string, flags: number, createMode = 0o600): Promise<FileHandle> {
  if (O_NOFOLLOW === 0) await refuseSymlink(file);
  let fh: FileHandle;
  try {
    fh = await open(file, flags | O_NOFOLLOW, createMode);
  } catch (err) {
    if (isSymlinkRefusal(err)) throw untrusted(file, symlinkProblem(file));
    throw err;
  }
  try {
    const problem = fileProblem(file, await fh.stat());
    if (problem) throw untrusted(file, problem);
  } catch (err) {
    await fh.close().catch(() => undefined);
    throw err;
  }
  return fh;
}

/** openStoreFile, synchronously; returns the descriptor. */
export function openStoreFileSync(file: string, flags: number, createMode = 0o600): number {
  if (O_NOFOLLOW === 0) {
    const st = lstatIfExistsSync(file);
    if (st?.isSymbolicLink()) throw untrusted(file, symlinkProblem(file));
  }
  let fd: number;
  try {
    fd = openSync(file, flags | O_NOFOLLOW, createMode);
  } catch (err) {
    if (isSymlinkRefusal(err)) throw untrusted(file, symlinkProblem(file));
    throw err;
  }
  try {
    const problem = fileProblem(file, fstatSync(fd));
    if (problem) throw untrusted(file, problem);
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  return fd;
}

async function refuseSymlink(file: string): Promise<void> {
  const st = await lstat(file).catch((err: unknown) => {
    if (errno(err) === 'ENOENT') return undefined;
    throw err;
  });
  if (st?.isSymbolicLink()) throw untrusted(file, symlinkProblem(file));
}

function lstatIfExistsSync(file: string): Stats | undefined {
  try {
    return lstatSync(file);
  } catch (err) {
    if (errno(err) === 'ENOENT') return undefined;
    throw err;
  }
}
