/**
 * cli-bundle: the CLI's esbuild bundles (dist/cli/authkeep.cjs, and proxy.cjs and setup.cjs apart);
 * one definition for `npm run build` (scripts/build.ts) and the tests that run many CLI processes at
 * once (test/helpers/cli-bundle.ts), which cannot afford tsx's start in each.
 *
 * Why a bundle, and why CommonJS: see scripts/build.ts.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type BuildOptions, build, type Plugin } from 'esbuild';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Commands bundled on their own, as <outdir>/<name>.cjs. */
export const SEPARATE_COMMANDS = ['proxy', 'setup'];

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

function options(version: string): BuildOptions {
  return {
    absWorkingDir: ROOT,
    bundle: true,
    format: 'cjs',
    platform: 'node',
    target: 'node20',
    minify: true,
    // Dynamic imports become require() calls: the ES module loader is never started.
    supported: { 'dynamic-import': false },
    // The bundle has no package.json at a known place above it (see src/version.ts).
    define: { AUTHKEEP_BUNDLED_VERSION: JSON.stringify(version) },
    metafile: true,
    logLevel: 'warning',
    // The keychain binding loads a native .node file from its platform package at run time, and the
    // Redis client (more than half the bundle's bytes) serves only the fleet store: both are runtime
    // dependencies installed beside authkeep, required when used, never bundled into what every
    // command parses.
    external: ['@napi-rs/keyring', '@redis/client'],
  };
}

/**
 * Bundles the CLI into `outdir` (authkeep.cjs and one file per separate command); throws when a
 * separate command uses deps.createKeeper or the MCP SDK leaks into authkeep.cjs.
 */
export async function bundleCli(outdir: string): Promise<void> {
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
  const cli = options(pkg.version);
  for (const name of SEPARATE_COMMANDS) {
    if (readFileSync(path.join(ROOT, `src/cli/commands/${name}.ts`), 'utf8').includes('createKeeper')) {
      throw new Error(
        `src/cli/commands/${name}.ts uses deps.createKeeper: it cannot be bundled apart from authkeep.cjs`,
      );
    }
  }
  const main = await build({
    ...cli,
    entryPoints: ['src/cli/main.ts'],
    outfile: path.join(outdir, 'authkeep.cjs'),
    plugins: [separateCommands],
  });
  const leaked = Object.keys(main.metafile?.inputs ?? {}).filter((input) =>
    input.includes('@modelcontextprotocol/sdk'),
  );
  if (leaked.length > 0)
    throw new Error(`the MCP SDK leaked into authkeep.cjs (${leaked[0]}, ...): import it only from proxy`);
  for (const name of SEPARATE_COMMANDS) {
    await build({ ...cli, entryPoints: [`src/cli/commands/${name}.ts`], outfile: path.join(outdir, `${name}.cjs`) });
  }
}
