/**
 * program: the `authkeep` command tree (commander), global flags, help text and the mapping of
 * parse failures to exit code 2. `runCli(argv, deps)` is the whole CLI as a function: it writes
 * only through `deps` and returns the exit code, so tests can run it in-process too.
 *
 * Not for: any command's behaviour (commands/*.ts) or process wiring (main.ts).
 */
import { existsSync, readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import type { ExitSlot } from './command-helpers.js';
import { registerDoctor } from './commands/doctor.js';
import { registerLogin } from './commands/login.js';
import { registerLogout } from './commands/logout.js';
import { registerProxy } from './commands/proxy.js';
import { registerSetup } from './commands/setup.js';
import { registerStatus } from './commands/status.js';
import { registerToken } from './commands/token.js';
import type { CliDeps } from './deps.js';
import { EXIT_CODES_HELP, ExitCode } from './exit-codes.js';

/** The package version, from the package.json above src/ or dist/src/. */
export function packageVersion(): string {
  for (const rel of ['../../package.json', '../../../package.json']) {
    const file = new URL(rel, import.meta.url);
    if (!existsSync(file)) continue;
    try {
      const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: unknown; version?: unknown };
      if (pkg.name === 'authkeep' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // try the next candidate
    }
  }
  return '0.0.0';
}

const TOP_HELP = `
Examples:
  $ authkeep login https://mcp.example.com/mcp
  $ authkeep status
  $ curl -H "Authorization: Bearer $(authkeep token https://mcp.example.com/mcp)" https://mcp.example.com/mcp
  $ authkeep doctor
  $ authkeep proxy https://mcp.example.com/mcp       # in an MCP client's config, instead of mcp-remote

Environment:
  AUTHKEEP_HOME  where credentials are stored (default: ~/.local/share/authkeep, macOS
                 ~/Library/Application Support/authkeep, Windows %LOCALAPPDATA%\\authkeep)
  BROWSER        the command that opens the sign-in page (the URL is its last argument)
  NO_COLOR       disable colors

${EXIT_CODES_HELP}
`;

export function buildProgram(deps: CliDeps, exit: ExitSlot): Command {
  const program = new Command('authkeep');
  program
    .description('OAuth 2.1 for remote MCP servers: sign in once, stay signed in, across many processes.')
    .version(packageVersion(), '-V, --version', 'print the version')
    .addOption(
      new Option('--home <dir>', 'where credentials are stored (default: $AUTHKEEP_HOME, else the platform data dir)'),
    )
    .addOption(new Option('--debug', 'print JSON log events and stack traces on stderr (never secrets)'))
    .addOption(new Option('--allow-http', 'allow http for servers on this machine only (127.0.0.1, localhost, [::1])'))
    .helpOption('-h, --help', 'show help')
    .helpCommand('help [command]', 'show help for a command')
    .addHelpText('after', TOP_HELP)
    .showSuggestionAfterError(true)
    .configureOutput({
      writeOut: (str) => void deps.stdout.write(str),
      writeErr: (str) => void deps.stderr.write(str),
      outputError: (str, write) => write(str.replace(/^error: /, 'authkeep: ')),
    })
    .exitOverride();

  registerLogin(program, deps, exit);
  registerToken(program, deps, exit);
  registerStatus(program, deps, exit);
  registerLogout(program, deps, exit);
  registerDoctor(program, deps, exit);
  registerProxy(program, deps, exit);
  registerSetup(program, deps, exit);

  for (const cmd of program.commands) {
    cmd.showHelpAfterError(`hint: run 'authkeep ${cmd.name()} --help' for usage`);
  }
  program.showHelpAfterError("hint: run 'authkeep --help' for usage");
  return program;
}

/** Run the CLI on `argv` (without node and script); returns the exit code. */
export async function runCli(argv: string[], deps: CliDeps): Promise<ExitCode> {
  const exit: ExitSlot = { code: ExitCode.Ok };
  const program = buildProgram(deps, exit);
  if (argv.length === 0) {
    deps.stdout.write(program.helpInformation());
    deps.stdout.write(TOP_HELP);
    return ExitCode.Usage;
  }
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return ExitCode.Ok;
      return ExitCode.Usage;
    }
    throw err;
  }
  return exit.code;
}
