/**
 * stamp-tokens: the one way a token response becomes stored `Tokens`: stamped with the client_id
 * and issuer of the registration it was issued to (docs/DESIGN.md invariants 2 and 5), its expiry
 * counted from when the request was sent (refresh-policy.ts), and, on a refresh, the old refresh
 * token kept when the response carries none (many authorization servers omit it).
 *
 * Not for: deciding when to refresh (token-manager.ts) or writing the record (store/).
 */
import type { TokenSet } from '../oauth/token-endpoint.js';
import type { Registration } from '../oauth/types.js';
import type { Tokens } from '../store/record.js';
import { accessTokenExpiresAt } from './refresh-policy.js';

export interface StampContext {
  /** The registration the token request was made with; its client_id and issuer go on the tokens. */
  registration: Pick<Registration, 'clientId' | 'issuer'>;
  /** When the token request was sent (epoch ms): the tokens are dated from it. */
  sentAt: number;
  /**
   * When the response arrived: a JWT `exp` before it is not believed (refresh-policy.ts), and it
   * dates a refresh token that rotated on a refresh. Default `sentAt`.
   */
  receivedAt?: number;
  /** The tokens a refresh replaces: their refresh token (and its date) stay when none came back. */
  previous?: Tokens;
  /** Recorded when the response omits `scope` (RFC 6749 section 5.1: the scope asked for was granted). */
  requestedScope?: string | undefined;
}

export function stampTokens(response: TokenSet, ctx: StampContext): Tokens {
  const { previous, registration, sentAt } = ctx;
  const rotated = response.refreshToken !== undefined && response.refreshToken !== previous?.refreshToken;
  const refreshToken = response.refreshToken ?? previous?.refreshToken;
  const refreshTokenObtainedAt = rotated
    ? (ctx.receivedAt ?? sentAt)
    : previous?.refreshToken !== undefined
      ? (previous.refreshTokenObtainedAt ?? previous.obtainedAt)
      : undefined;
  const scope = response.scope ?? ctx.requestedScope;
  return {
    accessToken: response.accessToken,
    tokenType: response.tokenType,
    ...(response.expiresIn !== undefined
      ? { expiresAt: accessTokenExpiresAt(sentAt, response.expiresIn, response.accessToken, ctx.receivedAt ?? sentAt) }
      : {}),
    obtainedAt: sentAt,
    ...(refreshToken !== undefined ? { refreshToken } : {}),
    ...(refreshToken !== undefined && refreshTokenObtainedAt !== undefined ? { refreshTokenObtainedAt } : {}),
    ...(scope ? { scope } : {}),
    clientId: registration.clientId,
    issuer: registration.issuer,
  };
}
