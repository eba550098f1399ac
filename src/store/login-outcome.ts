/**
 * login-outcome: the last sign-in's result for a server, kept next to its record, so processes
 * that waited on another process's sign-in can be released with its reason instead of opening
 * yet another browser tab.
 *
 * For: the schema, reading and writing of `outcomes/<key>.json` (written whole, 0600). Not for:
 * the record itself (record.ts), or deciding what a waiter does with an outcome
 * (session/sign-in-coordinator.ts).
 * Holds no secret: `message` is an AuthkeepError message, which never carries one.
 */
import * as z from 'zod/mini';
import { AuthkeepError, ERROR_CODES } from '../errors.js';
import { checkStoreDirectories, ensurePrivateDir, readFileIfExists, writeFileAtomic } from './atomic-file.js';
import { recordKey, type StoreLayout } from './paths.js';

export const LoginOutcomeSchema = z.object({
  status: z.enum(['ok', 'failed']),
  /** Epoch milliseconds at which the sign-in ended. */
  at: z.number(),
  /** The process that ran it. */
  pid: z.int(),
  /** The error code of a failed sign-in (an AuthkeepError's `code`, or `unexpected` for anything else). */
  code: z.optional(z.enum([...ERROR_CODES, 'unexpected'])),
  message: z.optional(z.string()),
});
export type LoginOutcome = z.infer<typeof LoginOutcomeSchema>;

/** The outcome in `bytes`, or undefined when it is unreadable (an outcome is advisory). */
export function parseLoginOutcome(bytes: Buffer): LoginOutcome | undefined {
  try {
    const result = LoginOutcomeSchema.safeParse(JSON.parse(bytes.toString('utf8')));
    return result.success ? result.data : undefined;
  } catch {
    return undefined;
  }
}

/** The last sign-in's outcome for `serverUrl`, if one is stored and readable. */
export async function readLoginOutcome(layout: StoreLayout, serverUrl: string): Promise<LoginOutcome | undefined> {
  if (!(await checkStoreDirectories(layout.home, layout.outcomesDir))) return undefined;
  const bytes = await readFileIfExists(layout.outcomePath(recordKey(serverUrl)));
  return bytes === undefined ? undefined : parseLoginOutcome(bytes);
}

/** Store a sign-in's outcome for `serverUrl`, whole. */
export async function writeLoginOutcome(layout: StoreLayout, serverUrl: string, outcome: LoginOutcome): Promise<void> {
  const parsed = LoginOutcomeSchema.safeParse(outcome);
  if (!parsed.success) throw new AuthkeepError('invalid_argument', 'login outcome is invalid', { field: 'outcome' });
  await ensurePrivateDir(layout.home, { tighten: false });
  await ensurePrivateDir(layout.outcomesDir);
  await writeFileAtomic(layout.outcomePath(recordKey(serverUrl)), `${JSON.stringify(parsed.data)}\n`);
}
