/**
 * redis-connection: the fleet store's one connection to Redis (or Valkey): parsing and redacting
 * `redis://` / `rediss://` URLs, connecting lazily, and sending commands with a bound, so that a
 * Redis that is unreachable, restarted or failing over gives AuthkeepError `store_unreachable`
 * (naming the host, never the password) instead of a hang. The connection is unref'd: it never
 * keeps a finished CLI command alive (each pending command's bound timer keeps the process alive
 * while it waits for the answer).
 *
 * Not for: what is stored where (redis-credential-store.ts) or leases (redis-lease.ts).
 */
import { AuthkeepError } from '../../errors.js';
import { describeNetworkFailure } from '../../oauth/http.js';

/** Is `value` a fleet-store URL (`redis://` or `rediss://`)? */
export function isRedisUrl(value: string | undefined): value is `redis://${string}` | `rediss://${string}` {
  return value !== undefined && /^rediss?:\/\//i.test(value);
}

export interface RedisTarget {
  /** The URL as given (may carry a password: never shown). */
  url: string;
  /** The URL without user info, for people: `redis://host:port/db`. */
  display: string;
  /** `host:port`, for error messages. */
  host: string;
  password?: string;
}

/** Parse a fleet-store URL; the password comes from the URL or `AUTHKEEP_REDIS_PASSWORD`. */
export function redisTarget(url: string, env: NodeJS.ProcessEnv = process.env): RedisTarget {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new AuthkeepError('invalid_argument', 'AUTHKEEP_STORE is not a valid redis:// or rediss:// URL', {
      field: 'AUTHKEEP_STORE',
    });
  }
  if (!isRedisUrl(url) || parsed.hostname === '')
    throw new AuthkeepError('invalid_argument', 'AUTHKEEP_STORE must be redis://host:port/db or rediss://...', {
      field: 'AUTHKEEP_STORE',
    });
  const db = parsed.pathname.replace(/^\//, '');
  if (db !== '' && !/^\d{1,2}$/.test(db))
    throw new AuthkeepError('invalid_argument', `AUTHKEEP_STORE database "${db}" is not a number`, {
      field: 'AUTHKEEP_STORE',
    });
  const password = parsed.password ? decodeURIComponent(parsed.password) : env.AUTHKEEP_REDIS_PASSWORD || undefined;
  const host = parsed.port ? `${parsed.hostname}:${parsed.port}` : `${parsed.hostname}:6379`;
  return {
    url,
    display: `${parsed.protocol}//${host}${db ? `/${db}` : ''}`,
    host,
    ...(password !== undefined ? { password } : {}),
  };
}

/** The commands the store sends: raw RESP arguments, raw replies. */
export interface RedisCommander {
  send(args: string[]): Promise<unknown>;
  /** `EVAL script keys args`. */
  eval(script: string, keys: string[], args: string[]): Promise<unknown>;
  close(): Promise<void>;
}

interface RawClient {
  connect(): Promise<unknown>;
  duplicate(): RawClient;
  subscribe(channel: string, listener: () => void): Promise<void>;
  unsubscribe(channel: string, listener: () => void): Promise<void>;
  sendCommand(args: readonly string[]): Promise<unknown>;
  on(event: 'error', listener: (err: unknown) => void): unknown;
  unref(): void;
  destroy(): void;
  close(): Promise<void>;
  readonly isReady: boolean;
}

export interface RedisConnectionOptions {
  /** Bound on connecting and on each command. Default 5 s. */
  commandTimeoutMs?: number;
}

export class RedisConnection implements RedisCommander {
  private client: Promise<RawClient> | undefined;
  /** The connection in subscribe mode (it runs no other command), made on the first `subscribe`. */
  private subscriber: Promise<RawClient> | undefined;
  private readonly timeoutMs: number;

  constructor(
    readonly target: RedisTarget,
    options: RedisConnectionOptions = {},
  ) {
    this.timeoutMs = options.commandTimeoutMs ?? 5_000;
  }

