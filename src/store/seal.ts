/**
 * seal: secrets at rest for stores whose backend is not the user's own disk (the fleet store's
 * Redis). A value is sealed with AES-256-GCM under a 32-byte key supplied to every host
 * (`AUTHKEEP_STORE_KEY`, base64; or `AUTHKEEP_STORE_KEY_FILE`), with a fresh 96-bit IV per value
 * (NIST SP 800-38D section 8.2.2) and a 128-bit tag. The additional authenticated data names the
 * value's role and key, so a sealed value copied onto another server's (or issuer's) key fails to
 * open. Opening never throws for what a value holds: a torn, tampered, foreign or other-key value
 * is `undefined` with a problem (the callers treat it as a corrupt record).
 *
 * Not for: where values are kept (redis/), or the OS keychain's data key (another module).
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { AuthkeepError } from '../errors.js';

const ALGORITHM = 'aes-256-gcm';
export const STORE_KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
/** Sealed value: `ak1.<iv>.<ciphertext>.<tag>`, each base64url. */
const PREFIX = 'ak1';

export type SealRole = 'record' | 'registration';

/** The additional authenticated data of a value of `role` stored under `key`. */
function aad(role: SealRole, key: string): Buffer {
  return Buffer.from(`authkeep-seal-v1\0${role}\0${key}`, 'utf8');
}

export function sealText(storeKey: Buffer, text: string, role: SealRole, key: string): string {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv(ALGORITHM, storeKey, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(aad(role, key));
  const ciphertext = Buffer.concat([cipher.update(text, 'utf8'), cipher.final()]);
  return [PREFIX, iv, ciphertext, cipher.getAuthTag()]
    .map((part) => (typeof part === 'string' ? part : part.toString('base64url')))
    .join('.');
}

export type OpenedText = { text: string; problem?: undefined } | { text?: undefined; problem: string };

export function openText(storeKey: Buffer, sealed: string, role: SealRole, key: string): OpenedText {
  const parts = sealed.split('.');
  if (parts.length !== 4 || parts[0] !== PREFIX) return { problem: 'not a sealed value' };
  const [iv, ciphertext, tag] = parts.slice(1).map((p) => Buffer.from(p, 'base64url'));
  if (!iv || iv.length !== IV_BYTES || !ciphertext || !tag || tag.length !== TAG_BYTES)
    return { problem: 'sealed value is torn' };
  try {
    const decipher = createDecipheriv(ALGORITHM, storeKey, iv, { authTagLength: TAG_BYTES });
    decipher.setAAD(aad(role, key));
    decipher.setAuthTag(tag);
    return { text: Buffer.concat([decipher.update(ciphertext), decipher.final()]).toString('utf8') };
  } catch {
    return { problem: 'sealed value does not open under this key (tampered, moved, or sealed under another key)' };
  }
}

const HOW_TO_MAKE =
  'make one with `openssl rand -base64 32` and give the same value to every host as AUTHKEEP_STORE_KEY (or put it in a file named by AUTHKEEP_STORE_KEY_FILE)';

/** The sealing key from the environment; `store_key_missing` (naming the variable, never the value) otherwise. */
export function storeKeyFromEnv(env: NodeJS.ProcessEnv = process.env): Buffer {
  const file = env.AUTHKEEP_STORE_KEY_FILE;
  let text = env.AUTHKEEP_STORE_KEY;
  let field = 'AUTHKEEP_STORE_KEY';
  if (text === undefined || text === '') {
    if (file === undefined || file === '')
      throw new AuthkeepError('store_key_missing', `the fleet store needs a sealing key: ${HOW_TO_MAKE}`, {
        field,
      });
    field = 'AUTHKEEP_STORE_KEY_FILE';
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new AuthkeepError('store_key_missing', `AUTHKEEP_STORE_KEY_FILE ${file} cannot be read: ${HOW_TO_MAKE}`, {
        field,
        cause: err,
      });
    }
  }
  const trimmed = text.trim();
  const key = Buffer.from(trimmed, 'base64');
  if (key.length !== STORE_KEY_BYTES || !/^[A-Za-z0-9+/_-]+={0,2}$/.test(trimmed))
    throw new AuthkeepError('store_key_missing', `${field} is not ${STORE_KEY_BYTES} bytes in base64: ${HOW_TO_MAKE}`, {
      field,
    });
  return key;
}
