/**
 * program: the `authkeep` command tree (commander), global flags, help text and the mapping of
 * parse failures to exit code 2. `runCli(argv, deps)` is the whole CLI as a function: it writes
 * only through `deps` and returns the exit code, so tests can run it in-process too.
 *
 * Not for: any command's behaviour (commands/*.ts) or process wiring (main.ts).
 */
import { Command, CommanderError, Option } from 'commander';
import { VERSION } from '../version.js';
import type { ExitSlot } from './command-helpers.js';
import type { CliDeps } from './deps.js';
import { EXIT_CODES_HELP, ExitCode } from './exit-codes.js';

/** Adds one command (its flags, help and action) to the program. */
type RegisterCommand = (program: Command, deps: CliDeps, exit: ExitSlot) => void;

/**
 * Every command's module, in the order help lists them. A module is loaded only when its command
 * runs (or for help and errors, which list them all): `authkeep token` loads neither the sign-in
 * flows' CLI, nor setup's config editors, nor the proxy and the MCP SDK.
 */
const COMMANDS: Record<string, () => Promise<RegisterCommand>> = {
  login: async () => (await import('./commands/login.js')).registerLogin,
  token: async () => (await import('./commands/token.js')).registerToken,
  status: async () => (await import('./commands/status.js')).registerStatus,
  logout: async () => (await import('./commands/logout.js')).registerLogout,
  doctor: async () => (await import('./commands/doctor.js')).registerDoctor,
  proxy: async () => (await import('./commands/proxy.js')).registerProxy,
  setup: async () => (await import('./commands/setup.js')).registerSetup,
  'client-metadata': async () => (await import('./commands/client-metadata.js')).registerClientMetadata,
};

/** The global options that take a value: the word after them is not a command name. */
const GLOBAL_OPTIONS_WITH_VALUE = new Set(['--home', '--account']);

/**
 * The command `argv` runs: its first word that is neither an option nor a global option's value,
 * when that word names a command. Undefined otherwise (no command, `help`, an unknown word).
 */
export function commandOf(argv: readonly string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (GLOBAL_OPTIONS_WITH_VALUE.has(arg)) i++;
    else if (!arg.startsWith('-')) return Object.hasOwn(COMMANDS, arg) ? arg : undefined;
  }
  return undefined;
}

/** The command `argv` runs, or all of them when it names none (help, suggestions, errors). */
function loadCommands(argv: readonly string[]): Promise<RegisterCommand[]> {
  const name = commandOf(argv);
  const load = name === undefined ? undefined : COMMANDS[name];
  return Promise.all(load ? [load()] : Object.values(COMMANDS).map((l) => l()));
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
  AUTHKEEP_ACCOUNT  the account used without --account (default: "default")
  AUTHKEEP_STORE how credentials are kept, as --store (default: auto)
  BROWSER        the command that opens the sign-in page (the URL is its last argument)
  NO_COLOR       disable colors

${EXIT_CODES_HELP}
`;

/** The program with `commands` registered (runCli loads the ones its argv needs). */
export function buildProgram(deps: CliDeps, exit: ExitSlot, commands: readonly RegisterCommand[]): Command {
  const program = new Command('authkeep');
  program
    .description('OAuth 2.1 for remote MCP servers: sign in once, stay signed in, across many processes.')
    .version(VERSION, '-V, --version', 'print the version')
    .addOption(
      new Option('--home <dir>', 'where credentials are stored (default: $AUTHKEEP_HOME, else the platform data dir)'),
    )
    .addOption(
      new Option(
        '--account <name>',
        'which identity to use: each account has its own sign-ins and registrations (default: $AUTHKEEP_ACCOUNT, else "default")',
      ),
    )
    .addOption(
      new Option(
        '--store <mode>',
        'how credentials are kept: auto (sealed with a key in the OS keychain when one is available, else plaintext files), keychain (required), file (plaintext), or redis://host:port/db (the fleet store shared by many hosts; needs AUTHKEEP_STORE_KEY) (default: $AUTHKEEP_STORE, else auto)',
      ),
    )
    .addOption(new Option('--debug', 'print JSON log events and stack traces on stderr (never secrets)'))
    .addOption(new Option('--allow-http', 'allow http for servers on this machine only (127.0.0.1, localhost, [::1])'))
    .helpOption('-h, --help', 'show help')
    .helpCommand('help [command]', 'show help for a command')
    // Every command's --help lists --home, --debug and --allow-http too: they apply to all.
    .configureHelp({ showGlobalOptions: true })
    .addHelpText('after', TOP_HELP)
    .showSuggestionAfterError(true)
    .configureOutput({
      writeOut: (str) => void deps.stdout.write(str),
      writeErr: (str) => void deps.stderr.write(str),
      outputError: (str, write) => write(str.replace(/^error: /, 'authkeep: ')),
    })
    .exitOverride();

  for (const register of commands) register(program, deps, exit);

  for (const cmd of program.commands) {
    cmd.showHelpAfterError(`hint: run 'authkeep ${cmd.name()} --help' for usage`);
  }
  program.showHelpAfterError("hint: run 'authkeep --help' for usage");
  return program;
}

/** Run the CLI on `argv` (without node and script); returns the exit code. */
export async function runCli(argv: string[], deps: CliDeps): Promise<ExitCode> {
  const exit: ExitSlot = { code: ExitCode.Ok };
  const program = buildProgram(deps, exit, await loadCommands(argv));
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
      // `authkeep help <command>` (commander's help command) is help asked for, not a usage error.
      if (err.code === 'commander.help' && err.exitCode === 0) return ExitCode.Ok;
      return ExitCode.Usage;
    }
    throw err;
  }
  return exit.code;
}
