/**
 * logout: `authkeep logout <url>`: revokes the tokens at the authorization server (RFC 7009, when
 * it has a revocation endpoint), then deletes the stored record, and says which of the two it did.
 * A revocation that fails keeps the record (exit 1) unless `--force`. The client registration goes
 * with the record.
 *
 * Not for: signing out of the authorization server's own browser session.
 */
import type { Command } from 'commander';
import { displayJson, displayText } from '../../display-text.js';
import type { LogoutResult as KeeperLogoutResult } from '../../session/session-keeper.js';
import { action, type ExitSlot, helpEpilogue, parseServerUrl } from '../command-helpers.js';
import type { CliDeps } from '../deps.js';
import { ExitCode } from '../exit-codes.js';
import { type GlobalOptions, keeperOptions } from '../global-options.js';
import { makeStyle } from '../output.js';

export interface LogoutOptions {
  global: GlobalOptions;
  serverUrl: string;
  json: boolean;
  /** `--force`: delete the stored credentials even when their revocation failed. */
  force: boolean;
}

export interface LogoutFlags {
  json?: boolean;
  force?: boolean;
}

export function parseLogoutOptions(url: string, flags: LogoutFlags, global: GlobalOptions): LogoutOptions {
  return { global, serverUrl: parseServerUrl(url), json: flags.json === true, force: flags.force === true };
}

/** What `logout --json` prints. */
export interface LogoutResult {
  serverUrl: string;
  issuer?: string | undefined;
  revoked: boolean;
  deleted: boolean;
  /** revoked, unsupported (the AS offers no revocation), failed, nothing (no tokens stored). */
  revocation: KeeperLogoutResult['revocation'];
  revocationError?: string | undefined;
}

export async function runLogout(deps: CliDeps, options: LogoutOptions): Promise<ExitCode> {
  const keeper = deps.createKeeper(keeperOptions(options.global, deps));
  const [before] = await keeper.status(options.serverUrl);
  const outcome = await keeper.logout(options.serverUrl, { requireRevocation: !options.force });
  const result: LogoutResult = { serverUrl: options.serverUrl, issuer: before?.issuer, ...outcome };
  // Revocation was possible and failed: without --force nothing is deleted, and that is a failure.
  const code = outcome.revocation === 'failed' && !outcome.deleted ? ExitCode.Error : ExitCode.Ok;
  if (options.json) {
    deps.stdout.write(`${displayJson(result, 2)}\n`);
    return code;
  }
  const style = makeStyle(deps.stdout, deps.env);
  const at = result.issuer ? ` at ${displayText(result.issuer)}` : '';
  const why = displayText(outcome.revocationError ?? 'no reason given', 1000);
  const url = options.serverUrl;
  if (outcome.revocation === 'failed' && !outcome.deleted) {
    deps.stderr.write(
      `authkeep: could not revoke the tokens${at}: ${why}\n` +
        `Nothing was deleted: the tokens still work at the authorization server until revoked.\n` +
        `hint: run authkeep logout ${url} again when the authorization server answers, or delete them here without revoking: authkeep logout ${url} --force\n`,
    );
  } else if (outcome.revoked && outcome.deleted) {
    deps.stdout.write(`${style.green('✓')} Revoked the tokens${at} and deleted the stored credentials for ${url}\n`);
  } else if (outcome.deleted && outcome.revocation === 'failed') {
    deps.stdout.write(
      `${style.yellow('!')} Deleted the stored credentials for ${url} (--force) without revoking them\n` +
        `  revocation failed${at}: ${why}; the refresh token may still work there until it expires\n`,
    );
  } else if (outcome.deleted && outcome.revocation === 'unsupported') {
    deps.stdout.write(
      `${style.green('✓')} Deleted the stored credentials for ${url}\n` +
        `  not revoked: the authorization server${result.issuer ? ` ${displayText(result.issuer)}` : ''} offers no revocation, so its refresh token stays valid there until it expires\n`,
    );
  } else if (outcome.deleted) {
    deps.stdout.write(`${style.green('✓')} Deleted the stored credentials for ${url} (it held no tokens)\n`);
  } else {
    deps.stdout.write(`Nothing stored for ${url}; nothing to revoke or delete.\n`);
  }
  return code;
}

export function registerLogout(program: Command, deps: CliDeps, exit: ExitSlot): void {
  program
    .command('logout')
    .summary("revoke a server's tokens, then delete them")
    .description(
      'Revoke the tokens for <url> at its authorization server, then delete the stored record. ' +
        'When revocation fails (the authorization server is down or refuses), nothing is deleted and ' +
        'logout exits 1, unless --force deletes the credentials anyway. An authorization server ' +
        'that offers no revocation is said so, and the record is deleted.',
    )
    .argument('<url>', 'the MCP server URL')
    .option('--force', 'delete the stored credentials even when their revocation failed')
    .option('--json', 'print {serverUrl, issuer, revoked, deleted, revocation, revocationError?}')
    .addHelpText(
      'after',
      helpEpilogue([
        'authkeep logout https://mcp.example.com/mcp',
        'authkeep logout https://mcp.example.com/mcp --json',
        'authkeep logout https://mcp.example.com/mcp --force    # the authorization server is gone for good',
      ]),
    )
    .action(
      action(
        deps,
        exit,
        (cmd, global) => parseLogoutOptions(cmd.args[0] as string, cmd.opts<LogoutFlags>(), global),
        runLogout,
        (o) => o.serverUrl,
      ),
    );
}
