/**
 * Drift (src/session/drift.ts): tokens stamped with another client_id or issuer than the record's
 * registration, or a registration at another issuer than the record's authorization server, are
 * never sent. Each case is produced against the real oidc-provider: a signed-in record is changed
 * the way a record copied between servers or written by an older client would be, and then
 * AuthKeeper, as another process would, meets it both while the access token is still valid (it
 * must not be served) and once it is due (the refresh token must not be sent). The issuer cases
 * fail if the issuer branches of drift.ts are deleted; the client_id case is the baseline.
 */
import assert from 'node:assert/strict';
import { type TestContext, test } from 'node:test';
import { NeedsAuthError } from '../../src/index.js';
import type { ServerRecord } from '../../src/store/record.js';
import { type Bed, startBed } from '../helpers/bed.js';
import { editRecord, expireStoredTokens, readRecord } from '../helpers/records.js';

const OTHER_ISSUER = 'http://127.0.0.1:9/other-tenant';

interface Case {
  name: string;
  field: string;
  /** Make the record drift. */
  drift(record: ServerRecord): ServerRecord;
  /** The non-secret description, from the record as signed in. */
  description(record: ServerRecord): string;
}

const CASES: Case[] = [
  {
    name: 'tokens issued to another client_id',
    field: 'tokens.clientId',
    drift: (r) => ({ ...r, tokens: { ...r.tokens!, clientId: 'another-registration' } }),
    description: (r) =>
      `tokens were issued to client another-registration, record is registered as ${r.registration.clientId}`,
  },
  {
    name: 'tokens issued by another issuer',
    field: 'tokens.issuer',
    drift: (r) => ({ ...r, tokens: { ...r.tokens!, issuer: OTHER_ISSUER } }),
    description: (r) => `tokens were issued by ${OTHER_ISSUER}, registration is at ${r.registration.issuer}`,
  },
  {
    name: 'a registration (and its tokens) at another issuer than the authorization server',
    field: 'registration.issuer',
    drift: (r) => ({
      ...r,
      registration: { ...r.registration, issuer: OTHER_ISSUER },
      tokens: { ...r.tokens!, issuer: OTHER_ISSUER },
    }),
    description: (r) => `registration belongs to ${OTHER_ISSUER}, server uses ${r.authorizationServer.issuer}`,
  },
];

async function signedIn(t: TestContext): Promise<{ bed: Bed; url: string; record: ServerRecord }> {
  const bed = await startBed(t);
  const url = bed.servers[0]!.url;
  await bed.keeper().login(url);
  return { bed, url, record: await readRecord(bed.home, url) };
}

function expectDrift(description: string, field: string) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof NeedsAuthError, `needs-auth drift, got ${String(err)}`);
    assert.equal(err.reason, 'drift', err.message);
    assert.equal(err.field, field, 'the error names the field at fault');
    assert.equal(err.info.errorDescription, description);
    assert.equal(err.info.error, undefined, 'no AS was asked');
    assert.equal(err.info.request, undefined, 'no request was made');
    return true;
  };
}

for (const c of CASES) {
  test(`drift, ${c.name}: a still-valid access token is not served, nothing is sent, the record is marked`, async (t) => {
    const { bed, url, record } = await signedIn(t);
    await editRecord(bed.home, url, c.drift);
    const asRequests = bed.as.audit.http().length;
    const mcpRequests = bed.servers[0]!.counts().requests;

    const keeper = bed.keeper();
    await assert.rejects(keeper.getAccessToken(url), expectDrift(c.description(record), c.field));
    assert.equal(bed.as.audit.http().length, asRequests, 'the AS received no request');
    assert.equal(bed.servers[0]!.counts().requests, mcpRequests, 'the server received no request');

    const marked = await readRecord(bed.home, url);
    assert.equal(marked.needsAuth?.reason, 'drift');
    assert.equal(marked.needsAuth?.errorDescription, c.description(record));
    assert.equal(marked.tokens, undefined, 'the drifted tokens are dropped');
    assert.deepEqual(marked.registration, c.drift(record).registration, 'the registration is kept');
    const logged = bed.logs.find((e) => e.event === 'needs_auth' && e.reason === 'drift');
    assert.equal(logged?.field, c.field, 'the log names the field at fault');
  });

  test(`drift, ${c.name}: a due access token is not refreshed, the refresh token is never sent`, async (t) => {
    const { bed, url, record } = await signedIn(t);
    await editRecord(bed.home, url, c.drift);
    await expireStoredTokens(bed.home, url);
    const before = bed.as.audit.counts();

    await assert.rejects(bed.keeper().getAccessToken(url), expectDrift(c.description(record), c.field));
    const after = bed.as.audit.counts();
    assert.equal(after.refreshGrants, before.refreshGrants, 'no refresh request');
    assert.equal(after.invalidGrants, 0);
  });

  test(`drift, ${c.name}: status reports it from the record alone`, async (t) => {
    const { bed, url, record } = await signedIn(t);
    await editRecord(bed.home, url, c.drift);
    const [status] = await bed.keeper().status(url);
    assert.equal(status?.state, 'needs-auth');
    assert.equal(status?.needsAuth?.reason, 'drift');
    assert.equal(status?.needsAuth?.errorDescription, c.description(record));
  });
}

test('storeTokens refuses tokens from another issuer than the registration (store_conflict naming tokens.issuer)', async (t) => {
  const { bed, url, record } = await signedIn(t);
  const keeper = bed.keeper();
  await assert.rejects(
    keeper.storeTokens(
      url,
      { accessToken: 'from-another-issuer-0123456789', issuer: OTHER_ISSUER },
      { basedOn: record.tokens!.accessToken },
    ),
    (err: unknown) => {
      assert.ok(err instanceof Error && 'code' in err);
      assert.equal((err as { code: string }).code, 'store_conflict');
      assert.equal((err as { field?: string }).field, 'tokens.issuer');
      return true;
    },
  );
  assert.deepEqual(await readRecord(bed.home, url), record, 'the record is unchanged');
});
