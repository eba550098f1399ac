/**
 * How child processes get the robot browser as `$BROWSER`: the command line (string or argv) and
 * an executable wrapper script whose single path works with any `$BROWSER` consumer.
 *
 * For: tests and the arena that spawn clients which open the authorization URL via `$BROWSER`.
 * Not for: opening URLs in-process (use createRobotBrowser()).
 */
import { chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** [node, --import, <tsx loader>, <cli script>] with absolute paths (cwd independent). */
export function robotBrowserArgv(): string[] {
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  const script = fileURLToPath(new URL(`./robot-browser-cli${ext}`, import.meta.url));
  const argv = [process.execPath];
  if (ext === '.ts') argv.push('--import', import.meta.resolve('tsx'));
  argv.push(script);
  return argv;
}

/** The argv as one shell-quoted command string (append the URL as the last argument). */
export function robotBrowserCommand(): string {
  return robotBrowserArgv().map(shellQuote).join(' ');
}

/** Write `<dir>/robot-browser` (mode 0755) running the robot on "$1"; returns its path. */
export async function writeRobotBrowserScript(dir: string): Promise<string> {
  const path = join(dir, 'robot-browser');
  await writeFile(path, `#!/bin/sh\nexec ${robotBrowserCommand()} "$@"\n`);
  await chmod(path, 0o755);
  return path;
}

function shellQuote(value: string): string {
  return /^[\w@%+=:,./-]+$/.test(value) ? value : `'${value.replace(/'/g, `'\\''`)}'`;
}
