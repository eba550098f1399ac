/**
 * log-events: a LogSink that keeps every event and lets a test wait for one (the way to
 * synchronise on what the library is doing, e.g. `login.waiting` or `refresh.ok`, instead of
 * sleeping).
 *
 * Not for: asserting on secrets in the log (secrets.ts).
 */
import type { LogEvent } from '../../src/index.js';

export interface LogRecorder {
  events: LogEvent[];
  sink: (event: LogEvent) => void;
  /** Events named `name` so far. */
  named(name: string): LogEvent[];
  /** Resolves with the first event named `name` (past or future); rejects after `timeoutMs`. */
  next(name: string, timeoutMs?: number): Promise<LogEvent>;
}

export function recordLog(): LogRecorder {
  const events: LogEvent[] = [];
  const waiters = new Set<{ name: string; resolve: (event: LogEvent) => void }>();
  return {
    events,
    sink: (event) => {
      events.push(event);
      for (const waiter of [...waiters]) {
        if (waiter.name !== event.event) continue;
        waiters.delete(waiter);
        waiter.resolve(event);
      }
    },
    named: (name) => events.filter((e) => e.event === name),
    next: (name, timeoutMs = 30_000) => {
      const seen = events.find((e) => e.event === name);
      if (seen) return Promise.resolve(seen);
      return new Promise<LogEvent>((resolve, reject) => {
        const waiter = {
          name,
          resolve: (event: LogEvent) => {
            clearTimeout(timer);
            resolve(event);
          },
        };
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          reject(new Error(`no log event ${name} within ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.add(waiter);
      });
    },
  };
}
