/**
 * sealer: what a secret-bearing store file (a record, a kept registration) looks like on disk. In
 * keychain mode its text is sealed with AES-256-GCM under a 32-byte data key (keychain-key.ts) into
 * a small JSON envelope `{"sealed":"authkeep","version":1,"iv","ciphertext","tag"}` (base64url),
 * whose additional authenticated data is the file's role and key, so a sealed file copied or
 * renamed onto another server's (or issuer's) name fails to open. In file mode the text is written
 * as it is (plaintext, 0600), which is also how every file looked before sealing existed.
 *
 * Opening never throws for what a file holds: a torn, tampered or foreign file, or one sealed
 * under another key, is `unreadable` with a problem (the callers treat it as a corrupt record).
 * Only a file that is sealed while no key can be had here is `unavailable` with a typed
 * `keychain_unavailable` error: the file may be fine, and moving it aside would lose it.
 *
 * Not for: where the key lives (keychain-key.ts), which mode applies (store-mode.ts), or reading
 * and writing files (record-files.ts, registrations.ts call this at their byte boundary).
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { AuthkeepError } from '../errors.js';

/** Which kind of store file: part of the additional authenticated data. */
export type SealRole = 'record' | 'registration';

export interface SealContext {
  role: SealRole;
  /** The file's key (record key or issuer key), as in its name. */
  key: string;
}

export type Opened =
  /** A file written in plaintext (file mode, or not yet migrated). */
  | { kind: 'plaintext'; text: string }
  /** A sealed file whose tag verified. */
  | { kind: 'sealed'; text: string }
  /** Torn, tampered, moved, or sealed under another key: as corrupt as a file that fails to parse. */
  | { kind: 'unreadable'; problem: string }
  /** Sealed, but no data key can be had here: not the file's fault. */
  | { kind: 'unavailable'; error: AuthkeepError };

/** Where the store's secrets are, for `authkeep doctor` and the one-time notice. */
export interface SealingState {
  /** `keychain`: files sealed under a key in the OS keychain; `file`: plaintext files. */
  mode: 'keychain' | 'file';
  /** What was asked for (`auto`, `keychain`, `file`). */
  requested: 'auto' | 'keychain' | 'file';
  /** Where the data key lives (keychain mode), e.g. `OS keychain (Secret Service), service authkeep, account ...`. */
  keyLocation?: string;
  /** Why `auto` chose plaintext files (no persistent keychain here). */
  fallbackReason?: string;
  /** Keychain mode was asked for and no keychain answers: why (every read and write fails). */
  unavailable?: string;
}

export interface Sealer {
  /** The text to write for `text`. */
  seal(text: string, context: SealContext): Promise<string>;
  /** What a file's bytes hold. Never throws for their content. */
  open(bytes: Buffer, context: SealContext): Promise<Opened>;
  /** Which mode applies here and where the key is (resolves `auto`). */
  state(): Promise<SealingState>;
}

/** AES-256-GCM: a 32-byte key, a 96-bit random IV per file (NIST SP 800-38D section 8.2.2), a 128-bit tag. */
const ALGORITHM = 'aes-256-gcm';
export const DATA_KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const ENVELOPE_MARK = 'authkeep';
const ENVELOPE_VERSION = 1;

interface Envelope {
  sealed: typeof ENVELOPE_MARK;
  version: number;
  iv: string;
  ciphertext: string;
  tag: string;
}

function aad(context: SealContext): Buffer {
  return Buffer.from(`authkeep-sealed-v${ENVELOPE_VERSION}\0${context.role}\0${context.key}`, 'utf8');
}

/** Seal `text` under `key` into the envelope's text. */
export function sealText(text: string, key: Buffer, context: SealContext): string {
  if (key.length !== DATA_KEY_BYTES) throw new AuthkeepError('invalid_argument', 'data key must be 32 bytes');
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv(ALGORITHM, key, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(aad(context));
  const ciphertext = Buffer.concat([cipher.update(text, 'utf8'), cipher.final()]);
  const envelope: Envelope = {
    sealed: ENVELOPE_MARK,
    version: ENVELOPE_VERSION,
    iv: iv.toString('base64url'),
    ciphertext: ciphertext.toString('base64url'),
    tag: cipher.getAuthTag().toString('base64url'),
  };
  return `${JSON.stringify(envelope)}\n`;
}

/**
 * The envelope a file's bytes hold, `undefined` when they are not one (plaintext), or a problem
 * when they claim to be one but are not well formed.
 */
export function parseEnvelope(bytes: Buffer): Envelope | undefined | { problem: string } {
  const text = bytes.toString('utf8');
  // A plaintext record or registration is a JSON object without this member.
  if (!text.includes(`"sealed"`)) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { problem: 'is a torn sealed file (not valid JSON)' };
  }
  const e = json as Partial<Record<keyof Envelope, unknown>> | null;
  if (e === null || typeof e !== 'object' || e.sealed !== ENVELOPE_MARK) return undefined;
  if (e.version !== ENVELOPE_VERSION) return { problem: `is sealed with an unknown envelope version` };
  for (const field of ['iv', 'ciphertext', 'tag'] as const) {
    if (typeof e[field] !== 'string') return { problem: `is a sealed file without ${field}` };
  }
  return e as Envelope;
}

