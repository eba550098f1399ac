/**
 * main: the `authkeep` process: real stdio, environment, fetch and AuthKeeper handed to runCli,
 * then exit with its code once stdout and stderr are flushed.
 *
 * Not for: anything testable (program.ts and commands/ are; this file only wires).
 */
import { SessionKeeper } from '../session/session-keeper.js';
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

/** Run the command line, then exit with its code once stdout and stderr are flushed. */
async function main(): Promise<never> {
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
