/**
 * toml-config: adds or replaces one `[<table>.<name>]` table in a TOML config (Codex's
 * `[mcp_servers.<name>]` in config.toml) by appending it, or by replacing just the text of that
 * table and its sub-tables, so every other byte of the file (other tables, comments, blank lines,
 * line endings) stays as it was.
 *
 * smol-toml parses the file first (a file that does not parse is refused untouched) and parses the
 * result again: it must equal the original document with only that entry set, else nothing is
 * written. It was chosen because it is small, has no dependencies, and is TOML 1.0 compliant; it
 * only reads here (its serializer would reformat the file and drop comments).
 *
 * Not for: the entry's fields (clients.ts) or the file itself (config-file.ts).
 */
import { isDeepStrictEqual } from 'node:util';
import { parse, TomlError } from 'smol-toml';
import { ConfigEditError } from './edit-error.js';
import type { EditResult } from './json-config.js';

/** A `[table]` or `[[array.of.tables]]` header line. */
export interface TomlHeader {
  /** Offset of the start of its line. */
  lineStart: number;
  keys: string[];
  arrayTable: boolean;
}

/** A TOML basic string for `value` (TOML 1.0 section "String": control characters escaped). */
export function tomlString(value: string): string {
  let out = '"';
  for (const ch of value) {
    const code = ch.codePointAt(0) ?? 0;
    if (ch === '"') out += '\\"';
    else if (ch === '\\') out += '\\\\';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\t') out += '\\t';
    else if (ch === '\r') out += '\\r';
    else if (code < 0x20 || code === 0x7f) out += `\\u${code.toString(16).padStart(4, '0').toUpperCase()}`;
    else out += ch;
  }
  return `${out}"`;
}

/** A key as TOML writes it: bare when it can be, else quoted. */
export function tomlKey(key: string): string {
  return /^[A-Za-z0-9_-]+$/.test(key) ? key : tomlString(key);
}

const ESCAPES: Record<string, string> = {
  b: '\b',
  t: '\t',
  n: '\n',
  f: '\f',
  r: '\r',
  e: '\x1b',
  '"': '"',
  '\\': '\\',
};

function decodeBasic(body: string): string {
  return body.replace(/\\(u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|x[0-9A-Fa-f]{2}|.)/g, (_all, esc: string) => {
    if (esc.length > 1) return String.fromCodePoint(Number.parseInt(esc.slice(1), 16));
    return ESCAPES[esc] ?? esc;
  });
}

/**
 * Every table header of a TOML document (which must already parse), found by a scan that skips
 * strings (including multi-line ones), comments and the insides of arrays and inline tables, so a
 * `[` in a value is never taken for a header.
 */
export function scanTomlHeaders(text: string): TomlHeader[] {
  const headers: TomlHeader[] = [];
  let i = 0;
  let depth = 0;
  let lineStart = 0;
  let lineHasContent = false;
  const n = text.length;
  const skipString = () => {
    const q = text[i] as '"' | "'";
    const triple = text.startsWith(q.repeat(3), i);
    if (triple) {
      i += 3;
      for (;;) {
        if (i >= n) return;
        if (q === '"' && text[i] === '\\') {
          i += 2;
          continue;
        }
        if (text.startsWith(q.repeat(3), i)) {
          i += 3;
          // Up to two more quotes belong to the content ("""a""""" is `a""`).
          for (let extra = 0; extra < 2 && text[i] === q; extra++) i++;
          return;
        }
        if (text[i] === '\n') lineStart = i + 1;
        i++;
      }
    }
    i++;
    while (i < n && text[i] !== q && text[i] !== '\n') {
      if (q === '"' && text[i] === '\\') i++;
      i++;
    }
    i++;
  };
  const parseHeader = (): void => {
    const start = lineStart;
    const arrayTable = text.startsWith('[[', i);
    i += arrayTable ? 2 : 1;
    const keys: string[] = [];
    for (;;) {
      while (text[i] === ' ' || text[i] === '\t') i++;
      const c = text[i];
      if (c === '"' || c === "'") {
        const from = i;
        skipString();
        const body = text.slice(from + 1, i - 1);
        keys.push(c === '"' ? decodeBasic(body) : body);
      } else {
        const m = /^[A-Za-z0-9_-]+/.exec(text.slice(i, i + 256));
        if (!m) break;
        keys.push(m[0]);
        i += m[0].length;
      }
      while (text[i] === ' ' || text[i] === '\t') i++;
      if (text[i] !== '.') break;
      i++;
    }
    i += arrayTable ? 2 : 1;
    headers.push({ lineStart: start, keys, arrayTable });
    lineHasContent = true;
  };
  while (i < n) {
    const c = text[i];
    if (c === '\n') {
      i++;
      lineStart = i;
      lineHasContent = false;
    } else if (c === ' ' || c === '\t' || c === '\r') {
      i++;
    } else if (c === '#') {
      while (i < n && text[i] !== '\n') i++;
    } else if (c === '"' || c === "'") {
      skipString();
      lineHasContent = true;
    } else if (c === '[' && depth === 0 && !lineHasContent) {
      parseHeader();
    } else {
      if (c === '[' || c === '{') depth++;
      else if (c === ']' || c === '}') depth--;
      lineHasContent = true;
      i++;
    }
  }
  return headers;
}

function startsWithKeys(keys: readonly string[], prefix: readonly string[]): boolean {
  return prefix.every((k, idx) => keys[idx] === k);
}

