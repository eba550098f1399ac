/**
 * registrations: one client registration per issuer, machine-wide. Under the issuer's
 * registration lock (`locks/<issuerKey>.register.lock`), the registration already kept in
 * `registrations/<issuerKey>.json`, else one a record holds, else a new one, kept at once; so
 * servers that sign in to the same issuer at the same time share one client instead of each
 * registering its own. A registration the AS refused, whose secret expired, or whose last server
 * logged out is dropped: its client_id goes to `registrations/<issuerKey>.dropped.json` and it is
 * never offered again, whichever record still holds it.
 *
 * A kept registration may hold a client secret: it goes through the store's Sealer (sealer.ts) like
 * a record, and a plaintext one found in keychain mode is sealed in place under the registration
 * lock. The dropped list holds client_ids only and stays plaintext.
 *
 * Not for: registering (oauth/registration.ts does it; it is handed in as `register`).
 */
import { readdir, unlink } from 'node:fs/promises';
import * as z from 'zod/mini';
import { clientSecretExpired, type Registration } from '../oauth/types.js';
import { checkStoreDirectories, ensurePrivateDir, readFileIfExists, writeFileAtomic } from './atomic-file.js';
import { DEFAULT_LOCK_POLICIES, type ReadResult, type RegistrationMatch } from './credential-store.js';
import { acquireLock, type LockHandle } from './lock.js';
import { recordKey, type StoreLayout } from './paths.js';
import { RegistrationSchema } from './record.js';
import type { Sealer } from './sealer.js';

/** Registrations that must not be reused: a client_id, and when it was dropped. */
const DroppedRegistrationsSchema = z.array(z.object({ clientId: z.string().check(z.minLength(1)), at: z.string() }));
export type DroppedRegistration = z.infer<typeof DroppedRegistrationsSchema>[number];
/** Dropped client_ids remembered per issuer (the newest). */
const MAX_DROPPED = 50;

/**
 * May `registration` be reused: not dropped (a registration made after the drop that carries the
 * same client_id is another one) and its client secret has not expired.
 */
export function reusable(registration: Registration, dropped: readonly DroppedRegistration[]): boolean {
  if (clientSecretExpired(registration, Date.now())) return false;
  return !dropped.some((d) => d.clientId === registration.clientId && registration.registeredAt <= d.at);
}

/**
 * The registrations at `issuer` that records in `entries` hold and another sign-in may reuse,
 * newest first: not dropped, secret not expired, and not a machine grant's client (client
 * credentials, JWT bearer: the user's configuration for that server, without redirect URIs or a
 * stored secret), nor an enterprise IdP session's (the user's client at the IdP, configured per
 * `--idp-client-id`). Shared by every store backend.
 */
export function reusableRegistrations(
  entries: ReadonlyArray<ReadResult & { key: string }>,
  issuer: string,
  dropped: readonly DroppedRegistration[],
): RegistrationMatch[] {
  const matches: RegistrationMatch[] = [];
  for (const entry of entries) {
    if (entry.kind !== 'ok' || entry.record.registration.issuer !== issuer) continue;
    if (entry.record.grant !== undefined || entry.record.idpSession !== undefined) continue;
    if (!reusable(entry.record.registration, dropped)) continue;
    const { record } = entry;
    matches.push({
      serverUrl: record.serverUrl,
      key: entry.key,
      generation: record.generation,
      registration: record.registration,
    });
  }
  return matches.sort((a, b) => b.registration.registeredAt.localeCompare(a.registration.registeredAt));
}

/** The client_ids dropped at `issuer` (unreadable: none; a registration is then merely reused). */
export async function readDropped(layout: StoreLayout, issuer: string): Promise<DroppedRegistration[]> {
  if (!(await checkStoreDirectories(layout.home, layout.registrationsDir))) return [];
  const bytes = await readFileIfExists(layout.droppedRegistrationsPath(recordKey(issuer)));
  if (bytes === undefined) return [];
  try {
    const parsed = DroppedRegistrationsSchema.safeParse(JSON.parse(bytes.toString('utf8')));
    return parsed.success ? parsed.data : [];
  } catch {
    return [];
  }
}

