/**
 * paths: where authkeep keeps its files, and the file-safe key of each MCP server.
 *
 * For: `defaultHome()` (the per-user data directory), `canonicalServerUrl` / `recordKey` (one
 * stable key per server URL), and `storeLayout(home)` (the directory layout under home:
 * `servers/<key>.json`, `locks/<key>.<purpose>.lock`, `quarantine/`, `outcomes/`,
 * `registrations/`, `logs/`), and `accountHome` (where a named account keeps its own store
 * inside home).
 * Not for: touching the file system (see atomic-file.ts) or deciding which URL is canonical for a
 * server in the OAuth sense (the session layer passes the URL it means; we only normalise syntax).
 */
import { createHash } from 'node:crypto';
import { homedir as osHomedir } from 'node:os';
import path from 'node:path';
import { AuthkeepError } from '../errors.js';

/**
 * The store's home directory: `$AUTHKEEP_HOME`, else the platform's per-user data directory
 * (Linux and other Unix: `$XDG_DATA_HOME/authkeep` or `~/.local/share/authkeep`; macOS:
 * `~/Library/Application Support/authkeep`; Windows: `%LOCALAPPDATA%\authkeep`).
 * The parameters exist for tests; callers normally pass nothing.
 */
export function defaultHome(
  env: NodeJS.ProcessEnv = process.env,
  platform: NodeJS.Platform = process.platform,
  homedir: string = osHomedir(),
): string {
  const explicit = env.AUTHKEEP_HOME;
  if (explicit !== undefined && explicit !== '') return path.resolve(explicit);
  if (platform === 'win32') {
    const local = env.LOCALAPPDATA;
    return path.win32.join(
      local !== undefined && local !== '' ? local : path.win32.join(homedir, 'AppData', 'Local'),
      'authkeep',
    );
  }
  if (platform === 'darwin') return path.posix.join(homedir, 'Library', 'Application Support', 'authkeep');
  const xdg = env.XDG_DATA_HOME;
  // XDG says a relative XDG_DATA_HOME is invalid and must be ignored.
  if (xdg !== undefined && xdg !== '' && path.posix.isAbsolute(xdg)) return path.posix.join(xdg, 'authkeep');
  return path.posix.join(homedir, '.local', 'share', 'authkeep');
}

/**
 * The syntactic canonical form of a server URL: parsed by WHATWG URL (scheme and host lowercased,
 * default port dropped, dot segments resolved), fragment removed. Path case, trailing slash and
 * query are kept: they can name different resources.
 */
export function canonicalServerUrl(serverUrl: string): string {
  let url: URL;
  try {
    url = new URL(serverUrl);
  } catch (cause) {
    throw new AuthkeepError('invalid_argument', 'server URL is not an absolute URL', { field: 'serverUrl', cause });
  }
  url.hash = '';
  return url.href;
}

/** The account used when none is named; its store is home itself. */
export const DEFAULT_ACCOUNT = 'default';
/** What an account name may be: it becomes a directory name. */
export const ACCOUNT_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/**
 * Where `account` keeps its store: home itself for the default account, else
 * `<home>/accounts/<account>` with its own records, locks and client registrations, so two
 * identities at one server (a work and a personal tenant) never share a grant or a client.
 */
export function accountHome(home: string, account: string = DEFAULT_ACCOUNT): string {
  if (!ACCOUNT_PATTERN.test(account) || account.endsWith('.')) {
    throw new AuthkeepError(
      'invalid_argument',
      `account name ${JSON.stringify(account.slice(0, 80))} is not allowed: use letters, digits, ".", "_" and "-" (at most 64, starting with a letter or digit)`,
      { field: 'account' },
    );
  }
  return account === DEFAULT_ACCOUNT ? home : path.join(home, 'accounts', account);
}

const SLUG_MAX = 48;

/**
 * A stable, file-safe key for a server URL: a readable slug of host and path plus the first 16 hex
 * digits of the SHA-256 of the canonical URL, e.g. `mcp.example.com-v1-mcp-3f2a9c0d1b4e5f60`.
 * The slug is for humans only; the hash makes the key unique.
 */
export function recordKey(serverUrl: string): string {
  let key = recordKeys.get(serverUrl);
  if (key === undefined) {
    key = computeRecordKey(serverUrl);
    // A process knows a handful of servers; the bound only keeps a pathological caller's memory flat.
    if (recordKeys.size >= RECORD_KEY_CACHE_SIZE) recordKeys.clear();
    recordKeys.set(serverUrl, key);
  }
  return key;
}

/**
 * Record keys already computed in this process, by the URL as given: every store operation needs
 * the key, and a waiter in a refresh storm computes it a dozen times (URL parsing and a SHA-256 each).
 */
const recordKeys = new Map<string, string>();
const RECORD_KEY_CACHE_SIZE = 256;

function computeRecordKey(serverUrl: string): string {
  const canonical = canonicalServerUrl(serverUrl);
  const url = new URL(canonical);
  const readable = `${url.hostname}${url.port ? `-${url.port}` : ''}${url.pathname}`
    .toLowerCase()
    .replace(/[^a-z0-9.]+/g, '-')
    .replace(/\.{2,}/g, '.')
    .replace(/^[-.]+|[-.]+$/g, '')
    .slice(0, SLUG_MAX)
    .replace(/[-.]+$/g, '');
  const hash = createHash('sha256').update(canonical).digest('hex').slice(0, 16);
  return `${readable || 'server'}-${hash}`;
}

/** What a key looks like; used to skip foreign files in `servers/`. */
export const RECORD_KEY_PATTERN = /^[a-z0-9][a-z0-9.-]*-[0-9a-f]{16}$/;

export interface StoreLayout {
  home: string;
  serversDir: string;
  locksDir: string;
  quarantineDir: string;
  /** The last sign-in's outcome per server (login-outcome.ts). */
  outcomesDir: string;
  /** One client registration per issuer, kept from the moment it is made (credential-store.ts). */
  registrationsDir: string;
  /** The proxy's log files (mcp/proxy-log.ts). */
  logsDir: string;
  registrationPath(issuerKey: string): string;
  /** The client_ids dropped at an issuer, never to be reused (credential-store.ts dropRegistration). */
  droppedRegistrationsPath(issuerKey: string): string;
  recordPath(key: string): string;
  outcomePath(key: string): string;
  /** The lock name (without `.lock`) for a key and purpose; lock files live in `locksDir`. */
  lockName(key: string, purpose: string): string;
}

export function storeLayout(home: string): StoreLayout {
  const serversDir = path.join(home, 'servers');
  const locksDir = path.join(home, 'locks');
  const quarantineDir = path.join(home, 'quarantine');
  const outcomesDir = path.join(home, 'outcomes');
  const registrationsDir = path.join(home, 'registrations');
  const logsDir = path.join(home, 'logs');
  return {
    home,
    serversDir,
    locksDir,
    quarantineDir,
    outcomesDir,
    recordPath: (key) => path.join(serversDir, `${key}.json`),
    outcomePath: (key) => path.join(outcomesDir, `${key}.json`),
    registrationsDir,
    logsDir,
    registrationPath: (issuerKey) => path.join(registrationsDir, `${issuerKey}.json`),
    droppedRegistrationsPath: (issuerKey) => path.join(registrationsDir, `${issuerKey}.dropped.json`),
    lockName: (key, purpose) => `${key}.${purpose}`,
  };
}
