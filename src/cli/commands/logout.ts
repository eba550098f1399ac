/**
 * logout: `authkeep logout <url>`: revokes the tokens at the authorization server (RFC 7009, when
 * it has a revocation endpoint), then deletes the stored record, and says which of the two it did.
 * The client registration goes with the record.
 *
 * Not for: signing out of the authorization server's own browser session.
 */
import type { Command } from 'commander';
import { displayJson, displayText } from '../../display-text.js';
import { action, type ExitSlot, helpEpilogue, parseServerUrl } from '../command-helpers.js';
import type { CliDeps } from '../deps.js';
import { ExitCode } from '../exit-codes.js';
import { type GlobalOptions, keeperOptions } from '../global-options.js';
import { makeStyle } from '../output.js';

export interface LogoutOptions {
  global: GlobalOptions;
  serverUrl: string;
  json: boolean;
}

export function parseLogoutOptions(url: string, flags: { json?: boolean }, global: GlobalOptions): LogoutOptions {
  return { global, serverUrl: parseServerUrl(url), json: flags.json === true };
}

export interface LogoutResult {
  serverUrl: string;
  issuer?: string | undefined;
  revoked: boolean;
  deleted: boolean;
}

export async function runLogout(deps: CliDeps, options: LogoutOptions): Promise<ExitCode> {
  const keeper = deps.createKeeper(keeperOptions(options.global, deps));
  const [before] = await keeper.status(options.serverUrl);
  const { revoked, deleted } = await keeper.logout(options.serverUrl);
  const result: LogoutResult = { serverUrl: options.serverUrl, issuer: before?.issuer, revoked, deleted };
  if (options.json) {
    deps.stdout.write(`${displayJson(result, 2)}\n`);
    return ExitCode.Ok;
  }
  const check = makeStyle(deps.stdout, deps.env).green('✓');
  const at = result.issuer ? ` at ${displayText(result.issuer)}` : '';
  if (revoked && deleted) {
    deps.stdout.write(`${check} Revoked the tokens${at} and deleted the stored credentials for ${options.serverUrl}\n`);
  } else if (deleted) {
    deps.stdout.write(
      `${check} Deleted the stored credentials for ${options.serverUrl}\n` +
        `  not revoked${at}: the authorization server has no revocation endpoint, or revocation failed (see --debug)\n`,
    );
  } else {
    deps.stdout.write(`Nothing stored for ${options.serverUrl}; nothing to revoke or delete.\n`);
  }
  return ExitCode.Ok;
}

export function registerLogout(program: Command, deps: CliDeps, exit: ExitSlot): void {
  program
    .command('logout')
    .summary("revoke a server's tokens, then delete them")
    .description(
      'Revoke the tokens for <url> at its authorization server (when it offers revocation), then ' +
        'delete the stored record. Deletes even when the authorization server cannot be reached, ' +
        'and says whether it revoked.',
    )
    .argument('<url>', 'the MCP server URL')
    .option('--json', 'print {serverUrl, issuer, revoked, deleted}')
    .addHelpText(
      'after',
      helpEpilogue([
        'authkeep logout https://mcp.example.com/mcp',
        'authkeep logout https://mcp.example.com/mcp --json',
      ]),
    )
    .action(
      action(
        deps,
        exit,
        (cmd, global) => parseLogoutOptions(cmd.args[0] as string, cmd.opts<{ json?: boolean }>(), global),
        runLogout,
        (o) => o.serverUrl,
      ),
    );
}
