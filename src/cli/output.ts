/**
 * output: how the CLI talks to people: colors (only on a TTY, never with NO_COLOR or TERM=dumb),
 * aligned tables, relative times, and a spinner on stderr while we wait for the browser.
 *
 * Not for: deciding what to say (commands/*.ts). Nothing here ever sees a secret.
 */
import type { Writer } from './deps.js';

export interface Style {
  readonly color: boolean;
  green(text: string): string;
  red(text: string): string;
  yellow(text: string): string;
  dim(text: string): string;
  bold(text: string): string;
}

/** https://no-color.org: any non-empty NO_COLOR disables color. */
export function colorEnabled(writer: Writer, env: NodeJS.ProcessEnv): boolean {
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  if (env.TERM === 'dumb') return false;
  return writer.isTTY === true;
}

export function makeStyle(writer: Writer, env: NodeJS.ProcessEnv): Style {
  const color = colorEnabled(writer, env);
  const wrap = (open: number, close: number) => (text: string) =>
    color ? `\u001b[${open}m${text}\u001b[${close}m` : text;
  return { color, green: wrap(32, 39), red: wrap(31, 39), yellow: wrap(33, 39), dim: wrap(2, 22), bold: wrap(1, 22) };
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: matches the ESC of our own colour codes
const ANSI = /\u001b\[[0-9;]*m/g;

function visibleLength(text: string): number {
  return text.replace(ANSI, '').length;
}

/** Left-aligned columns separated by two spaces; the last column is not padded. */
export function renderTable(header: string[], rows: string[][], style?: Style): string {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((row) => visibleLength(row[i] ?? ''))));
  const line = (row: string[]) =>
    row
      .map((cell, i) => (i === row.length - 1 ? cell : cell + ' '.repeat((widths[i] ?? 0) - visibleLength(cell))))
      .join('  ')
      .trimEnd();
  const head = line(header);
  return `${[style ? style.bold(head) : head, ...rows.map(line)].join('\n')}\n`;
}

/**
 * The columns output must fit: the terminal's width when `writer` is one, else `$COLUMNS` (set by
 * shells, and by whoever pipes the output and wants another width), else 80.
 */
export function outputWidth(writer: Writer, env: NodeJS.ProcessEnv): number {
  if (writer.isTTY === true && writer.columns !== undefined && writer.columns > 0) return writer.columns;
  const fromEnv = env.COLUMNS !== undefined && /^\d+$/.test(env.COLUMNS) ? Number(env.COLUMNS) : 0;
  return fromEnv > 0 ? fromEnv : 80;
}

/** `text` cut to `width` characters with `…` in the middle (both ends of a URL say the most). */
export function truncateMiddle(text: string, width: number): string {
  if (text.length <= width) return text;
  if (width <= 1) return text.slice(0, width);
  const head = Math.ceil((width - 1) / 2);
  return `${text.slice(0, head)}…${text.slice(text.length - (width - 1 - head))}`;
}

/** A table cut to a width: the columns kept, the rows' cells for them, and the headers left out. */
export interface FittedTable {
  header: string[];
  rows: string[][];
  hidden: string[];
}

/**
 * Fit a table of plain (uncoloured) cells into `width` columns as renderTable lays it out: drop
 * columns in `dropOrder` (indexes, least needed first) until it fits, then cut the cells of the
 * `shrinkable` columns in the middle, down to `minShrunk` characters. Colour cells afterwards:
 * a cut through a colour code would leave the colour running on.
 */
export function fitTable(
  header: string[],
  rows: string[][],
  width: number,
  dropOrder: number[],
  shrinkable: number[],
  minShrunk = 20,
): FittedTable {
  let kept = header.map((_, i) => i);
  const widthOf = (i: number) => Math.max(...[header, ...rows].map((row) => (row[i] ?? '').length));
  const total = (cols: number[], w: (i: number) => number) =>
    cols.reduce((sum, i) => sum + w(i), 0) + 2 * Math.max(0, cols.length - 1);
  const hidden: string[] = [];
  for (const drop of dropOrder) {
    if (total(kept, widthOf) <= width) break;
    kept = kept.filter((i) => i !== drop);
    hidden.push(header[drop] ?? '');
  }
  const widths = new Map(kept.map((i) => [i, widthOf(i)]));
  for (const i of shrinkable) {
    const over = total(kept, (k) => widths.get(k) ?? 0) - width;
    const current = widths.get(i);
    if (over <= 0 || current === undefined) continue;
    widths.set(i, Math.max(Math.min(current, minShrunk), current - over));
  }
  const cut = (row: string[]) => kept.map((i) => truncateMiddle(row[i] ?? '', widths.get(i) ?? 0));
  return { header: kept.map((i) => header[i] ?? ''), rows: rows.map(cut), hidden };
}

/** "3m", "2h 5m", "4d 3h": the two largest units. */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(Math.abs(ms) / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${s % 60 ? ` ${s % 60}s` : ''}`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h${m % 60 ? ` ${m % 60}m` : ''}`;
  const d = Math.floor(h / 24);
  return `${d}d${h % 24 ? ` ${h % 24}h` : ''}`;
}

/** "in 59m" or "2m ago" relative to `now`. */
export function relativeTime(iso: string | undefined, now: number): string {
  if (iso === undefined) return '-';
  const at = Date.parse(iso);
  if (!Number.isFinite(at)) return '-';
  const delta = at - now;
  return delta >= 0 ? `in ${formatDuration(delta)}` : `${formatDuration(delta)} ago`;
}

/** Quote a path for a copy-pasteable shell command. */
export function shellQuote(value: string): string {
  return /^[\w@%+=:,./-]+$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`;
}

export interface Spinner {
  /** Show `text` with an animation (TTY) or once as a line (anything else). */
  start(text: string): void;
  /** Stop and erase the animation line. */
  stop(): void;
}

const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/**
 * A spinner on `writer` (stderr). Animated only on a TTY with TERM other than dumb; otherwise it
 * prints its text once, so logs and CI output stay readable. It has no colors, so NO_COLOR holds.
 */
export function createSpinner(writer: Writer, env: NodeJS.ProcessEnv): Spinner {
  const animated = writer.isTTY === true && env.TERM !== 'dumb';
  let timer: NodeJS.Timeout | undefined;
  let text = '';
  let frame = 0;
  return {
    start(next) {
      text = next;
      if (!animated) {
        writer.write(`${text}\n`);
        return;
      }
      if (timer) return;
      const draw = () => {
        writer.write(`\r\u001b[2K${FRAMES[frame++ % FRAMES.length]} ${text}`);
      };
      draw();
      timer = setInterval(draw, 80);
      timer.unref();
    },
    stop() {
      if (!timer) return;
      clearInterval(timer);
      timer = undefined;
      writer.write('\r\u001b[2K');
    },
  };
}
