/**
 * store-mode-child: one store operation in a fresh process, for the keychain tests whose setting
 * (the session bus) a process reads once: `write <mode> <home> <serverUrl> <tag>` writes a record
 * through FileCredentialStore in that mode and prints one JSON line: `{ ok, code?, message?,
 * sealing }`.
 *
 *   node --import tsx test/helpers/store-mode-child.ts write keychain /tmp/home https://a.example.test/mcp tag
 */
import { AuthkeepError } from '../../src/errors.js';
import { FileCredentialStore } from '../../src/store/file-credential-store.js';
import { parseStoreMode } from '../../src/store/store-mode.js';
import { makeRecord } from './store-fixtures.js';

const [command, mode, home, serverUrl, tag] = process.argv.slice(2);
if (command !== 'write' || !mode || !home || !serverUrl || !tag) {
  process.stderr.write('usage: store-mode-child.ts write <mode> <home> <serverUrl> <tag>\n');
  process.exit(2);
}
const store = new FileCredentialStore({ home, store: parseStoreMode(mode) });
try {
  await store.transaction(serverUrl, 'write', (tx) => tx.write(makeRecord(serverUrl, { tag })));
  process.stdout.write(`${JSON.stringify({ ok: true, sealing: (await store.inspect()).sealing })}\n`);
} catch (err) {
  if (!(err instanceof AuthkeepError)) throw err;
  process.stdout.write(`${JSON.stringify({ ok: false, code: err.code, message: err.message })}\n`);
}
