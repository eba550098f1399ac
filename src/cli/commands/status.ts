/**
 * status: `authkeep status [url]`: one row per stored server (or for <url>): issuer, client_id,
 * how it registered (or its machine grant, whose sources are listed below the table),
 * access-token expiry, refresh-token age, last refresh, and state: ok, or
 * needs-auth with its reason, the last error and the command that fixes it. Reads the store only
 * (no network), and shows no secret.
 *
 * Not for: checks of file modes, locks or reachability (doctor.ts).
 */
import type { Command } from 'commander';
import { displayJson, displayText } from '../../display-text.js';
import type { ServerStatus } from '../../session/status.js';
import { DEFAULT_ACCOUNT } from '../../store/paths.js';
import { RedisCredentialStore } from '../../store/redis/redis-credential-store.js';
import { listAccounts } from '../../store/store-inspection.js';
import { action, type ExitSlot, helpEpilogue, parseServerUrl } from '../command-helpers.js';
import type { CliDeps } from '../deps.js';
import { describeNeedsAuth } from '../errors.js';
import { ExitCode } from '../exit-codes.js';
import { type GlobalOptions, keeperOptions } from '../global-options.js';
import { fitTable, formatDuration, makeStyle, outputWidth, relativeTime, renderTable, type Style } from '../output.js';

export interface StatusOptions {
  global: GlobalOptions;
  serverUrl?: string | undefined;
  json: boolean;
}

export function parseStatusOptions(
  url: string | undefined,
  flags: { json?: boolean },
  global: GlobalOptions,
): StatusOptions {
  return { global, serverUrl: url === undefined ? undefined : parseServerUrl(url), json: flags.json === true };
}

export async function runStatus(deps: CliDeps, options: StatusOptions): Promise<ExitCode> {
  const keeper = deps.createKeeper(keeperOptions(options.global, deps));
  const statuses = await keeper.status(options.serverUrl);
  const { account } = options.global;
  if (options.json) {
    deps.stdout.write(
      `${displayJson(
        statuses.map((s) => ({ ...s, account })),
        2,
      )}\n`,
    );
    return ExitCode.Ok;
  }
  const named = account === DEFAULT_ACCOUNT ? '' : ` for account ${displayText(account)}`;
  // The fleet store (AUTHKEEP_STORE=redis://...): where, without the password; reachable, as the
  // statuses above were just read from it; and who holds its leases now.
  if (keeper.store instanceof RedisCredentialStore) {
    const leases = await keeper.store.leases(options.serverUrl);
    deps.stdout.write(`Store: fleet store ${keeper.store.location}, reachable, ${leases.length} lease(s) held\n`);
    for (const lease of leases) {
      const who = lease.info
        ? `pid ${lease.info.pid} on ${displayText(lease.info.hostname)} (${lease.info.purpose})`
        : 'unknown';
      deps.stdout.write(`  lease ${displayText(lease.name)}: ${who}\n`);
    }
  }
  if (statuses.length === 0) {
    deps.stdout.write(`No servers signed in${named} (home: ${keeper.home}).\n`);
    deps.stdout.write(`Run: authkeep login <url>${named ? ` --account ${account}` : ''}\n`);
  } else {
    if (named) deps.stdout.write(`Account: ${displayText(account)}\n`);
    deps.stdout.write(
      renderStatusTable(statuses, deps.now(), makeStyle(deps.stdout, deps.env), outputWidth(deps.stdout, deps.env)),
    );
  }
  // The other identities kept in this home, so none is forgotten.
  const others = (await listAccounts(options.global.home)).filter((name) => name !== account);
  if (others.length > 0 && options.serverUrl === undefined) {
    deps.stdout.write(
      `Other accounts: ${others.map((name) => displayText(name)).join(', ')} (authkeep status --account NAME)\n`,
    );
  }
  return ExitCode.Ok;
}

function accessExpiry(s: ServerStatus, now: number): string {
  if (!s.accessTokenExpiresAt) return s.accessTokenValid ? 'no expiry' : '-';
  const at = Date.parse(s.accessTokenExpiresAt);
  return at >= now ? `in ${formatDuration(at - now)}` : `expired ${formatDuration(now - at)} ago`;
}

const HEADER = [
  'SERVER',
  'ISSUER',
  'CLIENT ID',
  'REGISTRATION',
  'ACCESS EXPIRES',
  'REFRESH AGE',
  'LAST REFRESH',
  'STATE',
];
/** Columns left out first when the table is wider than the terminal: LAST REFRESH ... ISSUER. */
const DROP_ORDER = [6, 3, 5, 2, 1];
/** Then the SERVER cells are cut in the middle. */
const SHRINKABLE = [0];

/** A client ID as the table shows it: its first characters (`--json` has it whole). */
export function shortClientId(clientId: string): string {
  return clientId.length > 12 ? `${clientId.slice(0, 8)}…` : clientId;
}

