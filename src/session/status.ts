/**
 * status: what `keeper.status()` and `authkeep status` report for a server, derived from its
 * record alone (no network, no secrets): issuer, client_id, how it registered, token expiry and
 * age, last refresh, and state: ok, or needs-auth with its reason and what to do.
 *
 * Not for: checks that need the network or the file system's modes (cli doctor).
 */
import { displayText } from '../display-text.js';
import { displayNeedsAuthInfo, type EnterpriseStep, type NeedsAuthReason } from '../errors.js';
import type { MachineGrantType, SecretSource } from '../oauth/grants.js';
import type { QuarantinedRecord } from '../store/credential-store.js';
import type { ServerRecord } from '../store/record.js';
import { detectDrift } from './drift.js';
import { describeGrant, machineLoginFlags } from './machine-grant.js';
import { isUnexpired } from './refresh-policy.js';

export interface ServerStatus {
  serverUrl: string;
  state: 'ok' | 'needs-auth';
  issuer?: string;
  clientId?: string;
  registration?: ServerRecord['registration']['method'];
  scope?: string;
  accessTokenExpiresAt?: string;
  accessTokenValid?: boolean;
  hasRefreshToken?: boolean;
  refreshTokenAgeSeconds?: number;
  lastRefreshAt?: string;
  generation?: number;
  /**
   * A machine grant (no person signs in): its type, how the client authenticates and where each
   * secret is read from (a variable's name, a file's path), e.g. `client credentials
   * (client_secret_basic, secret from environment variable CI_SECRET)`. Never a secret.
   */
  grant?: {
    type: MachineGrantType;
    description: string;
    /** Where each secret of the next request is read (`authkeep doctor` checks they are readable here). */
    sources: Array<{
      what: 'clientSecret' | 'privateKey' | 'assertion' | 'idToken' | 'idpClientSecret';
      from: SecretSource;
    }>;
  };
  /**
   * This record is an enterprise IdP session (SEP-990, session/idp-session.ts), keyed by the IdP's
   * issuer: whose ID token it holds, until when, and whether it can be renewed at the IdP (a
   * refresh token is stored). Every server whose grant names this IdP without an ID token source
   * exchanges this ID token. Never the token.
   */
  idpSession?: {
    subject: string;
    idTokenExpiresAt: string;
    idTokenValid: boolean;
    renewable: boolean;
  };
  needsAuth?: {
    reason: NeedsAuthReason;
    error?: string;
    errorDescription?: string;
    at: string;
    request?: string;
    /** Enterprise-managed authorization: the step that failed. */
    step?: EnterpriseStep;
    fix: string;
  };
  /**
   * The stored record could not be read: where it is, what is wrong with it, and when it was
   * moved to quarantine (a lock-free read leaves it in place; a command that writes moves it).
   * Shown until the server is signed in to again or the file is removed.
   */
  unreadable?: { file: string; problem: string; movedAt?: string };
}

type ReadLike =
  | { kind: 'missing' }
  | { kind: 'ok'; record: ServerRecord }
  | { kind: 'corrupt'; file: string; problem: string; movedTo?: string; serverUrl?: string };

/** What a store_corrupt needs-auth says: which file, what is wrong with it. */
export function corruptDescription(read: { file: string; problem: string; movedTo?: string }): string {
  return read.movedTo
    ? `the stored record ${read.problem}; it was moved aside to ${read.movedTo}`
    : `the stored record ${read.file} ${read.problem}`;
}

/**
 * A record in quarantine whose server has no readable record now: needs-auth store_corrupt, with
 * which server (its URL when the file names it, else its record key), when and why. The fix is a
 * new sign-in, or removing the file when the server is unknown.
 */
export function quarantinedStatus(q: QuarantinedRecord): ServerStatus {
  const server = q.serverUrl ?? q.key;
  return {
    serverUrl: displayText(server),
    state: 'needs-auth',
    needsAuth: {
      reason: 'store_corrupt',
      errorDescription: `the stored record ${q.problem}; it was moved aside to ${q.file}`,
      at: q.at,
      fix: q.serverUrl ? `authkeep login ${displayText(q.serverUrl)}` : `rm ${q.file}`,
    },
    unreadable: { file: q.file, problem: q.problem, movedAt: q.at },
  };
}

