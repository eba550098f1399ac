/**
 * redis-credential-store: RedisCredentialStore, the fleet store: the CredentialStore contract
 * (credential-store.ts) kept in one Redis (or Valkey) shared by many hosts, so that every process
 * on every host refreshes each server's tokens once per expiry, signs in once, and registers once
 * per issuer (docs/FLEET.md).
 *
 * Keys, under a prefix (default `authkeep:`; `{...}` is a Redis Cluster hash tag, so a record and
 * its leases share a slot):
 * - `{<key>}:rec`: the record, a hash {gen, data}: its generation in clear (compared in Lua) and
 *   the record sealed with AES-256-GCM (seal.ts), bound to its key. Redis never holds a token.
 * - `{<key>}:lease:refresh`, `{<key>}:lease:login`: the record lease and the sign-in lease
 *   (redis-lease.ts), the file store's record lock and sign-in lock.
 * - `{<key>}:outcome`: the last sign-in's outcome (no secret), `{<key>}:quarantine:<at>`: a record
 *   that did not open or parse, moved aside by a transaction.
 * - `{reg:<issuerKey>}:kept` (sealed), `:dropped`, `:lease`: one registration per issuer.
 *
 * Every write and delete of a record is ONE Lua script that checks, atomically, that the writer's
 * lease is still its own (fencing: a holder that lost its lease finds out before it writes) and
 * that the stored generation is the one the write is based on (compare-and-swap: a late writer
 * never overwrites a newer record); only then does it store generation + 1.
 *
 * Not for: connecting (redis-connection.ts), leases (redis-lease.ts), choosing this store
 * (open-store.ts), deciding what to write (session/).
 */
import { AuthkeepError } from '../../errors.js';
import type { Registration } from '../../oauth/types.js';
import {
  type CredentialStore,
  DEFAULT_LOCK_POLICIES,
  type LockPolicy,
  type LoginOutcome,
  type QuarantinedRecord,
  type ReadResult,
  type RegistrationMatch,
  type StoreInspection,
  type StorePurpose,
  type StoreTransaction,
  type TransactionOptions,
} from '../credential-store.js';
import { changeNotices, type FileChanges } from '../file-change-watch.js';
import type { LockHolder } from '../lock.js';
import { LoginOutcomeSchema, parseLoginOutcome } from '../login-outcome.js';
import { recordKey } from '../paths.js';
import { RegistrationSchema, type ServerRecord, ServerRecordSchema } from '../record.js';
import { type DroppedRegistration, reusable, reusableRegistrations } from '../registrations.js';
import { openText, sealText } from '../seal.js';
import { storeConflict, TransactionCore } from '../transaction-core.js';
import { RedisConnection, type RedisTarget } from './redis-connection.js';
import { LEASE_SCAN, leaseHolder, RedisLease } from './redis-lease.js';

/**
 * KEYS[1] record, KEYS[2] lease; ARGV[1] generation the write is based on ('' = unconditional),
 * ARGV[2] sealed record ('' = delete), ARGV[3] our lease value ('' = no lease to check), ARGV[4]
 * the record's change channel (a message, the new generation or 0, once it is written or deleted).
 * Returns {status, generation}: 1 done, 0 generation differs, -1 lease not ours.
 */
const CAS = `if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[3] then return {-1, 0} end
local cur = tonumber(redis.call('HGET', KEYS[1], 'gen') or '0')
if ARGV[1] ~= '' and cur ~= tonumber(ARGV[1]) then return {0, cur} end
if ARGV[2] == '' then
  local removed = redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[4], '0')
  return {1, removed}
end
redis.call('HSET', KEYS[1], 'gen', tostring(cur + 1), 'data', ARGV[2])
redis.call('PUBLISH', ARGV[4], tostring(cur + 1))
return {1, cur + 1}`;

/** KEYS[1] record. Returns {generation, length of the sealed value}; generation false when there is none. */
const RECORD_VERSION = `return {redis.call('HGET', KEYS[1], 'gen'), redis.call('HSTRLEN', KEYS[1], 'data')}`;

/** KEYS[1] record, KEYS[2] lease, KEYS[3] quarantine key; ARGV[1] our lease value, ARGV[2] the data seen. */
const QUARANTINE = `if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
if redis.call('HGET', KEYS[1], 'data') ~= ARGV[2] then return 0 end
redis.call('RENAME', KEYS[1], KEYS[3])
return 1`;

