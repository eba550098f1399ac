/**
 * setup: `authkeep setup <client> <url>`: the config entry that makes an MCP client (Claude Code,
 * Claude Desktop, Cursor, VS Code, Codex) run `authkeep proxy <url>`, printed, or with --write
 * merged into the client's config file after a timestamped backup beside it. Only that entry's
 * text changes; the user's other entries, comments and formatting stay byte for byte.
 *
 * The entry runs `npx -y authkeep proxy <url> ...` (works wherever npx is on the client's PATH,
 * always the latest release), or with --command-path this node binary and this authkeep's script by
 * absolute path (no npx or PATH needed, e.g. GUI apps started outside a shell; pinned to this
 * installation). It never carries a secret: header values keep their ${ENV} references, and
 * literal credentials (a secret-looking header's value, a client_secret) are refused.
 *
 * Not for: editing text or files (client-configs/).
 */
import { realpathSync } from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { AuthkeepError } from '../../errors.js';
import { parseHeaderArgs, TRANSPORT_STRATEGIES, type TransportStrategy } from '../../mcp/proxy-options.js';
import { isLoopbackHost } from '../../oauth/http.js';
import { DEFAULT_ACCOUNT } from '../../store/paths.js';
import {
  CLIENT_IDS,
  CLIENTS,
  type ClientConfig,
  type ClientId,
  claudeMcpAddLine,
  defaultServerName,
  type StdioCommand,
} from '../client-configs/clients.js';
import { readConfigFile, replaceConfigFile } from '../client-configs/config-file.js';
import { ConfigEditError } from '../client-configs/edit-error.js';
import { setJsonEntry } from '../client-configs/json-config.js';
import { renderJson } from '../client-configs/json-text.js';
import { renderTomlTable, setTomlEntry } from '../client-configs/toml-config.js';
import {
  action,
  type ExitSlot,
  helpEpilogue,
  parseClientMetadataUrl,
  parsePort,
  parseServerUrl,
} from '../command-helpers.js';
import type { CliDeps } from '../deps.js';
import { UsageError } from '../errors.js';
import { ExitCode } from '../exit-codes.js';
import type { GlobalOptions } from '../global-options.js';
import { readJsonArgument } from '../json-argument.js';
import { makeStyle, shellQuote } from '../output.js';

export interface SetupOptions {
  global: GlobalOptions;
  client: ClientConfig;
  serverUrl: string;
  name: string;
  /** The config file (from --config, else the client's default). */
  configPath: string;
  write: boolean;
  force: boolean;
  json: boolean;
  /** What the client runs. */
  command: StdioCommand;
  /** The sign-in to suggest, with the same store and flags as the proxy. */
  loginCommand: string;
}

export interface SetupFlags {
  name?: string;
  write?: boolean;
  force?: boolean;
  config?: string;
  project?: boolean;
  commandPath?: boolean;
  json?: boolean;
  // Passed on to `authkeep proxy`:
  header?: string[];
  clientId?: string;
  staticOauthClientInfo?: string;
  staticOauthClientMetadata?: string;
  clientMetadataUrl?: string;
  host?: string;
  transport?: string;
  resource?: string;
  callbackPort?: string;
}

/** Where setup runs: the parts of the process it reads, handed in for tests. */
export interface SetupContext {
  env: NodeJS.ProcessEnv;
  cwd: string;
  platform: NodeJS.Platform;
  /** The running node binary and authkeep script (for --command-path). */
  execPath: string;
  script: string | undefined;
  /** `--home` given on this command line (not from the environment): the proxy gets it too. */
  explicitHome: string | undefined;
}

const ENV_REFERENCE = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g;
/** Header names whose value is a credential. */
const SECRET_HEADER = /auth|token|secret|key|password|passwd|cookie|session|credential|signature/i;
/** An authentication scheme before the credential (`Bearer ${TOKEN}`). */
const AUTH_SCHEME = /^(bearer|basic|token|dpop|apikey|api-key)\b\s*/i;

