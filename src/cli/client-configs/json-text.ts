/**
 * json-text: a JSON / JSONC reader that keeps the offsets of every value, and the one edit `setup`
 * makes with it: add or replace a single object member by inserting or replacing text, so that
 * everything else in the file (other entries, comments, whitespace, key order, line endings) stays
 * byte for byte. The file is never re-serialised.
 *
 * Dialects: 'json' is RFC 8259 (what Claude Code, Claude Desktop and Cursor read); 'jsonc' adds
 * `//` and `/* *\/` comments and trailing commas (what VS Code reads in mcp.json).
 *
 * Not for: which file or key a client uses (clients.ts), or writing files (config-file.ts).
 */

export type JsonDialect = 'json' | 'jsonc';

export type JsonNode =
  | { kind: 'object'; start: number; end: number; members: JsonMember[] }
  | { kind: 'array'; start: number; end: number; items: JsonNode[] }
  | { kind: 'scalar'; start: number; end: number; value: string | number | boolean | null };

export interface JsonMember {
  key: string;
  keyStart: number;
  value: JsonNode;
}

/** The text is not valid in the dialect; `line` and `column` are 1-based. */
export class JsonTextError extends Error {
  constructor(
    readonly reason: string,
    readonly line: number,
    readonly column: number,
  ) {
    super(`${reason} at line ${line}, column ${column}`);
    this.name = 'JsonTextError';
  }
}

export function lineColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text[i] === '\n') {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, column: offset - lineStart + 1 };
}

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

class Parser {
  private i = 0;

  constructor(
    private readonly text: string,
    private readonly dialect: JsonDialect,
  ) {}

  private fail(reason: string, at = this.i): never {
    const { line, column } = lineColumn(this.text, at);
    throw new JsonTextError(reason, line, column);
  }

  /** Skip whitespace (and a byte order mark at the very start) and, in JSONC, comments. */
  private trivia(): void {
    const t = this.text;
    for (;;) {
      const c = t[this.i];
      if (c === ' ' || c === '\t' || c === '\n' || c === '\r' || (c === '\uFEFF' && this.i === 0)) {
        this.i++;
      } else if (c === '/' && this.dialect === 'jsonc' && t[this.i + 1] === '/') {
        while (this.i < t.length && t[this.i] !== '\n') this.i++;
      } else if (c === '/' && this.dialect === 'jsonc' && t[this.i + 1] === '*') {
        const close = t.indexOf('*/', this.i + 2);
        if (close < 0) this.fail('unterminated /* comment');
        this.i = close + 2;
      } else if (c === '/') {
        this.fail('comments are not allowed in this JSON file');
      } else {
        return;
      }
    }
  }

  parseDocument(): JsonNode {
    this.trivia();
    if (this.i >= this.text.length) this.fail('the file is empty');
    const node = this.value();
    this.trivia();
    if (this.i < this.text.length) this.fail(`unexpected ${JSON.stringify(this.text[this.i])} after the value`);
    return node;
  }

  private value(): JsonNode {
    const c = this.text[this.i];
    if (c === '{') return this.object();
    if (c === '[') return this.array();
    if (c === '"') {
      const start = this.i;
      return { kind: 'scalar', start, end: this.i, value: this.string() };
    }
    for (const [word, value] of [
      ['true', true],
      ['false', false],
      ['null', null],
    ] as const) {
      if (this.text.startsWith(word, this.i)) {
        const start = this.i;
        this.i += word.length;
        return { kind: 'scalar', start, end: this.i, value };
      }
    }
    NUMBER.lastIndex = this.i;
    const match = NUMBER.exec(this.text);
    if (match) {
      const start = this.i;
      this.i += match[0].length;
      return { kind: 'scalar', start, end: this.i, value: Number(match[0]) };
    }
    return this.fail(c === undefined ? 'unexpected end of the file' : `unexpected ${JSON.stringify(c)}`);
  }

