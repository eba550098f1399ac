/**
 * The text editors behind `authkeep setup`, in-process, on the edge cases the sample files do not
 * cover: JSON(C) layouts (empty objects, one-line objects, trailing commas, comments after the last
 * value, a byte order mark, CRLF), ambiguous documents (duplicate keys, wrong types) refused, and
 * TOML tables found past multi-line strings and nested arrays, replaced with their sub-tables, or
 * refused when defined in a form that cannot be replaced textually.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parse as parseToml } from 'smol-toml';
import { ConfigEditError } from '../../src/cli/client-configs/edit-error.js';
import { type JsonEntryEdit, setJsonEntry } from '../../src/cli/client-configs/json-config.js';
import {
  scanTomlHeaders,
  setTomlEntry,
  type TomlEntryEdit,
  tomlString,
} from '../../src/cli/client-configs/toml-config.js';

const ENTRY = { command: 'npx', args: ['-y', 'authkeep', 'proxy', 'https://mcp.example.com/mcp'] };

function json(original: string | undefined, over: Partial<JsonEntryEdit> = {}): string {
  return setJsonEntry(original, {
    dialect: 'json',
    containerKey: 'mcpServers',
    name: 'new',
    entry: ENTRY,
    force: false,
    file: 'f.json',
    ...over,
  }).text;
}

function tomlEdit(original: string | undefined, over: Partial<TomlEntryEdit> = {}): string {
  return setTomlEntry(original, {
    tableKey: 'mcp_servers',
    name: 'new',
    entry: ENTRY,
    force: false,
    file: 'config.toml',
    ...over,
  }).text;
}

function plainToml(text: string): unknown {
  return JSON.parse(JSON.stringify(parseToml(text)));
}

test('json: a missing or blank file becomes a new document', () => {
  assert.deepEqual(JSON.parse(json(undefined)), { mcpServers: { new: ENTRY } });
  assert.deepEqual(JSON.parse(json('  \n')), { mcpServers: { new: ENTRY } });
});

test('json: insertion keeps the layout of its neighbours', () => {
  assert.equal(
    json('{}'),
    `{\n  "mcpServers": {\n    "new": {\n      "command": "npx",\n      "args": [\n        "-y",\n        "authkeep",\n        "proxy",\n        "https://mcp.example.com/mcp"\n      ]\n    }\n  }\n}`,
  );
  // An empty container inside an indented document.
  const empty = '{\n    "mcpServers": {}\n}\n';
  const out = json(empty);
  assert.ok(out.startsWith('{\n    "mcpServers": {\n        "new": {\n            "command": "npx",'), out);
  assert.ok(out.endsWith('\n    }\n}\n'));
  // A one-line object stays on one line.
  assert.equal(
    json('{"mcpServers": {"a": {"command": "x"}}}'),
    `{"mcpServers": {"a": {"command": "x"}, "new": ${JSON.stringify(ENTRY)}}}`,
  );
  // CRLF and a byte order mark are kept; inserted lines use CRLF.
  const crlf = '\uFEFF{\r\n  "mcpServers": {\r\n    "a": {"command": "x"}\r\n  }\r\n}\r\n';
  const withCrlf = json(crlf);
  assert.ok(withCrlf.startsWith('\uFEFF{\r\n  "mcpServers": {\r\n    "a": {"command": "x"},\r\n    "new": {\r\n'));
  assert.ok(!/[^\r]\n/.test(withCrlf), 'every line ends with CRLF');
});

test('jsonc: a trailing comma is reused and a comment after the last value stays on its line', () => {
  const trailing = '{\n  "servers": {\n    "a": {"type": "stdio", "command": "x"},\n  },\n}\n';
  assert.equal(
    json(trailing, { dialect: 'jsonc', containerKey: 'servers', entry: { x: 1 } }),
    '{\n  "servers": {\n    "a": {"type": "stdio", "command": "x"},\n    "new": {\n      "x": 1\n    }\n  },\n}\n',
  );
  const comment = '{\n  "servers": {\n    "a": 1 /* one */ // last\n  }\n}\n';
  assert.equal(
    json(comment, { dialect: 'jsonc', containerKey: 'servers', entry: { x: 1 } }),
    '{\n  "servers": {\n    "a": 1, /* one */ // last\n    "new": {\n      "x": 1\n    }\n  }\n}\n',
  );
});

