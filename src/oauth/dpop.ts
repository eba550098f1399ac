/**
 * dpop: RFC 9449 (DPoP) for an MCP client: whether a sign-in binds its tokens to a key (section
 * 5.1 `dpop_signing_alg_values_supported`, RFC 9728 `dpop_bound_access_tokens_required`, a `DPoP`
 * challenge, section 7.1), the key pair (generated per sign-in, kept as a private JWK in the
 * server's record), and the oauth4webapi `DPoPHandle` that signs every proof and remembers the
 * servers' nonces (sections 8 and 9). Proofs are oauth4webapi's; nothing here signs by hand.
 *
 * Not for: sending token or resource requests (token-endpoint.ts, session/authenticated-fetch.ts)
 * or storing the key (store/record.ts). The private JWK is a secret: it never reaches a log, an
 * error or a printed value.
 */
import { createHash, webcrypto } from 'node:crypto';
import { DPoP, type DPoPHandle } from 'oauth4webapi';
import { AuthkeepError } from '../errors.js';
import type { AuthorizationServer } from './types.js';

/**
 * The JWS algorithms authkeep signs proofs with, in its order of preference: ES256 first (RFC 9449
 * section 11.6 forbids symmetric algorithms and `none`; ES256 is what every DPoP AS accepts). Not
 * EdDSA: oauth4webapi signs an Ed25519 key as `Ed25519`, which an AS listing `EdDSA` may refuse.
 */
export const DPOP_ALGS = ['ES256', 'ES384', 'ES512'] as const;
export type DpopAlg = (typeof DPOP_ALGS)[number];

/** A DPoP key pair as the record stores it: the algorithm and the private JWK (public members included). */
export interface DpopKey {
  alg: DpopAlg;
  /** JWK of the private key (`d` and the public members). A secret. */
  privateJwk: {
    kty: 'EC';
    crv: string;
    x: string;
    y: string;
    d: string;
  };
}

/**
 * `auto`: DPoP wherever the AS supports it (a stolen refresh token is then worthless);
 * `when-required`: only where the server requires it (the tokens stay usable as Bearer elsewhere,
 * e.g. what `authkeep token` prints for curl).
 */
export type DpopMode = 'auto' | 'when-required';

/** What a sign-in does about DPoP for one server. */
export type DpopPolicy = { use: false } | { use: true; alg: DpopAlg; required: boolean };

const GENERATE: Record<DpopAlg, EcKeyGenParams> = {
  ES256: { name: 'ECDSA', namedCurve: 'P-256' },
  ES384: { name: 'ECDSA', namedCurve: 'P-384' },
  ES512: { name: 'ECDSA', namedCurve: 'P-521' },
};

/**
 * RFC 9449 section 5.1 and RFC 9728 section 2: DPoP is used when the AS advertises an algorithm
 * authkeep signs with (the first of DPOP_ALGS it lists), and required when the protected resource
 * says `dpop_bound_access_tokens_required` or its 401 challenged with the `DPoP` scheme and not
 * `Bearer` (section 7.1). Required with no advertised algorithm: ES256 (the AS may support DPoP
 * without saying so; if it does not, the server cannot be used anyway). Required while the AS
 * advertises only algorithms authkeep cannot sign with: `dpop_unsupported`. `when-required`
 * leaves servers that do not require it on Bearer.
 */
export function dpopPolicy(
  as: Pick<AuthorizationServer, 'issuer' | 'dpop_signing_alg_values_supported'>,
  resource: { dpopRequired: boolean },
  mode: DpopMode = 'auto',
): DpopPolicy {
  if (!resource.dpopRequired && mode === 'when-required') return { use: false };
  const advertised = as.dpop_signing_alg_values_supported;
  const alg = DPOP_ALGS.find((candidate) => advertised?.includes(candidate));
  if (alg !== undefined) return { use: true, alg, required: resource.dpopRequired };
  if (!resource.dpopRequired) return { use: false };
  if (advertised === undefined || advertised.length === 0) return { use: true, alg: 'ES256', required: true };
  throw new AuthkeepError(
    'dpop_unsupported',
    `the server requires DPoP-bound tokens, and authorization server ${as.issuer} signs DPoP proofs only with algorithms authkeep does not use (it uses ${DPOP_ALGS.join(', ')})`,
    { field: 'dpop_signing_alg_values_supported', detail: { advertised: advertised.join(' ') } },
  );
}