const MAX_DROPPED = 50;

/** Lease bounds of the fleet store: a refresh's hold is short, as a waiter's recovery waits on it. */
export const REDIS_LOCK_POLICIES: Readonly<Record<StorePurpose, LockPolicy>> = {
  refresh: { timeoutMs: 60_000, staleMs: 10_000, maxHoldMs: 30_000 },
  write: { timeoutMs: 60_000, staleMs: 10_000, maxHoldMs: 30_000 },
  login: DEFAULT_LOCK_POLICIES.login,
};

export interface RedisCredentialStoreOptions {
  target: RedisTarget;
  /** The 32-byte sealing key (seal.ts storeKeyFromEnv). */
  sealKey: Buffer;
  /** Key prefix (one per account). Default `authkeep:`. */
  prefix?: string;
  locks?: Partial<Record<StorePurpose, Partial<LockPolicy>>>;
  /** Bound on connecting and on each command. Default 5 s. */
  commandTimeoutMs?: number;
}

/** A record as stored: its hash fields, or nothing. */
interface StoredRecord {
  gen: number;
  data: string;
}

export class RedisCredentialStore implements CredentialStore {
  readonly redis: RedisConnection;
  readonly prefix: string;
  private readonly policies: Record<StorePurpose, LockPolicy>;

  constructor(private readonly options: RedisCredentialStoreOptions) {
    if (options.sealKey.length !== 32)
      throw new AuthkeepError('store_key_missing', 'the fleet store sealing key must be 32 bytes', {
        field: 'sealKey',
      });
    this.redis = new RedisConnection(options.target, {
      ...(options.commandTimeoutMs !== undefined ? { commandTimeoutMs: options.commandTimeoutMs } : {}),
    });
    this.prefix = options.prefix ?? 'authkeep:';
    this.policies = {
      refresh: { ...REDIS_LOCK_POLICIES.refresh, ...options.locks?.refresh },
      write: { ...REDIS_LOCK_POLICIES.write, ...options.locks?.write },
      login: { ...REDIS_LOCK_POLICIES.login, ...options.locks?.login },
    };
  }

  /** Where the store is, for people: the URL without its password, and the prefix. */
  get location(): string {
    return `${this.options.target.display} (keys ${this.prefix}*)`;
  }

  recordKeyName(key: string): string {
    return `${this.prefix}{${key}}:rec`;
  }

  /** The channel a message is published to whenever `key`'s record is written or deleted (CAS). */
  changesChannel(key: string): string {
    return `${this.prefix}{${key}}:changed`;
  }

  leaseKeyName(key: string, lock: 'refresh' | 'login'): string {
    return `${this.prefix}{${key}}:lease:${lock}`;
  }

  private issuerKeyName(issuer: string, what: 'kept' | 'dropped' | 'lease'): string {
    return `${this.prefix}{reg:${recordKey(issuer)}}:${what}`;
  }

  async close(): Promise<void> {
    await this.redis.close();
  }

  // -- records -----------------------------------------------------------------------------------

  private async stored(key: string): Promise<StoredRecord | undefined> {
    const reply = await this.redis.send(['HMGET', this.recordKeyName(key), 'gen', 'data']);
    const [gen, data] = Array.isArray(reply) ? reply : [];
    if (typeof data !== 'string') return undefined;
    return { gen: Number(gen), data };
  }

  /** What `stored` holds, opened and validated (never throws for its content). */
  private decode(key: string, stored: StoredRecord | undefined): ReadResult {
    if (stored === undefined) return { kind: 'missing' };
    const corrupt = (problem: string, serverUrl?: string): ReadResult => ({
      kind: 'corrupt',
      file: this.recordKeyName(key),
      ...(serverUrl !== undefined ? { serverUrl } : {}),
      problem,
      error: new AuthkeepError('store_corrupt', `record ${this.recordKeyName(key)} is unreadable: ${problem}`, {
        field: 'record',
      }),
    });
    const opened = openText(this.options.sealKey, stored.data, 'record', key);
    if (opened.problem !== undefined) return corrupt(opened.problem);
    let json: unknown;
    try {
      json = JSON.parse(opened.text);
    } catch {
      return corrupt('not JSON');
    }
    const parsed = ServerRecordSchema.safeParse(json);
    if (!parsed.success) return corrupt(`invalid at ${parsed.error.issues[0]?.path.map(String).join('.') || '(root)'}`);
    const record = parsed.data;
    if (recordKey(record.serverUrl) !== key) return corrupt('serverUrl does not belong to its key');
    if (record.generation !== stored.gen) return corrupt('generation differs from the stored one', record.serverUrl);
    return { kind: 'ok', record };
  }

