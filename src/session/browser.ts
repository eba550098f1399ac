/**
 * browser: how the user is sent to the authorization server. `$BROWSER` (a command split on
 * whitespace; the URL replaces `%s` or is appended), else the platform opener: `open` on macOS,
 * `rundll32 url.dll,FileProtocolHandler` on Windows, `xdg-open` elsewhere. No shell anywhere: the
 * URL comes from the authorization server's metadata, and a shell (Windows `cmd /c start` above
 * all, where `&`, `|`, `^`, `<`, `>` are syntax) would let a hostile AS run commands. Only http
 * and https URLs are opened, as one argv element in their WHATWG serialisation (no spaces, quotes
 * or controls, so no platform re-quotes or splits it).
 *
 * Not for: building the URL (see oauth/authorize-url.ts).
 */
import { type ChildProcess, spawn as nodeSpawn, type SpawnOptions } from 'node:child_process';
import path from 'node:path';
import { AuthkeepError } from '../errors.js';

export type OpenAuthorizationUrl = (url: string) => Promise<void> | void;

/** The part of child_process.spawn the opener uses (injectable so tests can check the argv). */
export type SpawnBrowser = (
  command: string,
  args: readonly string[],
  options: SpawnOptions,
) => Pick<ChildProcess, 'once' | 'unref'>;

export interface BrowserOpenerOptions {
  /** Where `$BROWSER` and `SystemRoot` are read. Default process.env. */
  env?: NodeJS.ProcessEnv;
  /** Default process.platform. */
  platform?: NodeJS.Platform;
  /** Default child_process.spawn. */
  spawn?: SpawnBrowser;
}

/** The URL to hand to a browser: http(s) only, serialised by the WHATWG URL parser. */
export function openableUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new AuthkeepError('invalid_argument', 'the sign-in URL is not an absolute URL; not opening it', {
      field: 'authorization_endpoint',
    });
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') {
    throw new AuthkeepError(
      'invalid_argument',
      `the sign-in URL has scheme ${parsed.protocol}; only http and https URLs are opened in a browser`,
      { field: 'authorization_endpoint', detail: { scheme: parsed.protocol } },
    );
  }
  return parsed.href;
}

function platformOpener(platform: NodeJS.Platform, env: NodeJS.ProcessEnv): string[] {
  if (platform === 'darwin') return ['/usr/bin/open'];
  if (platform === 'win32') {
    // An absolute path: Windows looks for a bare command name in the current directory first.
    const systemRoot = env.SystemRoot ?? env.SYSTEMROOT ?? 'C:\\Windows';
    return [path.win32.join(systemRoot, 'System32', 'rundll32.exe'), 'url.dll,FileProtocolHandler'];
  }
  return ['xdg-open'];
}

/**
 * The argv that opens `url`: `$BROWSER` split on whitespace (no shell; `%s` is replaced by the
 * URL when present, else the URL is the last argument), else the platform opener. Throws
 * `invalid_argument` for anything but an http(s) URL.
 */
export function browserCommand(
  url: string,
  env: NodeJS.ProcessEnv = process.env,
  platform: NodeJS.Platform = process.platform,
): string[] {
  const href = openableUrl(url);
  const configured = env.BROWSER?.trim();
  const parts = configured ? configured.split(/\s+/) : platformOpener(platform, env);
  return parts.includes('%s') ? parts.map((p) => (p === '%s' ? href : p)) : [...parts, href];
}

/** An opener running browserCommand's argv without a shell, resolved once the command started. */
export function createBrowserOpener(options: BrowserOpenerOptions = {}): OpenAuthorizationUrl {
  const spawn: SpawnBrowser = options.spawn ?? nodeSpawn;
  return (url) =>
    new Promise<void>((resolve, reject) => {
      const env = options.env ?? process.env;
      const platform = options.platform ?? process.platform;
      const [command, ...args] = browserCommand(url, env, platform);
      if (!command) return reject(new AuthkeepError('invalid_argument', 'BROWSER is empty', { field: 'BROWSER' }));
      const child = spawn(command, args, {
        stdio: 'ignore',
        shell: false,
        windowsHide: true,
        detached: platform !== 'win32',
      });
      child.once('error', (err: Error) =>
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
}

/** The default opener: `$BROWSER` or the platform's, for this process. */
export const openInBrowser: OpenAuthorizationUrl = (url) => createBrowserOpener()(url);
