/**
 * seal: secrets at rest for stores whose backend is not the user's own disk (the fleet store's
 * Redis): the key supplied to every host (`AUTHKEEP_STORE_KEY`, base64; or
 * `AUTHKEEP_STORE_KEY_FILE`), and values sealed with it in the one envelope of sealer.ts
 * (AES-256-GCM, the role and key as additional authenticated data, so a value copied onto another
 * server's or issuer's key fails to open). Opening never throws for what a value holds: a torn,
 * tampered, foreign or other-key value is a problem (the callers treat it as a corrupt record).
 *
 * Not for: where values are kept (redis/), or the OS keychain's data key (another module).
 */
import { readFileSync } from 'node:fs';
import { AuthkeepError } from '../errors.js';
import { DATA_KEY_BYTES, openEnvelope, parseEnvelope, type SealRole, sealText as sealEnvelope } from './sealer.js';

export const STORE_KEY_BYTES = DATA_KEY_BYTES;

/** `text` sealed under `storeKey` for `role` at `key`: the same envelope as sealed files (sealer.ts). */
export function sealText(storeKey: Buffer, text: string, role: SealRole, key: string): string {
  return sealEnvelope(text, storeKey, { role, key });
}

export type OpenedText = { text: string; problem?: undefined } | { text?: undefined; problem: string };

/** What a sealed value holds; a problem (never a throw) when it is not one or does not open. */
export function openText(storeKey: Buffer, sealed: string, role: SealRole, key: string): OpenedText {
  const envelope = parseEnvelope(Buffer.from(sealed, 'utf8'));
  if (envelope === undefined) return { problem: 'not a sealed value' };
  if ('problem' in envelope) return { problem: `sealed value ${envelope.problem}` };
  const text = openEnvelope(envelope, storeKey, { role, key });
  return text === undefined
    ? { problem: 'sealed value does not open under this key (tampered, moved, or sealed under another key)' }
    : { text };
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