  async read(serverUrl: string): Promise<ReadResult> {
    const key = recordKey(serverUrl);
    return this.decode(key, await this.stored(key));
  }

  /**
   * The record's generation and the length of its sealed value (one small reply, nothing opened):
   * every write stores generation + 1 and a fresh seal (credential-store.ts `recordVersion`). A
   * waiter for another host's refresh compares it and fetches, opens and parses the record only
   * when it changed.
   */
  async recordVersion(serverUrl: string): Promise<string | undefined> {
    const reply = await this.redis.eval(RECORD_VERSION, [this.recordKeyName(recordKey(serverUrl))], []);
    const [gen, length] = Array.isArray(reply) ? reply : [];
    return gen === null || gen === undefined || gen === false ? undefined : `${String(gen)}:${String(length)}`;
  }

  /**
   * Notices of the record's writes, from its change channel (SUBSCRIBE on a second connection;
   * redis-connection.ts): a waiter for another host's refresh is woken when the record lands, not
   * at its next poll. `notifies` is false until Redis confirmed the subscription (and for good if it
   * did not): the waiter's timer looks meanwhile. A message lost while the subscriber reconnects
   * only makes that waiter look at its next timer.
   */
  watchRecord(serverUrl: string): FileChanges {
    let live = false;
    let end: (() => Promise<void>) | undefined;
    let closed = false;
    const subscription = changeNotices({
      notifies: () => live,
      close: () => {
        closed = true;
        live = false;
        void end?.();
      },
    });
    this.redis.subscribe(this.changesChannel(recordKey(serverUrl)), subscription.notice).then(
      (unsubscribe) => {
        if (closed) return void unsubscribe();
        end = unsubscribe;
        live = true;
      },
      () => undefined,
    );
    return subscription.changes;
  }

  /** Whether the record's refresh lease is held now (EXISTS: one small reply; see credential-store.ts). */
  async refreshUnderWay(serverUrl: string): Promise<boolean> {
    return Number(await this.redis.send(['EXISTS', this.leaseKeyName(recordKey(serverUrl), 'refresh')])) === 1;
  }

  /**
   * Read under `lease`; a corrupt record is moved to quarantine (never deleted) while the lease is
   * still ours and the record unchanged.
   */
  async readUnderLease(key: string, lease: RedisLease): Promise<ReadResult> {
    const stored = await this.stored(key);
    const result = this.decode(key, stored);
    if (result.kind !== 'corrupt' || stored === undefined) return result;
    const movedTo = `${this.prefix}{${key}}:quarantine:${new Date().toISOString()}`;
    const moved = Number(
      await this.redis.eval(QUARANTINE, [this.recordKeyName(key), lease.key, movedTo], [lease.value, stored.data]),
    );
    if (moved === -1) throw lockLost(key, 'refresh');
    if (moved === 0) return this.readUnderLease(key, lease); // changed meanwhile: read it again
    return { ...result, file: movedTo, movedTo };
  }

  /**
   * The fenced compare-and-swap: store `record` (sealed; undefined deletes) if the stored
   * generation is `basedOn` (undefined: whatever it is) and `lease` is still ours.
   */
  async casWrite(
    key: string,
    basedOn: number | undefined,
    record: ServerRecord | undefined,
    lease: RedisLease,
  ): Promise<number> {
    const data = record === undefined ? '' : sealText(this.options.sealKey, JSON.stringify(record), 'record', key);
    const reply = await this.redis.eval(
      CAS,
      [this.recordKeyName(key), lease.key],
      [basedOn === undefined ? '' : String(basedOn), data, lease.value, this.changesChannel(key)],
    );
    const [status, generation] = (Array.isArray(reply) ? reply : []).map(Number);
    if (status === -1) throw lockLost(key, lease.key.endsWith('login') ? 'login' : 'refresh');
    if (status === 0)
      throw storeConflict(
        key,
        `stored generation ${generation} is not ${basedOn}`,
        basedOn ?? 0,
        generation === 0 || generation === undefined ? 'missing' : generation,
      );
    return generation ?? 0;
  }

