/**
 * keychain-key: the store's 32-byte data key (sealer.ts), kept in the OS keychain (macOS Keychain,
 * Windows Credential Manager, the Secret Service on Linux) under service `authkeep` and an account
 * that is a hash of the store's home, made once (under a lock, so racing processes agree on one
 * key) and read once per process, then cached.
 *
 * The binding is @napi-rs/keyring (keyring-rs through N-API), pinned to an exact version. It is
 * maintained, and its prebuilt `.node` binaries ship inside its per-platform npm packages
 * (`@napi-rs/keyring-linux-x64-gnu`, `-darwin-arm64`, ... as optional dependencies, of which npm
 * installs the one for this platform): no install script, nothing downloaded or compiled when
 * authkeep is installed, so an install from the npm registry alone works offline of anything else.
 * It is loaded only when a keychain is about to be used: a command in file mode, or on a Linux
 * session without a D-Bus session bus, never loads native code.
 *
 * Persistence on Linux: left to its defaults the binding tries the Secret Service and silently
 * falls back to the kernel keyutils keyring, which lives in memory and does not survive a reboot:
 * the only copy of the data key there would be lost with every sealed record. So every entry is
 * pinned to the Secret Service (`{ linux: { store: 'secret-service' } }`; the binding then throws
 * instead of falling back), and before even loading the binding a session bus must be named
 * (DBUS_SESSION_BUS_ADDRESS): without one no Secret Service can answer.
 *
 * Not for: sealing (sealer.ts) or choosing the mode (store-mode.ts).
 */
import { createHash, randomBytes } from 'node:crypto';
import path from 'node:path';
import { AuthkeepError } from '../errors.js';
import { ensurePrivateDir } from './atomic-file.js';
import { acquireLock } from './lock.js';
import { DATA_KEY_BYTES } from './sealer.js';

/** The keychain service every authkeep data key is kept under. */
export const KEYCHAIN_SERVICE = 'authkeep';

/** The keychain account of the store at `home`: `home-` and 32 hex digits of SHA-256 of its path. */
export function keychainAccount(home: string): string {
  return `home-${createHash('sha256').update(path.resolve(home)).digest('hex').slice(0, 32)}`;
}

/** The few members of @napi-rs/keyring's AsyncEntry used here. */
interface KeyringEntry {
  getPassword(): Promise<string | null>;
  setPassword(password: string): Promise<void>;
  deletePassword(): Promise<boolean>;
}
interface KeyringModule {
  AsyncEntry: new (
    service: string,
    account: string,
    options?: { linux?: { store?: 'secret-service' } },
  ) => KeyringEntry;
}

/** Which OS keychain this platform has, for people. */
export function keychainName(platform: NodeJS.Platform = process.platform): string {
  if (platform === 'darwin') return 'macOS Keychain';
  if (platform === 'win32') return 'Windows Credential Manager';
  return 'Secret Service';
}

/** Data keys read or made by this process, by keychain account: the keychain is asked once. */
const cachedKeys = new Map<string, Buffer>();

/** Forget the data keys this process has read (tests that change the keychain behind its back). */
export function forgetCachedDataKeys(): void {
  cachedKeys.clear();
}

export type KeychainProbe = { ok: true; location: string } | { ok: false; why: string };

/** A data key in the OS keychain for one store home. */
export class KeychainDataKey {
  readonly account: string;
  private entry: Promise<KeyringEntry | string> | undefined;

  constructor(
    /** The store's home (the root home: every account under it shares one key). */
    readonly home: string,
    private readonly env: NodeJS.ProcessEnv = process.env,
    private readonly platform: NodeJS.Platform = process.platform,
  ) {
    this.account = keychainAccount(home);
  }

  /** The key once read or made (this process reads the keychain once per account). */
  private get key(): Buffer | undefined {
    return cachedKeys.get(this.account);
  }

  /** Where the key lives, for people (never the key). */
  get location(): string {
    return `OS keychain (${keychainName(this.platform)}), service "${KEYCHAIN_SERVICE}", account "${this.account}"`;
  }

