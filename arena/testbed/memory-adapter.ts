/**
 * An unbounded, per-provider in-memory storage adapter for oidc-provider.
 *
 * For: test and arena authorization servers. oidc-provider's built-in memory adapter is an LRU
 * capped at 1000 entries per provider; a long arena run (every rotation keeps the consumed refresh
 * token until it expires) would evict live grants and refresh tokens and turn into spurious
 * `invalid_grant` ("refresh token not found"), which would be blamed on the client. This adapter
 * keeps everything until its TTL passes, and indexes grant members so `revokeByGrantId` (used when
 * a consumed refresh token is reused) removes every token of the grant.
 *
 * Not for: persistence across processes or restarts; production use.
 */
import type { Adapter, AdapterFactory, AdapterPayload } from 'oidc-provider';

interface Stored {
  payload: AdapterPayload;
  /** epoch ms; Infinity when stored without a TTL */
  expiresAt: number;
}

/** Models whose instances belong to a grant (removed by revokeByGrantId). */
const GRANTABLE = new Set([
  'AccessToken',
  'AuthorizationCode',
  'RefreshToken',
  'DeviceCode',
  'BackchannelAuthenticationRequest',
  'PreAuthorizedCode',
]);

/** One store shared by all models of one provider. */
class Store {
  readonly entries = new Map<string, Stored>();
  readonly grantMembers = new Map<string, Set<string>>();
  readonly sessionUids = new Map<string, string>();
  readonly userCodes = new Map<string, string>();
  private sweeps = 0;

  get(key: string): AdapterPayload | undefined {
    const stored = this.entries.get(key);
    if (!stored) return undefined;
    if (stored.expiresAt <= Date.now()) {
      this.delete(key);
      return undefined;
    }
    return stored.payload;
  }

  delete(key: string): void {
    const stored = this.entries.get(key);
    this.entries.delete(key);
    if (!stored) return;
    const { grantId, uid, userCode } = stored.payload;
    if (grantId) this.grantMembers.get(grantId)?.delete(key);
    if (uid && this.sessionUids.get(uid) === key) this.sessionUids.delete(uid);
    if (userCode && this.userCodes.get(userCode) === key) this.userCodes.delete(userCode);
  }

  /** Drop expired entries now and then so a long run does not grow without bound. */
  maybeSweep(): void {
    this.sweeps += 1;
    if (this.sweeps % 500 !== 0) return;
    const now = Date.now();
    for (const [key, stored] of this.entries) {
      if (stored.expiresAt <= now) this.delete(key);
    }
    for (const [grantId, members] of this.grantMembers) {
      if (members.size === 0) this.grantMembers.delete(grantId);
    }
  }
}

class UnboundedMemoryAdapter implements Adapter {
  constructor(
    private readonly model: string,
    private readonly store: Store,
  ) {}

  private key(id: string): string {
    return `${this.model}:${id}`;
  }

  async upsert(id: string, payload: AdapterPayload, expiresIn?: number): Promise<void> {
    const key = this.key(id);
    this.store.delete(key);
    const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : Infinity;
    this.store.entries.set(key, { payload, expiresAt });
    if (GRANTABLE.has(this.model) && payload.grantId) {
      let members = this.store.grantMembers.get(payload.grantId);
      if (!members) {
        members = new Set();
        this.store.grantMembers.set(payload.grantId, members);
      }
      members.add(key);
    }
    if (this.model === 'Session' && payload.uid) this.store.sessionUids.set(payload.uid, key);
    if (payload.userCode) this.store.userCodes.set(payload.userCode, key);
    this.store.maybeSweep();
  }

  async find(id: string): Promise<AdapterPayload | undefined> {
    return this.store.get(this.key(id));
  }

  async findByUid(uid: string): Promise<AdapterPayload | undefined> {
    const key = this.store.sessionUids.get(uid);
    return key ? this.store.get(key) : undefined;
  }

  async findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
    const key = this.store.userCodes.get(userCode);
    return key ? this.store.get(key) : undefined;
  }

  async consume(id: string): Promise<void> {
    const payload = this.store.get(this.key(id));
    if (payload) payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id: string): Promise<void> {
    this.store.delete(this.key(id));
  }

  async revokeByGrantId(grantId: string): Promise<void> {
    const members = this.store.grantMembers.get(grantId);
    if (!members) return;
    for (const key of [...members]) this.store.delete(key);
    this.store.grantMembers.delete(grantId);
  }
}

/** A fresh adapter factory with its own store (one per provider instance). */
export function createMemoryAdapter(): AdapterFactory {
  const store = new Store();
  return (model: string) => new UnboundedMemoryAdapter(model, store);
}