  /** Take `key`'s lease of `lock` with `policy` (and the caller's overrides). */
  lease(key: string, lock: 'refresh' | 'login', purpose: string, policy: LockPolicy, options: TransactionOptions = {}) {
    const maxHoldMs = options.maxHoldMs ?? policy.maxHoldMs;
    return RedisLease.acquire(this.redis, this.leaseKeyName(key, lock), {
      timeoutMs: options.timeoutMs ?? policy.timeoutMs,
      ttlMs: options.staleMs ?? policy.staleMs,
      maxHoldMs,
      purpose,
      ...(options.onWait ? { onWait: options.onWait } : {}),
      signal: options.signal,
    });
  }

  async transaction<T>(
    serverUrl: string,
    purpose: StorePurpose,
    fn: (tx: StoreTransaction) => Promise<T>,
    options: TransactionOptions = {},
  ): Promise<T> {
    if (!(purpose in this.policies))
      throw new AuthkeepError('invalid_argument', `unknown transaction purpose ${String(purpose)}`, {
        field: 'purpose',
      });
    const key = recordKey(serverUrl);
    const lease = await this.lease(
      key,
      purpose === 'login' ? 'login' : 'refresh',
      purpose,
      this.policies[purpose],
      options,
    );
    const tx = new RedisTransaction(this, serverUrl, key, purpose, lease, this.policies.write);
    try {
      return await fn(tx);
    } finally {
      tx.finish();
      await lease.release();
    }
  }

  /** Record keys present, by SCAN. */
  private async keys(pattern: string): Promise<string[]> {
    const found = new Set<string>();
    let cursor = '0';
    do {
      const reply = await this.redis.send(['SCAN', cursor, 'MATCH', pattern, 'COUNT', '500']);
      const [next, batch] = Array.isArray(reply) ? reply : ['0', []];
      cursor = String(next);
      for (const name of Array.isArray(batch) ? batch : []) found.add(String(name));
    } while (cursor !== '0');
    return [...found].sort();
  }

