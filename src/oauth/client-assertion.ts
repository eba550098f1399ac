/**
 * client-assertion: `private_key_jwt` client authentication (RFC 7523 section 2.2, OpenID Connect
 * Core section 9): the client signs a short-lived JWT (iss = sub = client_id, aud = the AS's
 * issuer, jti, exp 60 s; oauth4webapi's PrivateKeyJwt builds and signs it) with its own key, read
 * here from a PEM (PKCS #8, or PKCS #1 / SEC 1) or a JWK. The algorithm follows the key: ES256 /
 * ES384 / ES512 for P-256 / P-384 / P-521, RS256 for RSA (PS256 when the JWK says so), EdDSA for
 * Ed25519. A key that cannot be read is `credential_unavailable`; no message carries key material.
 *
 * Not for: where the key text comes from (session/secret-source.ts).
 */
import { createPrivateKey, type JsonWebKey, type KeyObject, webcrypto } from 'node:crypto';
import { type ClientAuth, PrivateKeyJwt } from 'oauth4webapi';
import { AuthkeepError } from '../errors.js';

/** A signing key ready for oauth4webapi, and its `kid` when the JWK named one. */
export interface ClientSigningKey {
  key: CryptoKey;
  kid?: string;
}

function unusable(why: string): AuthkeepError {
  return new AuthkeepError('credential_unavailable', `the private key for private_key_jwt ${why}`, {
    field: 'privateKey',
  });
}

function parseJwk(text: string): (JsonWebKey & { kid?: string; alg?: string }) | undefined {
  if (!text.trimStart().startsWith('{')) return undefined;
  try {
    const value: unknown = JSON.parse(text);
    if (value && typeof value === 'object' && !Array.isArray(value)) return value as JsonWebKey;
  } catch {
    // not JSON: reported below without quoting it
  }
  throw unusable('is neither a PEM nor a JSON Web Key');
}

/** WebCrypto import parameters for `key` (and the JWK's `alg`, when it names one). */
function importParams(key: KeyObject, alg: string | undefined): RsaHashedImportParams | EcKeyImportParams | Algorithm {
  switch (key.asymmetricKeyType) {
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      const namedCurve =
        curve === 'prime256v1'
          ? 'P-256'
          : curve === 'secp384r1'
            ? 'P-384'
            : curve === 'secp521r1'
              ? 'P-521'
              : undefined;
      if (!namedCurve) throw unusable(`is on an unsupported curve (${curve ?? 'unknown'})`);
      return { name: 'ECDSA', namedCurve };
    }
    case 'rsa': {
      const pss = alg?.startsWith('PS') === true;
      const bits = alg?.slice(2) === '384' ? 'SHA-384' : alg?.slice(2) === '512' ? 'SHA-512' : 'SHA-256';
      return { name: pss ? 'RSA-PSS' : 'RSASSA-PKCS1-v1_5', hash: bits };
    }
    case 'rsa-pss':
      return { name: 'RSA-PSS', hash: 'SHA-256' };
    case 'ed25519':
      return { name: 'Ed25519' };
    default:
      throw unusable(`has an unsupported type (${key.asymmetricKeyType ?? 'unknown'})`);
  }
}

/** The signing key in `text` (PEM or JWK), as a non-extractable CryptoKey. */
export async function importClientSigningKey(text: string): Promise<ClientSigningKey> {
  const jwk = parseJwk(text);
  let keyObject: KeyObject;
  try {
    keyObject = jwk ? createPrivateKey({ key: jwk, format: 'jwk' }) : createPrivateKey({ key: text, format: 'pem' });
  } catch {
    throw unusable(jwk ? 'is not a private JSON Web Key' : 'is not a PEM private key');
  }
  const params = importParams(keyObject, jwk?.alg);
  const der = keyObject.export({ format: 'der', type: 'pkcs8' });
  const key = await webcrypto.subtle.importKey('pkcs8', der, params, false, ['sign']);
  return { key: key as CryptoKey, ...(typeof jwk?.kid === 'string' ? { kid: jwk.kid } : {}) };
}

/** RFC 7523 section 2.2 client authentication with `signingKey`: client_assertion and its type in the body. */
export function privateKeyJwt(signingKey: ClientSigningKey): ClientAuth {
  return PrivateKeyJwt(signingKey.kid === undefined ? signingKey.key : { key: signingKey.key, kid: signingKey.kid });
}