function parseClient(value: string): ClientConfig {
  if (!(CLIENT_IDS as readonly string[]).includes(value)) {
    throw new UsageError(
      `<client> must be one of ${CLIENT_IDS.join(', ')}, got ${JSON.stringify(value)}`,
      'e.g. authkeep setup claude-code https://mcp.example.com/mcp',
    );
  }
  return CLIENTS[value as ClientId];
}

function parseSetupUrl(value: string, allowHttp: boolean): string {
  const serverUrl = parseServerUrl(value);
  const url = new URL(serverUrl);
  if (url.protocol === 'http:') {
    if (!isLoopbackHost(url.hostname)) {
      throw new UsageError(
        `<url> must be https: ${serverUrl} uses http on a host that is not this machine`,
        'use the https URL of the server',
      );
    }
    if (!allowHttp) {
      throw new UsageError(
        `<url> uses http (${serverUrl}); the proxy allows that for this machine only with --allow-http`,
        `pass --allow-http to setup: authkeep setup ... ${serverUrl} --allow-http`,
      );
    }
  }
  return serverUrl;
}

/** `--header` values as given (with their ${ENV} references), checked; returns the variables referenced. */
function checkHeaders(values: readonly string[]): string[] {
  let literal: Record<string, string>;
  try {
    // With an empty environment every ${ENV} becomes '': what is left is what would be written as is.
    literal = parseHeaderArgs(values, {}, () => undefined);
  } catch (err) {
    if (err instanceof AuthkeepError) throw new UsageError(err.message, `e.g. --header 'X-Api-Key: \${API_KEY}'`);
    throw err;
  }
  for (const [name, value] of Object.entries(literal)) {
    if (SECRET_HEADER.test(name) && value.replace(AUTH_SCHEME, '').trim() !== '') {
      throw new UsageError(
        `--header ${name}: its value would be written into the config file in plain text`,
        `put the secret in an environment variable and pass --header '${name}: \${NAME}' (single quotes, so your shell leaves \${NAME} for the proxy)`,
      );
    }
  }
  const vars = new Set<string>();
  for (const v of values) for (const m of v.matchAll(ENV_REFERENCE)) vars.add(m[1] as string);
  return [...vars];
}

/** A JSON flag for the proxy: `@file` becomes an absolute path, inline JSON is checked and compacted. */
function jsonFlagValue(value: string, flag: string, cwd: string): { arg: string; inline?: Record<string, unknown> } {
  const parsed = readJsonArgument(value.startsWith('@') ? `@${path.resolve(cwd, value.slice(1))}` : value, flag);
  if (value.startsWith('@')) return { arg: `@${path.resolve(cwd, value.slice(1))}` };
  return { arg: JSON.stringify(parsed), inline: parsed };
}

