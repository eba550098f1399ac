/**
 * store-mode: which Sealer a file store uses, from `AUTHKEEP_STORE` / the `store` option /
 * `--store`: `auto` (the default: the OS keychain when a persistent one answers, else plaintext
 * files, said once by the CLI and by doctor), `keychain` (sealed files, a clear
 * `keychain_unavailable` error when no keychain answers), `file` (plaintext files, as before
 * sealing existed). A `redis://...` URL is not a file store mode: open-store.ts routes it to the
 * fleet store before a mode is parsed; here it is refused.
 *
 * `auto` is decided once per process, on first use, by asking the keychain (keychain-key.ts).
 *
 * Not for: sealing itself (sealer.ts) or where the key lives (keychain-key.ts).
 */
import { AuthkeepError } from '../errors.js';
import { KeychainDataKey } from './keychain-key.js';
import { KeySealer, type Opened, PlaintextSealer, type SealContext, type Sealer, type SealingState } from './sealer.js';

export type StoreMode = 'auto' | 'keychain' | 'file';
export const STORE_MODES: readonly StoreMode[] = ['auto', 'keychain', 'file'];
/** What the `store` option accepts: a mode, or a redis:// URL (the fleet store, open-store.ts). */
export type StoreModeOption = StoreMode | `redis://${string}` | `rediss://${string}`;

/**
 * The mode `value` names (unset or empty: `auto`). `field` names where it came from, for the
 * error: `AUTHKEEP_STORE`, `store`, `--store`.
 */
export function parseStoreMode(value: string | undefined, field = 'AUTHKEEP_STORE'): StoreMode {
  if (value === undefined || value === '') return 'auto';
  if ((STORE_MODES as readonly string[]).includes(value)) return value as StoreMode;
  if (/^rediss?:\/\//i.test(value)) {
    throw new AuthkeepError('store_unsupported', `${field}: a redis:// store is not supported yet`, { field });
  }
  throw new AuthkeepError(
    'invalid_argument',
    `${field} must be auto, keychain or file (got ${JSON.stringify(value.slice(0, 40))})`,
    { field },
  );
}

/** A Sealer that picks its mode on first use (auto) or fails every use when the keychain is missing. */
class ModeSealer implements Sealer {
  private resolved: Promise<Sealer> | undefined;

  constructor(
    private readonly mode: StoreMode,
    private readonly key: KeychainDataKey,
  ) {}

  private resolve(): Promise<Sealer> {
    this.resolved ??= (async () => {
      if (this.mode === 'file') return new PlaintextSealer();
      const probe = await this.key.probe();
      if (probe.ok) {
        return new KeySealer((create) => this.key.get(create), {
          mode: 'keychain',
          requested: this.mode,
          keyLocation: probe.location,
        });
      }
      if (this.mode === 'auto') {
        return new PlaintextSealer({ mode: 'file', requested: 'auto', fallbackReason: probe.why });
      }
      return new UnavailableSealer(
        new AuthkeepError(
          'keychain_unavailable',
          `AUTHKEEP_STORE=keychain, but no persistent OS keychain is available: ${probe.why}`,
          { field: 'store', detail: { keyLocation: this.key.location } },
        ),
        this.key.location,
      );
    })();
    return this.resolved;
  }

  async seal(text: string, context: SealContext): Promise<string> {
    return (await this.resolve()).seal(text, context);
  }

  async open(bytes: Buffer, context: SealContext): Promise<Opened> {
    return (await this.resolve()).open(bytes, context);
  }

  async state(): Promise<SealingState> {
    return (await this.resolve()).state();
  }
}

/** Keychain mode without a keychain: nothing is read or written, every use says why. */
class UnavailableSealer implements Sealer {
  constructor(
    private readonly error: AuthkeepError,
    private readonly keyLocation: string,
  ) {}

  async seal(): Promise<string> {
    throw this.error;
  }

  async open(): Promise<Opened> {
    return { kind: 'unavailable', error: this.error };
  }

  async state(): Promise<SealingState> {
    return { mode: 'keychain', requested: 'keychain', keyLocation: this.keyLocation, unavailable: this.error.message };
  }
}

/** The Sealer for `mode`, with its data key kept for the store at `keyHome` (the root home). */
export function sealerFor(mode: StoreMode, keyHome: string, env: NodeJS.ProcessEnv = process.env): Sealer {
  if (mode === 'file') return new PlaintextSealer();
  return new ModeSealer(mode, new KeychainDataKey(keyHome, env));
}
