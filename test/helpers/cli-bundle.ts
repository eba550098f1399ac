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
import { rmSync } from 'node:fs';
import { mkdir, mkdtemp } from 'node:fs/promises';
import path from 'node:path';
import { bundleCli, ROOT } from '../../scripts/cli-bundle.js';
import { BIN } from './cli-run.js';

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