  private string(): string {
    const start = this.i;
    this.i++;
    const t = this.text;
    for (;;) {
      const c = t[this.i];
      if (c === undefined) this.fail('unterminated string', start);
      if (c === '"') break;
      if (c === '\\') this.i++;
      else if (c < ' ') this.fail('a control character inside a string');
      this.i++;
    }
    this.i++;
    try {
      return JSON.parse(t.slice(start, this.i)) as string;
    } catch {
      return this.fail('an invalid escape in a string', start);
    }
  }

  private object(): JsonNode {
    const start = this.i;
    this.i++;
    const members: JsonMember[] = [];
    this.trivia();
    if (this.text[this.i] === '}') {
      this.i++;
      return { kind: 'object', start, end: this.i, members };
    }
    for (;;) {
      if (this.text[this.i] !== '"') this.fail('expected a "quoted" key');
      const keyStart = this.i;
      const key = this.string();
      this.trivia();
      if (this.text[this.i] !== ':') this.fail(`expected ":" after the key ${JSON.stringify(key)}`);
      this.i++;
      this.trivia();
      members.push({ key, keyStart, value: this.value() });
      this.trivia();
      const c = this.text[this.i];
      if (c === ',') {
        this.i++;
        this.trivia();
        if (this.text[this.i] === '}') {
          if (this.dialect === 'json') this.fail('a trailing comma is not allowed in this JSON file');
          this.i++;
          return { kind: 'object', start, end: this.i, members };
        }
      } else if (c === '}') {
        this.i++;
        return { kind: 'object', start, end: this.i, members };
      } else {
        this.fail('expected "," or "}"');
      }
    }
  }

  private array(): JsonNode {
    const start = this.i;
    this.i++;
    const items: JsonNode[] = [];
    this.trivia();
    if (this.text[this.i] === ']') {
      this.i++;
      return { kind: 'array', start, end: this.i, items };
    }
    for (;;) {
      items.push(this.value());
      this.trivia();
      const c = this.text[this.i];
      if (c === ',') {
        this.i++;
        this.trivia();
        if (this.text[this.i] === ']') {
          if (this.dialect === 'json') this.fail('a trailing comma is not allowed in this JSON file');
          this.i++;
          return { kind: 'array', start, end: this.i, items };
        }
      } else if (c === ']') {
        this.i++;
        return { kind: 'array', start, end: this.i, items };
      } else {
        this.fail('expected "," or "]"');
      }
    }
  }
}

/** Parse `text` in `dialect`; throws JsonTextError naming the line and column. */
export function parseJsonText(text: string, dialect: JsonDialect): JsonNode {
  return new Parser(text, dialect).parseDocument();
}

