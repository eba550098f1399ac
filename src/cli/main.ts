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

function flush(stream: NodeJS.WriteStream): Promise<void> {
  return new Promise((resolve) => {
    if (stream.writableEnded || stream.destroyed) return resolve();
    stream.write('', () => resolve());
  });
}

/** Exit codes of a process ended by a signal, as a shell reports them (128 + the signal number). */
const SIGNAL_EXIT: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 129, SIGINT: 130, SIGTERM: 143 };

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

/** Run the command line, then exit with its code once stdout and stderr are flushed. */
async function main(): Promise<never> {
  exitOnSignals();
  let code: number;
  try {
    code = await runCli(process.argv.slice(2), deps);
  } catch (err) {
    code = reportError(err, { stderr: process.stderr, debug: process.argv.includes('--debug') });
  }
  // Exit explicitly: a finished command must not linger on a keep-alive socket or a stdin reader.
  await Promise.all([flush(process.stdout), flush(process.stderr)]);
  process.exit(code ?? ExitCode.Error);
}

// Not a top-level await: the built CLI is CommonJS (scripts/build.ts), which has none.
void main();
