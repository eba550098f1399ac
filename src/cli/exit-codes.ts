/**
 * exit-codes: the CLI's typed, documented exit codes (gh style). Scripts rely on these numbers;
 * never reuse one for another meaning.
 *
 * Not for: mapping errors to codes (see errors.ts).
 */
export const ExitCode = {
  /** The command did what was asked. */
  Ok: 0,
  /** Something failed (network, authorization server, store, or `doctor` found problems). */
  Error: 1,
  /** The command line was wrong (unknown flag, missing argument, bad value). */
  Usage: 2,
  /** The server needs an interactive sign-in (`authkeep login <url>`); stderr says why. */
  NeedsAuth: 4,
} as const;

export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** The block every command's `--help` ends with. */
export const EXIT_CODES_HELP = `Exit codes:
  0  ok
  1  error (network, authorization server, store; doctor found problems)
  2  usage (unknown flag, missing argument, bad value)
  4  needs-auth: run \`authkeep login <url>\` (the reason is on stderr)`;
