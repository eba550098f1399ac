/**
 * oauth/dpop.ts without a network: when a sign-in binds its tokens (RFC 9449 section 5.1 metadata,
 * RFC 9728 `dpop_bound_access_tokens_required`, the keeper's mode), the key it generates, and the
 * outcome of a sign-in whose AS ignored the proof where the server requires DPoP.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AuthkeepError } from '../../src/errors.js';
import { DpopKeyring, dpopPolicy, generateDpopKey, jwkThumbprint, publicJwk } from '../../src/oauth/dpop.js';
import type { TokenSet } from '../../src/oauth/token-endpoint.js';
import { dpopOutcome } from '../../src/session/sign-in.js';

const issuer = 'https://as.example.com';

test('dpopPolicy: ES256 first among what the AS lists; required from the resource; when-required leaves the others on Bearer', () => {
  assert.deepEqual(
    dpopPolicy({ issuer, dpop_signing_alg_values_supported: ['EdDSA', 'ES384', 'ES256'] }, { dpopRequired: false }),
    { use: true, alg: 'ES256', required: false },
  );
  assert.deepEqual(dpopPolicy({ issuer, dpop_signing_alg_values_supported: ['ES512'] }, { dpopRequired: true }), {
    use: true,
    alg: 'ES512',
    required: true,
  });
  assert.deepEqual(dpopPolicy({ issuer }, { dpopRequired: false }), { use: false });
  assert.deepEqual(dpopPolicy({ issuer }, { dpopRequired: true }), { use: true, alg: 'ES256', required: true });
  assert.deepEqual(
    dpopPolicy({ issuer, dpop_signing_alg_values_supported: ['ES256'] }, { dpopRequired: false }, 'when-required'),
    { use: false },
  );
  assert.deepEqual(
    dpopPolicy({ issuer, dpop_signing_alg_values_supported: ['ES256'] }, { dpopRequired: true }, 'when-required'),
    { use: true, alg: 'ES256', required: true },
  );
});

test('dpopPolicy: a server that requires DPoP behind an AS listing only algorithms authkeep does not sign with is dpop_unsupported', () => {
  assert.throws(
    () => dpopPolicy({ issuer, dpop_signing_alg_values_supported: ['EdDSA', 'RS256'] }, { dpopRequired: true }),
    (err: unknown) =>
      err instanceof AuthkeepError &&
      err.code === 'dpop_unsupported' &&
      err.field === 'dpop_signing_alg_values_supported',
  );
  // Not required: Bearer, no error.
  assert.deepEqual(dpopPolicy({ issuer, dpop_signing_alg_values_supported: ['EdDSA'] }, { dpopRequired: false }), {
    use: false,
  });
});

test('generateDpopKey: a fresh P-256 key per call; the public JWK has no private member; the thumbprint is the one oauth4webapi binds', async () => {
  const a = await generateDpopKey('ES256');
  const b = await generateDpopKey('ES256');
  assert.equal(a.privateJwk.crv, 'P-256');
  assert.notEqual(a.privateJwk.d, b.privateJwk.d);
  assert.equal('d' in publicJwk(a), false);
  const handle = await new DpopKeyring().handle(a);
  assert.equal(jwkThumbprint(a), await handle.calculateThumbprint());
  assert.equal((await generateDpopKey('ES384')).privateJwk.crv, 'P-384');
});

test('dpopOutcome: the key is kept with DPoP-bound tokens only; a Bearer token where DPoP is required fails the sign-in', async () => {
  const key = await generateDpopKey('ES256');
  const handle = await new DpopKeyring().handle(key);
  const bound: TokenSet = { accessToken: 'at-bound-0001', tokenType: 'DPoP' };
  const bearer: TokenSet = { accessToken: 'at-bearer-0001', tokenType: 'Bearer' };
  assert.deepEqual(dpopOutcome(bound, { key, handle, required: true }, issuer), { dpop: key });
  assert.deepEqual(dpopOutcome(bearer, { key, handle, required: false }, issuer), {});
  assert.deepEqual(dpopOutcome(bearer, undefined, issuer), {});
  assert.throws(
    () => dpopOutcome(bearer, { key, handle, required: true }, issuer),
    (err: unknown) => err instanceof AuthkeepError && err.code === 'dpop_unsupported' && err.field === 'token_type',
  );
});