  /** The binding's entry, or why there is no persistent keychain here. */
  private open(): Promise<KeyringEntry | string> {
    this.entry ??= (async () => {
      if (this.platform === 'linux' && !this.env.DBUS_SESSION_BUS_ADDRESS) {
        return 'no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is not set), so no Secret Service can answer';
      }
      let keyring: KeyringModule;
      try {
        keyring = (await import('@napi-rs/keyring')) as unknown as KeyringModule;
      } catch (err) {
        return `the keychain binding @napi-rs/keyring could not be loaded (${(err as Error).message})`;
      }
      try {
        // Pinned to the Secret Service on Linux: never the in-memory kernel keyring (see above).
        return new keyring.AsyncEntry(KEYCHAIN_SERVICE, this.account, { linux: { store: 'secret-service' } });
      } catch (err) {
        return `no ${keychainName(this.platform)} answers (${(err as Error).message})`;
      }
    })();
    return this.entry;
  }

  /** Read the entry; a failure of the keychain itself is the reason, as a string. */
  private async stored(entry: KeyringEntry): Promise<string | null | { why: string }> {
    try {
      return await entry.getPassword();
    } catch (err) {
      return { why: `the ${keychainName(this.platform)} did not answer (${(err as Error).message})` };
    }
  }

  /** Is a persistent keychain usable here (reads the key, if any, and keeps it). */
  async probe(): Promise<KeychainProbe> {
    if (this.key) return { ok: true, location: this.location };
    const entry = await this.open();
    if (typeof entry === 'string') return { ok: false, why: entry };
    const value = await this.stored(entry);
    if (value !== null && typeof value === 'object') return { ok: false, why: value.why };
    if (value !== null) {
      const decoded = decodeKey(value);
      if (decoded instanceof AuthkeepError) return { ok: false, why: decoded.message };
      cachedKeys.set(this.account, decoded);
    }
    return { ok: true, location: this.location };
  }

  /**
   * The data key: undefined when the keychain holds none and `create` is false; with `create`, a
   * new random key is made and stored first, under `<home>/locks/keychain-key.lock`, re-read
   * under it so that processes racing to make it all end up with the one that was stored.
   */
  async get(create: boolean): Promise<Buffer | undefined | AuthkeepError> {
    if (this.key) return this.key;
    const entry = await this.open();
    if (typeof entry === 'string') return this.unavailable(entry);
    const value = await this.stored(entry);
    if (value !== null && typeof value === 'object') return this.unavailable(value.why);
    if (value !== null) return this.keep(decodeKey(value));
    if (!create) return undefined;
    const locks = path.join(this.home, 'locks');
    await ensurePrivateDir(this.home, { tighten: false });
    await ensurePrivateDir(locks);
    const handle = await acquireLock(locks, 'keychain-key', { purpose: 'keychain-key' });
    try {
      const again = await this.stored(entry);
      if (again !== null && typeof again === 'object') return this.unavailable(again.why);
      if (again !== null) return this.keep(decodeKey(again));
      try {
        await entry.setPassword(randomBytes(DATA_KEY_BYTES).toString('base64'));
      } catch (err) {
        return this.unavailable(`the ${keychainName(this.platform)} refused to store it (${(err as Error).message})`);
      }
      const stored = await this.stored(entry);
      if (stored === null || typeof stored === 'object')
        return this.unavailable('the keychain did not keep the data key it was given');
      return this.keep(decodeKey(stored));
    } finally {
      await handle.release();
    }
  }

  private keep(key: Buffer | AuthkeepError): Buffer | AuthkeepError {
    if (key instanceof Buffer) cachedKeys.set(this.account, key);
    return key;
  }

  private unavailable(why: string): AuthkeepError {
    return new AuthkeepError('keychain_unavailable', `the store's data key cannot be had: ${why}`, {
      field: 'store',
      detail: { keyLocation: this.location },
    });
  }
}

/** A stored key: base64 of exactly 32 bytes. */
function decodeKey(value: string): Buffer | AuthkeepError {
  const key = Buffer.from(value, 'base64');
  if (key.length !== DATA_KEY_BYTES || key.toString('base64') !== value) {
    return new AuthkeepError(
      'keychain_unavailable',
      `the keychain entry "${KEYCHAIN_SERVICE}" holds something other than a data key`,
      { field: 'store' },
    );
  }
  return key;
}