/** A fresh key pair for one sign-in (RFC 9449 section 2: the client's own, never shared). */
export async function generateDpopKey(alg: DpopAlg): Promise<DpopKey> {
  const pair = (await webcrypto.subtle.generateKey(GENERATE[alg], true, ['sign', 'verify'])) as CryptoKeyPair;
  const jwk = await webcrypto.subtle.exportKey('jwk', pair.privateKey);
  if (jwk.kty !== 'EC' || !jwk.crv || !jwk.x || !jwk.y || !jwk.d) {
    throw new AuthkeepError('dpop_unsupported', `this runtime exported an unusable ${alg} key`, { field: 'dpop.alg' });
  }
  return { alg, privateJwk: { kty: 'EC', crv: jwk.crv, x: jwk.x, y: jwk.y, d: jwk.d } };
}

/** The public members of a stored key (what a proof's `jwk` header carries). */
export function publicJwk(key: DpopKey): JsonWebKey {
  const { d: _secret, ...rest } = key.privateJwk;
  return rest;
}

/** A stored key as Web Crypto keys (the private one not extractable), for an SDK's own DPoP support. */
export interface DpopKeyPair {
  alg: DpopAlg;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  publicJwk: JsonWebKey;
  /** RFC 7638 SHA-256 thumbprint of the public key: the tokens' `cnf.jkt`. */
  thumbprint: string;
}

/** RFC 7638 section 3.2: the SHA-256 thumbprint of an EC public key (required members, lexicographic order). */
export function jwkThumbprint(key: DpopKey): string {
  const { crv, kty, x, y } = key.privateJwk;
  return createHash('sha256').update(JSON.stringify({ crv, kty, x, y })).digest('base64url');
}

export async function importDpopKeyPair(key: DpopKey): Promise<DpopKeyPair> {
  const pair = await importKeyPair(key);
  return { alg: key.alg, ...pair, publicJwk: publicJwk(key), thumbprint: jwkThumbprint(key) };
}

/** The stored key as a CryptoKeyPair oauth4webapi can sign with (the public key extractable, as it requires). */
async function importKeyPair(key: DpopKey): Promise<CryptoKeyPair> {
  const params = GENERATE[key.alg];
  const privateKey = await webcrypto.subtle.importKey('jwk', { ...key.privateJwk }, params, false, ['sign']);
  const publicKey = await webcrypto.subtle.importKey('jwk', publicJwk(key), params, true, ['verify']);
  return { privateKey, publicKey } as CryptoKeyPair;
}

/**
 * One oauth4webapi DPoPHandle per key, for the life of the process: the handle keeps the nonces
 * each server (AS and resource server, by origin) last sent (RFC 9449 section 8.2), so every
 * request of every fetch for that server signs with the latest one.
 */
export class DpopKeyring {
  private readonly handles = new Map<string, Promise<DPoPHandle>>();
  private readonly pairs = new Map<string, Promise<DpopKeyPair>>();

  handle(key: DpopKey): Promise<DPoPHandle> {
    return cached(this.handles, key, () => this.keyPair(key).then((pair) => DPoP({}, pair)));
  }

  /** The key imported once (the private key not extractable). */
  keyPair(key: DpopKey): Promise<DpopKeyPair> {
    return cached(this.pairs, key, () => importDpopKeyPair(key));
  }
}

function cached<T>(map: Map<string, Promise<T>>, key: DpopKey, make: () => Promise<T>): Promise<T> {
  const id = `${key.alg}:${key.privateJwk.x}:${key.privateJwk.y}`;
  let value = map.get(id);
  if (value === undefined) {
    value = make();
    value.catch(() => map.delete(id));
    if (map.size >= 100) map.delete(map.keys().next().value as string);
    map.set(id, value);
  }
  return value;
}