/** The plain value of a node, with JSON.parse's semantics (the last of duplicate keys wins). */
export function jsonValue(node: JsonNode): unknown {
  if (node.kind === 'scalar') return node.value;
  if (node.kind === 'array') return node.items.map(jsonValue);
  const out: Record<string, unknown> = {};
  for (const m of node.members) {
    // defineProperty, not assignment: a "__proto__" key is data here, as with JSON.parse.
    Object.defineProperty(out, m.key, {
      value: jsonValue(m.value),
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return out;
}

/** One replacement of `length` characters at `offset` by `text`. */
export interface TextEdit {
  offset: number;
  length: number;
  text: string;
}

export function applyEdits(text: string, edits: readonly TextEdit[]): string {
  let out = text;
  for (const e of [...edits].sort((a, b) => b.offset - a.offset)) {
    out = out.slice(0, e.offset) + e.text + out.slice(e.offset + e.length);
  }
  return out;
}

/** How the file is laid out, so inserted text looks like its neighbours. */
export interface JsonLayout {
  eol: string;
  /** One level of indentation ("  ", "    " or "\t"). */
  unit: string;
}

function lineStartOf(text: string, offset: number): number {
  return text.lastIndexOf('\n', offset - 1) + 1;
}

/** The whitespace before `offset` on its line, or undefined when something else precedes it there. */
function ownLineIndent(text: string, offset: number): string | undefined {
  const before = text.slice(lineStartOf(text, offset), offset);
  return /^[ \t]*$/.test(before) ? before : undefined;
}

/** The leading whitespace of the line holding `offset`. */
function lineIndent(text: string, offset: number): string {
  return /^[ \t]*/.exec(text.slice(lineStartOf(text, offset)))?.[0] ?? '';
}

export function detectLayout(text: string, root: JsonNode | undefined): JsonLayout {
  const eol = text.includes('\r\n') ? '\r\n' : '\n';
  let unit = '  ';
  const first = root?.kind === 'object' ? root.members[0] : undefined;
  if (first && root) {
    const indent = ownLineIndent(text, first.keyStart);
    const outer = lineIndent(text, root.start);
    if (indent !== undefined && indent.length > outer.length && indent.startsWith(outer))
      unit = indent.slice(outer.length);
  }
  return { eol, unit };
}

/** `value` as JSON text whose continuation lines start with `indent`. */
export function renderJson(value: unknown, layout: JsonLayout, indent: string): string {
  return JSON.stringify(value, null, layout.unit)
    .split('\n')
    .join(layout.eol + indent);
}

/** The member of `object` named `key`; an error when it appears more than once (which one counts is unclear). */
export function findMember(object: JsonNode & { kind: 'object' }, key: string): JsonMember | undefined | 'duplicate' {
  const found = object.members.filter((m) => m.key === key);
  if (found.length > 1) return 'duplicate';
  return found[0];
}

/**
 * The edits that add the member `key: value` at the end of `object`, in the style of the object's
 * last member: on a line of its own after it (a comma added after its value, before any comment on
 * that line) or, when the object is written on one line, inline.
 */
export function insertMemberEdits(
  text: string,
  object: JsonNode & { kind: 'object' },
  key: string,
  value: unknown,
  layout: JsonLayout,
): TextEdit[] {
  const last = object.members[object.members.length - 1];
  if (!last) {
    const outer = lineIndent(text, object.start);
    const indent = outer + layout.unit;
    const member = `${JSON.stringify(key)}: ${renderJson(value, layout, indent)}`;
    return [{ offset: object.start + 1, length: 0, text: `${layout.eol}${indent}${member}${layout.eol}${outer}` }];
  }
  const indent = ownLineIndent(text, last.keyStart);
  // After the last value: an optional comma, then only spaces and comments up to the end of the line?
  let p = last.value.end;
  const skipSpaces = () => {
    while (text[p] === ' ' || text[p] === '\t') p++;
  };
  skipSpaces();
  const commaAt = text[p] === ',' ? p : undefined;
  if (commaAt !== undefined) p++;
  skipSpaces();
  let restIsTrivia = false;
  for (;;) {
    if (text.startsWith('/*', p)) {
      const close = text.indexOf('*/', p + 2);
      if (close < 0 || text.slice(p, close).includes('\n')) break;
      p = close + 2;
      skipSpaces();
      continue;
    }
    if (text.startsWith('//', p)) {
      while (p < text.length && text[p] !== '\n' && text[p] !== '\r') p++;
    }
    restIsTrivia = p >= text.length || text[p] === '\n' || text[p] === '\r';
    break;
  }
  if (indent !== undefined && restIsTrivia) {
    const member = `${JSON.stringify(key)}: ${renderJson(value, layout, indent)}`;
    const edits: TextEdit[] = [{ offset: p, length: 0, text: `${layout.eol}${indent}${member}` }];
    if (commaAt === undefined) edits.push({ offset: last.value.end, length: 0, text: ',' });
    return edits;
  }
  // One-line object: `{"a": 1}` becomes `{"a": 1, "key": {...}}`.
  return [{ offset: last.value.end, length: 0, text: `, ${JSON.stringify(key)}: ${JSON.stringify(value)}` }];
}

/** The edit that replaces the value of `member` with `value`, indented like the member. */
export function replaceValueEdit(text: string, member: JsonMember, value: unknown, layout: JsonLayout): TextEdit {
  const indent = ownLineIndent(text, member.keyStart);
  const rendered = indent === undefined ? JSON.stringify(value) : renderJson(value, layout, indent);
  return { offset: member.value.start, length: member.value.end - member.value.start, text: rendered };
}