/** See CredentialStore.dropRegistration. */
export async function dropRegistration(
  layout: StoreLayout,
  sealer: Sealer,
  issuer: string,
  clientId: string,
): Promise<void> {
  const issuerKey = recordKey(issuer);
  const handle = await registrationLock(layout, issuerKey);
  try {
    const dropped = (await readDropped(layout, issuer)).filter((d) => d.clientId !== clientId);
    dropped.push({ clientId, at: new Date().toISOString() });
    await ensurePrivateDir(layout.registrationsDir);
    await writeFileAtomic(
      layout.droppedRegistrationsPath(issuerKey),
      `${JSON.stringify(dropped.slice(-MAX_DROPPED))}\n`,
    );
    const kept = await readKeptRegistration(layout, sealer, issuerKey, issuer);
    if (kept?.clientId === clientId) await unlink(layout.registrationPath(issuerKey)).catch(() => undefined);
  } finally {
    await handle.release();
  }
}

/** The issuer's registration lock: registerOnce and dropRegistration run one at a time per issuer. */
async function registrationLock(layout: StoreLayout, issuerKey: string): Promise<LockHandle> {
  await ensurePrivateDir(layout.home, { tighten: false });
  await ensurePrivateDir(layout.locksDir);
  const policy = DEFAULT_LOCK_POLICIES.write;
  return acquireLock(layout.locksDir, layout.lockName(issuerKey, 'register'), {
    timeoutMs: policy.timeoutMs,
    staleMs: policy.staleMs,
    ...(policy.maxHoldMs !== undefined ? { maxHoldMs: policy.maxHoldMs } : {}),
    purpose: 'register',
  });
}

export async function registerOnce(
  layout: StoreLayout,
  sealer: Sealer,
  issuer: string,
  register: () => Promise<Registration>,
  /** The newest reusable registration a stored record holds for `issuer`. */
  heldByRecord: (issuer: string) => Promise<Registration | undefined>,
): Promise<Registration> {
  const issuerKey = recordKey(issuer);
  const handle = await registrationLock(layout, issuerKey);
  try {
    const kept = await readKeptRegistration(layout, sealer, issuerKey, issuer);
    if (kept && reusable(kept, await readDropped(layout, issuer))) return kept;
    const held = await heldByRecord(issuer);
    if (held) return held;
    const registration = await register();
    await ensurePrivateDir(layout.registrationsDir);
    const text = `${JSON.stringify(registration)}\n`;
    await writeFileAtomic(
      layout.registrationPath(issuerKey),
      await sealer.seal(text, { role: 'registration', key: issuerKey }),
    );
    return registration;
  } finally {
    await handle.release();
  }
}

/**
 * The registration kept for `issuer`, or undefined when absent or unreadable (then re-registered;
 * a sealed one that does not open is unreadable). The caller holds the registration lock: a
 * plaintext one found in keychain mode is sealed in place.
 */
async function readKeptRegistration(
  layout: StoreLayout,
  sealer: Sealer,
  issuerKey: string,
  issuer: string,
): Promise<Registration | undefined> {
  if (!(await checkStoreDirectories(layout.home, layout.registrationsDir))) return undefined;
  const file = layout.registrationPath(issuerKey);
  const bytes = await readFileIfExists(file);
  if (bytes === undefined) return undefined;
  const context = { role: 'registration', key: issuerKey } as const;
  const opened = await sealer.open(bytes, context);
  if (opened.kind === 'unavailable') throw opened.error;
  if (opened.kind === 'unreadable') return undefined;
  let registration: Registration | undefined;
  try {
    const parsed = RegistrationSchema.safeParse(JSON.parse(opened.text));
    registration = parsed.success && parsed.data.issuer === issuer ? parsed.data : undefined;
  } catch {
    return undefined;
  }
  if (registration !== undefined && opened.kind === 'plaintext' && (await sealer.state()).mode === 'keychain') {
    await writeFileAtomic(file, await sealer.seal(opened.text, context));
  }
  return registration;
}

/** Issuer keys of kept registrations still in plaintext (doctor, in keychain mode). Never writes. */
export async function plaintextRegistrations(layout: StoreLayout, sealer: Sealer): Promise<string[]> {
  if (!(await checkStoreDirectories(layout.home, layout.registrationsDir))) return [];
  let names: string[];
  try {
    names = await readdir(layout.registrationsDir);
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const name of names.sort()) {
    if (!name.endsWith('.json') || name.endsWith('.dropped.json')) continue;
    const issuerKey = name.slice(0, -'.json'.length);
    const bytes = await readFileIfExists(layout.registrationPath(issuerKey)).catch(() => undefined);
    if (bytes === undefined) continue;
    const opened = await sealer.open(bytes, { role: 'registration', key: issuerKey });
    if (opened.kind === 'plaintext') out.push(layout.registrationPath(issuerKey));
  }
  return out;
}
