/**
 * errors: the typed failures authkeep raises. Every error carries a stable `code`; protocol
 * failures name the field at fault. No error message or property ever carries a secret
 * (token, code, verifier, client secret): callers build messages from field names and
 * non-secret values only.
 *
 * Messages, details and needs-auth info are made safe to print (display-text.ts): they often
 * quote what a server or an authorization server said, and embedders print them as they are.
 *
 * Not for: logging (see session/log.ts) or classifying AS responses (see oauth/token-endpoint.ts).
 */
import { DISPLAY_TEXT_MAX, displayText } from './display-text.js';

/** Characters of an error message kept (each quoted server string is bounded on its own too). */
const MESSAGE_MAX = 2000;

/**
 * Stable codes of failures that are not a needs-auth reason (see NEEDS_AUTH_REASONS). The two
 * lists are disjoint: a failure whose condition is also a needs-auth reason carries the reason's
 * name as its `code` (`as_unreachable` for a network failure or timeout talking to the AS,
 * `as_error` for an OAuth error from the AS that does not mean needs-auth, `store_corrupt` for a
 * record that failed to parse, `invalid_grant` for a refused refresh token);
 * only a NeedsAuthError means that a sign-in is needed.
 */
export const AUTHKEEP_ERROR_CODES = [
  'invalid_argument', // the caller passed something unusable (a bad URL, an unknown option)
  'insecure_url', // an http URL that is not loopback, without allowInsecureLoopback
  'www_authenticate_malformed', // a WWW-Authenticate value that RFC 9110 section 11.6.1 rejects
  'server_unreachable', // the MCP server itself could not be reached (connection refused, timeout, DNS)
  'discovery_failed', // no protected-resource or authorization-server metadata could be found
  'metadata_invalid', // metadata that fails validation (names the field)
  'resource_mismatch', // PRM `resource` does not match the server URL (RFC 9728 section 3.3)
  'issuer_mismatch', // AS metadata `issuer` differs from the issuer used to fetch it (RFC 8414 section 3.3)
  'pkce_unsupported', // the AS does not list S256 in code_challenge_methods_supported
  'registration_failed', // DCR or client ID metadata document registration failed
  'authorize_url_mismatch', // the built authorize URL did not parse back to the intended value (a bug)
  'authorization_denied', // the AS or user answered the authorization request with an error
  'state_mismatch', // the callback's state is not the one this flow sent
  'iss_mismatch', // RFC 9207 iss differs from the issuer
  'callback_timeout', // the user did not complete the browser step (or the device verification) in time
  'device_code_expired', // RFC 8628 expired_token: the device code expired before the user approved it
  'device_flow_unavailable', // the device authorization grant was required but the AS or the registration does not offer it
  'token_response_invalid', // the token endpoint answered something unusable (names the field)
  'store_conflict', // compare-and-swap refused a write against a newer generation
  'store_io', // the file system refused a store operation
  'store_unreachable', // the fleet store's Redis could not be reached or failed mid-operation (names the host, never the password)
  'store_key_missing', // the fleet store has no usable sealing key (AUTHKEEP_STORE_KEY / AUTHKEEP_STORE_KEY_FILE; says how to make one)
  'store_untrusted', // a store directory or file is not the user's own, is writable by others, or is a symbolic link (names the path and the fix)
  'lock_timeout', // a lock could not be taken within its bound
  'lock_lost', // this process held a lock past its bound and another took it over; nothing was written under it
  'step_up_exhausted', // 403 insufficient_scope kept coming after the bounded number of re-authorizations
  'credential_unavailable', // a machine grant's secret, key or assertion could not be read here (names the variable or file, never the value)
  'dpop_unsupported', // the server requires DPoP-bound tokens the authorization server cannot issue to authkeep
  'origin_mismatch', // a request carrying credentials was aimed outside the MCP server's origin (names the field)
  'keychain_unavailable', // the store's data key is kept in the OS keychain and no persistent keychain answers here (or AUTHKEEP_STORE asks for one that is missing)
  'store_unsupported', // AUTHKEEP_STORE / --store names a store this version does not have (a redis:// URL where only a file store mode fits)
] as const;
export type AuthkeepErrorCode = (typeof AUTHKEEP_ERROR_CODES)[number];

