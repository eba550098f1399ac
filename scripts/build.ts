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
 * A command bundled on its own carries its own copy of the modules it shares with authkeep.cjs
 * (errors, the CLI helpers): what it throws is reported by its own copy of `action()`, so no class
 * is compared across the two. Only commander's Command, the CliDeps writers and the exit slot pass
 * between them, which is why such a command must not use `deps.createKeeper` (checked below).
 *
 *   node --import tsx scripts/build.ts
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type BuildOptions, build, type Plugin } from 'esbuild';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };

/** Commands bundled on their own, as dist/cli/<name>.cjs. */
const SEPARATE_COMMANDS = ['proxy', 'setup'];

function fail(message: string): never {
  console.error(`build: ${message}`);
  process.exit(1);
}

/** program.ts's `import('./commands/<name>.js')` of a separate command loads its bundle at run time. */
const separateCommands: Plugin = {
  name: 'separate-commands',
  setup(b) {
    b.onResolve({ filter: /^\.\/commands\/[a-z-]+\.js$/ }, (args) => {
      const name = path.basename(args.path, '.js');
      if (!SEPARATE_COMMANDS.includes(name) || args.importer !== path.join(ROOT, 'src/cli/program.ts'))
        return undefined;
      return { path: `./${name}.cjs`, external: true };
    });
  },
};

const cli: BuildOptions = {
  absWorkingDir: ROOT,
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  minify: true,
  // Dynamic imports become require() calls: the ES module loader is never started.
  supported: { 'dynamic-import': false },
  // The bundle has no package.json at a known place above it (see src/version.ts).
  define: { AUTHKEEP_BUNDLED_VERSION: JSON.stringify(pkg.version) },
  metafile: true,
  logLevel: 'warning',
  // The keychain binding loads a native .node file from its platform package at run time, and the
  // Redis client (more than half the bundle's bytes) serves only the fleet store: both are runtime
  // dependencies installed beside authkeep, required when used, never bundled into what every
  // command parses.
  external: ['@napi-rs/keyring', '@redis/client'],
};

for (const name of SEPARATE_COMMANDS) {
  if (readFileSync(path.join(ROOT, `src/cli/commands/${name}.ts`), 'utf8').includes('createKeeper')) {
    fail(`src/cli/commands/${name}.ts uses deps.createKeeper: it cannot be bundled apart from authkeep.cjs`);
  }
}

rmSync(path.join(ROOT, 'dist'), { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
execFileSync(process.execPath, [tsc, '-p', path.join(ROOT, 'tsconfig.build.json')], { stdio: 'inherit' });

const main = await build({
  ...cli,
  entryPoints: ['src/cli/main.ts'],
  outfile: 'dist/cli/authkeep.cjs',
  plugins: [separateCommands],
});
const leaked = Object.keys(main.metafile?.inputs ?? {}).filter((input) => input.includes('@modelcontextprotocol/sdk'));
if (leaked.length > 0)
  fail(`the MCP SDK leaked into dist/cli/authkeep.cjs (${leaked[0]}, ...): import it only from proxy`);
for (const name of SEPARATE_COMMANDS) {
  await build({ ...cli, entryPoints: [`src/cli/commands/${name}.ts`], outfile: `dist/cli/${name}.cjs` });
}
console.log(`built authkeep ${pkg.version}: dist/index.js (library), dist/cli/authkeep.cjs (CLI)`);
