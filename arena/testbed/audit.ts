/**
 * The authorization server's own audit log: every HTTP request it received (parameter names in
 * order, values with secrets redacted) and the oidc-provider events it emitted, plus counters.
 *
 * For: tests and the arena, which judge clients by what the AS itself saw (reuse, revoked grants,
 * invalid_grant, authorize/token/registration counts), not by the clients' own logs. Secret values
 * (codes, verifiers, tokens, client secrets, assertions, Authorization headers) are never stored;
 * they are replaced by `[redacted sha256:<12 hex>]`, a truncated hash, so two requests presenting
 * the same token can still be correlated (e.g. for cross-client detection) without the value.
 *
 * Not for: detecting malformed requests or cross-client redemption (the arena's detectors read
 * these entries); wiring to oidc-provider (authorization-server.ts does that).
 */
import { createHash } from 'node:crypto';

import type { AuditedFault } from './token-faults.js';

/** Parameter names whose values are secrets and are never stored. */
export const SECRET_PARAMETERS: ReadonlySet<string> = new Set([
  'code',
  'code_verifier',
  'device_code',
  'refresh_token',
  'access_token',
  'id_token',
  'id_token_hint',
  'client_secret',
  'client_assertion',
  'token',
  'assertion',
  'subject_token',
  'actor_token',
  'registration_access_token',
  'password',
]);

/** Values by parameter name, in arrival order (duplicated names keep every value). */
export type AuditParams = Record<string, string[]>;

/** The AS endpoint a request addressed, by its path. */
export type AsEndpoint =
  | 'authorization'
  | 'resume'
  | 'token'
  | 'registration'
  | 'revocation'
  | 'discovery'
  | 'jwks'
  | 'interaction'
  | 'other';

export interface HttpAuditEntry {
  kind: 'http';
  /** Order of arrival across all entries of this AS. */
  seq: number;
  /** Epoch ms when the request arrived. */
  time: number;
  method: string;
  /** Path as received (before any mount stripping), without the query. */
  path: string;
  endpoint: AsEndpoint;
  /** Raw query parameter names in order, duplicates included (misspellings show here). */
  queryNames: string[];
  query: AuditParams;
  /** Raw body parameter names (form or top-level JSON keys), when the body was parsed. */
  bodyNames?: string[];
  body?: AuditParams;
  /** client_id presented: from HTTP Basic, else the body, else the query. */
  clientId?: string;
  /** How the client authenticated at the token/revocation endpoint. */
  clientAuth?: 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt' | 'none';
  grantType?: string;
  /** Resource indicators: requested, or for a refresh without one, the refresh token's. */
  resources: string[];
  /** HTTP status of the response (set when it finished). */
  status?: number;
  /** Error code of an OAuth error response, when the provider raised one. */
  error?: string;
  /** oidc-provider's private error_detail for that error. */
  errorDetail?: string;
  /** Names of provider events emitted while this request was handled. */
  events: string[];
  /** Epoch ms when the AS's answer was complete (for a fault after processing: when the layer took it). */
  answeredAt?: number;
  /** The `x-testbed-sender` request header: which test process sent it (the arena's sessions send their pid). */
  sender?: string;
  /**
   * A fault the token endpoint's fault layer put in place of the answer (token-faults.ts); then
   * `status` is what the client got (0: nothing) and `fault.asStatus` what the AS answered, if it
   * processed the request.
   */
  fault?: AuditedFault;
}

export interface EventAuditEntry {
  kind: 'event';
  seq: number;
  time: number;
  /** oidc-provider event name, e.g. `grant.error`, `grant.revoked`, `refresh_token.consumed`. */
  event: string;
  /** seq of the HTTP request during which it was emitted, if any. */
  requestSeq?: number;
  /** The client whose request caused it (or that the token belongs to). */
  clientId?: string;
  grantId?: string;
  resources: string[];
  scope?: string;
  error?: string;
  errorDescription?: string;
  /** oidc-provider's private reason, e.g. `refresh token already used`, `client mismatch`. */
  errorDetail?: string;
  /** For token saves/consumes: the truncated hash of the token value (see file comment). */
  tokenFingerprint?: string;
}

export type AuditEntry = HttpAuditEntry | EventAuditEntry;

export interface AuditCounts {
  /** Requests to the authorization endpoint (resumes after login/consent not counted). */
  authorizationRequests: number;
  /** Token requests with grant_type=authorization_code (any outcome). */
  codeExchanges: number;
  /** Token requests with grant_type=refresh_token (any outcome). */
  refreshGrants: number;
  /** Token requests with grant_type=client_credentials (any outcome). */
  clientCredentialsGrants: number;
  /** Token requests with the RFC 7523 jwt-bearer grant_type (any outcome). */
  jwtBearerGrants: number;
  /** grant.error whose error_detail is `refresh token already used` (reuse of a rotated token). */
  refreshReuses: number;
  /** grant.error whose error_detail is `authorization code already consumed`. */
  codeReuses: number;
  /** grant.revoked events (reuse detection, revocation of a refresh token, ...). */
  revokedGrants: number;
  /** grant.error events with error invalid_grant. */
  invalidGrants: number;
  /** grant.error events with error_detail `client mismatch` (code/refresh token of another client). */
  clientMismatches: number;
  /** Successful dynamic registrations (registration_create.success). */
  registrations: number;
  /** Revocation requests answered 200. */
  revocations: number;
  /** server_error events. */
  serverErrors: number;
}