  /** AuthkeepError `store_unreachable` for `what`, naming the host and never the password. */
  unreachable(what: string, err?: unknown): AuthkeepError {
    let reason = err instanceof Error ? err.message : err === undefined ? '' : String(err);
    if (this.target.password) reason = reason.split(this.target.password).join('***');
    return new AuthkeepError(
      'store_unreachable',
      `the fleet store at ${this.target.display} ${what}${reason ? `: ${reason}` : ''}`,
      { field: 'AUTHKEEP_STORE', detail: { host: this.target.host } },
    );
  }

  private connect(): Promise<RawClient> {
    this.client ??= (async () => {
      const { createClient } = await import('@redis/client');
      const client = createClient({
        url: this.target.url,
        ...(this.target.password !== undefined ? { password: this.target.password } : {}),
        disableOfflineQueue: true,
        socket: {
          connectTimeout: this.timeoutMs,
          reconnectStrategy: (retries: number) => Math.min(50 * 2 ** retries, 1000),
        },
      }) as unknown as RawClient;
      // Reported to the command that fails, not as a crash; the last one says why a connection
      // that never came up did not ("connection refused" rather than only the timeout).
      let lastError: unknown;
      client.on('error', (err: unknown) => {
        lastError = err;
      });
      try {
        await this.bounded(client.connect(), 'did not answer');
      } catch (err) {
        client.destroy();
        const why = lastError === undefined ? undefined : describeNetworkFailure({ cause: lastError });
        if (err instanceof AuthkeepError && why !== undefined)
          throw this.unreachable(`did not answer within ${this.timeoutMs} ms`, why);
        throw err;
      }
      client.unref();
      return client;
    })();
    this.client.catch(() => {
      this.client = undefined;
    });
    return this.client;
  }

  private async bounded<T>(work: Promise<T>, what: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      // Ref'd: it keeps the process alive while a command is pending on the unref'd connection.
      timer = setTimeout(() => reject(this.unreachable(`${what} within ${this.timeoutMs} ms`)), this.timeoutMs);
    });
    try {
      return await Promise.race([work, timeout]);
    } catch (err) {
      if (err instanceof AuthkeepError) throw err;
      if (err instanceof Error && /^(WRONGPASS|NOAUTH|NOPERM)/.test(err.message))
        throw this.unreachable('refused authentication (check the user and password)', err);
      throw this.unreachable('failed', err);
    } finally {
      clearTimeout(timer);
    }
  }

  async send(args: string[]): Promise<unknown> {
    const client = await this.connect();
    return this.bounded(client.sendCommand(args), `did not answer ${args[0]}`);
  }

  eval(script: string, keys: string[], args: string[]): Promise<unknown> {
    return this.send(['EVAL', script, String(keys.length), ...keys, ...args]);
  }

  /**
   * Call `listener` on every message published to `channel`, from a second connection shared by
   * every subscription of this one (reconnected, and subscribed again, by the client). Resolves
   * once Redis confirmed the subscription, with the function that ends it.
   */
  async subscribe(channel: string, listener: () => void): Promise<() => Promise<void>> {
    this.subscriber ??= (async () => {
      const client = (await this.connect()).duplicate();
      client.on('error', () => undefined); // a lost subscriber only costs notices: waiters' timers cover them
      try {
        await this.bounded(client.connect(), 'did not answer');
      } catch (err) {
        client.destroy();
        throw err;
      }
      client.unref();
      return client;
    })();
    this.subscriber.catch(() => {
      this.subscriber = undefined;
    });
    const subscriber = await this.subscriber;
    await this.bounded(subscriber.subscribe(channel, listener), 'did not answer SUBSCRIBE');
    return () => subscriber.unsubscribe(channel, listener).catch(() => undefined);
  }

  async close(): Promise<void> {
    const held = [this.subscriber, this.client];
    this.subscriber = undefined;
    this.client = undefined;
    for (const pending of held) {
      const client = await pending?.catch(() => undefined);
      if (client) await client.close().catch(() => client.destroy());
    }
  }
}