test('json: --force replaces only the value, and a "__proto__" key elsewhere is data, not a prototype', () => {
  const original =
    '{\n  "__proto__": {"polluted": true},\n  "mcpServers": {\n    "new": {"old": true},\n    "b": 2\n  }\n}\n';
  assert.throws(() => json(original), /already has a server named "new"/);
  const out = json(original, { force: true, entry: { x: 1 } });
  assert.equal(out, original.replace('{"old": true}', '{\n      "x": 1\n    }'));
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
});

test('json: ambiguous or mistyped documents are refused', () => {
  const refuses = (text: string, message: RegExp, over: Partial<JsonEntryEdit> = {}) =>
    assert.throws(
      () => json(text, over),
      (err: unknown) => err instanceof ConfigEditError && message.test(err.message),
    );
  refuses('[1, 2]', /does not hold a JSON object/);
  refuses('{"mcpServers": []}', /"mcpServers" in f.json is not an object/);
  refuses('{"mcpServers": {}, "mcpServers": {}}', /has "mcpServers" more than once/);
  refuses('{"mcpServers": {"new": 1, "new": 2}}', /has the server "new" more than once/, { force: true });
  refuses('{"a": 1,}', /trailing comma is not allowed/);
  refuses('{"a": "\u0001"}', /control character/);
  refuses('{"a": 1} x', /after the value/);
});

test('toml: the header scan skips strings, comments and nested arrays', () => {
  const text = [
    's = """',
    '[not.a]',
    '"""',
    "l = '''",
    '[not.b]',
    "'''",
    'm = [ [1],',
    '[2] ]',
    '[mcp_servers."quoted.name"]   # a comment',
    '[[arr.t]]',
    '  [ mcp_servers . spaced ]',
    '',
  ].join('\n');
  assert.doesNotThrow(() => parseToml(text));
  assert.deepEqual(
    scanTomlHeaders(text).map((h) => [h.keys, h.arrayTable]),
    [
      [['mcp_servers', 'quoted.name'], false],
      [['arr', 't'], true],
      [['mcp_servers', 'spaced'], false],
    ],
  );
});

test('toml: appends a table, keeping the file as a prefix; CRLF and a missing final newline', () => {
  assert.deepEqual(plainToml(tomlEdit(undefined)), { mcp_servers: { new: ENTRY } });
  assert.equal(
    tomlEdit('a = 1'),
    `a = 1\n\n[mcp_servers.new]\ncommand = "npx"\nargs = ${JSON.stringify(ENTRY.args).replace(/","/g, '", "')}\n`,
  );
  const crlf = tomlEdit('a = 1\r\n');
  assert.ok(crlf.startsWith('a = 1\r\n\r\n[mcp_servers.new]\r\n'));
  assert.ok(!/[^\r]\n/.test(crlf));
});

test('toml: --force replaces the table and its sub-tables, keeping the comment that introduces the next table', () => {
  const original = [
    'top = true',
    '',
    '[mcp_servers.new]',
    'command = "old"',
    '[mcp_servers.new.env]',
    'X = "1"',
    '',
    '# Profiles',
    '[profiles.p]',
    'k = "v"',
    '',
  ].join('\n');
  assert.throws(() => tomlEdit(original), /already has a server named "new"/);
  const out = tomlEdit(original, { force: true, entry: { command: 'npx', args: ['a'] } });
  assert.equal(
    out,
    [
      'top = true',
      '',
      '[mcp_servers.new]',
      'command = "npx"',
      'args = ["a"]',
      '',
      '# Profiles',
      '[profiles.p]',
      'k = "v"',
      '',
    ].join('\n'),
  );
});

test('toml: entries that cannot be replaced or added textually are refused', () => {
  const refuses = (text: string, message: RegExp, force = true) =>
    assert.throws(
      () => tomlEdit(text, { force }),
      (err: unknown) => err instanceof ConfigEditError && message.test(err.message),
    );
  refuses('[mcp_servers]\nnew = { command = "x" }\n', /without a \[mcp_servers.new\] header/);
  refuses('[mcp_servers.new]\ncommand = "x"\n[other]\n[mcp_servers.new.env]\nA = "1"\n', /in parts with other tables/);
  refuses('mcp_servers = { a = { command = "x" } }\n', /the result would not parse/, false);
  refuses('mcp_servers = 3\n', /"mcp_servers" in config.toml is not a table/, false);
  refuses('a = [\n', /is not valid TOML: .* at line 2/, false);
});

test('toml: strings are escaped as TOML basic strings', () => {
  const value = 'q" b\\ t\t n\n del\u007f é';
  assert.deepEqual(plainToml(`v = ${tomlString(value)}`), { v: value });
});
