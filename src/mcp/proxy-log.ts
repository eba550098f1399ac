/**
 * proxy-log: the proxy's log, on stderr and in `<home>/logs/proxy-<pid>.log` (JSON lines, mode
 * 0600), never on stdout, which carries the protocol only. Debug lines only with `--debug`.
 *
 * Not for: what is logged (the proxy's files and authkeep's LogEvents, which hold no secret). What
 * servers and authorization servers said is made safe to print here (display-text.ts).
 */
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { displayJson, displayText } from '../display-text.js';
import type { LogEvent, LogLevel } from '../session/log.js';

export class ProxyLog {
  readonly file: string | undefined;
  private stream: WriteStream | undefined;

  constructor(
    private readonly stderr: Writable,
    file: string | undefined,
    private readonly debugEnabled: boolean,
  ) {
    if (file !== undefined) {
      try {
        mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
        this.stream = createWriteStream(file, { flags: 'a', mode: 0o600 });
        this.stream.on('error', () => {
          this.stream = undefined;
        });
        this.file = file;
      } catch {
        this.file = undefined;
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
