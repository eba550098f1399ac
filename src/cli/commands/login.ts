/**
 * login: `authkeep login <url>`: discovery, client registration (pre-registered with
 * --client-id, else a client ID metadata document or dynamic registration), the browser step
 * (`$BROWSER`, else the platform opener; or --no-browser: the device authorization grant when the
 * AS offers it, else paste the redirect URL; --device: the device grant or an error), code
 * exchange, and a summary of where it stored what. Never prints a token or a secret.
 *
 * Not for: the protocol (session/, oauth/).
 */
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { displayJson, displayText } from '../../display-text.js';
import { AuthkeepError } from '../../errors.js';
import { createBrowserOpener, type OpenAuthorizationUrl } from '../../session/browser.js';
import type { ShowDeviceCode } from '../../session/device-sign-in.js';
import type { MachineGrantOptions } from '../../session/machine-grant.js';
import type { AuthKeeperOptions } from '../../session/session-keeper.js';
import type { ServerStatus } from '../../session/status.js';
import { atRestNotice } from '../at-rest-notice.js';
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
import { type GlobalOptions, keeperOptions } from '../global-options.js';
import { addMachineFlags, type MachineFlags, parseMachineFlags } from '../machine-flags.js';
import { createSpinner, formatDuration, makeStyle } from '../output.js';
import { pasteRedirectOpener } from '../paste-redirect.js';

/** Characters of a printed URL (sign-in URLs carry a PKCE challenge, a state and a redirect URI). */
const URL_MAX = 8000;

export interface LoginOptions {
  global: GlobalOptions;
  serverUrl: string;
  scope?: string | undefined;
  /** A pre-registered client (`--client-id`, `--client-secret-file`). */
  clientId?: string | undefined;
  clientSecretFile?: string | undefined;
  /** `--client-metadata-url`: the client ID metadata document URL, used where the AS takes one. */
  clientMetadataUrl?: string | undefined;
  callbackPort?: number | undefined;
  /** false with `--no-browser`: print the URL and read the pasted redirect URL from stdin. */
  browser: boolean;
  /** `--device`: the device authorization grant (RFC 8628), or an error when the AS lacks it. */
  device: boolean;
  json: boolean;
  /** A machine identity (`--client-credentials`, `--assertion-*`): no browser (machine-flags.ts). */
  grant?: MachineGrantOptions | undefined;
}

export interface LoginFlags extends MachineFlags {
  scope?: string;
  clientMetadataUrl?: string;
  callbackPort?: string;
  browser?: boolean;
  device?: boolean;
  json?: boolean;
}

export function parseLoginOptions(url: string, flags: LoginFlags, global: GlobalOptions): LoginOptions {
  if (flags.clientSecretFile !== undefined && flags.clientId === undefined) {
    throw new UsageError(
      '--client-secret-file needs --client-id',
      'pass the pre-registered client: --client-id ID --client-secret-file FILE',
    );
  }
  if (flags.scope !== undefined && !/^[\x21\x23-\x5b\x5d-\x7e]+( [\x21\x23-\x5b\x5d-\x7e]+)*$/.test(flags.scope)) {
    throw new UsageError(
      `--scope ${JSON.stringify(flags.scope)} is not a space-separated list of scopes (RFC 6749 section 3.3)`,
    );
  }
  const grant = parseMachineFlags(flags);
  if (flags.clientMetadataUrl !== undefined && (flags.clientId !== undefined || grant !== undefined)) {
    throw new UsageError(
      `--client-metadata-url and ${grant ? 'a machine identity' : '--client-id'} both name the client; pass one`,
    );
  }
  return {
    global,
    serverUrl: parseServerUrl(url),
    grant,
    scope: flags.scope,
    clientId: flags.clientId,
    clientSecretFile: flags.clientSecretFile,
    clientMetadataUrl:
      flags.clientMetadataUrl === undefined
        ? undefined
        : parseClientMetadataUrl(flags.clientMetadataUrl, '--client-metadata-url', global.allowHttp),
    callbackPort: flags.callbackPort === undefined ? undefined : parsePort(flags.callbackPort, '--callback-port'),
    browser: flags.browser !== false,
    device: flags.device === true,
    json: flags.json === true,
  };
}

