/**
 * token: `authkeep token <url>` prints a valid access token and nothing else on stdout, for
 * scripts (`curl -H "Authorization: Bearer $(authkeep token URL)"`). The token is refreshed when
 * due, single-flight across every process on this machine (the store's refresh lock), so any
 * number of concurrent invocations spend the refresh token once.
 *
 * Not for: signing in (login.ts). This is the only command that ever prints a secret.
 */
import type { Command } from 'commander';
import { action, type ExitSlot, helpEpilogue, parseServerUrl } from '../command-helpers.js';
import type { CliDeps } from '../deps.js';
import { ExitCode } from '../exit-codes.js';
import { debugEvent, type GlobalOptions, keeperOptions } from '../global-options.js';

export interface TokenOptions {
  global: GlobalOptions;
  serverUrl: string;
}

export function parseTokenOptions(url: string, global: GlobalOptions): TokenOptions {
  return { global, serverUrl: parseServerUrl(url) };
}

export async function runToken(deps: CliDeps, options: TokenOptions): Promise<ExitCode> {
  const keeper = deps.createKeeper(keeperOptions(options.global, deps));
  debugEvent(deps, options.global, 'cli.token.start', 'getting an access token', {
    serverUrl: options.serverUrl,
    pid: process.pid,
  });
  const token = await keeper.getAccessToken(options.serverUrl);
  deps.stdout.write(`${token}\n`);
  return ExitCode.Ok;
}

export function registerToken(program: Command, deps: CliDeps, exit: ExitSlot): void {
  program
    .command('token')
    .summary('print a valid access token for a server (stdout: the token only)')
    .description(
      'Print a valid access token for <url> on stdout, followed by a newline, and nothing else. ' +
        'Refreshes it first when due; concurrent invocations refresh once, machine-wide. ' +
        'When the server needs a sign-in, prints the reason on stderr and exits 4.',
    )
    .argument('<url>', 'the MCP server URL')
    .addHelpText(
      'after',
      helpEpilogue([
        'authkeep token https://mcp.example.com/mcp',
        'curl -H "Authorization: Bearer $(authkeep token https://mcp.example.com/mcp)" https://mcp.example.com/mcp',
        'authkeep token https://mcp.example.com/mcp || authkeep login https://mcp.example.com/mcp',
      ]),
    )
    .action(
      action(
        deps,
        exit,
        (cmd, global) => parseTokenOptions(cmd.args[0] as string, global),
        runToken,
        (o) => o.serverUrl,
      ),
    );
}
