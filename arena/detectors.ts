/**
 * The arena's audit detectors: what a strict IdP's log would flag, judged from the authorization
 * server's own audit (arena/testbed/audit.ts), never from the clients' logs.
 *
 *   - malformed authorize requests, from the raw query: unknown or misspelled parameter names,
 *     duplicated parameters, a code_challenge that is not 43 base64url chars, a method other than
 *     S256, a redirect_uri that differs from the client's registered one (RFC 8252 section 7.3:
 *     the port of a loopback redirect may differ) or has no port on loopback, a resource that is
 *     not one of the published PRM resources (e.g. a space in the host) or is missing, a missing
 *     scope where one is required, a response_type other than `code`, a missing client_id;
 *   - cross-client redemption: a code or refresh token presented by a client other than the one
 *     it was issued to (by token fingerprint: the audit's `*.saved` events say who each token was
 *     issued to), or any token-endpoint error whose `error_detail` is oidc-provider's
 *     `client mismatch`;
 *   - refresh-token reuse (`grant.error` with `refresh token already used`) and the grant
 *     revocations (`grant.revoked`), each attributed to the reuse that caused it when the
 *     revocation happened during the same request.
 *
 * For: the arena's report and its tests. Not for: deciding anything at run time.
 */
import {
  type AuditEntry,
  CLIENT_MISMATCH_DETAIL,
  CODE_REUSE_DETAIL,
  type EventAuditEntry,
  type HttpAuditEntry,
  REFRESH_REUSE_DETAIL,
} from './testbed/audit.js';

/** Authorization request parameters of RFC 6749, 7636, 8707, 9101, 9126, 9396, 9449 and OIDC Core. */
export const KNOWN_AUTHORIZE_PARAMETERS: ReadonlySet<string> = new Set([
  'response_type',
  'client_id',
  'redirect_uri',
  'scope',
  'state',
  'code_challenge',
  'code_challenge_method',
  'resource',
  'nonce',
  'prompt',
  'response_mode',
  'login_hint',
  'max_age',
  'ui_locales',
  'claims_locales',
  'id_token_hint',
  'acr_values',
  'display',
  'claims',
  'request',
  'request_uri',
  'registration',
  'authorization_details',
  'dpop_jkt',
]);

export type MalformedProblem =
  | 'unknown_parameter'
  | 'duplicate_parameter'
  | 'response_type_invalid'
  | 'client_id_missing'
  | 'code_challenge_missing'
  | 'code_challenge_invalid'
  | 'code_challenge_method_missing'
  | 'code_challenge_method_invalid'
  | 'redirect_uri_missing'
  | 'redirect_uri_invalid'
  | 'redirect_uri_no_port'
  | 'redirect_uri_mismatch'
  | 'resource_missing'
  | 'resource_mismatch'
  | 'scope_missing';

export interface Problem {
  problem: MalformedProblem;
  /** Human-readable, with the offending name or value (never a secret: those are redacted upstream). */
  detail: string;
}

export interface MalformedFinding {
  kind: 'malformed_authorize';
  seq: number;
  time: number;
  clientId?: string;
  resources: string[];
  problems: Problem[];
}

export interface CrossClientFinding {
  kind: 'cross_client';
  seq: number;
  time: number;
  grantType: 'authorization_code' | 'refresh_token' | string;
  /** The client that presented the token. */
  presentedBy?: string;
  /** The client it was issued to, when the fingerprint is known. */
  issuedTo?: string;
  /** oidc-provider's error_detail for the request, if it raised one. */
  errorDetail?: string;
  resources: string[];
}

export interface ReuseFinding {
  kind: 'refresh_reuse' | 'code_reuse';
  seq: number;
  time: number;
  clientId?: string;
  grantId?: string;
  resources: string[];
  /** seq of the token request during which it happened. */
  requestSeq?: number;
}

export interface RevocationFinding {
  kind: 'revoked_grant';
  seq: number;
  time: number;
  clientId?: string;
  grantId?: string;
  resources: string[];
  /** Why: the reuse of a rotated refresh token, or anything else (e.g. explicit revocation). */
  cause: 'refresh_reuse' | 'code_reuse' | 'other';
}

export interface Findings {
  malformed: MalformedFinding[];
  crossClient: CrossClientFinding[];
  refreshReuses: ReuseFinding[];
  codeReuses: ReuseFinding[];
  revokedGrants: RevocationFinding[];
}

