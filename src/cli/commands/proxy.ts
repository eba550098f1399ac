/**
 * proxy: `authkeep proxy <url> [callback-port]`: a stdio MCP server that forwards every JSON-RPC
 * message to the remote server (Streamable HTTP, or the older SSE transport) with authkeep's
 * authentication. It accepts mcp-remote's common arguments so `npx mcp-remote URL` can be swapped
 * for `npx authkeep proxy URL` in an MCP client's config. stdout belongs to the protocol: this
 * command writes nothing there itself; logs go to stderr and a log file under the home.
 *
 * This file only parses and resolves the flags (header ${ENV} expansion, JSON or @file values) and
 * hands them to `runProxy` in src/mcp/proxy.ts, which does the bridging, the logging (stderr and
 * `<home>/logs/`) and builds the AuthKeeper from these fields.
 */
import type { Command } from 'commander';
import type * as z from 'zod/mini';
import { AuthkeepError } from '../../errors.js';
import { runProxy } from '../../mcp/proxy.js';
import {
  type ProxyOptions,
  parseHeaderArgs,
  StaticOAuthClientInfoSchema,
  StaticOAuthClientMetadataSchema,
  TRANSPORT_STRATEGIES,
  type TransportStrategy,
} from '../../mcp/proxy-options.js';
import { accountHome } from '../../store/paths.js';
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
import { addMachineFlags, type MachineFlags, parseMachineFlags } from '../machine-flags.js';

export interface ProxyCliOptions {
  global: GlobalOptions;
  proxy: ProxyOptions;
}

export interface ProxyFlags extends MachineFlags {
  header?: string[];
  staticOauthClientInfo?: string;
  staticOauthClientMetadata?: string;
  clientMetadataUrl?: string;
  host?: string;
  transport?: string;
  resource?: string;
}

/** Why `issue` refused the member `field` of `value`, in words; never the value itself (it may be a secret). */
function problemOf(issue: z.core.$ZodIssue, value: Record<string, unknown>, field: string): string {
  if (issue.code === 'invalid_type') return value[field] === undefined ? 'is missing' : `must be a ${issue.expected}`;
  if (issue.code === 'too_small') return 'must not be empty';
  if (issue.code === 'invalid_value') return `must be one of ${issue.values.map(String).join(', ')}`;
  return 'is not valid';
}

/** A JSON object flag (inline or `@file`) validated by `schema`; a bad member is a usage error naming it. */
function parseJsonFlag<T>(value: string, flag: string, schema: z.ZodMiniType<T>): T {
  const object = readJsonArgument(value, flag);
  const parsed = schema.safeParse(object);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const field = issue?.path.map(String).join('.') ?? '';
  throw new UsageError(`${flag}: "${field}" ${issue ? problemOf(issue, object, field) : 'is not valid'}`);
}

export function parseProxyOptions(
  url: string,
  callbackPort: string | undefined,
  flags: ProxyFlags,
  global: GlobalOptions,
  deps: Pick<CliDeps, 'env' | 'stderr'>,
): ProxyCliOptions {
  const serverUrl = parseServerUrl(url);
  const warn = (message: string) => deps.stderr.write(`authkeep: warning: ${message}\n`);
  let headers: Record<string, string>;
  try {
    headers = parseHeaderArgs(flags.header ?? [], deps.env, warn);
  } catch (err) {
    // biome-ignore lint/suspicious/noTemplateCurlyInString: mcp-remote's literal ${ENV} header syntax
    if (err instanceof AuthkeepError) throw new UsageError(err.message, 'e.g. --header "X-Api-Key: ${API_KEY}"');
    throw err;
  }
  const transport = (flags.transport ?? 'http-first') as TransportStrategy;
  if (!TRANSPORT_STRATEGIES.includes(transport)) {
    throw new UsageError(
      `--transport must be one of ${TRANSPORT_STRATEGIES.join(', ')}, got ${JSON.stringify(flags.transport)}`,
    );
  }
  if (flags.host !== undefined && flags.host !== 'localhost' && flags.host !== '127.0.0.1') {
    throw new UsageError(
      `--host must be localhost or 127.0.0.1 (the redirect must stay on this machine), got ${JSON.stringify(flags.host)}`,
    );
  }
  const port = callbackPort === undefined ? undefined : parsePort(callbackPort, 'callback-port');
  const staticClientInfo =
    flags.staticOauthClientInfo === undefined
      ? undefined
      : parseJsonFlag(flags.staticOauthClientInfo, '--static-oauth-client-info', StaticOAuthClientInfoSchema);
  const staticClientMetadata =
    flags.staticOauthClientMetadata === undefined
      ? undefined
      : parseJsonFlag(
          flags.staticOauthClientMetadata,
          '--static-oauth-client-metadata',
          StaticOAuthClientMetadataSchema,
        );
  if (flags.resource !== undefined) parseServerUrl(flags.resource);
  if (
    flags.clientSecretFile !== undefined &&
    flags.clientCredentials !== true &&
    flags.assertionFile === undefined &&
    flags.assertionEnv === undefined
  ) {
    throw new UsageError(
      '--client-secret-file is for a machine identity here',
      'add --client-credentials (or use --static-oauth-client-info)',
    );
  }
  const machineGrant = parseMachineFlags(flags);
  if (flags.clientMetadataUrl !== undefined && (machineGrant || staticClientInfo)) {
    throw new UsageError(
      `--client-metadata-url and ${machineGrant ? 'a machine identity' : '--static-oauth-client-info'} both name the client; pass one`,
    );
  }
  const clientMetadataUrl =
    flags.clientMetadataUrl === undefined
      ? undefined
      : parseClientMetadataUrl(flags.clientMetadataUrl, '--client-metadata-url', global.allowHttp);
  if (machineGrant && staticClientInfo) {
    throw new UsageError(
      '--static-oauth-client-info and a machine identity (--client-credentials, --assertion-*) exclude each other',
    );
  }

  return {
    global,
    proxy: {
      serverUrl,
      callbackPort: port,
      headers,
      staticClientInfo,
      staticClientMetadata,
      ...(clientMetadataUrl !== undefined ? { clientMetadataUrl } : {}),
      host: flags.host as ProxyOptions['host'],
      transport,
      resource: flags.resource,
      ...(machineGrant ? { machineGrant } : {}),
      allowHttp: global.allowHttp,
      debug: global.debug,
      home: accountHome(global.home, global.account),
      ...(global.dpop ? { keeperOptions: { dpop: global.dpop } } : {}),
    },
  };
}

