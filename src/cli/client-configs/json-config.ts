/**
 * json-config: adds or replaces one server entry in a JSON client config, the shape every JSON
 * client here shares: a top-level object whose `containerKey` ("mcpServers", or "servers" for VS
 * Code) maps server names to entries. Only the entry's text changes (json-text.ts); the result is
 * parsed again and must equal the original document with just that entry set, else nothing is
 * written.
 *
 * Not for: the entry's fields (clients.ts) or the file itself (config-file.ts).
 */
import { isDeepStrictEqual } from 'node:util';
import { ConfigEditError } from './edit-error.js';
import {
  applyEdits,
  detectLayout,
  findMember,
  insertMemberEdits,
  type JsonDialect,
  type JsonNode,
  JsonTextError,
  jsonValue,
  parseJsonText,
  renderJson,
  replaceValueEdit,
  type TextEdit,
} from './json-text.js';

export interface JsonEntryEdit {
  dialect: JsonDialect;
  containerKey: string;
  name: string;
  entry: Record<string, unknown>;
  /** Replace an entry of the same name (else that is an error). */
  force: boolean;
  /** For messages. */
  file: string;
}

export interface EditResult {
  text: string;
  /** An entry of that name was there and was replaced. */
  replaced: boolean;
}

const DIALECT_NAME: Record<JsonDialect, string> = { json: 'JSON', jsonc: 'JSON with comments' };

function parseOrRefuse(text: string, dialect: JsonDialect, file: string): JsonNode {
  try {
    return parseJsonText(text, dialect);
  } catch (err) {
    if (!(err instanceof JsonTextError)) throw err;
    throw new ConfigEditError(
      `${file} is not valid ${DIALECT_NAME[dialect]}: ${err.message}; setup left it untouched`,
      'fix the file (or move it aside), then run setup again',
    );
  }
}

/** The file's text with the entry set; `original` undefined means the file does not exist. */
export function setJsonEntry(original: string | undefined, edit: JsonEntryEdit): EditResult {
  const { containerKey, name, entry, file } = edit;
  if (original === undefined || original.replace(/^\uFEFF/, '').trim() === '') {
    const layout = { eol: original?.includes('\r\n') ? '\r\n' : '\n', unit: '  ' };
    return { text: `${renderJson({ [containerKey]: { [name]: entry } }, layout, '')}${layout.eol}`, replaced: false };
  }
  const root = parseOrRefuse(original, edit.dialect, file);
  if (root.kind !== 'object') {
    throw new ConfigEditError(`${file} does not hold a JSON object; setup left it untouched`, 'check the file');
  }
  const layout = detectLayout(original, root);
  const container = findMember(root, containerKey);
  if (container === 'duplicate') {
    throw new ConfigEditError(
      `${file} has "${containerKey}" more than once; setup left it untouched`,
      `merge the "${containerKey}" objects by hand, then run setup again`,
    );
  }
  let edits: TextEdit[];
  let replaced = false;
  if (container === undefined) {
    edits = insertMemberEdits(original, root, containerKey, { [name]: entry }, layout);
  } else {
    const servers = container.value;
    if (servers.kind !== 'object') {
      throw new ConfigEditError(
        `"${containerKey}" in ${file} is not an object; setup left the file untouched`,
        `make "${containerKey}" an object of servers, then run setup again`,
      );
    }
    const existing = findMember(servers, name);
    if (existing === 'duplicate') {
      throw new ConfigEditError(
        `${file} has the server "${name}" more than once; setup left it untouched`,
        'remove the extra entries by hand, or pick another name with --name',
      );
    }
    if (existing && !edit.force) {
      throw new ConfigEditError(
        `${file} already has a server named "${name}"; setup left it untouched`,
        'replace it with --force, or add another entry with --name NAME',
      );
    }
    edits = existing
      ? [replaceValueEdit(original, existing, entry, layout)]
      : insertMemberEdits(original, servers, name, entry, layout);
    replaced = existing !== undefined;
  }
  const text = applyEdits(original, edits);

  // The edit must change exactly the entry: parse again and compare with what it should be.
  const expected = jsonValue(root) as Record<string, Record<string, unknown>>;
  expected[containerKey] = { ...(expected[containerKey] ?? {}), [name]: entry };
  let actual: unknown;
  try {
    actual = jsonValue(parseJsonText(text, edit.dialect));
  } catch {
    actual = undefined;
  }
  if (!isDeepStrictEqual(actual, expected)) {
    throw new ConfigEditError(
      `setup could not add the entry to ${file} without changing something else; it left the file untouched`,
      'add the printed entry by hand (run setup without --write to print it), and report this',
    );
  }
  return { text, replaced };
}
