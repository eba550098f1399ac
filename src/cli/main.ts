/**
 * main: the `authkeep` process: real stdio, environment, fetch and AuthKeeper handed to runCli,
 * then exit with its code once stdout and stderr are flushed.
 *
 * Not for: anything testable (program.ts and commands/ are; this file only wires).
 */
import { SessionKeeper } from '../session/session-keeper.js';
import { releaseHeldLocks } from '../store/lock.js';
import type { CliDeps } from './deps.js';
import { reportError } from './errors.js';
import { ExitCode } from './exit-codes.js';
import { runCli } from './program.js';

const deps: CliDeps = {
  stdout: process.stdout,
  stderr: process.stderr,
  stdin: process.stdin,
  env: process.env,
  createKeeper: (options) => new SessionKeeper(options),
  fetch: (input, init) => globalThis.fetch(input, init),
  now: () => Date.now(),
};

/** Resolves once `stream` has written everything: true if it did, false if its reader went away. */
function flush(stream: NodeJS.WriteStream): Promise<boolean> {
  return new Promise((resolve) => {
    if (stream.errored) return resolve(false);
    if (stream.writableEnded || stream.destroyed) return resolve(true);
    stream.write('', (err) => resolve(!err && !stream.errored));
  });
}

/** Exit codes of a process ended by a signal, as a shell reports them (128 + the signal number). */
const SIGNAL_EXIT: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 129, SIGINT: 130, SIGTERM: 143 };
/** What a shell reports for a writer whose reader went away (SIGPIPE). */
const CLOSED_PIPE_EXIT = 141;

/**
 * Ctrl-C (or SIGTERM, SIGHUP) in the middle of a command, typically a sign-in waiting for the
 * browser: release the locks this process holds, then exit as the signal would have. Without
 * this, Node exits at once, no finally block runs, and the lock file stays behind (the next
 * process waits to take it over, and `authkeep doctor` reports it). A second signal exits at once.
 */
function exitOnSignals(): void {
  let exiting = false;
  for (const [signal, code] of Object.entries(SIGNAL_EXIT) as Array<[NodeJS.Signals, number]>) {
    process.on(signal, () => {
      if (exiting) process.exit(code);
      exiting = true;
      process.stderr.write(`\nauthkeep: interrupted (${signal})\n`);
      void releaseHeldLocks().finally(() => process.exit(code));
    });
  }
}

/**
 * A reader that stopped reading (`authkeep status | head -1`) closes the pipe: the rest of the
 * output has nowhere to go. Exit quietly with the code a shell gives a tool killed by SIGPIPE,
 * instead of crashing on an unhandled EPIPE with a stack trace; locks are released first.
 */
function quietOnClosedPipe(): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err;
      void releaseHeldLocks().finally(() => process.exit(CLOSED_PIPE_EXIT));
    });
  }
}

/** Run the command line, then exit with its code once stdout and stderr are flushed. */
async function main(): Promise<never> {
  exitOnSignals();
  quietOnClosedPipe();
  let code: number;
  try {
    code = await runCli(process.argv.slice(2), deps);
  } catch (err) {
    code = reportError(err, { stderr: process.stderr, debug: process.argv.includes('--debug') });
  }
  // Exit explicitly: a finished command must not linger on a keep-alive socket or a stdin reader.
  const [outWritten] = await Promise.all([flush(process.stdout), flush(process.stderr)]);
  process.exit(outWritten ? (code ?? ExitCode.Error) : CLOSED_PIPE_EXIT);
}

// Not a top-level await: the built CLI is CommonJS (scripts/build.ts), which has none.
void main();
