/**
 * store-inspection: what `authkeep doctor` learns about a file store without changing it: whether
 * it exists, which records were quarantined, which of its directories (the home, servers/,
 * outcomes/, quarantine/, locks/, registrations/, logs/) the store would refuse (store-trust.ts:
 * not the user's own, writable by others, a symbolic link) or are merely not 0700, which files in
 * them are symbolic links or foreign, which secret-bearing files others can read (Unix owners and
 * modes only), and the locks present with their holders.
 *
 * Not for: repairing anything (doctor prints the commands; the user runs them), or reading records
 * (record-files.ts; doctor gets per-server state from the session layer's status).
 */
import type { Stats } from 'node:fs';
import { lstat, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { DEFAULT_LOCK_POLICIES, type PermissionFinding, type StoreInspection } from './credential-store.js';
import { listLocks } from './lock.js';
import { ACCOUNT_PATTERN, DEFAULT_ACCOUNT, recordKey, type StoreLayout } from './paths.js';
import type { RecordFiles } from './record-files.js';
import { directoryProblem, fileProblem, quoted, type TrustProblem } from './store-trust.js';

async function statOrUndefined(p: string, follow = true): Promise<Stats | undefined> {
  try {
    return follow ? await stat(p) : await lstat(p);
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

function finding(kind: PermissionFinding['kind'], p: string, st: Stats, problem: TrustProblem): PermissionFinding {
  return { kind, path: p, mode: st.mode & 0o777, problem: problem.kind, fix: problem.fix, refused: true };
}

/**
 * Every directory trusted (store-trust.ts) and 0700, files in them regular files of the user's own,
 * secret-bearing ones 0600 (Unix only: Windows has neither owners nor modes of this kind).
 */
async function checkPermissions(
  layout: StoreLayout,
  onlyKey: string | undefined,
): Promise<StoreInspection['permissions']> {
  const findings: PermissionFinding[] = [];
  const homeStat = await statOrUndefined(layout.home);
  if (process.platform === 'win32' || homeStat === undefined) return { checked: false, filesChecked: 0, findings };
  const homeProblem = directoryProblem(layout.home, homeStat, 'home');
  if (homeProblem) findings.push(finding('home', layout.home, homeStat, homeProblem));
  let filesChecked = 0;
  const dirs = [
    layout.serversDir,
    layout.outcomesDir,
    layout.quarantineDir,
    layout.locksDir,
    layout.registrationsDir,
    layout.logsDir,
  ];
  for (const dir of dirs) {
    const st = await statOrUndefined(dir, false);
    if (st === undefined) continue;
    const problem = directoryProblem(dir, st, 'directory');
    if (problem) {
      findings.push(finding('directory', dir, st, problem));
      continue; // not looked into: the store refuses it whatever it holds
    }
    if ((st.mode & 0o777) !== 0o700) {
      findings.push({
        kind: 'directory',
        path: dir,
        mode: st.mode & 0o777,
        problem: 'mode',
        fix: `chmod 700 ${quoted(dir)}`,
        refused: false,
      });
    }
    for (const name of await listFiles(dir)) {
      if (onlyKey !== undefined && !name.startsWith(onlyKey)) continue;
      const file = path.join(dir, name);
      const fst = await statOrUndefined(file, false);
      if (fst === undefined) continue;
      filesChecked++;
      const trouble = fileProblem(file, fst);
      if (trouble) {
        findings.push(finding('file', file, fst, trouble));
        continue;
      }
      // Lock files hold a pid and a nonce, no secret; every other file may (logs: sign-in URLs).
      if (dir !== layout.locksDir && (fst.mode & 0o077) !== 0) {
        findings.push({
          kind: 'file',
          path: file,
          mode: fst.mode & 0o777,
          problem: 'mode',
          fix: `chmod 600 ${quoted(file)}`,
          refused: false,
        });
      }
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
  const locks = (await listLocks(layout.locksDir, lockBounds)).filter(
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

/**
 * The bounds a waiter of each store lock judges it by (the default policies; lock names end in
 * their purpose: `.refresh`, `.login`, `.register`), so doctor calls a forged or over-long
 * holding stale exactly when the next command would take it over.
 */
function lockBounds(name: string): { staleMs: number; maxHoldMs?: number } {
  const suffix = name.slice(name.lastIndexOf('.') + 1);
  const policy =
    suffix === 'login'
      ? DEFAULT_LOCK_POLICIES.login
      : suffix === 'refresh'
        ? DEFAULT_LOCK_POLICIES.refresh
        : DEFAULT_LOCK_POLICIES.write;
  return { staleMs: policy.staleMs, ...(policy.maxHoldMs !== undefined ? { maxHoldMs: policy.maxHoldMs } : {}) };
}