export async function runProxyCommand(_deps: CliDeps, options: ProxyCliOptions): Promise<ExitCode> {
  const code = await runProxy(options.proxy);
  return (Object.values(ExitCode) as number[]).includes(code) ? (code as ExitCode) : ExitCode.Error;
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

export function registerProxy(program: Command, deps: CliDeps, exit: ExitSlot): void {
  const command = program
    .command('proxy')
    .summary('run a stdio MCP server that forwards to <url> with authkeep auth (mcp-remote compatible)')
    .description(
      'Bridge stdio JSON-RPC to the remote MCP server at <url> (Streamable HTTP, or SSE), signing in ' +
        "and refreshing with authkeep. Put it in an MCP client's config instead of mcp-remote " +
        '("command": "npx", "args": ["authkeep", "proxy", "https://mcp.example.com/mcp"]). ' +
        'stdout carries the protocol only; logs go to stderr and <home>/logs/proxy-<pid>.log.',
    )
    .argument('<url>', 'the MCP server URL')
    .argument('[callback-port]', 'port of the loopback redirect URI for sign-in')
    .option(
      '--header <header>',
      // biome-ignore lint/suspicious/noTemplateCurlyInString: mcp-remote's literal ${ENV} header syntax
      'extra header "Name: value" on every request; ${ENV} is expanded (repeatable)',
      collect,
    )
    .option(
      '--static-oauth-client-info <json|@file>',
      'a pre-registered client: {"client_id": ..., "client_secret": ...}',
    )
    .option(
      '--static-oauth-client-metadata <json|@file>',
      'client metadata for dynamic registration, e.g. {"client_name": ...}',
    )
    .option(
      '--client-metadata-url <url>',
      'use the client ID metadata document published at this https URL as the client, where the authorization server supports it',
    )
    .option('--host <host>', 'host name of the redirect URI: localhost or 127.0.0.1')
    .option('--transport <strategy>', `${TRANSPORT_STRATEGIES.join(' | ')}`, 'http-first')
    .option('--resource <url>', 'isolate this sign-in from others to the same server (mcp-remote --resource)');
  addMachineFlags(command, true)
    .addHelpText(
      'after',
      helpEpilogue([
        'authkeep proxy https://mcp.example.com/mcp',
        // biome-ignore lint/suspicious/noTemplateCurlyInString: mcp-remote's literal ${ENV} header syntax
        'authkeep proxy https://mcp.example.com/mcp 3334 --header "X-Api-Key: ${API_KEY}"',
        'authkeep proxy https://mcp.example.com/sse --transport sse-only',
        'authkeep proxy http://127.0.0.1:8080/mcp --allow-http --debug',
        'authkeep proxy https://mcp.example.com/mcp --client-credentials --client-id ci-bot --client-secret-env CI_BOT_SECRET',
      ]),
    )
    .action(
      action(
        deps,
        exit,
        (cmd, global) => parseProxyOptions(cmd.args[0] as string, cmd.args[1], cmd.opts<ProxyFlags>(), global, deps),
        runProxyCommand,
        (o) => o.proxy.serverUrl,
      ),
    );
}