/** Why a server needs an interactive sign-in again (docs/DESIGN.md invariant 6). */
export const NEEDS_AUTH_REASONS = [
  'no_credentials', // nothing stored for this server
  'invalid_grant', // the AS refused the refresh token (expired, revoked, reused)
  'client_mismatch', // the AS refused the client (invalid_client / unauthorized_client); its registration was dropped
  'client_expired', // the client secret passed its client_secret_expires_at; the registration was dropped
  'drift', // stored tokens carry a client_id or issuer other than the record's registration
  'revoked', // the tokens were revoked (logout, or the AS answered 401 with a fresh token)
  'expired', // access token expired and there is no refresh token
  'issuer_changed', // the server now names another authorization server
  'malformed_response', // the AS answered a refresh with something unusable, or the record was corrupt
  'as_unreachable', // the AS could not be reached, and the access token has expired
  'insufficient_scope', // the server wants scopes the grant does not have
  'login_failed', // a sign-in run by another process or call failed; `error` says why
  'as_error', // the AS refused the refresh with another OAuth error (e.g. invalid_scope); `error` says which
  'store_corrupt', // the stored record failed to parse (a command that writes moves it aside)
] as const;
export type NeedsAuthReason = (typeof NEEDS_AUTH_REASONS)[number];

/**
 * Which step of enterprise-managed authorization (MCP SEP-990) failed, when one did: signing in to
 * the enterprise IdP or keeping its session (`idp_sign_in`: the OpenID Connect sign-in or the
 * refresh of its ID token), exchanging the ID token there for an ID-JAG (`token_exchange`, RFC
 * 8693), or redeeming the ID-JAG at the MCP authorization server (`jwt_bearer`, RFC 7523).
 * Stable: errors and needs-auth markers carry it as `step`.
 */
export const ENTERPRISE_STEPS = ['idp_sign_in', 'token_exchange', 'jwt_bearer'] as const;
export type EnterpriseStep = (typeof ENTERPRISE_STEPS)[number];

const STEP_TEXT: Record<EnterpriseStep, string> = {
  idp_sign_in: 'the sign-in to the identity provider (OpenID Connect)',
  token_exchange: 'the token exchange at the identity provider (RFC 8693)',
  jwt_bearer: 'the redemption of the ID-JAG at the authorization server (RFC 7523)',
};

/** A SEP-990 step in words, for messages and status. */
export function enterpriseStepText(step: EnterpriseStep): string {
  return STEP_TEXT[step];
}

/** Every `code` an AuthkeepError carries: one of its own codes, or a needs-auth reason. */
export type ErrorCode = AuthkeepErrorCode | NeedsAuthReason;
export const ERROR_CODES: readonly ErrorCode[] = [...AUTHKEEP_ERROR_CODES, ...NEEDS_AUTH_REASONS];

type Disjoint<A, B> = [Extract<A, B>] extends [never] ? true : false;
/** Checked when compiling: no error code is also a needs-auth reason. */
export const CODES_AND_REASONS_ARE_DISJOINT: Disjoint<AuthkeepErrorCode, NeedsAuthReason> = true;

export interface AuthkeepErrorOptions {
  /** The protocol or record field at fault, e.g. `authorization_servers[0]` or `tokens.client_id`. */
  field?: string;
  /** Non-secret evidence (expected vs actual values that are not secrets, an HTTP status). */
  detail?: Record<string, string | number | boolean | undefined>;
  cause?: unknown;
  /** The SEP-990 step that failed (ENTERPRISE_STEPS), for a failure of enterprise-managed authorization. */
  step?: EnterpriseStep | undefined;
}

/**
 * A network failure or timeout (`as_unreachable` from oauth/http.ts, which cannot tell whom it
 * was talking to) re-said as the party's: the MCP server `serverUrl` (`server_unreachable`), or
 * the authorization server `issuer` (still `as_unreachable`). Anything else passes through.
 */
export function unreachableParty(err: unknown, party: { serverUrl: string } | { issuer: string }): unknown {
  if (!(err instanceof AuthkeepError) || err.code !== 'as_unreachable') return err;
  const [code, who] =
    'serverUrl' in party
      ? (['server_unreachable', `the MCP server ${party.serverUrl}`] as const)
      : (['as_unreachable', `the authorization server ${party.issuer}`] as const);
  return new AuthkeepError(code, `could not reach ${who}: ${err.message}`, {
    field: 'serverUrl' in party ? 'serverUrl' : 'issuer',
    ...(err.detail ? { detail: err.detail } : {}),
    cause: err,
  });
}

/** Base class of every error authkeep throws on purpose. */
export class AuthkeepError extends Error {
  readonly code: ErrorCode;
  readonly field: string | undefined;
  readonly detail: Record<string, string | number | boolean | undefined> | undefined;
  /** Which SEP-990 step failed (ENTERPRISE_STEPS), when this is a failure of enterprise-managed authorization. */
  readonly step: EnterpriseStep | undefined;

