/**
 * drift: tokens whose client_id or issuer differ from the record's registration are never sent
 * (docs/DESIGN.md invariant 5). This is the check that turns the field report's "refresh token
 * presented with another registration's client_id" into a local needs-auth with reason `drift`,
 * before any request reaches the authorization server.
 *
 * Tokens bound to a DPoP key (RFC 9449) the record does not hold are drift too.
 *
 * Not for: detecting that the server moved to another authorization server (session-keeper.ts,
 * needs-auth `issuer_changed`).
 */
import type { ServerRecord } from '../store/record.js';

export interface Drift {
  field: 'tokens.clientId' | 'tokens.issuer' | 'registration.issuer' | 'dpop';
  /** Non-secret description: client ids and issuers are public identifiers. */
  description: string;
}

export function detectDrift(record: ServerRecord): Drift | undefined {
  const { registration, tokens, authorizationServer } = record;
  if (registration.issuer !== authorizationServer.issuer) {
    return {
      field: 'registration.issuer',
      description: `registration belongs to ${registration.issuer}, server uses ${authorizationServer.issuer}`,
    };
  }
  if (!tokens) return undefined;
  if (tokens.clientId !== registration.clientId) {
    return {
      field: 'tokens.clientId',
      description: `tokens were issued to client ${tokens.clientId}, record is registered as ${registration.clientId}`,
    };
  }
  if (tokens.issuer !== registration.issuer) {
    return {
      field: 'tokens.issuer',
      description: `tokens were issued by ${tokens.issuer}, registration is at ${registration.issuer}`,
    };
  }
  if (tokens.tokenType === 'DPoP' && record.dpop === undefined) {
    // RFC 9449: a DPoP-bound token is useless, and its refresh refused, without its key.
    return { field: 'dpop', description: 'the tokens are DPoP-bound and the record holds no key for them' };
  }
  return undefined;
}
