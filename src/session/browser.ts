/**
 * browser: how the user is sent to the authorization server. `$BROWSER` (a command split on
 * whitespace; the URL replaces `%s` or is appended), else the platform opener: `open` on macOS,
 * `rundll32 url.dll,FileProtocolHandler` on Windows, `xdg-open` elsewhere. No shell anywhere: the
 * URL comes from the authorization server's metadata, and a shell (Windows `cmd /c start` above
 * all, where `&`, `|`, `^`, `<`, `>` are syntax) would let a hostile AS run commands. Only http
 * and https URLs are opened, as one argv element in their WHATWG serialisation (no spaces, quotes
 * or controls, so no platform re-quotes or splits it).
 *
 * A command that starts is not a page that opened: `xdg-open` on a machine without a desktop
 * starts and exits 3. The opener resolves once the command started (a browser may run until the
 * user closes it, so its end cannot be awaited); a command that then exits with a non-zero status
 * or a signal is reported to `onFailure`. `browserUnavailable` says beforehand when no browser can
 * open here at all (no `$BROWSER` command, no opener, no display), for callers that then prefer a
 * flow that needs none.
 *
 * Not for: building the URL (see oauth/authorize-url.ts) or showing it to the user (the CLI and
 * the proxy print it whatever the opener does).
 */
import { type ChildProcess, spawn as nodeSpawn, type SpawnOptions } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import path from 'node:path';
import { AuthkeepError } from '../errors.js';

export type OpenAuthorizationUrl = (url: string) => Promise<void> | void;

/** The part of child_process.spawn the opener uses (injectable so tests can check the argv). */
export type SpawnBrowser = (
  command: string,
  args: readonly string[],
  options: SpawnOptions,
) => Pick<ChildProcess, 'once' | 'unref'>;

/** A browser command that started and then failed: nothing was opened. */
export interface BrowserFailure {
  /** The command (its first argv element). */
  command: string;
  /** `exit status 3`, `killed by SIGTERM`. */
  reason: string;
}

export interface BrowserOpenerOptions {
  /** Where `$BROWSER` and `SystemRoot` are read. Default process.env. */
  env?: NodeJS.ProcessEnv;
  /** Default process.platform. */
  platform?: NodeJS.Platform;
  /** Default child_process.spawn. */
  spawn?: SpawnBrowser;
  /** Called when the command started but exited with a non-zero status or a signal. */
  onFailure?: (failure: BrowserFailure) => void;
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
      child.once('exit', (code: number | null, signal: NodeJS.Signals | null) => {
        if (code === 0) return;
        options.onFailure?.({ command, reason: signal ? `killed by ${signal}` : `exit status ${code}` });
      });
    });
}

/** An executable file at `file`. */
function isExecutable(file: string, platform: NodeJS.Platform): boolean {
  try {
    if (!statSync(file).isFile()) return false;
    if (platform !== 'win32') accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Where `command` would be found: itself when it has a directory part, else on PATH. */
function resolvable(command: string, env: NodeJS.ProcessEnv, platform: NodeJS.Platform): boolean {
  const paths = platform === 'win32' ? path.win32 : path.posix;
  if (command.includes('/') || (platform === 'win32' && command.includes('\\'))) {
    return isExecutable(command, platform);
  }
  const dirs = (env.PATH ?? env.Path ?? '').split(platform === 'win32' ? ';' : ':').filter((d) => d !== '');
  const suffixes = platform === 'win32' ? ['', '.exe', '.cmd', '.bat'] : [''];
  return dirs.some((dir) => suffixes.some((suffix) => isExecutable(paths.join(dir, command + suffix), platform)));
}

/**
 * Why no browser can be opened on this machine, or undefined when one may be: `$BROWSER` names a
 * command that cannot be found; or, without `$BROWSER`, on Linux and the other Unixes there is no
 * `xdg-open` or no display (`DISPLAY`, `WAYLAND_DISPLAY`: an SSH session, a container, a service).
 * A prediction, not a promise: a command found here may still fail (see `onFailure`).
 */
export function browserUnavailable(
  env: NodeJS.ProcessEnv = process.env,
  platform: NodeJS.Platform = process.platform,
): string | undefined {
  const configured = env.BROWSER?.trim();
  if (configured) {
    const command = configured.split(/\s+/)[0] as string;
    return resolvable(command, env, platform) ? undefined : `the BROWSER command ${command} was not found`;
  }
  if (platform === 'darwin' || platform === 'win32') return undefined;
  if (!resolvable('xdg-open', env, platform)) return 'no BROWSER is set and xdg-open was not found';
  if (!env.DISPLAY && !env.WAYLAND_DISPLAY)
    return 'no BROWSER is set and there is no display (DISPLAY, WAYLAND_DISPLAY)';
  return undefined;
}

/** The default opener: `$BROWSER` or the platform's, for this process. */
export const openInBrowser: OpenAuthorizationUrl = (url) => createBrowserOpener()(url);
