/**
 * cli-bundle: the CLI as it ships (scripts/cli-bundle.ts's esbuild bundle), built once per test
 * process from this checkout's source, for tests that start many `authkeep` processes at once: a
 * bundle starts in a fraction of a second, where tsx compiling the source costs each child seconds
 * of CPU (16 of them on 2 cores take half a minute just to start).
 *
 * Written under node_modules/.cache so that the runtime dependencies it requires when used (the
 * keychain binding, the Redis client) resolve from this checkout's node_modules. With
 * AUTHKEEP_TEST_BIN set (pack-check), that installed command is used instead.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdir, mkdtemp } from 'node:fs/promises';
import path from 'node:path';
import { bundleCli, ROOT } from '../../scripts/cli-bundle.js';
import { BIN, type CliEnv, waitForOutput } from './cli-run.js';

let built: Promise<string> | undefined;

/** Path of a bundled `authkeep` (authkeep.cjs) to pass as SpawnOptions.bin. */
export function bundledCli(): Promise<string> {
  if (process.env.AUTHKEEP_TEST_BIN) return Promise.resolve(BIN);
  built ??= (async () => {
    const parent = path.join(ROOT, 'node_modules', '.cache');
    await mkdir(parent, { recursive: true });
    const dir = await mkdtemp(path.join(parent, 'authkeep-test-cli-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    await bundleCli(dir);
    return path.join(dir, 'authkeep.cjs');
  })();
  return built;
}

/** Runs in each gated child (`node -e`): say ready, then run the command when a line arrives. */
const GATE = `
const [bin, ...args] = process.argv.slice(1);
process.stdin.once('data', () => {
  process.stdin.pause();
  process.argv = [process.argv[0], bin, ...args];
  require(bin);
});
process.stderr.write('authkeep-gate: ready\\n');
`;

/**
 * `authkeep args` behind a start barrier: the child starts Node, says `authkeep-gate: ready` on
 * stderr, and loads and runs `bin` only when `go()` writes a line to its stdin. Waiting for every
 * child's ready before any go is a barrier that waits on the children, not on a delay: on a
 * saturated machine starting 16 processes takes minutes, and they would otherwise reach what the
 * test lines them up at one by one.
 */
export function spawnGatedCli(
  ctx: CliEnv,
  bin: string,
  args: string[],
): { child: ChildProcessWithoutNullStreams; ready: Promise<unknown>; go(): void } {
  const child = spawn(process.execPath, ['-e', GATE, bin, ...args], { env: ctx.env, stdio: 'pipe' });
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  return {
    child,
    ready: waitForOutput(child.stderr, /^authkeep-gate: ready$/m),
    go: () => child.stdin.end('go\n'),
  };
}