/** The proxy's arguments after `proxy`: `<url> [callback-port] [flags]`. */
function proxyArguments(serverUrl: string, flags: SetupFlags, global: GlobalOptions, ctx: SetupContext): string[] {
  const args = [serverUrl];
  if (flags.callbackPort !== undefined) args.push(String(parsePort(flags.callbackPort, '--callback-port')));
  for (const header of flags.header ?? []) args.push('--header', header);
  if (flags.clientId !== undefined && flags.staticOauthClientInfo !== undefined) {
    throw new UsageError('--client-id and --static-oauth-client-info both name the client; pass one');
  }
  if (flags.clientId !== undefined) {
    if (flags.clientId === '') throw new UsageError('--client-id must not be empty');
    args.push('--static-oauth-client-info', JSON.stringify({ client_id: flags.clientId }));
  }
  if (flags.staticOauthClientInfo !== undefined) {
    const info = jsonFlagValue(flags.staticOauthClientInfo, '--static-oauth-client-info', ctx.cwd);
    if (info.inline && 'client_secret' in info.inline) {
      throw new UsageError(
        '--static-oauth-client-info: its client_secret would be written into the config file in plain text',
        'put the JSON in a file only you can read (chmod 600) and pass --static-oauth-client-info @FILE',
      );
    }
    args.push('--static-oauth-client-info', info.arg);
  }
  if (flags.clientMetadataUrl !== undefined) {
    if (flags.clientId !== undefined || flags.staticOauthClientInfo !== undefined) {
      throw new UsageError(
        `--client-metadata-url and ${flags.clientId !== undefined ? '--client-id' : '--static-oauth-client-info'} both name the client; pass one`,
      );
    }
    args.push(
      '--client-metadata-url',
      parseClientMetadataUrl(flags.clientMetadataUrl, '--client-metadata-url', global.allowHttp),
    );
  }
  if (flags.staticOauthClientMetadata !== undefined) {
    args.push(
      '--static-oauth-client-metadata',
      jsonFlagValue(flags.staticOauthClientMetadata, '--static-oauth-client-metadata', ctx.cwd).arg,
    );
  }
  if (flags.host !== undefined) {
    if (flags.host !== 'localhost' && flags.host !== '127.0.0.1') {
      throw new UsageError(`--host must be localhost or 127.0.0.1, got ${JSON.stringify(flags.host)}`);
    }
    args.push('--host', flags.host);
  }
  if (flags.transport !== undefined) {
    if (!TRANSPORT_STRATEGIES.includes(flags.transport as TransportStrategy)) {
      throw new UsageError(
        `--transport must be one of ${TRANSPORT_STRATEGIES.join(', ')}, got ${JSON.stringify(flags.transport)}`,
      );
    }
    args.push('--transport', flags.transport);
  }
  if (flags.resource !== undefined) args.push('--resource', parseServerUrl(flags.resource));
  if (global.allowHttp) args.push('--allow-http');
  if (ctx.explicitHome !== undefined) args.push('--home', path.resolve(ctx.cwd, ctx.explicitHome));
  if (global.account !== DEFAULT_ACCOUNT) args.push('--account', global.account);
  return args;
}

export function parseSetupOptions(
  clientArg: string,
  url: string,
  flags: SetupFlags,
  global: GlobalOptions,
  ctx: SetupContext,
): SetupOptions {
  const client = parseClient(clientArg);
  const serverUrl = parseSetupUrl(url, global.allowHttp);
  const name = flags.name ?? defaultServerName(serverUrl, client);
  if (!client.namePattern.test(name)) {
    throw new UsageError(
      `--name ${JSON.stringify(name)} is not a server name ${client.title} accepts: ${client.nameRule}`,
      'e.g. --name example',
    );
  }
  if (flags.project && !client.hasProjectFile) {
    throw new UsageError(
      `--project applies to cursor only (${client.title} has one config file here; --config picks another)`,
    );
  }
  const envVars = checkHeaders(flags.header ?? []);
  const proxyArgs = proxyArguments(serverUrl, flags, global, ctx);
  let command: StdioCommand;
  if (flags.commandPath) {
    if (ctx.script === undefined) throw new UsageError('--command-path: cannot tell where this authkeep is installed');
    let script = path.resolve(ctx.script);
    try {
      script = realpathSync(script);
    } catch {
      // keep the path as given
    }
    command = { command: ctx.execPath, args: [script, 'proxy', ...proxyArgs], envVars };
  } else {
    command = { command: 'npx', args: ['-y', 'authkeep', 'proxy', ...proxyArgs], envVars };
  }
  const configPath =
    flags.config !== undefined && flags.config !== ''
      ? path.resolve(ctx.cwd, flags.config)
      : client.defaultPath({ env: ctx.env, platform: ctx.platform, cwd: ctx.cwd, project: flags.project === true });
  const loginCommand = [
    'authkeep',
    'login',
    serverUrl,
    ...(flags.clientMetadataUrl !== undefined ? ['--client-metadata-url', flags.clientMetadataUrl] : []),
    ...(global.allowHttp ? ['--allow-http'] : []),
    ...(ctx.explicitHome !== undefined ? ['--home', path.resolve(ctx.cwd, ctx.explicitHome)] : []),
    ...(global.account !== DEFAULT_ACCOUNT ? ['--account', global.account] : []),
  ]
    .map(shellQuote)
    .join(' ');
  return {
    global,
    client,
    serverUrl,
    name,
    configPath,
    loginCommand,
    write: flags.write === true,
    force: flags.force === true,
    json: flags.json === true,
    command,
  };
}

