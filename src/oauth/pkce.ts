/**
 * pkce: creates one PKCE pair (RFC 7636) for one authorization request. S256 only (OAuth 2.1,
 * docs/DESIGN.md invariant 1); each call returns a fresh value that belongs to exactly one
 * login, so there is no shared verifier slot (invariant 8).
 *
 * Not for: putting the challenge in the authorize URL (see authorize-url.ts) or sending the
 * verifier to the token endpoint (see the code exchange). The verifier is a secret: never log it
 * or put it in an error message.
 */
import { calculatePKCECodeChallenge, generateRandomCodeVerifier } from 'oauth4webapi';
import { AuthkeepError } from '../errors.js';

export interface PkcePair {
  readonly verifier: string;
  readonly challenge: string;
  readonly method: 'S256';
}

/** code-verifier = 43*128unreserved (RFC 7636 section 4.1). */
const CODE_VERIFIER = /^[A-Za-z0-9\-._~]{43,128}$/;
/** BASE64URL(SHA256(verifier)) without padding is always 43 characters (RFC 7636 section 4.2). */
const S256_CODE_CHALLENGE = /^[A-Za-z0-9_-]{43}$/;

/**
 * Creates a code verifier (RFC 7636 section 4.1) and its S256 code challenge (section 4.2), and
 * checks both shapes before returning them.
 */
export async function createPkcePair(): Promise<PkcePair> {
  const verifier = generateRandomCodeVerifier();
  assertCodeVerifier(verifier);
  const challenge = await calculatePKCECodeChallenge(verifier);
  assertS256CodeChallenge(challenge);
  return Object.freeze({ verifier, challenge, method: 'S256' as const });
}

/** RFC 7636 section 4.1: 43 to 128 characters from the unreserved set. The message never shows the value. */
export function assertCodeVerifier(verifier: string): void {
  if (!CODE_VERIFIER.test(verifier)) {
    throw new AuthkeepError(
      'invalid_argument',
      `code_verifier must be 43-128 unreserved characters (got ${verifier.length} characters)`,
      {
        field: 'code_verifier',
        detail: { length: verifier.length },
      },
    );
  }
}

/** RFC 7636 section 4.2: an S256 code_challenge is exactly 43 base64url characters. */
export function assertS256CodeChallenge(challenge: string): void {
  if (!S256_CODE_CHALLENGE.test(challenge)) {
    throw new AuthkeepError(
      'invalid_argument',
      `S256 code_challenge must be 43 base64url characters (got ${challenge.length} characters)`,
      {
        field: 'code_challenge',
        detail: { length: challenge.length },
      },
    );
  }
}

/** Whether `value` has the shape of an S256 code_challenge (RFC 7636 section 4.2). */
export function isS256CodeChallenge(value: string): boolean {
  return S256_CODE_CHALLENGE.test(value);
}
