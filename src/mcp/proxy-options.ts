/**
 * proxy-options: what the stdio proxy takes (mcp-remote's common arguments, resolved) and the
 * pure steps from those options to the proxy's settings: `--header` values with `${ENV}`
 * expanded, the remote URL check, the log file's path, the AuthKeeper options. Free of the MCP
 * SDK, so `authkeep proxy`'s arguments are parsed without loading it.
 *
 * Not for: parsing a command line (src/cli/commands/proxy.ts, the one parser) or running the
 * proxy (proxy.ts).
 */
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import * as z from 'zod/mini';
import { AuthkeepError } from '../errors.js';
import { canonicalServerUrl } from '../session/canonical-url.js';
import type { LogSink } from '../session/log.js';
import type { MachineGrantOptions } from '../session/machine-grant.js';
import type { AuthKeeperOptions, SessionKeeper } from '../session/session-keeper.js';
import type { StaticClient } from '../session/sign-in.js';
import { storeLayout } from '../store/paths.js';

export const TRANSPORT_STRATEGIES = ['http-first', 'sse-first', 'http-only', 'sse-only'] as const;
export type TransportStrategy = (typeof TRANSPORT_STRATEGIES)[number];

/** mcp-remote's `--static-oauth-client-info`: a pre-registered client (RFC 7591 names); other members are ignored. */
export const StaticOAuthClientInfoSchema = z.object({
  client_id: z.string().check(z.minLength(1)),
  client_secret: z.exactOptional(z.string()),
  token_endpoint_auth_method: z.exactOptional(z.enum(['none', 'client_secret_basic', 'client_secret_post'])),
});
export type StaticOAuthClientInfo = z.infer<typeof StaticOAuthClientInfoSchema>;

/**
 * mcp-remote's `--static-oauth-client-metadata`: `client_name` names the client in dynamic
 * registration and `scope` is asked for; other members are kept and ignored.
 */
export const StaticOAuthClientMetadataSchema = z.looseObject({
  client_name: z.exactOptional(z.string()),
  scope: z.exactOptional(z.string()),
});
export type StaticOAuthClientMetadata = z.infer<typeof StaticOAuthClientMetadataSchema>;

/**
 * What `runProxy` takes: mcp-remote's common arguments, resolved. The CLI (`authkeep proxy`)
 * parses command lines into this.
 */
export interface ProxyOptions {
  /** `<url>`: the remote MCP server. */
  serverUrl: string;
  /** `[callback-port]`: port of the loopback redirect URI for sign-in. */
  callbackPort?: number | undefined;
  /** `--header "Name: value"` (repeatable), `${ENV}` already expanded (see parseHeaderArgs). */
  headers?: Record<string, string> | undefined;
  /** `--static-oauth-client-info`: a pre-registered client instead of registration. */
  staticClientInfo?: StaticOAuthClientInfo | undefined;
  /** `--static-oauth-client-metadata`: `client_name` names the client in DCR, `scope` is asked for. */
  staticClientMetadata?: StaticOAuthClientMetadata | undefined;
  /** `--client-metadata-url`: the client ID metadata document URL, used where the AS takes one. */
  clientMetadataUrl?: string | undefined;
  /** `--host`: host name of the loopback redirect URI. */
  host?: '127.0.0.1' | 'localhost' | undefined;
  /** `--transport`. Default 'http-first'. */
  transport?: TransportStrategy | undefined;
  /**
   * `--resource` (mcp-remote isolates sign-ins with it). authkeep always sends the RFC 8707
   * resource the server's protected resource metadata publishes and keys its one record by the
   * server URL; this value is accepted for compatibility and logged.
   */
  resource?: string | undefined;
  /** `--allow-http`: http for loopback servers (OAuth stays https-only elsewhere). */
  allowHttp?: boolean | undefined;
  /** `--debug`: per-message log lines, debug-level authkeep events. */
  debug?: boolean | undefined;
  /** Store home. Default `$AUTHKEEP_HOME` or the platform's data directory. */
  home?: string | undefined;
  /**
   * `--client-credentials` / `--assertion-*` with `--client-id` and the credential's source: sign
   * in with this machine grant, never a browser (a CI job's proxy).
   */
  machineGrant?: MachineGrantOptions | undefined;
  /** Ready-made AuthKeeper options (the CLI's); they override what the fields above imply. */
  keeperOptions?: AuthKeeperOptions | undefined;
  /** An AuthKeeper (or SessionKeeper) to use instead of building one (embedding, tests). */
  keeper?: SessionKeeper | undefined;
  /** Streams (default the process's). */
  stdin?: Readable | undefined;
  stdout?: Writable | undefined;
  stderr?: Writable | undefined;
  /** Log file; false for none. Default `<home>/logs/proxy-<pid>.log`. */
  logFile?: string | false | undefined;
  /** Reconnection: attempts per outage and the first backoff delay. Default 6 attempts from 250 ms. */
  reconnect?: { attempts?: number; initialDelayMs?: number } | undefined;
}

