/**
 * errors: how a failure reaches the user: one line saying what went wrong, one line saying what
 * to do, and the exit code (exit-codes.ts). Stack traces only with `--debug`.
 *
 * Not for: raising library errors (src/errors.ts). Library messages never carry secrets (that is
 * their contract); like everything printed here they go through displayText, since they quote
 * what servers and authorization servers said.
 */
import { displayText } from '../display-text.js';
import {
  AuthkeepError,
  type EnterpriseStep,
  type ErrorCode,
  enterpriseStepText,
  NeedsAuthError,
  type NeedsAuthInfo,
  needsAuthHint,
} from '../errors.js';
import { describeNetworkFailure } from '../oauth/http.js';
import type { Writer } from './deps.js';
import { ExitCode } from './exit-codes.js';

/** A bad flag value or combination found after commander parsed the line (exit 2). */
export class UsageError extends Error {
  constructor(
    message: string,
    readonly hint?: string,
  ) {
    super(message);
    this.name = 'UsageError';
  }
}

/** "<description>" for a needs-auth condition: the AS's words when it gave some, else ours. */
export function describeNeedsAuth(
  info: Pick<NeedsAuthInfo, 'reason' | 'error' | 'errorDescription'> & { step?: EnterpriseStep | undefined },
): string {
  const ours = needsAuthHint(info.reason) ?? displayText(String(info.reason), 40);
  const said = info.errorDescription ?? info.error;
  const theirs = said === undefined ? undefined : displayText(said);
  const text = theirs && theirs !== ours ? `${ours} (${theirs})` : ours;
  return `${text.replace(/[.\s]+$/, '')}${stepText(info.step)}`;
}

/** Which SEP-990 step failed, as the CLI prints it after a message: its words and its stable name. */
function stepText(step: EnterpriseStep | undefined): string {
  return step ? `; failed at ${enterpriseStepText(step)} [step ${step}]` : '';
}

/** The line `authkeep token` and friends print for needs-auth. */
export function needsAuthLine(
  info: Pick<NeedsAuthInfo, 'reason' | 'error' | 'errorDescription' | 'serverUrl' | 'step'>,
): string {
  const reason = displayText(String(info.reason), 40);
  return `authkeep: needs-auth (${reason}): ${describeNeedsAuth(info)}. Run: authkeep login ${displayText(info.serverUrl, 2000)}`;
}

const HINTS: Partial<Record<ErrorCode, (err: AuthkeepError, serverUrl: string | undefined) => string>> = {
  invalid_argument: () => 'check the arguments; see --help',
  insecure_url: () => 'use an https URL; for a server on this machine (127.0.0.1, localhost) pass --allow-http',
  www_authenticate_malformed: (_e, url) =>
    `the server sent a malformed WWW-Authenticate header; report it to the server's operator${url ? ` (${url})` : ''}`,
  discovery_failed: (_e, url) =>
    `is ${url ?? 'the URL'} the MCP endpoint itself (often ending in /mcp)? Run: authkeep doctor ${url ?? '<url>'}`,
  metadata_invalid: () =>
    'the server or its authorization server publishes invalid metadata; report it to its operator',
  resource_mismatch: (_e, url) =>
    `the server's metadata names another resource; check the URL (${url ?? '<url>'}) or report it to the operator`,
  issuer_mismatch: () => 'the authorization server metadata names another issuer; report it to its operator',
  pkce_unsupported: () => 'the authorization server does not support PKCE S256, which OAuth 2.1 requires',
  registration_failed: (_e, url) => `pass a pre-registered client: authkeep login ${url ?? '<url>'} --client-id ID`,
  authorize_url_mismatch: () => 'this is a bug in authkeep; rerun with --debug and report it',
  authorization_denied: (_e, url) => `sign-in was refused or cancelled; try again: authkeep login ${url ?? '<url>'}`,
  state_mismatch: (_e, url) => `the redirect belonged to another sign-in; try again: authkeep login ${url ?? '<url>'}`,
  iss_mismatch: () => 'the authorization response came from another issuer; do not retry, report it',
  device_code_expired: (_e, url) =>
    `approve the sign-in before the code expires; try again: authkeep login ${url ?? '<url>'} --device`,
  device_flow_unavailable: (_e, url) =>
    `sign in with the browser instead: authkeep login ${url ?? '<url>'} (or --no-browser to paste the redirect URL)`,
  callback_timeout: (_e, url) =>
    `finish signing in within the time limit, or on a machine without a browser use: authkeep login ${url ?? '<url>'} --no-browser`,
  token_response_invalid: () => 'the authorization server answered with an invalid token response; rerun with --debug',
  as_error: () => 'the authorization server refused the request; rerun with --debug for its answer',
  as_unreachable: (_e, url) =>
    `check the network, VPN or proxy, then try again; authkeep doctor ${url ?? '<url>'} checks both servers`,
  server_unreachable: (_e, url) =>
    `check that the MCP server is up and the URL is right (network, VPN, proxy); authkeep doctor ${url ?? '<url>'} checks both servers`,
  store_conflict: () => 'another authkeep process changed the record at the same moment; run the command again',
  store_corrupt: (_e, url) => `sign in again: authkeep login ${url ?? '<url>'}`,
  store_io: () => 'check that the authkeep home directory exists and is writable; run: authkeep doctor',
  store_untrusted: () =>
    'another user may have tampered with the authkeep store: check the path, apply the fix, then run: authkeep doctor',
  keychain_unavailable: () =>
    'unlock the OS keychain (on Linux: a Secret Service such as gnome-keyring in this session), or choose another store with --store / AUTHKEEP_STORE; run: authkeep doctor',
  store_unsupported: () => 'use --store auto, keychain or file (AUTHKEEP_STORE likewise)',
  lock_lost: () => 'this process was too slow and another authkeep process took over; run the command again',
  lock_timeout: () => 'another authkeep process holds the lock; run: authkeep doctor',
  step_up_exhausted: (_e, url) =>
    `sign in again with the scope the server needs: authkeep login ${url ?? '<url>'} --scope ...`,
};

