/**
 * global-options: the flags every command accepts (`--home`, `--account`, `--store`, `--debug`, `--allow-http`) and how
 * they become AuthKeeper options. Program-level flags are accepted before or after the command.
 *
 * Not for: command-specific flags (commands/*.ts).
 */
import path from 'node:path';
import { displayJson } from '../display-text.js';
import type { DpopMode } from '../oauth/dpop.js';
import type { LogEvent } from '../session/log.js';
import type { AuthKeeperOptions } from '../session/session-keeper.js';
import { accountHome, DEFAULT_ACCOUNT, defaultHome } from '../store/paths.js';
import { isRedisUrl } from '../store/redis/redis-connection.js';
import { parseStoreMode, type StoreModeOption } from '../store/store-mode.js';
import type { CliDeps } from './deps.js';
import { UsageError } from './errors.js';

export interface GlobalOptions {
  /** `--home DIR`, else `$AUTHKEEP_HOME`, else the platform default. Always absolute. */
  home: string;
  /** `--account NAME`, else `$AUTHKEEP_ACCOUNT`, else `default` (validated: it names a directory). */
  account: string;
  /**
   * `--store MODE`, else `$AUTHKEEP_STORE`, else unset (the library's default, `auto`): how
   * credentials are kept at rest (store/store-mode.ts), or a `redis://` / `rediss://` URL: the
   * fleet store (store/open-store.ts, docs/FLEET.md).
   */
  store?: StoreModeOption;
  /** `--debug`: JSON log events and stack traces on stderr. */
  debug: boolean;
  /** `--allow-http`: http for loopback servers only (local development, tests). */
  allowHttp: boolean;
  /**
   * `$AUTHKEEP_DPOP` (`auto` or `when-required`): when sign-ins bind tokens to a DPoP key
   * (AuthKeeperOptions.dpop). Unset: the library's default, `auto`.
   */
  dpop?: DpopMode;
}

const DPOP_MODES: readonly DpopMode[] = ['auto', 'when-required'];

export interface RawGlobalFlags {
  home?: string | undefined;
  account?: string | undefined;
  store?: string | undefined;
  debug?: boolean | undefined;
  allowHttp?: boolean | undefined;
}

export function parseGlobalOptions(flags: RawGlobalFlags, env: NodeJS.ProcessEnv): GlobalOptions {
  const account = flags.account ?? (env.AUTHKEEP_ACCOUNT || DEFAULT_ACCOUNT);
  const home = flags.home !== undefined && flags.home !== '' ? path.resolve(flags.home) : defaultHome(env);
  try {
    accountHome(home, account);
  } catch (err) {
    throw new UsageError((err as Error).message, 'e.g. --account work');
  }
  const storeFrom = flags.store !== undefined ? '--store' : 'AUTHKEEP_STORE';
  const storeValue = flags.store ?? (env.AUTHKEEP_STORE || undefined);
  let store: StoreModeOption | undefined;
  try {
    store =
      storeValue === undefined
        ? undefined
        : isRedisUrl(storeValue)
          ? storeValue
          : parseStoreMode(storeValue, storeFrom);
  } catch (err) {
    throw new UsageError((err as Error).message, 'e.g. --store keychain (or auto, file)');
  }
  const dpop = env.AUTHKEEP_DPOP || undefined;
  if (dpop !== undefined && !DPOP_MODES.includes(dpop as DpopMode)) {
    throw new UsageError(`AUTHKEEP_DPOP must be ${DPOP_MODES.join(' or ')}`, 'e.g. AUTHKEEP_DPOP=when-required');
  }
  return {
    home,
    account,
    ...(store !== undefined ? { store } : {}),
    debug: flags.debug === true || env.AUTHKEEP_DEBUG === '1',
    allowHttp: flags.allowHttp === true,
    ...(dpop !== undefined ? { dpop: dpop as DpopMode } : {}),
  };
}

/** One JSON line per library event on stderr (`--debug`). Events never carry secrets (log.ts). */
export function debugLogSink(deps: Pick<CliDeps, 'stderr'>): (event: LogEvent) => void {
  return (event) => {
    deps.stderr.write(`${displayJson(event)}\n`);
  };
}

/** Emit a CLI-level debug event in the same shape as the library's. */
export function debugEvent(
  deps: Pick<CliDeps, 'stderr'>,
  global: GlobalOptions,
  event: string,
  message: string,
  fields: Record<string, string | number | boolean> = {},
): void {
  if (!global.debug) return;
  debugLogSink(deps)({ level: 'debug', event, message, at: new Date().toISOString(), ...fields });
}

export function keeperOptions(
  global: GlobalOptions,
  deps: Pick<CliDeps, 'stderr'>,
  extra: AuthKeeperOptions = {},
): AuthKeeperOptions {
  return {
    home: global.home,
    account: global.account,
    ...(global.store ? { store: global.store } : {}),
    allowInsecureLoopback: global.allowHttp,
    ...(global.dpop ? { dpop: global.dpop } : {}),
    ...(global.debug ? { log: debugLogSink(deps) } : {}),
    ...extra,
  };
}