export function serverStatus(read: ReadLike & { key?: string }, serverUrl?: string): ServerStatus {
  const now = Date.now();
  const named = read.kind === 'corrupt' ? read.serverUrl : undefined;
  const url = read.kind === 'ok' ? read.record.serverUrl : (serverUrl ?? named ?? read.key ?? '(unknown)');
  const grant = read.kind === 'ok' ? read.record.grant : undefined;
  const fix =
    read.kind === 'corrupt' && serverUrl === undefined && named === undefined
      ? `rm ${read.file}`
      : read.kind === 'ok' && grant
        ? `authkeep login ${url} ${machineLoginFlags(grant, read.record.registration).map(shellWord).join(' ')}`
        : read.kind === 'ok' && read.record.idpSession
          ? `authkeep login SERVER_URL --idp ${shellWord(read.record.registration.issuer)} --idp-client-id ${shellWord(read.record.registration.clientId)} --client-id ...`
          : `authkeep login ${url}`;
  if (read.kind === 'missing') {
    return {
      serverUrl: url,
      state: 'needs-auth',
      needsAuth: { reason: 'no_credentials', at: new Date(now).toISOString(), fix },
    };
  }
  if (read.kind === 'corrupt') {
    return {
      serverUrl: displayText(url),
      state: 'needs-auth',
      needsAuth: {
        reason: 'store_corrupt',
        errorDescription: corruptDescription(read),
        at: new Date(now).toISOString(),
        fix,
      },
      unreadable: {
        file: read.file,
        problem: read.problem,
        ...(read.movedTo ? { movedAt: new Date(now).toISOString() } : {}),
      },
    };
  }
  const record = read.record;
  const tokens = record.tokens;
  const base: ServerStatus = {
    serverUrl: url,
    state: 'ok',
    issuer: record.authorizationServer.issuer,
    clientId: record.registration.clientId,
    registration: record.registration.method,
    generation: record.generation,
    ...(grant
      ? {
          grant: {
            type: grant.type,
            description: describeGrant(grant, record.registration),
            sources: [
              ...(['clientSecret', 'privateKey', 'assertion', 'idToken'] as const).flatMap((what) => {
                const from = grant[what];
                return from ? [{ what, from }] : [];
              }),
              ...(grant.idp?.clientSecret ? [{ what: 'idpClientSecret' as const, from: grant.idp.clientSecret }] : []),
            ],
          },
        }
      : {}),
    ...(record.lastRefreshAt ? { lastRefreshAt: new Date(record.lastRefreshAt).toISOString() } : {}),
    ...(record.idpSession
      ? {
          idpSession: {
            subject: displayText(record.idpSession.subject, 200),
            idTokenExpiresAt: new Date(record.idpSession.expiresAt).toISOString(),
            idTokenValid: now < record.idpSession.expiresAt,
            renewable: tokens?.refreshToken !== undefined,
          },
        }
      : {}),
  };
  if (tokens) {
    Object.assign(base, {
      ...(tokens.scope ? { scope: tokens.scope } : {}),
      ...(tokens.expiresAt ? { accessTokenExpiresAt: new Date(tokens.expiresAt).toISOString() } : {}),
      accessTokenValid: isUnexpired(tokens, now),
      hasRefreshToken: tokens.refreshToken !== undefined,
      ...(tokens.refreshToken
        ? { refreshTokenAgeSeconds: Math.round((now - (tokens.refreshTokenObtainedAt ?? tokens.obtainedAt)) / 1000) }
        : {}),
    });
  }
  const drift = detectDrift(record);
  const marker = record.needsAuth;
  if (marker) {
    // A record written before markers were stored sanitised may still hold raw AS text.
    const shown = displayNeedsAuthInfo({ ...marker, serverUrl: url });
    base.state = 'needs-auth';
    base.needsAuth = {
      reason: shown.reason,
      at: displayText(marker.at, 40),
      ...(shown.error ? { error: shown.error } : {}),
      ...(shown.errorDescription ? { errorDescription: shown.errorDescription } : {}),
      ...(shown.request ? { request: shown.request } : {}),
      ...(marker.step ? { step: marker.step } : {}),
      fix,
    };
  } else if (drift) {
    base.state = 'needs-auth';
    base.needsAuth = { reason: 'drift', errorDescription: drift.description, at: new Date(now).toISOString(), fix };
  } else if (!tokens) {
    base.state = 'needs-auth';
    base.needsAuth = { reason: 'no_credentials', at: new Date(now).toISOString(), fix };
  } else if (!tokens.refreshToken && !grant && !isUnexpired(tokens, now)) {
    base.state = 'needs-auth';
    base.needsAuth = { reason: 'expired', at: new Date(tokens.expiresAt ?? now).toISOString(), fix };
  }
  return base;
}

/** `word` as one shell word: as it is when it is plain, else single-quoted. */
function shellWord(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, "'\\''")}'`;
}