/** The entry as the text to paste: a whole JSON document, or the TOML table. */
export function entrySnippet(options: SetupOptions): string {
  const { client, name } = options;
  const entry = client.entry(options.command);
  if (client.format === 'toml') {
    return renderTomlTable([client.containerKey, name], entry, '\n');
  }
  return `${renderJson({ [client.containerKey]: { [name]: entry } }, { eol: '\n', unit: '  ' }, '')}\n`;
}

function commandLine(command: StdioCommand): string {
  return [command.command, ...command.args].map(shellQuote).join(' ');
}

/** What the client's own variable handling does to a --header's ${ENV} reference. */
function headerNotes(options: SetupOptions): string[] {
  const vars = options.command.envVars;
  if (vars.length === 0) return [];
  const list = vars.map((v) => `\${${v}}`).join(', ');
  if (options.client.id === 'claude-code') {
    return [
      `note: Claude Code replaces ${list} with the value from its own environment when it starts the proxy, so while it runs the value is in the proxy's command line (visible to other users' \`ps\` on this machine); the file keeps only the reference.`,
    ];
  }
  if (options.client.id === 'codex') {
    return [`note: env_vars lets Codex pass ${vars.join(', ')} from its environment to the proxy.`];
  }
  return [`note: the proxy reads ${vars.join(', ')} from the environment ${options.client.title} starts it with.`];
}

