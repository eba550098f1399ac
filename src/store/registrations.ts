/**
 * registrations: one client registration per issuer, machine-wide. Under the issuer's
 * registration lock (`locks/<issuerKey>.register.lock`), the registration already kept in
 * `registrations/<issuerKey>.json`, else one a record holds, else a new one, kept at once; so
 * servers that sign in to the same issuer at the same time share one client instead of each
 * registering its own.
 *
 * Not for: registering (oauth/registration.ts does it; it is handed in as `register`).
 */
import type { Registration } from '../oauth/types.js';
import { ensurePrivateDir, readFileIfExists, writeFileAtomic } from './atomic-file.js';
import { DEFAULT_LOCK_POLICIES } from './credential-store.js';
import { acquireLock } from './lock.js';
import { recordKey, type StoreLayout } from './paths.js';
import { RegistrationSchema } from './record.js';

export async function registerOnce(
  layout: StoreLayout,
  issuer: string,
  register: () => Promise<Registration>,
  /** The newest registration a stored record holds for `issuer`. */
  heldByRecord: (issuer: string) => Promise<Registration | undefined>,
): Promise<Registration> {
  const issuerKey = recordKey(issuer);
  await ensurePrivateDir(layout.home, { tighten: false });
  await ensurePrivateDir(layout.locksDir);
  const policy = DEFAULT_LOCK_POLICIES.write;
  const handle = await acquireLock(layout.locksDir, layout.lockName(issuerKey, 'register'), {
    timeoutMs: policy.timeoutMs,
    staleMs: policy.staleMs,
    ...(policy.maxHoldMs !== undefined ? { maxHoldMs: policy.maxHoldMs } : {}),
    purpose: 'register',
  });
  try {
    const kept = await readKeptRegistration(layout, issuerKey, issuer);
    if (kept) return kept;
    const held = await heldByRecord(issuer);
    if (held) return held;
    const registration = await register();
    await ensurePrivateDir(layout.registrationsDir);
    await writeFileAtomic(layout.registrationPath(issuerKey), `${JSON.stringify(registration)}\n`);
    return registration;
  } finally {
    await handle.release();
  }
}

/** The registration kept for `issuer`, or undefined when absent or unreadable (then re-registered). */
async function readKeptRegistration(
  layout: StoreLayout,
  issuerKey: string,
  issuer: string,
): Promise<Registration | undefined> {
  const bytes = await readFileIfExists(layout.registrationPath(issuerKey));
  if (bytes === undefined) return undefined;
  try {
    const parsed = RegistrationSchema.safeParse(JSON.parse(bytes.toString('utf8')));
    return parsed.success && parsed.data.issuer === issuer ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}
