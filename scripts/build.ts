/**
 * build: what `npm run build` (and `npm pack`, through prepack) puts in dist/, emptied first so
 * nothing stale ships:
 *   - the library, compiled by tsc from src/ without src/cli/ (tsconfig.build.json): dist/index.js
 *     and its typings, importing the runtime dependencies from node_modules;
 *   - the CLI, bundled by esbuild with its dependencies into CommonJS files in dist/cli/:
 *     authkeep.cjs (bin/authkeep.cjs runs it) with every command but `proxy` and `setup`, and
 *     proxy.cjs and setup.cjs, which program.ts loads only when that command runs (or when help
 *     lists them all).
 *
 * Why: `authkeep token` sits in shell loops and header helpers, and what it costs beyond node's
 * own start is loading code. So one file to read instead of hundreds to resolve; CommonJS, because
 * starting Node's ES module loader costs more than all of `authkeep token`'s own work; and the MCP
 * SDK (proxy) and the config editors (setup) kept out of the file every command parses.
 * `npm run bench` measures the result against `node -e 0`.
 *
 * The bundles are defined in scripts/cli-bundle.ts. A command bundled on its own carries its own
 * copy of the modules it shares with authkeep.cjs (errors, the CLI helpers): what it throws is
 * reported by its own copy of `action()`, so no class is compared across the two. Only commander's
 * Command, the CliDeps writers and the exit slot pass between them, which is why such a command
 * must not use `deps.createKeeper` (checked there).
 *
 *   node --import tsx scripts/build.ts
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { bundleCli, ROOT } from './cli-bundle.js';

const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };

rmSync(path.join(ROOT, 'dist'), { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
execFileSync(process.execPath, [tsc, '-p', path.join(ROOT, 'tsconfig.build.json')], { stdio: 'inherit' });
try {
  await bundleCli(path.join(ROOT, 'dist/cli'));
} catch (err) {
  console.error(`build: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}
console.log(`built authkeep ${pkg.version}: dist/index.js (library), dist/cli/authkeep.cjs (CLI)`);
