/**
 * config-file: reading a client's config file and replacing it safely: the link followed when the
 * file is a symlink (dotfile managers), a timestamped backup of the original beside it with the
 * same permissions, an atomic replace that keeps the file's mode, and a refusal when the file
 * changed while setup was editing it.
 *
 * Not for: what goes in the file (json-config.ts, toml-config.ts).
 */
import { constants } from 'node:fs';
import { mkdir, open, readFile, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from '../../store/atomic-file.js';
import { ConfigEditError } from './edit-error.js';

function errno(err: unknown): string {
  return (err as NodeJS.ErrnoException | undefined)?.code ?? (err as Error).message;
}

export interface ConfigFile {
  /** The file as named (for messages). */
  path: string;
  /** Where its bytes are: the link target when `path` is a symlink. */
  realPath: string;
  /** Its text, or undefined when it does not exist. */
  text: string | undefined;
  /** Its permission bits (0o644 for a new file). */
  mode: number;
}

export async function readConfigFile(file: string): Promise<ConfigFile> {
  let realPath = file;
  try {
    realPath = await realpath(file);
  } catch (err) {
    if (errno(err) !== 'ENOENT') throw new ConfigEditError(`cannot read ${file} (${errno(err)})`, 'check the path');
  }
  try {
    const [bytes, st] = await Promise.all([readFile(realPath), stat(realPath)]);
    return { path: file, realPath, text: bytes.toString('utf8'), mode: st.mode & 0o777 };
  } catch (err) {
    if (errno(err) === 'ENOENT') return { path: file, realPath, text: undefined, mode: 0o644 };
    throw new ConfigEditError(`cannot read ${file} (${errno(err)})`, 'check the path and its permissions');
  }
}

/** `20250101T000000.123Z`: sortable, and valid in a file name on every platform. */
function stamp(now: number): string {
  return new Date(now).toISOString().replace(/[-:]/g, '');
}

/** Copy `bytes` to `<file>.authkeep-backup-<time>` (never over an existing file); returns its path. */
async function writeBackup(file: ConfigFile, bytes: string, now: number): Promise<string> {
  const base = `${file.realPath}.authkeep-backup-${stamp(now)}`;
  for (let n = 1; ; n++) {
    const target = n === 1 ? base : `${base}-${n}`;
    try {
      const fh = await open(target, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, file.mode);
      try {
        await fh.chmod(file.mode);
        await fh.writeFile(bytes, 'utf8');
        await fh.sync();
      } finally {
        await fh.close();
      }
      return target;
    } catch (err) {
      if (errno(err) === 'EEXIST' && n < 100) continue;
      throw new ConfigEditError(
        `cannot write a backup of ${file.path} (${errno(err)}); setup left it untouched`,
        'check the permissions of its directory',
      );
    }
  }
}

/**
 * Replace the file's content with `text`: a backup first when it existed, then an atomic write
 * with the same mode. Returns the backup's path (undefined for a new file).
 */
export async function replaceConfigFile(file: ConfigFile, text: string, now: number): Promise<string | undefined> {
  let backup: string | undefined;
  const current = await readConfigFile(file.path);
  if (current.text !== file.text) {
    throw new ConfigEditError(
      `${file.path} changed while setup was editing it; setup left it as it is now`,
      'run setup again',
    );
  }
  if (file.text !== undefined) {
    backup = await writeBackup(file, file.text, now);
  } else {
    try {
      await mkdir(path.dirname(file.realPath), { recursive: true });
    } catch (err) {
      throw new ConfigEditError(`cannot create the directory of ${file.path} (${errno(err)})`, 'check the path');
    }
  }
  try {
    await writeFileAtomic(file.realPath, text, { mode: file.mode });
  } catch (err) {
    throw new ConfigEditError(
      `cannot write ${file.path} (${(err as Error).message}); it is unchanged`,
      'check the permissions of the file and its directory',
    );
  }
  return backup;
}