/** Open a well-formed envelope with `key`: the text, or undefined when the tag does not verify. */
export function openEnvelope(envelope: Envelope, key: Buffer, context: SealContext): string | undefined {
  try {
    const iv = Buffer.from(envelope.iv, 'base64url');
    const tag = Buffer.from(envelope.tag, 'base64url');
    if (iv.length !== IV_BYTES || tag.length !== TAG_BYTES) return undefined;
    const decipher = createDecipheriv(ALGORITHM, key, iv, { authTagLength: TAG_BYTES });
    decipher.setAAD(aad(context));
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(Buffer.from(envelope.ciphertext, 'base64url')), decipher.final()]).toString(
      'utf8',
    );
  } catch {
    return undefined;
  }
}

const TAG_FAILED =
  'is sealed but does not open with the data key (torn, tampered, moved from another name, or sealed under another key)';

/** Open `bytes` with a key obtained by `key()` (only called for a sealed file). */
export async function openWith(
  bytes: Buffer,
  context: SealContext,
  key: () => Promise<Buffer | undefined | AuthkeepError>,
): Promise<Opened> {
  const envelope = parseEnvelope(bytes);
  if (envelope === undefined) return { kind: 'plaintext', text: bytes.toString('utf8') };
  if ('problem' in envelope) return { kind: 'unreadable', problem: envelope.problem };
  const k = await key();
  if (k instanceof AuthkeepError) return { kind: 'unavailable', error: k };
  if (k === undefined) return { kind: 'unreadable', problem: 'is sealed, but the keychain holds no data key' };
  const text = openEnvelope(envelope, k, context);
  return text === undefined ? { kind: 'unreadable', problem: TAG_FAILED } : { kind: 'sealed', text };
}

/** File mode: plaintext on disk; a sealed file found here cannot be opened (no key is looked up). */
export class PlaintextSealer implements Sealer {
  constructor(private readonly described: SealingState = { mode: 'file', requested: 'file' }) {}

  async seal(text: string): Promise<string> {
    return text;
  }

  open(bytes: Buffer, context: SealContext): Promise<Opened> {
    return openWith(bytes, context, async () => {
      const why = this.described.fallbackReason ? ` (${this.described.fallbackReason})` : '';
      return new AuthkeepError(
        'keychain_unavailable',
        `the stored ${context.role} ${context.key} is sealed with a key kept in the OS keychain, but the store is in plaintext file mode${why}; use AUTHKEEP_STORE=keychain where the keychain is available`,
        { field: 'store', detail: { key: context.key } },
      );
    });
  }

  async state(): Promise<SealingState> {
    return this.described;
  }
}

/** Keychain mode with a key at hand (or fetched on first use): every file written is sealed. */
export class KeySealer implements Sealer {
  constructor(
    /** The data key (undefined: none kept); `create` is true when sealing (a missing key is then made once). */
    private readonly key: (create: boolean) => Promise<Buffer | undefined | AuthkeepError>,
    private readonly described: SealingState,
  ) {}

  async seal(text: string, context: SealContext): Promise<string> {
    const key = await this.key(true);
    if (key instanceof AuthkeepError) throw key;
    if (key === undefined)
      throw new AuthkeepError('keychain_unavailable', 'no data key could be made in the OS keychain');
    return sealText(text, key, context);
  }

  open(bytes: Buffer, context: SealContext): Promise<Opened> {
    return openWith(bytes, context, () => this.key(false));
  }

  async state(): Promise<SealingState> {
    return this.described;
  }
}

/** A fixed data key (tests, embedders holding their own key). */
export function fixedKeySealer(key: Buffer, keyLocation = 'a key held by the caller'): Sealer {
  if (key.length !== DATA_KEY_BYTES) throw new AuthkeepError('invalid_argument', 'data key must be 32 bytes');
  return new KeySealer(async () => key, { mode: 'keychain', requested: 'keychain', keyLocation });
}