export interface ReportContext {
  stderr: Writer;
  debug: boolean;
  /** The server the command was about, for the hint. */
  serverUrl?: string | undefined;
}

/** Characters of one printed message. */
const LINE_MAX = 2000;

/** Print `err` as one line plus a hint (plus the stack with --debug) and return the exit code. */
export function reportError(err: unknown, ctx: ReportContext): ExitCode {
  const { stderr } = ctx;
  const line = (text: string) => displayText(text, LINE_MAX);
  let code: ExitCode = ExitCode.Error;
  if (err instanceof NeedsAuthError && err.reason === 'as_unreachable') {
    // Not a needs-auth for scripts: a sign-in cannot succeed while the AS is down, and the stored
    // grant is still good (status says ok). Exit 1, naming the authorization server.
    const info = err.info;
    const who = `the authorization server${info.issuer ? ` ${info.issuer}` : ''}`;
    const why = info.errorDescription ?? info.request ?? 'no answer';
    stderr.write(`authkeep: ${line(`could not reach ${who}: ${why} [as_unreachable]`)}\n`);
    stderr.write(
      `hint: ${line(`the access token has expired and could not be refreshed; the sign-in is kept, no login needed. ${HINTS.as_unreachable?.(err, ctx.serverUrl ?? info.serverUrl)}`)}\n`,
    );
  } else if (err instanceof NeedsAuthError) {
    stderr.write(`${needsAuthLine(err.info)}\n`);
    code = ExitCode.NeedsAuth;
  } else if (err instanceof UsageError) {
    stderr.write(`authkeep: ${line(err.message)}\n`);
    stderr.write(`hint: ${line(err.hint ?? 'see --help')}\n`);
    code = ExitCode.Usage;
  } else if (err instanceof AuthkeepError) {
    stderr.write(
      `authkeep: ${line(`${err.message}${err.field ? ` [${err.code} at ${err.field}]` : ` [${err.code}]`}${stepText(err.step)}`)}\n`,
    );
    const hint = HINTS[err.code]?.(err, ctx.serverUrl) ?? 'rerun with --debug for details';
    stderr.write(`hint: ${line(hint)}\n`);
  } else if (describeNetworkFailure(err) !== undefined) {
    // A bare fetch failure: say what it was, in words, and where when the command knows.
    const where = ctx.serverUrl ? ` talking to ${ctx.serverUrl}` : '';
    stderr.write(`authkeep: ${line(`network failure${where}: ${describeNetworkFailure(err)}`)}\n`);
    stderr.write('hint: check the network, VPN or proxy, then try again\n');
  } else {
    const message = err instanceof Error ? err.message : String(err);
    stderr.write(`authkeep: unexpected error: ${line(message.split('\n')[0] ?? '')}\n`);
    stderr.write('hint: rerun with --debug for details; if it persists, report it\n');
  }
  if (ctx.debug && err instanceof Error && err.stack) {
    const lines = (text: string) => text.split('\n').map(line).join('\n');
    stderr.write(`${lines(err.stack)}\n`);
    let cause: unknown = err.cause;
    while (cause instanceof Error) {
      stderr.write(`caused by: ${lines(cause.stack ?? cause.message)}\n`);
      cause = cause.cause;
    }
  }
  return code;
}
