#!/usr/bin/env node
// The `authkeep` command. Runs the built CLI (dist/cli/authkeep.cjs, from `npm run build`; what the
// package ships) when it is there; otherwise, in a source checkout, registers tsx and runs the
// TypeScript source. Set AUTHKEEP_FROM_SOURCE=1 to prefer the source even when dist/ exists
// (development, and the tests). CommonJS like the built CLI, so that `authkeep token` never
// starts Node's ES module loader.
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

if (process.env.AUTHKEEP_FROM_SOURCE !== '1' && existsSync(built)) {
  require(built);
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