  constructor(code: ErrorCode, message: string, options: AuthkeepErrorOptions = {}) {
    super(displayText(message, MESSAGE_MAX), options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AuthkeepError';
    this.code = code;
    this.field = options.field;
    this.detail = options.detail && displayDetail(options.detail);
    this.step = options.step;
  }
}

/**
 * `err` said as a failure of SEP-990 step `step`: an AuthkeepError without a step gets one (a
 * copy of the same class where it has a `withStep`, else an AuthkeepError with the same code,
 * message, field and detail); anything else, or an error that already names its step, passes
 * through.
 */
export function atStep(err: unknown, step: EnterpriseStep): unknown {
  if (!(err instanceof AuthkeepError) || err.step !== undefined) return err;
  const own = (err as AuthkeepError & { withStep?: (step: EnterpriseStep) => AuthkeepError }).withStep;
  if (typeof own === 'function') return own.call(err, step);
  return new AuthkeepError(err.code, err.message, {
    ...(err.field !== undefined ? { field: err.field } : {}),
    ...(err.detail ? { detail: err.detail } : {}),
    cause: err.cause ?? err,
    step,
  });
}

function displayDetail(
  detail: Record<string, string | number | boolean | undefined>,
): Record<string, string | number | boolean | undefined> {
  const out: Record<string, string | number | boolean | undefined> = {};
  for (const [key, value] of Object.entries(detail)) out[key] = typeof value === 'string' ? displayText(value) : value;
  return out;
}

export interface NeedsAuthInfo {
  reason: NeedsAuthReason;
  /** The AS's OAuth `error` value, when it gave one. */
  error?: string | undefined;
  /** The AS's `error_description`, when it gave one. Never contains our secrets. */
  errorDescription?: string | undefined;
  /** ISO 8601 time at which the condition was observed. */
  at: string;
  /** Which request failed, e.g. `POST https://as.example/token (refresh_token)`. */
  request?: string | undefined;
  /** The MCP server concerned. */
  serverUrl: string;
  /** The authorization server concerned (its issuer), when known. */
  issuer?: string | undefined;
  /** Enterprise-managed authorization: which step failed (ENTERPRISE_STEPS). */
  step?: EnterpriseStep | undefined;
}

const HINTS: Record<NeedsAuthReason, string> = {
  no_credentials: 'no stored credentials',
  invalid_grant: 'the authorization server refused the refresh token',
  client_mismatch:
    'the authorization server refused the client (invalid_client or unauthorized_client); its registration was dropped and the next sign-in registers again',
  client_expired: 'the client secret expired; the registration was dropped and the next sign-in registers again',
  drift: 'stored tokens belong to another client registration or issuer',
  revoked: 'the tokens were revoked',
  expired: 'the access token expired and there is no refresh token',
  issuer_changed: 'the server now uses another authorization server',
  malformed_response: 'the authorization server answered with something unusable',
  as_unreachable: 'the authorization server is unreachable and the access token has expired',
  insufficient_scope: 'the server requires scopes the current grant lacks',
  login_failed: 'the sign-in failed',
  as_error: 'the authorization server refused the refresh',
  store_corrupt: 'the stored record is unreadable',
};

/** A short human sentence for a needs-auth reason (CLI and status output use it). */
export function needsAuthHint(reason: NeedsAuthReason): string {
  return HINTS[reason];
}

/** `info` with the AS's words and the request description made safe to print (display-text.ts). */
export function displayNeedsAuthInfo(info: NeedsAuthInfo): NeedsAuthInfo {
  const out: NeedsAuthInfo = { ...info };
  if (info.error !== undefined) out.error = displayText(info.error, 100);
  if (info.errorDescription !== undefined) out.errorDescription = displayText(info.errorDescription, DISPLAY_TEXT_MAX);
  if (info.request !== undefined) out.request = displayText(info.request, 1000);
  return out;
}

/** The user must sign in again for `serverUrl`; `reason` says why. */
export class NeedsAuthError extends AuthkeepError {
  readonly reason: NeedsAuthReason;
  readonly info: NeedsAuthInfo;

  constructor(raw: NeedsAuthInfo, options: { cause?: unknown; field?: string } = {}) {
    const info = displayNeedsAuthInfo(raw);
    const as = info.error ? ` (${info.error}${info.errorDescription ? `: ${info.errorDescription}` : ''})` : '';
    super(
      info.reason,
      `needs-auth for ${info.serverUrl}: ${HINTS[info.reason]}${as}${info.step ? `; failed at ${STEP_TEXT[info.step]}` : ''}; run \`authkeep login ${info.serverUrl}\``,
      {
        cause: options.cause,
        ...(options.field ? { field: options.field } : {}),
        ...(info.step ? { step: info.step } : {}),
      },
    );
    this.name = 'NeedsAuthError';
    this.reason = info.reason;
    this.info = info;
  }

  /** The same needs-auth, naming the SEP-990 step that failed. */
  withStep(step: EnterpriseStep): NeedsAuthError {
    return new NeedsAuthError(
      { ...this.info, step },
      { cause: this.cause, ...(this.field ? { field: this.field } : {}) },
    );
  }
}

export function isAuthkeepError(err: unknown): err is AuthkeepError {
  return err instanceof AuthkeepError;
}
