#!/usr/bin/env node
// The `authkeep` command. Runs the compiled CLI (dist/, after `npm run build`) when it is there;
// otherwise, in a source checkout, registers tsx and runs the TypeScript source directly.
// Set AUTHKEEP_FROM_SOURCE=1 to prefer the source even when dist/ exists (development).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const dist = new URL('../dist/src/cli/main.js', import.meta.url);
const source = new URL('../src/cli/main.ts', import.meta.url);

if (process.env.AUTHKEEP_FROM_SOURCE !== '1' && existsSync(fileURLToPath(dist))) {
  await import(dist.href);
} else if (existsSync(fileURLToPath(source))) {
  let register;
  try {
    ({ register } = await import('tsx/esm/api'));
  } catch {
    process.stderr.write(
      'authkeep: dist/ is missing and tsx is not installed\nhint: run `npm run build`, or `npm install` in the source checkout\n',
    );
    process.exit(1);
  }
  register();
  await import(source.href);
} else {
  process.stderr.write(
    'authkeep: this installation has neither dist/src/cli/main.js nor src/cli/main.ts\nhint: reinstall authkeep\n',
  );
  process.exit(1);
}
