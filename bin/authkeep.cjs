#!/usr/bin/env node
// The `authkeep` command. Runs the built CLI (dist/cli/authkeep.cjs, from `npm run build`; what the
// package ships) when it is there; otherwise, in a source checkout, registers tsx and runs the
// TypeScript source. Set AUTHKEEP_FROM_SOURCE=1 to prefer the source even when dist/ exists
// (development, and the tests). CommonJS like the built CLI, so that `authkeep token` never
// starts Node's ES module loader.
//
// Compiling the bundle is a fifth of `authkeep token`'s start, so the compiled code is cached:
// Node >= 22.1 keeps it with module.enableCompileCache(); on Node 20 we keep V8's code cache for the
// bundle ourselves (compiled once per Node version and bundle, then reused), in a directory only this
// user can write (code cache is code: a cache others can write would run their code as ours).
// Any failure falls back to a plain require. AUTHKEEP_NO_COMPILE_CACHE=1 turns it off.
'use strict';
const { existsSync } = require('node:fs');
const path = require('node:path');
const { pathToFileURL } = require('node:url');

const built = path.join(__dirname, '..', 'dist', 'cli', 'authkeep.cjs');
const source = path.join(__dirname, '..', 'src', 'cli', 'main.ts');

function fail(message, hint) {
  process.stderr.write(`authkeep: ${message}\nhint: ${hint}\n`);
  process.exit(1);
}

/** The user's own cache directory for compiled code, created 0700 and refused unless theirs alone. */
function privateCacheDir() {
  const fs = require('node:fs');
  const os = require('node:os');
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  const dir = path.join(base, 'authkeep', 'compiled');
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = fs.lstatSync(dir);
  const uid = typeof process.getuid === 'function' ? process.getuid() : undefined;
  if (!st.isDirectory() || (uid !== undefined && (st.uid !== uid || (st.mode & 0o022) !== 0))) return undefined;
  return dir;
}

/** The bundle compiled as require() would, with V8's code cache when one fits; its runner. */
function compileWithCodeCache(file) {
  const fs = require('node:fs');
  const vm = require('node:vm');
  const Module = require('node:module');
  const dir = privateCacheDir();
  if (!dir) return undefined;
  const st = fs.statSync(file);
  const cacheFile = path.join(
    dir,
    `authkeep-${process.version}-${process.arch}-${st.size}-${Math.trunc(st.mtimeMs)}.v8`,
  );
  let cachedData;
  try {
    const fd = fs.openSync(cacheFile, fs.constants.O_RDONLY | (fs.constants.O_NOFOLLOW || 0));
    try {
      cachedData = fs.readFileSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch {}
  const script = new vm.Script(Module.wrap(fs.readFileSync(file, 'utf8')), { filename: file, cachedData });
  if (cachedData === undefined || script.cachedDataRejected) {
    // Written when the command ends, so the cache holds the functions this run compiled too.
    process.once('exit', () => {
      const temp = `${cacheFile}.${process.pid}.tmp`;
      try {
        fs.writeFileSync(temp, script.createCachedData(), { mode: 0o600, flag: 'wx' });
        fs.renameSync(temp, cacheFile);
      } catch {
        try {
          fs.unlinkSync(temp);
        } catch {}
      }
    });
  }
  const wrapper = script.runInThisContext();
  const mod = new Module(file, module);
  mod.filename = file;
  mod.paths = Module._nodeModulePaths(path.dirname(file));
  const localRequire = (id) => mod.require(id);
  localRequire.resolve = (request) => Module._resolveFilename(request, mod);
  localRequire.main = require.main;
  return () => wrapper.call(mod.exports, mod.exports, localRequire, mod, file, path.dirname(file));
}

function runBuilt() {
  const nodeModule = require('node:module');
  if (process.env.AUTHKEEP_NO_COMPILE_CACHE === '1') return require(built);
  if (typeof nodeModule.enableCompileCache === 'function') {
    nodeModule.enableCompileCache();
    return require(built);
  }
  let run;
  try {
    run = compileWithCodeCache(built);
  } catch {}
  if (run) run();
  else require(built);
}

if (process.env.AUTHKEEP_FROM_SOURCE !== '1' && existsSync(built)) {
  runBuilt();
} else if (existsSync(source)) {
  import('tsx/esm/api').then(
    ({ register }) => {
      register();
      return import(pathToFileURL(source).href);
    },
    () =>
      fail('dist/ is missing and tsx is not installed', 'run `npm run build`, or `npm install` in the source checkout'),
  );
} else {
  fail('this installation has neither dist/cli/authkeep.cjs nor src/cli/main.ts', 'reinstall authkeep');
}
