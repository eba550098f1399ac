/**
 * open-store: which CredentialStore a keeper uses, from the `store` option (`--store`) or
 * `AUTHKEEP_STORE`: `redis://host:port/db` or `rediss://...` selects the fleet store
 * (redis/redis-credential-store.ts), sealed under `AUTHKEEP_STORE_KEY` / `AUTHKEEP_STORE_KEY_FILE`
 * (refused without one: `store_key_missing`); a store mode (`auto`, `keychain`, `file`;
 * store-mode.ts) or nothing selects the files under the account's home.
 *
 * Not for: the stores themselves, or the file store's modes (store-mode.ts).
 */
import type { CredentialStore } from './credential-store.js';
import { FileCredentialStore } from './file-credential-store.js';
import { isRedisUrl, redisTarget } from './redis/redis-connection.js';
import { RedisCredentialStore } from './redis/redis-credential-store.js';
import { storeKeyFromEnv } from './seal.js';
import { parseStoreMode, type StoreModeOption } from './store-mode.js';

export interface OpenStoreOptions {
  /** The account's home (file store). */
  home: string;
  /** The home whose data key seals the file store (the root home, shared by its accounts). */
  keyHome?: string;
  /** The account (the fleet store keeps each account under its own key prefix). */
  account: string;
  /** The `store` option; default `$AUTHKEEP_STORE`. */
  store?: StoreModeOption;
  env?: NodeJS.ProcessEnv;
}

/** Is the fleet store selected in `env`? */
export function fleetStoreSelected(env: NodeJS.ProcessEnv = process.env): boolean {
  return isRedisUrl(env.AUTHKEEP_STORE);
}

export function openStore(options: OpenStoreOptions): CredentialStore {
  const env = options.env ?? process.env;
  const chosen = options.store ?? (env.AUTHKEEP_STORE || undefined);
  if (isRedisUrl(chosen)) {
    return new RedisCredentialStore({
      target: redisTarget(chosen, env),
      sealKey: storeKeyFromEnv(env),
      prefix: `authkeep:${options.account}:`,
    });
  }
  return new FileCredentialStore({
    home: options.home,
    ...(options.keyHome !== undefined ? { keyHome: options.keyHome } : {}),
    ...(options.store !== undefined ? { store: parseStoreMode(options.store, 'store') } : {}),
  });
}
