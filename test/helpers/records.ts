/**
 * records: read and change a stored server record the way another process (or time) would,
 * through the store's own transaction (lock, compare-and-swap), for the session tests.
 *
 * `expireStoredTokens` is how tests reach "the access token has expired" without sleeping: the
 * record then says what it would say once the token's lifetime had passed (the AS still honours
 * the refresh token, as it would after a real hour). An AuthKeeper that has not cached the token
 * (a new one, as another process would be) meets it at its next call.
 *
 * Not for: records of a hostile server scenario that never signed in (use store-fixtures.ts).
 */
import { canonicalServerUrl } from '../../src/session/canonical-url.js';
import { FileCredentialStore } from '../../src/store/file-credential-store.js';
import type { ServerRecord, Tokens } from '../../src/store/record.js';

/** The stored record of `serverUrl` under `home` (throws when there is none or it is corrupt). */
export async function readRecord(home: string, serverUrl: string): Promise<ServerRecord> {
  const read = await new FileCredentialStore({ home }).read(canonicalServerUrl(serverUrl));
  if (read.kind !== 'ok') throw new Error(`no readable record for ${serverUrl}: ${read.kind}`);
  return read.record;
}

/** Rewrite the record of `serverUrl` with `edit` (under the record lock, compare-and-swap). */
export async function editRecord(
  home: string,
  serverUrl: string,
  edit: (record: ServerRecord) => ServerRecord,
): Promise<ServerRecord> {
  return new FileCredentialStore({ home }).transaction(canonicalServerUrl(serverUrl), 'write', async (tx) => {
    const read = await tx.read();
    if (read.kind !== 'ok') throw new Error(`no readable record for ${serverUrl}: ${read.kind}`);
    return tx.write(edit(read.record));
  });
}

/** Rewrite the stored tokens of `serverUrl` with `edit`. */
export function editTokens(home: string, serverUrl: string, edit: (tokens: Tokens) => Tokens): Promise<ServerRecord> {
  return editRecord(home, serverUrl, (record) => {
    if (!record.tokens) throw new Error(`the record of ${serverUrl} holds no tokens`);
    return { ...record, tokens: edit(record.tokens) };
  });
}

/**
 * The stored access token of `serverUrl` as it is once its lifetime has passed: obtained an hour
 * ago, expired a millisecond ago. Everything else (the refresh token, the stamps) is unchanged.
 */
export function expireStoredTokens(home: string, serverUrl: string): Promise<ServerRecord> {
  const now = Date.now();
  return editTokens(home, serverUrl, (tokens) => ({ ...tokens, obtainedAt: now - 3_600_000, expiresAt: now - 1 }));
}
