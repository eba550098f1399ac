/**
 * results: where every benchmark leaves its figures for tools: bench-out/results.json, an array
 * of one object per benchmark (its name, its figures, and `ratio`, the figure its target is
 * stated in). A benchmark replaces its own objects and keeps the others'.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const RESULTS_FILE = fileURLToPath(new URL('../bench-out/results.json', import.meta.url));

export interface BenchResult {
  /** e.g. `cold-start: authkeep token <url>`. */
  name: string;
  /** The headline ratio against the baseline measured in the same run. */
  ratio: number;
  /** The ratio's goal, and whether it holds (`<=` or `>=` as `goal` says). */
  goal: { ratio: number; compare: '<=' | '>=' };
  goalMet: boolean;
  [figure: string]: unknown;
}

/** Write `results`, replacing the objects with the same names from earlier runs. */
export function recordResults(results: BenchResult[]): void {
  let existing: BenchResult[] = [];
  try {
    const parsed: unknown = JSON.parse(readFileSync(RESULTS_FILE, 'utf8'));
    if (Array.isArray(parsed)) existing = parsed as BenchResult[];
  } catch {
    // first run, or an unreadable file: start over
  }
  const names = new Set(results.map((r) => r.name));
  const merged = [...existing.filter((r) => !names.has(r.name)), ...results];
  mkdirSync(path.dirname(RESULTS_FILE), { recursive: true });
  writeFileSync(RESULTS_FILE, `${JSON.stringify(merged, null, 2)}\n`);
}

/** The median of `values` (the mean of the middle two for an even count). */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}
