/**
 * closed-pipe: `authkeep ... | head -1`: when the reader of its output goes away, the command
 * exits quietly with a shell's SIGPIPE code (141), not with an unhandled EPIPE and a stack trace.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cliEnv, collect, spawnCli } from '../helpers/cli-run.js';

for (const args of [['--help'], ['proxy', '--help'], ['status']]) {
  test(`authkeep ${args.join(' ')} into a closed pipe exits 141 without a stack trace`, async (t) => {
    const cli = await cliEnv(t);
    const child = spawnCli(cli, args);
    // The reader is gone before the child writes a byte (it has not even started Node yet).
    child.stdout.destroy();
    const result = await collect(child);
    assert.equal(result.code, 141, `exit code (stderr: ${result.stderr})`);
    assert.doesNotMatch(result.stderr, /EPIPE|Unhandled|at .*\(.*:\d+:\d+\)/, 'no crash report on stderr');
  });
}