async function readSecretFile(file: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new UsageError(
      `cannot read --client-secret-file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  const secret = text.replace(/\r?\n$/, '');
  if (secret === '') throw new UsageError(`--client-secret-file ${file} is empty`);
  return secret;
}

/** What `login --json` prints: the server's status plus where it was stored. */
export interface LoginResult extends ServerStatus {
  home: string;
  recordPath: string;
}

export async function runLogin(deps: CliDeps, options: LoginOptions): Promise<ExitCode> {
  const spinner = createSpinner(deps.stderr, deps.env);
  const host = new URL(options.serverUrl).host;
  const waiting = `Waiting for you to finish signing in for ${host} in the browser...`;
  let settled = false;
  const openByHand =
    'open the URL above in a browser on this machine (on another machine: ' +
    `authkeep login ${options.serverUrl} --no-browser)`;
  // The command starting is not the page opening: xdg-open without a desktop starts, then exits 3.
  const openInBrowser = createBrowserOpener({
    env: deps.env,
    onFailure: (failure) => {
      if (settled) return; // the sign-in is over: what became of the browser no longer matters
      spinner.stop();
      deps.stderr.write(
        `The browser command ${displayText(failure.command, 200)} failed (${failure.reason}); ${openByHand}.\n`,
      );
      spinner.start(waiting);
    },
  });
  // The URL is always printed (as gh does): whether a browser shows it is beyond what we can know.
  const browserOpener: OpenAuthorizationUrl = async (url) => {
    deps.stderr.write(`Open this URL to continue in your browser:\n\n  ${displayText(url, URL_MAX)}\n\n`);
    try {
      await openInBrowser(url);
    } catch (err) {
      // Not an http(s) URL: nobody should open it, by hand or otherwise.
      if (err instanceof AuthkeepError && err.field === 'authorization_endpoint') throw err;
      // No browser here (SSH, container): the user can still open it elsewhere on this machine.
      deps.stderr.write(`Could not open a browser (${displayText((err as Error).message, 2000)}); ${openByHand}.\n`);
    }
    spinner.start(waiting);
  };
  const opener = options.browser ? browserOpener : pasteRedirectOpener(deps);

  const showDeviceCode: ShowDeviceCode = (info) => {
    // All three come from the AS: a hostile one could hide or fake the code with escape sequences.
    deps.stderr.write(
      `To sign in, open this URL in a browser on any device:\n\n  ${displayText(info.verificationUri, URL_MAX)}\n\nand enter the code:  ${displayText(info.userCode, 100)}\n\n` +
        `${info.verificationUriComplete ? `(or open ${displayText(info.verificationUriComplete, URL_MAX)}, which carries the code)\n` : ''}` +
        `The code expires in ${formatDuration(info.expiresInSeconds * 1000)}.\n`,
    );
    spinner.start(`Waiting for you to approve the sign-in for ${host}...`);
  };

  const extra: AuthKeeperOptions = {
    openAuthorizationUrl: opener,
    showDeviceCode,
    ...(options.callbackPort !== undefined ? { callback: { port: options.callbackPort } } : {}),
    ...(options.clientMetadataUrl !== undefined ? { clientMetadataUrl: options.clientMetadataUrl } : {}),
  };
  if (options.clientId !== undefined && options.grant === undefined) {
    const clientSecret =
      options.clientSecretFile === undefined ? undefined : await readSecretFile(options.clientSecretFile);
    extra.staticClients = {
      [options.serverUrl]: { clientId: options.clientId, ...(clientSecret !== undefined ? { clientSecret } : {}) },
    };
  }
  const keeper = deps.createKeeper(keeperOptions(options.global, deps, extra));
  // SEP-990 with the IdP session: the browser (or the device grant) only to sign in to the IdP.
  const idpSession = options.grant?.type === 'id_jag' && options.grant.idToken === undefined;
  if (!options.json) {
    deps.stderr.write(
      `${
        idpSession && options.grant?.idp
          ? `Getting a token for ${options.serverUrl} (${GRANT_TEXT.id_jag}; your session at ${displayText(options.grant.idp.issuer)}, signed in to first when there is none)`
          : options.grant
            ? `Getting a token for ${options.serverUrl} (${GRANT_TEXT[options.grant.type]}, no browser)`
            : `Signing in to ${options.serverUrl}`
      }...\n`,
    );
  }
  let status: ServerStatus;
  try {
    // --no-browser: the device grant when the AS offers it, else the paste flow; --device: only it.
    const mode = options.device ? 'device' : options.browser ? 'browser' : 'auto';
    status = await keeper.login(options.serverUrl, {
      ...(options.scope !== undefined ? { scope: options.scope } : {}),
      ...(options.grant ? { grant: options.grant } : {}),
      ...(mode !== 'browser' && (!options.grant || idpSession) ? { mode } : {}),
      ...(options.device && (!options.grant || idpSession) ? { requireDevice: true } : {}),
    });
  } finally {
    settled = true;
    spinner.stop();
  }
  await atRestNotice(deps, keeper);
  const recordPath = keeper.store.locate(status.serverUrl);
  if (options.json) {
    const result: LoginResult = { ...status, home: keeper.home, recordPath };
    deps.stdout.write(`${displayJson(result, 2)}\n`);
    return ExitCode.Ok;
  }
  deps.stdout.write(
    loginSummary(status, keeper.home, recordPath, deps.now(), makeStyle(deps.stdout, deps.env).green('✓')),
  );
  return ExitCode.Ok;
}

const GRANT_TEXT = {
  client_credentials: 'client credentials grant',
  jwt_bearer: 'JWT bearer grant',
  id_jag: 'enterprise-managed: ID token exchanged at the identity provider',
} as const;

const REGISTRATION_TEXT: Record<NonNullable<ServerStatus['registration']>, string> = {
  dynamic: 'dynamic client registration',
  pre_registered: 'pre-registered client',
  client_id_metadata_document: 'client ID metadata document',
};

export function loginSummary(status: ServerStatus, home: string, recordPath: string, now: number, check = '✓'): string {
  const expires = status.accessTokenExpiresAt
    ? `${Date.parse(status.accessTokenExpiresAt) >= now ? `in ${formatDuration(Date.parse(status.accessTokenExpiresAt) - now)}` : 'already'} (${status.accessTokenExpiresAt})`
    : 'no expiry given by the authorization server';
  // issuer, client_id and scope are the AS's words.
  const rows: Array<[string, string]> = [
    ['home', home],
    ['record', recordPath],
    ['issuer', displayText(status.issuer ?? '-')],
    [
      'client_id',
      `${displayText(status.clientId ?? '-')} (${status.registration ? REGISTRATION_TEXT[status.registration] : 'unknown'})`,
    ],
    ['scope', displayText(status.scope ?? '(none granted)')],
    ['access token', `expires ${expires}`],
    ...(status.grant
      ? ([
          ['grant', displayText(status.grant.description, 1000)],
          ['next token', 'from the grant when this one is due (no refresh token, no browser)'],
        ] as Array<[string, string]>)
      : ([
          [
            'refresh token',
            status.hasRefreshToken
              ? 'stored; authkeep refreshes the access token when due'
              : 'none; sign in again when the access token expires',
          ],
        ] as Array<[string, string]>)),
  ];
  return `${check} Signed in to ${status.serverUrl}\n${rows.map(([k, v]) => `  ${k.padEnd(13)} ${v}`).join('\n')}\n`;
}

export function registerLogin(program: Command, deps: CliDeps, exit: ExitSlot): void {
  const command = program
    .command('login')
    .summary('sign in to a server and store its credentials')
    .description(
      'Sign in to the MCP server at <url>: discover its authorization server, register a client ' +
        '(or use --client-id), open the sign-in page in the browser ($BROWSER, else the system ' +
        'opener), and store the tokens. Prints where it stored what; never prints a token.',
    )
    .argument('<url>', 'the MCP server URL')
    .option('--scope <scopes>', 'scopes to request, space-separated (added to what the server asks for)')
    .option('--client-id <id>', 'use this pre-registered client instead of registering one')
    .option(
      '--client-secret-file <file>',
      "the pre-registered client's secret is in this file (with --client-id; with --client-credentials it is read at each token request)",
    )
    .option(
      '--client-metadata-url <url>',
      'use the client ID metadata document published at this https URL as the client (where the authorization server supports it; see authkeep client-metadata)',
    )
    .option('--callback-port <port>', 'port of the loopback redirect URI (default: any free port)')
    .option(
      '--no-browser',
      'for SSH sessions: sign in with a code on another device when the server offers it, else paste the redirect URL',
    )
    .option(
      '--device',
      'sign in with a code on another device (OAuth device authorization grant); fails if the server lacks it',
    )
    .option('--json', 'print the result as JSON');
  addMachineFlags(command, false)
    .addHelpText(
      'after',
      helpEpilogue([
        'authkeep login https://mcp.example.com/mcp',
        'authkeep login https://mcp.example.com/mcp --scope "mcp:read mcp:write"',
        'authkeep login https://mcp.example.com/mcp --client-id my-app --client-secret-file ~/.secrets/my-app',
        'authkeep login https://mcp.example.com/mcp --client-metadata-url https://app.example.com/oauth/client.json',
        'authkeep login https://mcp.example.com/mcp --no-browser    # over SSH: a code to enter elsewhere, or paste the redirect URL',
        'authkeep login https://mcp.example.com/mcp --device        # only the device code flow',
        'authkeep login https://mcp.example.com/mcp --client-credentials --client-id ci-bot --client-secret-env CI_BOT_SECRET',
        'authkeep login https://mcp.example.com/mcp --client-credentials --client-id ci-bot --private-key ./ci-bot.pem',
        'authkeep login https://mcp.example.com/mcp --client-id workload --assertion-file /var/run/secrets/tokens/mcp',
        'BROWSER=firefox authkeep login https://mcp.example.com/mcp',
      ]),
    )
    .action(
      action(
        deps,
        exit,
        (cmd, global) => parseLoginOptions(cmd.args[0] as string, cmd.opts<LoginFlags>(), global),
        runLogin,
        (o) => o.serverUrl,
      ),
    );
}
