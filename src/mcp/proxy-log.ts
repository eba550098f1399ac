/**
 * proxy-log: the proxy's log, on stderr and in `<home>/logs/proxy-<pid>.log` (JSON lines, mode
 * 0600), never on stdout, which carries the protocol only. Debug lines only with `--debug`.
 *
 * The log file is created exclusively (O_EXCL) with mode 0600, and never opened through a
 * symbolic link (O_NOFOLLOW); an existing one (a pid used again) is appended to only when it is a
 * regular file of the user's own, and is made 0600. Inside the store, the home and logs/ must be
 * the user's own and not writable by others (store/store-trust.ts). Otherwise the proxy logs to
 * stderr only and says why.
 *
 * Not for: what is logged (the proxy's files and authkeep's LogEvents, which hold no secret). What
 * servers and authorization servers said is made safe to print here (display-text.ts).
 */
import { createWriteStream, fchmodSync, constants as fsConstants, mkdirSync, type WriteStream } from 'node:fs';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { displayJson, displayText } from '../display-text.js';
import type { LogEvent, LogLevel } from '../session/log.js';
import { checkDirectorySync, openStoreFileSync } from '../store/store-trust.js';

const { O_APPEND, O_CREAT, O_EXCL, O_WRONLY } = fsConstants;

export class ProxyLog {
  readonly file: string | undefined;
  private stream: WriteStream | undefined;

  constructor(
    private readonly stderr: Writable,
    file: string | undefined,
    private readonly debugEnabled: boolean,
    /** The store's home, when `file` is in its logs/ directory (then both are checked). */
    storeHome?: string,
  ) {
    if (file !== undefined) {
      try {
        const fd = openLogFile(file, storeHome);
        this.stream = createWriteStream(file, { fd });
        this.stream.on('error', () => {
          this.stream = undefined;
        });
        this.file = file;
      } catch (err) {
        this.file = undefined;
        this.warn(`not logging to ${file}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
  }

  debug(message: string, fields?: Record<string, unknown>): void {
    this.write('debug', message, fields);
  }
  info(message: string, fields?: Record<string, unknown>): void {
    this.write('info', message, fields);
  }
  warn(message: string, fields?: Record<string, unknown>): void {
    this.write('warn', message, fields);
  }
  error(message: string, fields?: Record<string, unknown>): void {
    this.write('error', message, fields);
  }

  /** An authkeep LogEvent (already free of secrets). */
  event(event: LogEvent): void {
    const { level, message, at: _at, ...fields } = event;
    this.write(level, message, fields);
  }

  private write(level: LogLevel, message: string, fields: Record<string, unknown> = {}): void {
    if (level === 'debug' && !this.debugEnabled) return;
    const at = new Date().toISOString();
    // Messages quote what the server and its AS said: terminal-safe JSON in the file, displayText on stderr.
    this.stream?.write(`${displayJson({ at, pid: process.pid, level, message, ...fields })}\n`);
    const event = typeof fields.event === 'string' ? ` [${fields.event}]` : '';
    // Bounded, but long enough for a sign-in URL (PKCE challenge, state, redirect URI, resource).
    this.stderr.write(`[authkeep proxy ${process.pid}] ${level}: ${displayText(`${message}${event}`, 8000)}\n`);
  }

  close(): Promise<void> {
    const stream = this.stream;
    this.stream = undefined;
    if (!stream) return Promise.resolve();
    return new Promise((resolve) => stream.end(resolve));
  }
}

/**
 * The log file's descriptor, for appending: created exclusively 0600, or an existing regular file
 * of the user's own made 0600; never through a symbolic link. Its directory is made 0700 when
 * missing; in the store (`storeHome`) the home and the directory must be trusted.
 */
function openLogFile(file: string, storeHome: string | undefined): number {
  const dir = path.dirname(file);
  if (storeHome !== undefined) checkDirectorySync(storeHome, 'home');
  if (storeHome === undefined || !checkDirectorySync(dir, 'directory')) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    if (storeHome !== undefined) checkDirectorySync(dir, 'directory');
  }
  let fd: number;
  try {
    fd = openStoreFileSync(file, O_WRONLY | O_APPEND | O_CREAT | O_EXCL, 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    fd = openStoreFileSync(file, O_WRONLY | O_APPEND);
  }
  if (process.platform !== 'win32') fchmodSync(fd, 0o600);
  return fd;
}