export interface AuditFilter {
  clientId?: string;
  resource?: string;
}

/** Error detail oidc-provider 9 gives a reused (already rotated) refresh token. */
export const REFRESH_REUSE_DETAIL = 'refresh token already used';
/** Error detail oidc-provider 9 gives a reused authorization code. */
export const CODE_REUSE_DETAIL = 'authorization code already consumed';
/** Error detail oidc-provider 9 gives a code/refresh token/grant presented by another client. */
export const CLIENT_MISMATCH_DETAIL = 'client mismatch';

/** A non-reversible stand-in for a secret value: `[redacted sha256:<12 hex>]`. */
export function redact(value: string): string {
  return `[redacted ${fingerprint(value)}]`;
}

/** `sha256:<first 12 hex chars>` of a value; enough to correlate, useless to replay. */
export function fingerprint(value: string): string {
  return `sha256:${createHash('sha256').update(value).digest('hex').slice(0, 12)}`;
}

/** Redact a list of [name, value] pairs into AuditParams. */
export function toAuditParams(pairs: Iterable<[string, string]>): { names: string[]; params: AuditParams } {
  const names: string[] = [];
  const params: AuditParams = {};
  for (const [name, value] of pairs) {
    names.push(name);
    const safe = SECRET_PARAMETERS.has(name.toLowerCase()) ? redact(value) : value;
    const list = params[name] ?? [];
    list.push(safe);
    params[name] = list;
  }
  return { names, params };
}

/**
 * Flatten a parsed body into [name, value] pairs: a form's repeated name gives one pair per value;
 * a JSON member gives one pair (non-strings JSON-encoded).
 */
export function bodyPairs(body: unknown, json = false): Array<[string, string]> {
  if (!body || typeof body !== 'object' || Array.isArray(body)) return [];
  const pairs: Array<[string, string]> = [];
  for (const [name, value] of Object.entries(body as Record<string, unknown>)) {
    if (!json && Array.isArray(value) && value.every((v) => typeof v === 'string')) {
      for (const v of value as string[]) pairs.push([name, v]);
    } else {
      pairs.push([name, typeof value === 'string' ? value : JSON.stringify(value)]);
    }
  }
  return pairs;
}

export class AuditLog {
  private readonly list: AuditEntry[] = [];
  private nextSeq = 1;

  constructor(private readonly sink?: (entry: AuditEntry) => void) {}

  /** A new sequence number (HTTP entries take theirs on arrival, are recorded on completion). */
  seq(): number {
    return this.nextSeq++;
  }

  record(entry: AuditEntry): void {
    this.list.push(entry);
    if (this.sink) {
      try {
        this.sink(entry);
      } catch {
        // a failing sink must not break the AS
      }
    }
  }

  /** Every entry so far, in recording order (HTTP entries are recorded when their response ends). */
  entries(): readonly AuditEntry[] {
    return this.list;
  }

  http(): HttpAuditEntry[] {
    return this.list.filter((e): e is HttpAuditEntry => e.kind === 'http');
  }

  events(name?: string): EventAuditEntry[] {
    return this.list.filter(
      (e): e is EventAuditEntry => e.kind === 'event' && (name === undefined || e.event === name),
    );
  }

  /** Counters over all entries, or over one client and/or one resource. */
  counts(filter: AuditFilter = {}): AuditCounts {
    const match = (e: { clientId?: string; resources: string[] }): boolean =>
      (filter.clientId === undefined || e.clientId === filter.clientId) &&
      (filter.resource === undefined || e.resources.includes(filter.resource));
    const http = this.http().filter(match);
    const events = this.events().filter(match);
    const grantErrors = events.filter((e) => e.event === 'grant.error');
    return {
      authorizationRequests: http.filter((e) => e.endpoint === 'authorization').length,
      codeExchanges: http.filter((e) => e.endpoint === 'token' && e.grantType === 'authorization_code').length,
      refreshGrants: http.filter((e) => e.endpoint === 'token' && e.grantType === 'refresh_token').length,
      clientCredentialsGrants: http.filter((e) => e.endpoint === 'token' && e.grantType === 'client_credentials')
        .length,
      jwtBearerGrants: http.filter(
        (e) => e.endpoint === 'token' && e.grantType === 'urn:ietf:params:oauth:grant-type:jwt-bearer',
      ).length,
      refreshReuses: grantErrors.filter((e) => e.errorDetail === REFRESH_REUSE_DETAIL).length,
      codeReuses: grantErrors.filter((e) => e.errorDetail === CODE_REUSE_DETAIL).length,
      revokedGrants: events.filter((e) => e.event === 'grant.revoked').length,
      invalidGrants: grantErrors.filter((e) => e.error === 'invalid_grant').length,
      clientMismatches: grantErrors.filter((e) => e.errorDetail === CLIENT_MISMATCH_DETAIL).length,
      registrations: events.filter((e) => e.event === 'registration_create.success').length,
      revocations: http.filter((e) => e.endpoint === 'revocation' && e.status === 200).length,
      serverErrors: events.filter((e) => e.event === 'server_error').length,
    };
  }

  /** Forget everything recorded so far (e.g. between arena phases). */
  clear(): void {
    this.list.length = 0;
  }
}