  async list(): Promise<Array<ReadResult & { key: string }>> {
    const out: Array<ReadResult & { key: string }> = [];
    for (const name of await this.keys(`${escapeGlob(this.prefix)}{*}:rec`)) {
      const key = /\{([^}]+)\}:rec$/.exec(name)?.[1];
      if (key === undefined || key.startsWith('reg:')) continue;
      const result = this.decode(key, await this.stored(key));
      if (result.kind !== 'missing') out.push({ ...result, key });
    }
    return out;
  }

  private async readDropped(issuer: string): Promise<DroppedRegistration[]> {
    const text = await this.redis.send(['GET', this.issuerKeyName(issuer, 'dropped')]);
    if (typeof text !== 'string') return [];
    try {
      const parsed = JSON.parse(text) as unknown;
      return Array.isArray(parsed)
        ? parsed.filter(
            (d): d is DroppedRegistration =>
              typeof d === 'object' && d !== null && typeof d.clientId === 'string' && typeof d.at === 'string',
          )
        : [];
    } catch {
      return [];
    }
  }

  async findRegistrationsByIssuer(issuer: string): Promise<RegistrationMatch[]> {
    return reusableRegistrations(await this.list(), issuer, await this.readDropped(issuer));
  }

  async delete(serverUrl: string): Promise<boolean> {
    return this.transaction(serverUrl, 'write', (tx) => tx.delete());
  }

  async readLoginOutcome(serverUrl: string): Promise<LoginOutcome | undefined> {
    const text = await this.redis.send(['GET', `${this.prefix}{${recordKey(serverUrl)}}:outcome`]);
    return typeof text === 'string' ? parseLoginOutcome(Buffer.from(text, 'utf8')) : undefined;
  }

  async writeLoginOutcome(serverUrl: string, outcome: LoginOutcome): Promise<void> {
    const parsed = LoginOutcomeSchema.safeParse(outcome);
    if (!parsed.success) throw new AuthkeepError('invalid_argument', 'login outcome is invalid', { field: 'outcome' });
    await this.redis.send(['SET', `${this.prefix}{${recordKey(serverUrl)}}:outcome`, JSON.stringify(parsed.data)]);
  }

  private async readKept(issuer: string): Promise<Registration | undefined> {
    const sealed = await this.redis.send(['GET', this.issuerKeyName(issuer, 'kept')]);
    if (typeof sealed !== 'string') return undefined;
    const opened = openText(this.options.sealKey, sealed, 'registration', recordKey(issuer));
    if (opened.text === undefined) return undefined;
    try {
      const parsed = RegistrationSchema.safeParse(JSON.parse(opened.text));
      return parsed.success && parsed.data.issuer === issuer ? parsed.data : undefined;
    } catch {
      return undefined;
    }
  }

  private issuerLease(issuer: string): Promise<RedisLease> {
    const policy = this.policies.write;
    return RedisLease.acquire(this.redis, this.issuerKeyName(issuer, 'lease'), {
      timeoutMs: policy.timeoutMs,
      ttlMs: policy.staleMs,
      maxHoldMs: policy.maxHoldMs,
      purpose: 'register',
    });
  }

  async registerOnce(issuer: string, register: () => Promise<Registration>): Promise<Registration> {
    const lease = await this.issuerLease(issuer);
    try {
      const kept = await this.readKept(issuer);
      if (kept && reusable(kept, await this.readDropped(issuer))) return kept;
      const held = (await this.findRegistrationsByIssuer(issuer))[0]?.registration;
      if (held) return held;
      const registration = await register();
      const sealed = sealText(this.options.sealKey, JSON.stringify(registration), 'registration', recordKey(issuer));
      await this.redis.send(['SET', this.issuerKeyName(issuer, 'kept'), sealed]);
      return registration;
    } finally {
      await lease.release();
    }
  }

  async dropRegistration(issuer: string, clientId: string): Promise<void> {
    const lease = await this.issuerLease(issuer);
    try {
      const dropped = (await this.readDropped(issuer)).filter((d) => d.clientId !== clientId);
      dropped.push({ clientId, at: new Date().toISOString() });
      await this.redis.send([
        'SET',
        this.issuerKeyName(issuer, 'dropped'),
        JSON.stringify(dropped.slice(-MAX_DROPPED)),
      ]);
      const kept = await this.readKept(issuer);
      if (kept?.clientId === clientId) await this.redis.send(['DEL', this.issuerKeyName(issuer, 'kept')]);
    } finally {
      await lease.release();
    }
  }

  locate(serverUrl: string): string {
    return `${this.options.target.display} ${this.recordKeyName(recordKey(serverUrl))}`;
  }

  /** Leases held now (of `serverUrl`'s record, or all), with their holders. */
  async leases(serverUrl?: string): Promise<Array<LockHolder & { name: string }>> {
    const pattern =
      serverUrl === undefined
        ? `${escapeGlob(this.prefix)}${LEASE_SCAN}`
        : `${escapeGlob(this.prefix)}{${recordKey(serverUrl)}}:lease:*`;
    const out: Array<LockHolder & { name: string }> = [];
    for (const name of await this.keys(pattern)) {
      const value = await this.redis.send(['GET', name]);
      if (typeof value !== 'string') continue; // released meanwhile
      const pttl = Number(await this.redis.send(['PTTL', name]));
      out.push({ ...leaseHolder(name, value, pttl), name: name.slice(this.prefix.length) });
    }
    return out;
  }

  async inspect(serverUrl?: string): Promise<StoreInspection> {
    const quarantined = (await this.quarantined(serverUrl)).map((q) => q.file);
    const records = await this.keys(`${escapeGlob(this.prefix)}*`);
    return {
      location: this.location,
      exists: records.length > 0,
      quarantined,
      permissions: { checked: false, filesChecked: 0, findings: [] },
      locks: await this.leases(serverUrl),
      locksLocation: this.location,
    };
  }

  async quarantined(serverUrl?: string): Promise<QuarantinedRecord[]> {
    const scope = serverUrl === undefined ? '*' : recordKey(serverUrl);
    const out: QuarantinedRecord[] = [];
    for (const name of await this.keys(`${escapeGlob(this.prefix)}{${scope}}:quarantine:*`)) {
      const match = /\{([^}]+)\}:quarantine:(.+)$/.exec(name);
      if (!match?.[1] || !match[2]) continue;
      out.push({ key: match[1], file: name, at: match[2], problem: 'unreadable record moved aside' });
    }
    return out.sort((a, b) => a.at.localeCompare(b.at));
  }

  async clearQuarantine(serverUrl: string): Promise<string[]> {
    const names = (await this.quarantined(serverUrl)).map((q) => q.file);
    if (names.length > 0) await this.redis.send(['DEL', ...names]);
    return names;
  }
}

