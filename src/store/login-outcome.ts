/**
 * login-outcome: the last sign-in's result for a server, kept next to its record, so processes
 * that waited on another process's sign-in can be released with its reason instead of opening
 * yet another browser tab (issue 2, item 4, "sign-in coordination").
 *
 * For: the schema and parsing of `outcomes/<key>.json`. Not for: the record itself (record.ts),
 * or deciding what a waiter does with an outcome (session/sign-in-coordinator.ts).
 * Holds no secret: `message` is an AuthkeepError message, which never carries one.
 */
import { z } from 'zod';

export const LoginOutcomeSchema = z.object({
  status: z.enum(['ok', 'failed']),
  /** Epoch milliseconds at which the sign-in ended. */
  at: z.number(),
  /** The process that ran it. */
  pid: z.number().int(),
  /** The error code of a failed sign-in. */
  code: z.string().optional(),
  message: z.string().optional(),
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