export interface DetectorContext {
  /** The `resource` each MCP server publishes in its PRM. Empty: resource values are not checked. */
  publishedResources: readonly string[];
  /** A scope is required on every authorize request (default true: every arena server names one). */
  scopeRequired?: boolean;
  /** Registered redirect URIs of clients not registered through the audited DCR (static clients). */
  registeredRedirectUris?: Readonly<Record<string, readonly string[]>>;
}

const BASE64URL_43 = /^[A-Za-z0-9_-]{43}$/;
const LOOPBACK_HOSTS = new Set(['127.0.0.1', '[::1]', 'localhost']);
const FINGERPRINT = /sha256:[0-9a-f]{12}/;

/** Run every detector over one AS's audit entries. */
export function detect(entries: readonly AuditEntry[], context: DetectorContext): Findings {
  const http = entries.filter((e): e is HttpAuditEntry => e.kind === 'http').sort((a, b) => a.seq - b.seq);
  const events = entries.filter((e): e is EventAuditEntry => e.kind === 'event').sort((a, b) => a.seq - b.seq);
  const registered = registeredRedirectUris(http, context.registeredRedirectUris ?? {});
  return {
    malformed: http
      .filter(isAuthorizeRequest)
      .map((entry) => malformedFinding(entry, registered, context))
      .filter((f): f is MalformedFinding => f !== undefined),
    crossClient: crossClientFindings(http, events),
    ...reuseFindings(events, http),
  };
}

/** Merge the findings of several authorization servers (e.g. the root and the tenant issuer). */
export function mergeFindings(all: readonly Findings[]): Findings {
  const byTime = <T extends { time: number }>(list: T[]): T[] => list.sort((a, b) => a.time - b.time);
  return {
    malformed: byTime(all.flatMap((f) => f.malformed)),
    crossClient: byTime(all.flatMap((f) => f.crossClient)),
    refreshReuses: byTime(all.flatMap((f) => f.refreshReuses)),
    codeReuses: byTime(all.flatMap((f) => f.codeReuses)),
    revokedGrants: byTime(all.flatMap((f) => f.revokedGrants)),
  };
}

function isAuthorizeRequest(entry: HttpAuditEntry): boolean {
  return entry.endpoint === 'authorization';
}

/** client_id -> redirect_uris, from successful registration requests (JSON bodies). */
function registeredRedirectUris(
  http: HttpAuditEntry[],
  statics: Readonly<Record<string, readonly string[]>>,
): Map<string, string[]> {
  const map = new Map<string, string[]>(Object.entries(statics).map(([id, uris]) => [id, [...uris]]));
  for (const entry of http) {
    if (entry.endpoint !== 'registration' || entry.method !== 'POST' || entry.status !== 201 || !entry.clientId)
      continue;
    const raw = entry.body?.redirect_uris?.[0];
    if (raw === undefined) continue;
    try {
      const parsed = JSON.parse(raw) as unknown;
      if (Array.isArray(parsed))
        map.set(
          entry.clientId,
          parsed.filter((u): u is string => typeof u === 'string'),
        );
    } catch {
      map.set(entry.clientId, [raw]);
    }
  }
  return map;
}

/** The problems of one authorize request, or undefined when it is well-formed. */
export function authorizeProblems(
  entry: Pick<HttpAuditEntry, 'queryNames' | 'query' | 'clientId'>,
  registered: ReadonlyMap<string, readonly string[]>,
  context: DetectorContext,
): Problem[] {
  const problems: Problem[] = [];
  const add = (problem: MalformedProblem, detail: string): void => {
    problems.push({ problem, detail });
  };
  const seen = new Set<string>();
  for (const name of entry.queryNames) {
    if (seen.has(name)) add('duplicate_parameter', `parameter ${JSON.stringify(name)} appears more than once`);
    seen.add(name);
    if (!KNOWN_AUTHORIZE_PARAMETERS.has(name)) {
      const near = nearestKnownParameter(name);
      add(
        'unknown_parameter',
        near
          ? `unknown parameter ${JSON.stringify(name)} (misspelled ${near}?)`
          : `unknown parameter ${JSON.stringify(name)}`,
      );
    }
  }
  const one = (name: string): string | undefined => entry.query[name]?.[0];

  const responseType = one('response_type');
  if (responseType !== 'code')
    add('response_type_invalid', `response_type=${JSON.stringify(responseType ?? null)} (must be code)`);
  const clientId = one('client_id');
  if (!clientId) add('client_id_missing', 'client_id is missing');

  const challenge = one('code_challenge');
  if (challenge === undefined || challenge === '') add('code_challenge_missing', 'code_challenge is missing');
  else if (!BASE64URL_43.test(challenge)) {
    add(
      'code_challenge_invalid',
      `code_challenge is ${challenge.length} chars${/^[A-Za-z0-9_-]*$/.test(challenge) ? '' : ' with non-base64url characters'} (an S256 challenge is 43 base64url chars)`,
    );
  }
  const method = one('code_challenge_method');
  if (method === undefined) add('code_challenge_method_missing', 'code_challenge_method is missing (S256 required)');
  else if (method !== 'S256')
    add('code_challenge_method_invalid', `code_challenge_method=${JSON.stringify(method)} (must be S256)`);

  const redirectUri = one('redirect_uri');
  if (redirectUri === undefined) add('redirect_uri_missing', 'redirect_uri is missing');
  else redirectProblems(redirectUri, clientId ? registered.get(clientId) : undefined, add);

  const resources = entry.query.resource ?? [];
  if (resources.length === 0) add('resource_missing', 'resource is missing (MCP requires RFC 8707 resource)');
  else if (context.publishedResources.length > 0) {
    for (const resource of resources) {
      if (!context.publishedResources.includes(resource)) {
        add('resource_mismatch', `resource ${JSON.stringify(resource)} is not a published PRM resource`);
      }
    }
  }

  const scope = one('scope');
  if ((context.scopeRequired ?? true) && (scope === undefined || scope.trim() === ''))
    add('scope_missing', 'scope is missing');
  return problems;
}

