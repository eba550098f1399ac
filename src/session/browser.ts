/**
 * browser: how the user is sent to the authorization server. `$BROWSER` (a command; the URL is
 * passed as its last argument, never through a shell), else the platform opener. The URL is
 * passed as one argv element so a crafted URL cannot inject shell syntax.
 *
 * Not for: building the URL (see oauth/authorize-url.ts).
 */
import { spawn } from 'node:child_process';
import { AuthkeepError } from '../errors.js';

export type OpenAuthorizationUrl = (url: string) => Promise<void> | void;

function platformOpener(): string[] {
  if (process.platform === 'darwin') return ['open'];
  if (process.platform === 'win32') return ['cmd', '/c', 'start', '""'];
  return ['xdg-open'];
}

/** Splits `$BROWSER` on whitespace (no shell); `%s` is replaced by the URL when present. */
export function browserCommand(url: string, env: NodeJS.ProcessEnv = process.env): string[] {
  const configured = env.BROWSER?.trim();
  const parts = configured ? configured.split(/\s+/) : platformOpener();
  return parts.includes('%s') ? parts.map((p) => (p === '%s' ? url : p)) : [...parts, url];
}

export const openInBrowser: OpenAuthorizationUrl = (url) =>
  new Promise<void>((resolve, reject) => {
    const [command, ...args] = browserCommand(url);
    if (!command) return reject(new AuthkeepError('invalid_argument', 'BROWSER is empty', { field: 'BROWSER' }));
    const child = spawn(command, args, { stdio: 'ignore', detached: process.platform !== 'win32' });
    child.once('error', (err) =>
      reject(
        new AuthkeepError('invalid_argument', `could not start the browser command ${command}: ${err.message}`, {
          field: 'BROWSER',
        }),
      ),
    );
    child.once('spawn', () => {
      child.unref();
      resolve();
    });
  });
