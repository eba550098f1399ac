/**
 * proxy-main: a runnable entry for the stdio proxy with mcp-remote's command line, so the proxy can
 * be spawned directly (tests, or before the `authkeep proxy` command is built):
 *
 *   node --import tsx src/mcp/proxy-main.ts <url> [callback-port] [--header "Name: value"]...
 *     [--static-oauth-client-info <json|@file>] [--static-oauth-client-metadata <json|@file>]
 *     [--host localhost|127.0.0.1] [--transport http-first|sse-first|http-only|sse-only]
 *     [--resource <url>] [--allow-http] [--debug] [--home <dir>]
 *
 * stdout is the protocol's; every diagnostic goes to stderr (and the proxy's log file). Exit codes:
 * 0 the client closed stdin, 1 error, 2 usage, 4 needs-auth (the sign-in failed).
 *
 * Not for: the user-facing CLI (src/cli/commands/proxy.ts is `authkeep proxy`).
 */
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { isAuthkeepError, NeedsAuthError } from '../errors.js';
import {
  describeError,
  PROXY_EXIT,
  type ProxyOptions,
  parseHeaderArgs,
  runProxy,
  type StaticOAuthClientInfo,
  TRANSPORT_STRATEGIES,
  type TransportStrategy,
} from './proxy.js';

export class ProxyUsageError extends Error {
  override readonly name = 'ProxyUsageError';
}

const USAGE =
  'usage: proxy-main <url> [callback-port] [--header "Name: value"]... [--static-oauth-client-info <json|@file>]\n' +
  '  [--static-oauth-client-metadata <json|@file>] [--host localhost|127.0.0.1] [--transport http-first|sse-first|http-only|sse-only]\n' +
  '  [--resource <url>] [--allow-http] [--debug] [--home <dir>]';

/** mcp-remote's arguments -> ProxyOptions. Throws ProxyUsageError. */
export function parseProxyArgs(
  argv: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
  warn: (m: string) => void = () => undefined,
): ProxyOptions {
  const positional: string[] = [];
  const headers: string[] = [];
  const values: Record<string, string> = {};
  const flags = new Set<string>();
  const withValue = new Set([
    '--header',
    '--static-oauth-client-info',
    '--static-oauth-client-metadata',
    '--host',
    '--transport',
    '--resource',
    '--home',
  ]);
  const booleans = new Set(['--allow-http', '--debug']);
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (withValue.has(arg)) {
      const value = argv[++i];
      if (value === undefined) throw new ProxyUsageError(`${arg} needs a value`);
      if (arg === '--header') headers.push(value);
      else values[arg] = value;
    } else if (booleans.has(arg)) {
      flags.add(arg);
    } else if (arg.startsWith('--')) {
      throw new ProxyUsageError(`unknown option ${arg}`);
    } else {
      positional.push(arg);
    }
  }
  const [serverUrl, port, extra] = positional;
  if (!serverUrl) throw new ProxyUsageError('the server URL is missing');
  if (extra !== undefined) throw new ProxyUsageError(`unexpected argument ${extra}`);
  let callbackPort: number | undefined;
  if (port !== undefined) {
    callbackPort = Number(port);
    if (!/^\d+$/.test(port) || callbackPort < 1 || callbackPort > 65535)
      throw new ProxyUsageError(`callback-port must be 1-65535, got ${port}`);
  }
  const transport = (values['--transport'] ?? 'http-first') as TransportStrategy;
  if (!TRANSPORT_STRATEGIES.includes(transport))
    throw new ProxyUsageError(`--transport must be one of ${TRANSPORT_STRATEGIES.join(', ')}`);
  const host = values['--host'];
  if (host !== undefined && host !== 'localhost' && host !== '127.0.0.1')
    throw new ProxyUsageError('--host must be localhost or 127.0.0.1');
  let parsedHeaders: Record<string, string>;
  try {
    parsedHeaders = parseHeaderArgs(headers, env, warn);
  } catch (err) {
    throw new ProxyUsageError((err as Error).message);
  }
  const info = values['--static-oauth-client-info'];
  const metadata = values['--static-oauth-client-metadata'];
  const staticClientInfo =
    info === undefined
      ? undefined
      : (jsonArgument(info, '--static-oauth-client-info') as unknown as StaticOAuthClientInfo);
  if (staticClientInfo && (typeof staticClientInfo.client_id !== 'string' || staticClientInfo.client_id === '')) {
    throw new ProxyUsageError('--static-oauth-client-info needs a "client_id"');
  }
  return {
    serverUrl,
    ...(callbackPort !== undefined ? { callbackPort } : {}),
    headers: parsedHeaders,
    ...(staticClientInfo ? { staticClientInfo } : {}),
    ...(metadata !== undefined
      ? { staticClientMetadata: jsonArgument(metadata, '--static-oauth-client-metadata') }
      : {}),
    ...(host !== undefined ? { host } : {}),
    transport,
    ...(values['--resource'] !== undefined ? { resource: values['--resource'] } : {}),
    allowHttp: flags.has('--allow-http'),
    debug: flags.has('--debug'),
    ...(values['--home'] !== undefined ? { home: values['--home'] } : {}),
  };
}

function jsonArgument(value: string, flag: string): Record<string, unknown> {
  let text = value;
  if (value.startsWith('@')) {
    try {
      text = readFileSync(value.slice(1), 'utf8');
    } catch (err) {
      throw new ProxyUsageError(
        `cannot read ${flag} file ${value.slice(1)}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
      );
    }
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new ProxyUsageError(`${flag} is not valid JSON`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw new ProxyUsageError(`${flag} must be a JSON object`);
  return parsed as Record<string, unknown>;
}

async function main(): Promise<number> {
  let options: ProxyOptions;
  try {
    options = parseProxyArgs(process.argv.slice(2), process.env, (m) =>
      process.stderr.write(`authkeep proxy: warning: ${m}\n`),
    );
  } catch (err) {
    process.stderr.write(`authkeep proxy: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const stop = new AbortController();
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => stop.abort());
  try {
    const run = runProxy(options);
    const aborted = new Promise<number>((resolve) =>
      stop.signal.addEventListener('abort', () => resolve(PROXY_EXIT.ok)),
    );
    return await Promise.race([run, aborted]);
  } catch (err) {
    process.stderr.write(`authkeep proxy: ${describeError(err)}\n`);
    if (err instanceof NeedsAuthError) return PROXY_EXIT.needsAuth;
    return isAuthkeepError(err) && err.code === 'invalid_argument' ? 2 : PROXY_EXIT.error;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`authkeep proxy: ${describeError(err)}\n`);
      process.exit(1);
    },
  );
}
