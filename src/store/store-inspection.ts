/**
 * store-inspection: what `authkeep doctor` learns about a file store without changing it: whether
 * it exists, which records were quarantined, which directories are not 0700 and which
 * secret-bearing files others can read (Unix modes only), and the locks present with their holders.
 *
 * Not for: repairing anything (doctor prints the commands; the user runs them), or reading records
 * (record-files.ts; doctor gets per-server state from the session layer's status).
 */
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { PermissionFinding, StoreInspection } from './credential-store.js';
import { listLocks } from './lock.js';
import { ACCOUNT_PATTERN, DEFAULT_ACCOUNT, recordKey, type StoreLayout } from './paths.js';
import type { RecordFiles } from './record-files.js';

async function statOrUndefined(p: string) {
  try {
    return await stat(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

async function listFiles(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir)).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/** Directories 0700 and secret-bearing files 0600 (Unix only: Windows has no such modes). */
async function checkPermissions(
  layout: StoreLayout,
  onlyKey: string | undefined,
): Promise<StoreInspection['permissions']> {
  const findings: PermissionFinding[] = [];
  const homeStat = await statOrUndefined(layout.home);
  if (process.platform === 'win32' || homeStat === undefined) return { checked: false, filesChecked: 0, findings };
  if (homeStat.mode & 0o022) findings.push({ kind: 'home', path: layout.home, mode: homeStat.mode & 0o777 });
  let filesChecked = 0;
  for (const dir of [layout.serversDir, layout.outcomesDir, layout.quarantineDir, layout.locksDir]) {
    const st = await statOrUndefined(dir);
    if (st === undefined) continue;
    if ((st.mode & 0o777) !== 0o700) findings.push({ kind: 'directory', path: dir, mode: st.mode & 0o777 });
    if (dir === layout.locksDir) continue; // lock files hold a pid and a nonce, no secret
    for (const name of await listFiles(dir)) {
      if (onlyKey !== undefined && !name.startsWith(onlyKey)) continue;
      const file = path.join(dir, name);
      const fst = await statOrUndefined(file);
      if (fst === undefined || !fst.isFile()) continue;
      filesChecked++;
      if ((fst.mode & 0o077) !== 0) findings.push({ kind: 'file', path: file, mode: fst.mode & 0o777 });
    }
  }
  return { checked: true, filesChecked, findings };
}

/** The store's health, or only `serverUrl`'s files and locks. */
/**
 * The accounts (accountHome) that hold at least one record under `home`, sorted, `default` first
 * when it does.
 */
export async function listAccounts(home: string): Promise<string[]> {
  const hasRecords = async (dir: string) =>
    (await listFiles(path.join(dir, 'servers'))).some((f) => f.endsWith('.json'));
  const named = (await listFiles(path.join(home, 'accounts'))).filter(
    (name) => ACCOUNT_PATTERN.test(name) && name !== DEFAULT_ACCOUNT,
  );
  const found: string[] = [];
  if (await hasRecords(home)) found.push(DEFAULT_ACCOUNT);
  for (const name of named) if (await hasRecords(path.join(home, 'accounts', name))) found.push(name);
  return found;
}

export async function inspectFileStore(
  layout: StoreLayout,
  files: RecordFiles,
  serverUrl: string | undefined,
): Promise<StoreInspection> {
  const onlyKey = serverUrl === undefined ? undefined : recordKey(serverUrl);
  const quarantined = (await files.listQuarantine(serverUrl)).map((name) => path.join(layout.quarantineDir, name));
  const locks = (await listLocks(layout.locksDir)).filter(
    (lock) => onlyKey === undefined || lock.name.startsWith(`${onlyKey}.`),
  );
  return {
    location: layout.home,
    exists: (await statOrUndefined(layout.home)) !== undefined,
    quarantined,
    permissions: await checkPermissions(layout, onlyKey),
    locks,
    locksLocation: layout.locksDir,
  };
}