function redirectProblems(
  value: string,
  registeredUris: readonly string[] | undefined,
  add: (problem: MalformedProblem, detail: string) => void,
): void {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    add('redirect_uri_invalid', `redirect_uri ${JSON.stringify(value)} is not a URL`);
    return;
  }
  const loopback = url.protocol === 'http:' && LOOPBACK_HOSTS.has(url.hostname);
  if (loopback && !/^http:\/\/[^/]*:\d+(\/|$)/.test(value)) {
    add('redirect_uri_no_port', `loopback redirect_uri ${JSON.stringify(value)} has no port`);
  }
  if (registeredUris === undefined) return;
  const matches = registeredUris.some((registered) => redirectMatches(value, url, registered));
  if (!matches) {
    add(
      'redirect_uri_mismatch',
      `redirect_uri ${JSON.stringify(value)} differs from the registered ${JSON.stringify(registeredUris.join(' '))}`,
    );
  }
}

/** Exact match, or RFC 8252 section 7.3: loopback redirect URIs match in everything but the port. */
function redirectMatches(value: string, url: URL, registered: string): boolean {
  if (value === registered) return true;
  let reg: URL;
  try {
    reg = new URL(registered);
  } catch {
    return false;
  }
  if (!(reg.protocol === 'http:' && LOOPBACK_HOSTS.has(reg.hostname))) return false;
  return (
    url.protocol === reg.protocol &&
    url.hostname === reg.hostname &&
    url.pathname === reg.pathname &&
    url.search === reg.search
  );
}

/** A known parameter the unknown name is probably a misspelling of. */
export function nearestKnownParameter(name: string): string | undefined {
  const squash = (s: string): string => s.toLowerCase().replace(/[^a-z]/g, '');
  const target = squash(name);
  let best: { known: string; distance: number } | undefined;
  for (const known of KNOWN_AUTHORIZE_PARAMETERS) {
    const k = squash(known);
    const distance =
      target.includes(k) && k.length >= 5 ? Math.abs(target.length - k.length) / 10 : levenshtein(target, k);
    if (
      best === undefined ||
      distance < best.distance ||
      (distance === best.distance && known.length > best.known.length)
    ) {
      best = { known, distance };
    }
  }
  if (!best) return undefined;
  const limit = Math.max(2, Math.floor(best.known.length / 4));
  return best.distance <= limit ? best.known : undefined;
}

function levenshtein(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0] as number;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j] as number;
      row[j] = Math.min((row[j] as number) + 1, (row[j - 1] as number) + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length] as number;
}

function malformedFinding(
  entry: HttpAuditEntry,
  registered: ReadonlyMap<string, readonly string[]>,
  context: DetectorContext,
): MalformedFinding | undefined {
  const problems = authorizeProblems(entry, registered, context);
  if (problems.length === 0) return undefined;
  return {
    kind: 'malformed_authorize',
    seq: entry.seq,
    time: entry.time,
    ...(entry.clientId !== undefined ? { clientId: entry.clientId } : {}),
    resources: [...entry.resources],
    problems,
  };
}