/**
 * Where the table `prefix` and its sub-tables are written: from its first header line to the
 * next other header, less the blank and comment lines just before that header (they introduce
 * what follows). 'absent' when no header names it; 'scattered' when other tables come between.
 */
export function tableRegion(
  text: string,
  headers: readonly TomlHeader[],
  prefix: readonly string[],
): { start: number; end: number } | 'absent' | 'scattered' {
  const idx = headers.flatMap((h, k) => (startsWithKeys(h.keys, prefix) ? [k] : []));
  const first = idx[0];
  const last = idx[idx.length - 1];
  if (first === undefined || last === undefined) return 'absent';
  if (last - first + 1 !== idx.length) return 'scattered';
  const start = (headers[first] as TomlHeader).lineStart;
  let end = headers[last + 1]?.lineStart ?? text.length;
  // Give back trailing blank and comment-only lines.
  const lines = text.slice(start, end).split(/(?<=\n)/);
  while (lines.length > 1 && /^[ \t]*(#.*)?\r?\n?$/.test(lines[lines.length - 1] as string)) {
    end -= (lines.pop() as string).length;
  }
  return { start, end };
}

export interface TomlEntryEdit {
  /** The parent table's key ("mcp_servers"). */
  tableKey: string;
  name: string;
  /** The entry's keys and values: strings or arrays of strings. */
  entry: Record<string, string | string[]>;
  force: boolean;
  file: string;
}

function tomlValue(value: string | string[]): string {
  return typeof value === 'string' ? tomlString(value) : `[${value.map(tomlString).join(', ')}]`;
}

/** The table's text, each line ending with `eol`. */
export function renderTomlTable(keys: readonly string[], entry: TomlEntryEdit['entry'], eol: string): string {
  const lines = [`[${keys.map(tomlKey).join('.')}]`];
  for (const [k, v] of Object.entries(entry)) lines.push(`${tomlKey(k)} = ${tomlValue(v)}`);
  return lines.map((l) => l + eol).join('');
}

function parseOrRefuse(text: string, file: string): Record<string, unknown> {
  try {
    return parse(text) as Record<string, unknown>;
  } catch (err) {
    if (!(err instanceof TomlError)) throw err;
    const what = err.message.split('\n')[0]?.replace(/^Invalid TOML document: /, '') ?? 'invalid TOML';
    throw new ConfigEditError(
      `${file} is not valid TOML: ${what} at line ${err.line}, column ${err.column}; setup left it untouched`,
      'fix the file (or move it aside), then run setup again',
    );
  }
}

/** A parsed document as plain objects (smol-toml's tables have no prototype), for comparison. */
function plain(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(plain);
  if (value instanceof Date || typeof value !== 'object' || value === null) return value;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
}

function isTable(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date);
}

/** The file's text with the table set; `original` undefined means the file does not exist. */
export function setTomlEntry(original: string | undefined, edit: TomlEntryEdit): EditResult {
  const { tableKey, name, entry, file } = edit;
  const text = original ?? '';
  const eol = text.includes('\r\n') ? '\r\n' : '\n';
  const keys = [tableKey, name];
  const table = renderTomlTable(keys, entry, eol);
  const doc = parseOrRefuse(text, file);
  const servers = doc[tableKey];
  if (servers !== undefined && !isTable(servers)) {
    throw new ConfigEditError(
      `"${tableKey}" in ${file} is not a table; setup left the file untouched`,
      `make "${tableKey}" a table of servers, then run setup again`,
    );
  }
  let result: string;
  const exists = servers?.[name] !== undefined;
  if (exists) {
    if (!edit.force) {
      throw new ConfigEditError(
        `${file} already has a server named "${name}" ([${keys.map(tomlKey).join('.')}]); setup left it untouched`,
        'replace it with --force, or add another entry with --name NAME',
      );
    }
    const region = tableRegion(text, scanTomlHeaders(text), keys);
    if (region === 'absent' || region === 'scattered') {
      throw new ConfigEditError(
        `${file} defines the server "${name}" ${region === 'absent' ? `without a [${keys.map(tomlKey).join('.')}] header` : 'in parts with other tables between them'}, which setup does not rewrite; it left the file untouched`,
        `remove that server from the file by hand and run setup again, or pick another name with --name`,
      );
    }
    result = text.slice(0, region.start) + table + text.slice(region.end);
  } else {
    let base = text;
    if (base !== '' && !base.endsWith('\n')) base += eol;
    if (base.trim() !== '') base += eol;
    result = base + table;
  }

  // The edit must change exactly the entry: parse again and compare with what it should be.
  const expected = plain(parse(text)) as Record<string, unknown>;
  const expectedServers = isTable(expected[tableKey]) ? (expected[tableKey] as Record<string, unknown>) : {};
  expected[tableKey] = { ...expectedServers, [name]: entry };
  let actual: unknown;
  let why = '';
  try {
    actual = plain(parse(result));
  } catch (err) {
    why = err instanceof TomlError ? ` (the result would not parse: ${err.message.split('\n')[0]})` : '';
  }
  if (!isDeepStrictEqual(actual, expected)) {
    throw new ConfigEditError(
      `setup could not add the entry to ${file} without changing something else${why}; it left the file untouched`,
      'add the printed entry by hand (run setup without --write to print it)',
    );
  }
  return { text: result, replaced: exists };
}
