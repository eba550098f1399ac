/**
 * json-argument: a command-line value that is a JSON object, given inline or as `@file`
 * (`proxy --static-oauth-client-info` and `--static-oauth-client-metadata`, which `setup` checks
 * before it writes them into a client's config). Anything else is a usage error naming the flag.
 *
 * Not for: what the object must contain (each command checks its members).
 */
import { readFileSync } from 'node:fs';
import { UsageError } from './errors.js';

/** A JSON object given inline or as `@file`. */
export function readJsonArgument(value: string, flag: string): Record<string, unknown> {
  let text = value;
  if (value.startsWith('@')) {
    try {
      text = readFileSync(value.slice(1), 'utf8');
    } catch (err) {
      throw new UsageError(
        `cannot read ${flag} file ${value.slice(1)}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      );
    }
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new UsageError(`${flag} is not valid JSON`, `pass a JSON object or @path/to/file.json`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw new UsageError(`${flag} must be a JSON object`);
  return parsed as Record<string, unknown>;
}