/** The `sha256:<hex>` fingerprint of a redacted parameter value. */
function presentedFingerprint(entry: HttpAuditEntry, name: string): string | undefined {
  const value = entry.body?.[name]?.[0];
  return value ? FINGERPRINT.exec(value)?.[0] : undefined;
}

function crossClientFindings(http: HttpAuditEntry[], events: EventAuditEntry[]): CrossClientFinding[] {
  /** token fingerprint -> the client it was issued to, and its resources */
  const issuedTo = new Map<string, { clientId: string; resources: string[] }>();
  for (const event of events) {
    if (
      (event.event === 'authorization_code.saved' || event.event === 'refresh_token.saved') &&
      event.tokenFingerprint &&
      event.clientId
    ) {
      if (!issuedTo.has(event.tokenFingerprint))
        issuedTo.set(event.tokenFingerprint, { clientId: event.clientId, resources: event.resources });
    }
  }
  const findings: CrossClientFinding[] = [];
  for (const entry of http) {
    if (entry.endpoint !== 'token') continue;
    const param =
      entry.grantType === 'refresh_token'
        ? 'refresh_token'
        : entry.grantType === 'authorization_code'
          ? 'code'
          : undefined;
    const fp = param ? presentedFingerprint(entry, param) : undefined;
    const issued = fp ? issuedTo.get(fp) : undefined;
    const owner = issued?.clientId;
    const byFingerprint = owner !== undefined && entry.clientId !== undefined && owner !== entry.clientId;
    const byDetail = entry.errorDetail === CLIENT_MISMATCH_DETAIL;
    if (!byFingerprint && !byDetail) continue;
    findings.push({
      kind: 'cross_client',
      seq: entry.seq,
      time: entry.time,
      grantType: entry.grantType ?? 'unknown',
      ...(entry.clientId !== undefined ? { presentedBy: entry.clientId } : {}),
      ...(owner !== undefined ? { issuedTo: owner } : {}),
      ...(entry.errorDetail !== undefined ? { errorDetail: entry.errorDetail } : {}),
      resources: entry.resources.length ? [...entry.resources] : [...(issued?.resources ?? [])],
    });
  }
  return findings;
}

function reuseFindings(
  events: EventAuditEntry[],
  http: HttpAuditEntry[],
): Pick<Findings, 'refreshReuses' | 'codeReuses' | 'revokedGrants'> {
  const requests = new Map(http.map((e) => [e.seq, e]));
  const resourcesOf = (event: EventAuditEntry): string[] =>
    event.resources.length
      ? [...event.resources]
      : [...(event.requestSeq !== undefined ? (requests.get(event.requestSeq)?.resources ?? []) : [])];
  const reuse =
    (kind: ReuseFinding['kind']) =>
    (event: EventAuditEntry): ReuseFinding => ({
      kind,
      seq: event.seq,
      time: event.time,
      ...(event.clientId !== undefined ? { clientId: event.clientId } : {}),
      ...(event.grantId !== undefined ? { grantId: event.grantId } : {}),
      resources: resourcesOf(event),
      ...(event.requestSeq !== undefined ? { requestSeq: event.requestSeq } : {}),
    });
  const grantErrors = events.filter((e) => e.event === 'grant.error');
  const refreshReuses = grantErrors.filter((e) => e.errorDetail === REFRESH_REUSE_DETAIL).map(reuse('refresh_reuse'));
  const codeReuses = grantErrors.filter((e) => e.errorDetail === CODE_REUSE_DETAIL).map(reuse('code_reuse'));
  const causeByRequest = new Map<number, RevocationFinding['cause']>();
  for (const r of refreshReuses) if (r.requestSeq !== undefined) causeByRequest.set(r.requestSeq, 'refresh_reuse');
  for (const r of codeReuses)
    if (r.requestSeq !== undefined && !causeByRequest.has(r.requestSeq)) causeByRequest.set(r.requestSeq, 'code_reuse');
  const revokedGrants = events
    .filter((e) => e.event === 'grant.revoked')
    .map(
      (event): RevocationFinding => ({
        kind: 'revoked_grant',
        seq: event.seq,
        time: event.time,
        ...(event.clientId !== undefined ? { clientId: event.clientId } : {}),
        ...(event.grantId !== undefined ? { grantId: event.grantId } : {}),
        resources: resourcesOf(event),
        cause: (event.requestSeq !== undefined ? causeByRequest.get(event.requestSeq) : undefined) ?? 'other',
      }),
    );
  return { refreshReuses, codeReuses, revokedGrants };
}