/** Exit codes runProxy resolves with (the CLI's numbering). */
export const PROXY_EXIT = { ok: 0, error: 1, needsAuth: 4 } as const;

/**
 * `--header` values, mcp-remote style: `Name: value` (the value may contain colons; spaces around
 * it are trimmed), `${VAR}` replaced by the environment variable (empty, with a warning, when unset).
 * Throws `invalid_argument` for a malformed header or a value with a line break.
 */
export function parseHeaderArgs(
  values: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
  warn: (message: string) => void = () => undefined,
): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const raw of values) {
    const match = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*:\s*(.*)$/s.exec(raw);
    if (!match) {
      throw new AuthkeepError('invalid_argument', `--header ${JSON.stringify(raw)} is not "Name: value"`, {
        field: 'header',
      });
    }
    const name = match[1] as string;
    const value = (match[2] ?? '')
      .replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_all, variable: string) => {
        const found = env[variable];
        if (found === undefined) {
          warn(`environment variable ${variable} (in --header ${name}) is not set; using an empty value`);
          return '';
        }
        return found;
      })
      .trim();
    if (/[\r\n\0]/.test(value)) {
      throw new AuthkeepError('invalid_argument', `--header ${name}: the value contains a line break or NUL`, {
        field: 'header',
      });
    }
    headers[name] = value;
  }
  return headers;
}

/** The remote server URL: https, or http with `--allow-http`. */
export function parseRemoteUrl(serverUrl: string, allowHttp: boolean): URL {
  let url: URL;
  try {
    url = new URL(serverUrl);
  } catch {
    throw new AuthkeepError('invalid_argument', `server URL is not an absolute URL: ${JSON.stringify(serverUrl)}`, {
      field: 'serverUrl',
    });
  }
  if (url.protocol === 'https:') return url;
  if (url.protocol === 'http:') {
    if (allowHttp) return url;
    throw new AuthkeepError('insecure_url', `${url.href} is http: pass --allow-http for a local development server`, {
      field: 'serverUrl',
    });
  }
  throw new AuthkeepError(
    'invalid_argument',
    `server URL must be https (or http with --allow-http), got ${url.protocol}`,
    { field: 'serverUrl' },
  );
}

/** The log file: `logFile`, none when it is false, else `<home>/logs/proxy-<pid>.log` (in the store). */
export function logFilePath(options: ProxyOptions, home: string): string | undefined {
  if (options.logFile === false) return undefined;
  return options.logFile ?? path.join(storeLayout(home).logsDir, `proxy-${process.pid}.log`);
}

/**
 * The AuthKeeper options the proxy's fields imply; every event also goes to `proxyLog`. `prompts`
 * (how a sign-in is shown) apply unless `options.keeperOptions` brings its own.
 */
export function keeperOptionsFor(
  options: ProxyOptions,
  home: string,
  proxyLog: LogSink,
  prompts: Pick<AuthKeeperOptions, 'openAuthorizationUrl' | 'showDeviceCode'> = {},
): AuthKeeperOptions {
  const info = options.staticClientInfo;
  const staticClient: StaticClient | undefined = info && {
    clientId: info.client_id,
    ...(info.client_secret ? { clientSecret: info.client_secret } : {}),
    ...(info.token_endpoint_auth_method ? { tokenEndpointAuthMethod: info.token_endpoint_auth_method } : {}),
  };
  const clientName = options.staticClientMetadata?.client_name;
  const callback = {
    ...(options.callbackPort !== undefined ? { port: options.callbackPort } : {}),
    ...(options.host !== undefined ? { host: options.host } : {}),
  };
  const given = options.keeperOptions ?? {};
  const theirLog = given.log;
  const sink: LogSink = (event) => {
    proxyLog(event);
    theirLog?.(event);
  };
  return {
    home,
    allowInsecureLoopback: options.allowHttp === true,
    ...(Object.keys(callback).length ? { callback } : {}),
    ...(staticClient ? { staticClients: { [canonicalServerUrl(options.serverUrl)]: staticClient } } : {}),
    ...(options.machineGrant
      ? { machineGrants: { [canonicalServerUrl(options.serverUrl)]: options.machineGrant } }
      : {}),
    ...(typeof clientName === 'string' ? { clientName } : {}),
    ...(options.clientMetadataUrl !== undefined ? { clientMetadataUrl: options.clientMetadataUrl } : {}),
    ...prompts,
    ...given,
    log: sink,
  };
}