/**
 * The table, fitted to `width` columns (outputWidth), and the needs-auth details under it. Every
 * cell and line goes through displayText: the record holds the AS's words (issuer, client_id,
 * error_description). Only the STATE cells and the details' first word are coloured, after the
 * fitting, so no cut ever falls inside a colour code.
 */
export function renderStatusTable(statuses: ServerStatus[], now: number, style: Style, width = 80): string {
  const rows = statuses.map((s) => [
    displayText(s.serverUrl),
    displayText(s.issuer ?? '-'),
    shortClientId(displayText(s.clientId ?? '-')),
    displayText(s.grant?.type ?? (s.idpSession ? 'idp session' : undefined) ?? s.registration ?? '-'),
    accessExpiry(s, now),
    s.refreshTokenAgeSeconds !== undefined
      ? formatDuration(s.refreshTokenAgeSeconds * 1000)
      : s.grant
        ? 'none (grant)'
        : s.hasRefreshToken === false
          ? 'none'
          : '-',
    relativeTime(s.lastRefreshAt, now),
    s.state === 'ok' ? 'ok' : `needs-auth (${displayText(s.needsAuth?.reason ?? 'unknown', 40)})`,
  ]);
  const fitted = fitTable(HEADER, rows, width, DROP_ORDER, SHRINKABLE);
  const coloured = fitted.rows.map((row, r) => {
    const last = row.length - 1;
    const paint = statuses[r]?.state === 'ok' ? style.green : style.red;
    return row.map((cell, i) => (i === last ? paint(cell) : cell));
  });
  let out = renderTable(fitted.header, coloured, style);
  if (fitted.hidden.length > 0) {
    const n = fitted.hidden.length;
    out += `(${n} column${n === 1 ? '' : 's'} left out to fit ${width}; authkeep status --json shows all)\n`;
  }
  for (const s of statuses) {
    // Where the next token comes from: the grant and its sources (names and paths, never values).
    if (s.grant) out += `\ngrant ${displayText(s.serverUrl)}: ${displayText(s.grant.description, 1000)}\n`;
    // An enterprise IdP session (SEP-990): whose ID token, until when, renewable or not.
    if (s.idpSession) out += `\nidp session ${displayText(s.serverUrl)}: ${describeIdpSession(s.idpSession, now)}\n`;
  }
  for (const s of statuses) {
    const n = s.state === 'needs-auth' ? s.needsAuth : undefined;
    if (n === undefined) continue;
    out += `\n${style.red('needs-auth')} ${displayText(s.serverUrl)}: ${describeNeedsAuth(n)}\n`;
    out += `  since ${displayText(n.at, 40)}${n.request ? `, on ${displayText(n.request, 1000)}` : ''}${n.error ? `, error ${displayText(n.error, 100)}` : ''}\n`;
    out += `  fix: ${displayText(n.fix, 1000)}\n`;
  }
  return out;
}

/** An IdP session in words: the subject, when its ID token expires, and whether it can be renewed there. */
function describeIdpSession(session: NonNullable<ServerStatus['idpSession']>, now: number): string {
  const at = Date.parse(session.idTokenExpiresAt);
  const expiry = at >= now ? `expires in ${formatDuration(at - now)}` : `expired ${formatDuration(now - at)} ago`;
  return (
    `ID token of ${displayText(session.subject, 200)}, ${expiry}; ` +
    (session.renewable
      ? 'renewed at the identity provider with its refresh token when due'
      : 'no refresh token: a new sign-in there when it expires') +
    '; exchanged for every server whose grant names this identity provider'
  );
}

export function registerStatus(program: Command, deps: CliDeps, exit: ExitSlot): void {
  program
    .command('status')
    .summary('show each stored server: registration, token expiry, state')
    .description(
      'Show one row per stored server (or only <url>): issuer, client_id, how the client was ' +
        'registered, access-token expiry, refresh-token age, last refresh, and state. A server ' +
        'that needs a sign-in shows the reason, the last error and the command that fixes it. ' +
        'Reads the local store only. Exits 0 whatever the states; --json for scripts.',
    )
    .argument('[url]', 'only this MCP server')
    .option('--json', 'print an array of ServerStatus objects')
    .addHelpText(
      'after',
      helpEpilogue([
        'authkeep status',
        'authkeep status https://mcp.example.com/mcp',
        'authkeep status --json | jq -r \'.[] | select(.state != "ok") | .needsAuth.fix\'',
      ]),
    )
    .action(
      action(
        deps,
        exit,
        (cmd, global) => parseStatusOptions(cmd.args[0], cmd.opts<{ json?: boolean }>(), global),
        runStatus,
        (o) => o.serverUrl,
      ),
    );
}
