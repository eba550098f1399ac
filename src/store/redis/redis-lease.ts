/**
 * redis-lease: a lease in Redis, the fleet store's lock. Taken with `SET key value NX PX ttl`
 * whose value carries a random token and the holder's {pid, hostname, purpose, acquiredAt};
 * renewed every ttl / 3 while held (by token, in Lua, and never past the hold's bound); released
 * by token (Lua: only our own value is deleted). A holder that stops renewing (killed, paused,
 * cut off from Redis) loses the lease ttl after its last renewal and one waiter takes it.
 *
 * `extendToHold` makes Redis itself keep the lease ours until the hold's bound: called just
 * before a refresh token is spent, so no waiter on any host can take over while that request may
 * still be in flight (token-manager.ts ends it before the bound). The generation compare-and-swap
 * in the same Lua script as the token check (redis-credential-store.ts) is the fencing.
 *
 * Not for: what the lease protects (redis-credential-store.ts).
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { AuthkeepError } from '../../errors.js';
import type { LockHolder, LockInfo } from '../lock.js';
import type { RedisCommander } from './redis-connection.js';

/** Renew only while the value is still ours, to at least ARGV[2] ms (never shortening an extension). */
const RENEW = `if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1`;
/** Delete only our own value. */
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;

export interface LeaseOptions {
  /** How long to wait for the lease before `lock_timeout`. */
  timeoutMs: number;
  /** The lease's time to live between renewals. */
  ttlMs: number;
  /** Bound on the whole holding, even while renewing. */
  maxHoldMs?: number | undefined;
  purpose: string;
  onWait?(holder: LockHolder): void;
  signal?: AbortSignal | undefined;
}

/** SCAN pattern (after the prefix) of every lease key. */
export const LEASE_SCAN = '{*}:lease*';

/** The value stored under a lease key, parsed (undefined when unreadable). */
export function parseLeaseValue(value: string): LockInfo | undefined {
  try {
    const info = JSON.parse(value) as Partial<LockInfo>;
    if (typeof info.pid !== 'number' || typeof info.hostname !== 'string' || typeof info.nonce !== 'string')
      return undefined;
    return info as LockInfo;
  } catch {
    return undefined;
  }
}

/** What `authkeep doctor` shows of a lease (never its token: a holder's nonce is shown shortened). */
export function leaseHolder(key: string, value: string, pttlMs: number): LockHolder {
  const info = parseLeaseValue(value);
  const shown = info ? { ...info, nonce: `${info.nonce.slice(0, 8)}…` } : undefined;
  const ttl = info?.staleMs ?? 0;
  return { path: key, info: shown, heartbeatAgeMs: Math.max(0, ttl - pttlMs), stale: undefined };
}

/** Resolve after `ms`, or as soon as `signal` aborts. */
function waitOrAbort(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

export class RedisLease {
  private lostFlag = false;
  private released = false;
  private timer: NodeJS.Timeout | undefined;
  readonly holdUntil: number | undefined;

  private constructor(
    private readonly redis: RedisCommander,
    readonly key: string,
    readonly value: string,
    private readonly ttlMs: number,
    acquiredAt: number,
    maxHoldMs: number | undefined,
  ) {
    this.holdUntil = maxHoldMs === undefined ? undefined : acquiredAt + maxHoldMs;
    this.schedule();
  }

  /** Take the lease at `key`, waiting up to `timeoutMs` (polling, with jitter). */
  static async acquire(redis: RedisCommander, key: string, options: LeaseOptions): Promise<RedisLease> {
    const start = Date.now();
    let lastHolder: string | undefined;
    for (let attempt = 0; ; attempt++) {
      // An aborted wait throws the abort's reason itself (the caller may be adopting tokens).
      if (options.signal?.aborted) throw options.signal.reason ?? new Error('aborted');
      const acquiredAt = Date.now();
      const info: LockInfo = {
        pid: process.pid,
        hostname: hostname(),
        nonce: randomBytes(16).toString('hex'),
        acquiredAt: new Date(acquiredAt).toISOString(),
        purpose: options.purpose,
        staleMs: options.ttlMs,
        ...(options.maxHoldMs !== undefined ? { maxHoldMs: options.maxHoldMs } : {}),
      };
      const value = JSON.stringify(info);
      const set = await redis.send(['SET', key, value, 'NX', 'PX', String(options.ttlMs)]);
      if (set === 'OK') return new RedisLease(redis, key, value, options.ttlMs, acquiredAt, options.maxHoldMs);
      if (Date.now() - start >= options.timeoutMs)
        throw new AuthkeepError(
          'lock_timeout',
          `the ${options.purpose} lease ${key} was not free within ${options.timeoutMs} ms`,
          {
            field: 'lock',
            detail: { key, purpose: options.purpose },
          },
        );
      if (options.onWait) {
        const held = await redis.send(['GET', key]);
        if (typeof held === 'string' && held !== lastHolder) {
          lastHolder = held;
          const pttl = Number(await redis.send(['PTTL', key]));
          options.onWait(leaseHolder(key, held, pttl));
        }
      }
      // Short at first (a refresh under the lease is a few round trips), then up to 200 ms.
      await waitOrAbort(Math.min(200, 20 * 2 ** Math.min(attempt, 4)) * (0.5 + Math.random()), options.signal);
    }
  }

  get lost(): boolean {
    return this.lostFlag;
  }

  /** The token check a fenced Lua write repeats: is the lease still ours? */
  async verify(): Promise<boolean> {
    if (this.lostFlag) return false;
    const held = await this.redis.send(['GET', this.key]);
    if (held !== this.value) this.lostFlag = true;
    return !this.lostFlag;
  }

  /**
   * Make Redis keep the lease ours until the hold's bound (or a ttl from now when unbounded):
   * false (and `lost`) when it is no longer ours.
   */
  async extendToHold(): Promise<boolean> {
    if (this.lostFlag) return false;
    const ms = this.holdUntil === undefined ? this.ttlMs : Math.max(1, this.holdUntil - Date.now());
    const ok = Number(await this.redis.eval(RENEW, [this.key], [this.value, String(ms)])) === 1;
    if (!ok) this.lostFlag = true;
    return ok;
  }

  private schedule(): void {
    if (this.released || this.lostFlag) return;
    this.timer = setTimeout(() => void this.renew(), Math.max(10, Math.floor(this.ttlMs / 3)));
    this.timer.unref();
  }

  private async renew(): Promise<void> {
    if (this.released) return;
    const left = this.holdUntil === undefined ? this.ttlMs : Math.min(this.ttlMs, this.holdUntil - Date.now());
    if (left <= 0) return; // past the hold's bound: let it expire
    try {
      if (Number(await this.redis.eval(RENEW, [this.key], [this.value, String(left)])) !== 1) this.lostFlag = true;
    } catch {
      // Redis unreachable for now: the next renewal tries again; the write's fencing decides.
    }
    this.schedule();
  }

  /** Release by token; idempotent, never throws. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    clearTimeout(this.timer);
    await this.redis.eval(RELEASE, [this.key], [this.value]).catch(() => undefined);
  }
}