export async function runSetup(deps: CliDeps, options: SetupOptions): Promise<ExitCode> {
  const { client, name, configPath } = options;
  const entry = client.entry(options.command);
  const addLine = client.id === 'claude-code' ? claudeMcpAddLine(name, options.command) : undefined;
  if (!options.write) {
    const snippet = entrySnippet(options);
    if (options.json) {
      const out = {
        client: client.id,
        name,
        configPath,
        format: client.format,
        entry,
        snippet,
        ...(addLine ? { claudeMcpAdd: addLine } : {}),
      };
      deps.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    } else {
      const where =
        client.format === 'toml'
          ? `add this table to ${configPath}`
          : `add the "${name}" entry to "${client.containerKey}" in ${configPath}`;
      deps.stdout.write(
        `${client.title}: ${where}\n(or run the same command with --write to merge it there, after a backup):\n\n${snippet}`,
      );
      if (addLine) deps.stdout.write(`\nOr let Claude Code add it (run in the project directory):\n\n  ${addLine}\n`);
    }
    for (const note of headerNotes(options)) deps.stderr.write(`${note}\n`);
    return ExitCode.Ok;
  }

  try {
    const file = await readConfigFile(configPath);
    const edit =
      client.format === 'toml'
        ? setTomlEntry(file.text, {
            tableKey: client.containerKey,
            name,
            entry,
            force: options.force,
            file: configPath,
          })
        : setJsonEntry(file.text, {
            dialect: client.format,
            containerKey: client.containerKey,
            name,
            entry,
            force: options.force,
            file: configPath,
          });
    const backup = await replaceConfigFile(file, edit.text, deps.now());
    if (options.json) {
      const out = { client: client.id, name, configPath, backupPath: backup ?? null, replaced: edit.replaced, entry };
      deps.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    } else {
      const check = makeStyle(deps.stdout, deps.env).green('✓');
      const rows: Array<[string, string]> = [
        ['backup', backup ?? 'none (the file is new)'],
        ['runs', commandLine(options.command)],
        [
          'next',
          `sign in once now, so ${client.title} starts signed in: ${options.loginCommand}; then restart ${client.title} (or reload its MCP servers)`,
        ],
      ];
      deps.stdout.write(
        `${check} ${edit.replaced ? 'Replaced' : 'Added'} the server "${name}" in ${configPath} (${client.title})\n` +
          rows.map(([k, v]) => `  ${k.padEnd(7)} ${v}`).join('\n') +
          '\n',
      );
    }
    for (const note of headerNotes(options)) deps.stderr.write(`${note}\n`);
    return ExitCode.Ok;
  } catch (err) {
    if (!(err instanceof ConfigEditError)) throw err;
    deps.stderr.write(`authkeep: ${err.message}\nhint: ${err.hint}\n`);
    return ExitCode.Error;
  }
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

export function registerSetup(program: Command, deps: CliDeps, exit: ExitSlot): void {
  program
    .command('setup')
    .summary("add authkeep's proxy for <url> to an MCP client's config (print, or --write)")
    .description(
      `Print the config entry that makes an MCP client run \`authkeep proxy <url>\`, or with --write\n` +
        `merge it into the client's config file (after a timestamped backup beside it). Only that\n` +
        `entry changes; other entries, comments and formatting stay as they are.\n\n` +
        `Clients and their files:\n` +
        `  claude-code     .mcp.json in this directory (also prints the \`claude mcp add\` line)\n` +
        `  claude-desktop  claude_desktop_config.json (macOS ~/Library/Application Support/Claude,\n` +
        `                  Windows %APPDATA%\\Claude, Linux ~/.config/Claude)\n` +
        `  cursor          ~/.cursor/mcp.json, or .cursor/mcp.json here with --project\n` +
        `  vscode          .vscode/mcp.json in this directory\n` +
        `  codex           ~/.codex/config.toml ($CODEX_HOME/config.toml)`,
    )
    .argument('<client>', CLIENT_IDS.join(' | '))
    .argument('<url>', 'the MCP server URL')
    .option('--name <name>', "the server's name in the client (default: from the URL's host)")
    .option('--write', "merge the entry into the client's config file (after a backup) instead of printing it")
    .option('--force', 'with --write: replace an entry of the same name')
    .option('--config <path>', "the client's config file (default: the client's usual location)")
    .option('--project', "cursor: the project's .cursor/mcp.json instead of ~/.cursor/mcp.json")
    .option(
      '--command-path',
      'run this node and this authkeep by absolute path instead of `npx -y authkeep` (no npx or PATH needed)',
    )
    .option('--json', 'print the result as JSON')
    .option(
      '--header <header>',
      // biome-ignore lint/suspicious/noTemplateCurlyInString: mcp-remote's literal ${ENV} header syntax
      'proxy: extra header "Name: value"; keep secrets as ${ENV} (single-quoted) (repeatable)',
      collect,
    )
    .option('--client-id <id>', 'proxy: a pre-registered client ID (no secret)')
    .option('--static-oauth-client-info <json|@file>', 'proxy: a pre-registered client; a client_secret only in @file')
    .option('--static-oauth-client-metadata <json|@file>', 'proxy: client metadata for dynamic registration')
    .option('--client-metadata-url <url>', 'proxy: the client ID metadata document URL to use as the client')
    .option('--callback-port <port>', 'proxy: port of the loopback redirect URI for sign-in')
    .option('--host <host>', 'proxy: host name of the redirect URI: localhost or 127.0.0.1')
    .option('--transport <strategy>', `proxy: ${TRANSPORT_STRATEGIES.join(' | ')}`)
    .option('--resource <url>', 'proxy: isolate this sign-in from others to the same server')
    .addHelpText(
      'after',
      helpEpilogue([
        'authkeep setup claude-code https://mcp.example.com/mcp',
        'authkeep setup claude-desktop https://mcp.example.com/mcp --write',
        'authkeep setup cursor https://mcp.example.com/mcp --project --write',
        'authkeep setup vscode https://mcp.example.com/mcp --name example --write',
        // biome-ignore lint/suspicious/noTemplateCurlyInString: mcp-remote's literal ${ENV} header syntax
        "authkeep setup codex https://mcp.example.com/mcp --header 'X-Api-Key: ${API_KEY}' --write",
        'authkeep setup claude-desktop https://mcp.example.com/mcp --command-path --write --force',
      ]),
    )
    .action(
      action(
        deps,
        exit,
        (cmd, global) =>
          parseSetupOptions(cmd.args[0] as string, cmd.args[1] as string, cmd.opts<SetupFlags>(), global, {
            env: deps.env,
            cwd: process.cwd(),
            platform: process.platform,
            execPath: process.execPath,
            script: process.argv[1],
            explicitHome: cmd.optsWithGlobals<{ home?: string }>().home,
          }),
        runSetup,
        (o) => o.serverUrl,
      ),
    );
}