function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}

function lockLost(key: string, purpose: string): AuthkeepError {
  return new AuthkeepError(
    'lock_lost',
    `the ${purpose} lease of ${key} was taken over by another process (held past its bound); nothing was written`,
    { field: 'lock', detail: { key, purpose } },
  );
}

/** One transaction of the fleet store (see the file store's file-transaction.ts for the contract). */
class RedisTransaction extends TransactionCore implements StoreTransaction {
  constructor(
    private readonly store: RedisCredentialStore,
    serverUrl: string,
    key: string,
    purpose: StorePurpose,
    private readonly ownLease: RedisLease,
    private readonly writePolicy: LockPolicy,
  ) {
    super(serverUrl, key, purpose);
  }

  get lockLost(): boolean {
    return this.ownLease.lost;
  }

  get holdUntil(): number | undefined {
    return this.ownLease.holdUntil;
  }

  /**
   * The lease is ours, and Redis keeps it ours until the hold's bound (a refresh token is spent
   * right after this): `lock_lost` otherwise.
   */
  async assertLockHeld(): Promise<void> {
    const held = this.purpose === 'login' ? await this.ownLease.verify() : await this.ownLease.extendToHold();
    if (!held) throw lockLost(this.key, this.purpose);
  }

  read(): Promise<ReadResult> {
    return this.serial(async () => {
      const result =
        this.purpose === 'login'
          ? await this.store.read(this.serverUrl)
          : await this.store.readUnderLease(this.key, this.ownLease);
      this.seen = result.kind === 'ok' ? result.record.generation : 0;
      return result;
    });
  }

  write(next: ServerRecord): Promise<ServerRecord> {
    return this.serial(async () => {
      const { record, stated } = this.checkedWrite(next);
      const written: ServerRecord = { ...record, generation: stated + 1, updatedAt: new Date().toISOString() };
      await this.underRecordLease(async (lease) => {
        if (this.purpose === 'login') await this.store.readUnderLease(this.key, lease); // a corrupt one moves aside
        await this.casWriteRetrying(lease, stated, written);
      });
      this.seen = written.generation;
      return written;
    });
  }

  delete(): Promise<boolean> {
    return this.serial(async () => {
      const removed = await this.underRecordLease(
        async (lease) => (await this.store.casWrite(this.key, this.seen, undefined, lease)) > 0,
      );
      this.seen = 0;
      return removed;
    });
  }

  /**
   * The compare-and-swap, retried while Redis is unreachable (restarting, failing over) until the
   * lease's hold ends: the record may hold a refresh token just spent, so its answer is kept if
   * Redis comes back in time. A retry whose earlier attempt did land (its reply was lost) finds
   * its own record there and counts as done.
   */
  private async casWriteRetrying(lease: RedisLease, stated: number, written: ServerRecord): Promise<void> {
    const until = lease.holdUntil ?? Date.now() + 5_000;
    let retried = false;
    for (let attempt = 0; ; attempt++) {
      try {
        await this.store.casWrite(this.key, stated, written, lease);
        return;
      } catch (err) {
        if (!(err instanceof AuthkeepError)) throw err;
        const delay = Math.min(1_000, 50 * 2 ** attempt);
        if (err.code === 'store_unreachable' && Date.now() + delay < until) {
          retried = true;
          await new Promise((resolve) => setTimeout(resolve, delay));
          continue;
        }
        if (retried && err.code === 'store_conflict') {
          const now = await this.store.read(this.serverUrl);
          if (
            now.kind === 'ok' &&
            now.record.generation === written.generation &&
            now.record.updatedAt === written.updatedAt
          )
            return;
        }
        throw err;
      }
    }
  }

  /** Run `fn` under the record lease: ours for 'refresh' and 'write', taken just for `fn` for 'login'. */
  private async underRecordLease<T>(fn: (lease: RedisLease) => Promise<T>): Promise<T> {
    if (this.purpose !== 'login') return fn(this.ownLease);
    const lease = await this.store.lease(this.key, 'refresh', 'login-write', this.writePolicy);
    try {
      return await fn(lease);
    } finally {
      await lease.release();
    }
  }
}
