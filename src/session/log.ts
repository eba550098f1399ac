/**
 * log: structured events about what authkeep did (refreshed, adopted, waited, needs-auth), for
 * `authkeep status`, the proxy's log file and embedding applications. Callers pass only
 * non-secret fields; `emit` additionally drops any field whose name says it is a secret, as a
 * second line of defence (docs/DESIGN.md: secrets never reach logs).
 *
 * Not for: user-facing CLI output (see cli/).
 */
import { displayJson } from '../display-text.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface LogEvent {
  level: LogLevel;
  /** A stable event name, e.g. `refresh.ok`, `refresh.adopted`, `login.waiting`, `needs_auth`. */
  event: string;
  message: string;
  serverUrl?: string;
  at: string;
  [field: string]: string | number | boolean | undefined;
}

export type LogSink = (event: LogEvent) => void;

const SECRET_FIELD = /token|secret|verifier|code$|^code|password|assertion|authorization/i;

export class Logger {
  constructor(private readonly sink: LogSink | undefined) {}

  emit(
    level: LogLevel,
    event: string,
    message: string,
    fields: Record<string, string | number | boolean | undefined> = {},
  ): void {
    if (!this.sink) return;
    const entry: LogEvent = { level, event, message, at: new Date().toISOString() };
    for (const [key, value] of Object.entries(fields)) {
      if (value === undefined) continue;
      entry[key] = SECRET_FIELD.test(key) ? '[redacted]' : value;
    }
    try {
      this.sink(entry);
    } catch {
      // A failing log sink must never break authentication.
    }
  }
}

/** A sink writing one JSON line per event to stderr, for `--debug` and the proxy. */
export function stderrJsonSink(minLevel: LogLevel = 'info'): LogSink {
  const order: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };
  return (event) => {
    if (order[event.level] >= order[minLevel]) process.stderr.write(`${displayJson(event)}\n`);
  };
}
