/**
 * command-helpers: the small pieces every command file shares: the help epilogue (examples and
 * exit codes), argument validation, and running a command's run() with error reporting.
 *
 * Not for: any command's behaviour.
 */
import type { Command } from 'commander';
import { AuthkeepError } from '../errors.js';
import { assertClientMetadataUrl } from '../oauth/client-metadata-document.js';
import { canonicalServerUrl } from '../session/canonical-url.js';
import type { CliDeps } from './deps.js';
import { reportError, UsageError } from './errors.js';
import { EXIT_CODES_HELP, type ExitCode } from './exit-codes.js';
import { type GlobalOptions, parseGlobalOptions, type RawGlobalFlags } from './global-options.js';

/** Appended to every command's --help. */
export function helpEpilogue(examples: string[]): string {
  return `\nExamples:\n${examples.map((e) => `  $ ${e}`).join('\n')}\n\n${EXIT_CODES_HELP}\n`;
}

/** A server URL argument: absolute http(s), canonicalised; else a usage error. */
export function parseServerUrl(value: string): string {
  try {
    return canonicalServerUrl(value);
  } catch (err) {
    throw new UsageError((err as Error).message, 'pass the MCP server URL, e.g. https://mcp.example.com/mcp');
  }
}

/**
 * A client ID metadata document URL (`--client-metadata-url`, `client-metadata <url>`): https with
 * a path, no fragment, in normal form (http only on loopback with --allow-http); else a usage error.
 */
export function parseClientMetadataUrl(value: string, flag: string, allowHttp: boolean): string {
  try {
    assertClientMetadataUrl(value, flag, allowHttp);
  } catch (err) {
    if (!(err instanceof AuthkeepError)) throw err;
    throw new UsageError(
      err.message,
      err.code === 'insecure_url'
        ? 'the document must be served over https (http only on 127.0.0.1, localhost or [::1] with --allow-http)'
        : 'e.g. https://app.example.com/oauth/client.json',
    );
  }
  return value;
}

/** A TCP port 1-65535 (0 only when `allowZero`). */
export function parsePort(value: string, flag: string, allowZero = false): number {
  const port = /^\d+$/.test(value) ? Number(value) : NaN;
  if (!Number.isInteger(port) || port > 65535 || port < (allowZero ? 0 : 1)) {
    throw new UsageError(
      `${flag} must be a port number between ${allowZero ? 0 : 1} and 65535, got ${JSON.stringify(value)}`,
    );
  }
  return port;
}

/** Where a command's action stores its exit code for runCli to return. */
export interface ExitSlot {
  code: ExitCode;
}

/**
 * Wire a command's action: merge the global flags, build its options (parse errors are usage
 * errors, exit 2), run it, and map any failure to one line plus a hint.
 */
export function action<O>(
  deps: CliDeps,
  exit: ExitSlot,
  build: (cmd: Command, global: GlobalOptions) => O,
  run: (deps: CliDeps, options: O) => Promise<ExitCode>,
  serverUrlOf?: (options: O) => string | undefined,
): (...args: unknown[]) => Promise<void> {
  return async (...args: unknown[]) => {
    const cmd = args[args.length - 1] as Command;
    const global = parseGlobalOptions(cmd.optsWithGlobals<RawGlobalFlags>(), deps.env);
    let options: O | undefined;
    try {
      options = build(cmd, global);
      exit.code = await run(deps, options);
    } catch (err) {
      exit.code = reportError(err, {
        stderr: deps.stderr,
        debug: global.debug,
        serverUrl: options && serverUrlOf ? serverUrlOf(options) : undefined,
      });
    }
  };
}
