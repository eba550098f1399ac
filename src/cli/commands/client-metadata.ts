/**
 * client-metadata: `authkeep client-metadata <url>`: prints the client ID metadata document to
 * publish at <url> (client_id <url> exactly, the loopback redirect URI authkeep signs in with
 * unless --redirect-uri says otherwise), for `--client-metadata-url <url>` on login, proxy and
 * setup. Reads nothing and writes nothing but stdout.
 *
 * Not for: hosting the document, or checking a published one (`authkeep doctor` does that).
 */
import type { Command } from 'commander';
import { buildClientMetadataDocument, DEFAULT_LOOPBACK_REDIRECT_URIS } from '../../oauth/client-metadata-document.js';
import { isLoopbackHost } from '../../oauth/http.js';
import { action, type ExitSlot, helpEpilogue, parseClientMetadataUrl } from '../command-helpers.js';
import type { CliDeps } from '../deps.js';
import { UsageError } from '../errors.js';
import { ExitCode } from '../exit-codes.js';
import type { GlobalOptions } from '../global-options.js';

export interface ClientMetadataOptions {
  global: GlobalOptions;
  url: string;
  redirectUris: string[];
  clientName: string;
  scope?: string | undefined;
}

interface ClientMetadataFlags {
  redirectUri?: string[];
  clientName?: string;
  scope?: string;
}

/**
 * A redirect URI for the document: an absolute URL without a fragment (RFC 6749 section 3.1.2);
 * http only on a loopback host (RFC 8252 section 7.3; a code sent over http elsewhere is exposed).
 */
function parseRedirectUri(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new UsageError(
      `--redirect-uri ${JSON.stringify(value)} is not an absolute URL`,
      'e.g. --redirect-uri http://127.0.0.1:33418/callback',
    );
  }
  if (value.includes('#')) throw new UsageError(`--redirect-uri ${JSON.stringify(value)} must not contain a fragment`);
  if (url.protocol === 'http:' && !isLoopbackHost(url.hostname)) {
    throw new UsageError(
      `--redirect-uri ${JSON.stringify(value)} uses http on a host that is not this machine`,
      'use http://127.0.0.1/... (the loopback redirect) or an https URL',
    );
  }
  if (url.username || url.password)
    throw new UsageError(`--redirect-uri ${JSON.stringify(value)} must not carry credentials`);
  return value;
}

export function parseClientMetadataOptions(
  url: string,
  flags: ClientMetadataFlags,
  global: GlobalOptions,
): ClientMetadataOptions {
  if (flags.clientName !== undefined && flags.clientName.trim() === '') {
    throw new UsageError('--client-name must not be empty');
  }
  if (flags.scope !== undefined && !/^[\x21\x23-\x5b\x5d-\x7e]+( [\x21\x23-\x5b\x5d-\x7e]+)*$/.test(flags.scope)) {
    throw new UsageError(
      `--scope ${JSON.stringify(flags.scope)} is not a space-separated list of scopes (RFC 6749 section 3.3)`,
    );
  }
  const redirectUris = (flags.redirectUri ?? []).map(parseRedirectUri);
  return {
    global,
    url: parseClientMetadataUrl(url, '<url>', global.allowHttp),
    redirectUris: redirectUris.length > 0 ? [...new Set(redirectUris)] : [...DEFAULT_LOOPBACK_REDIRECT_URIS],
    clientName: flags.clientName ?? 'authkeep',
    scope: flags.scope,
  };
}

export async function runClientMetadata(deps: CliDeps, options: ClientMetadataOptions): Promise<ExitCode> {
  const document = buildClientMetadataDocument(options.url, {
    clientName: options.clientName,
    redirectUris: options.redirectUris,
    scope: options.scope,
  });
  // Only the user's own arguments are printed: JSON.stringify is safe here.
  deps.stdout.write(`${JSON.stringify(document, null, 2)}\n`);
  return ExitCode.Ok;
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

export function registerClientMetadata(program: Command, deps: CliDeps, exit: ExitSlot): void {
  program
    .command('client-metadata')
    .summary('print the client ID metadata document to publish at <url>')
    .description(
      'Print the client ID metadata document (JSON) to publish at the https URL <url>, which becomes ' +
        'the client_id at authorization servers that support client ID metadata documents. Then sign ' +
        'in with `authkeep login <server> --client-metadata-url <url>` (or pass it to proxy and setup), ' +
        'and check the published document with `authkeep doctor --client-metadata-url <url>`. The ' +
        'default redirect URI http://127.0.0.1/callback has no port: authorization servers accept any ' +
        'port on a loopback redirect (RFC 8252 section 7.3); if yours does not, sign in with ' +
        '--callback-port and list that port here.',
    )
    .argument('<url>', 'where the document will be published (https, with a path, no fragment)')
    .option(
      '--redirect-uri <uri>',
      `a redirect URI to list (repeatable; default ${DEFAULT_LOOPBACK_REDIRECT_URIS.join(' ')})`,
      collect,
    )
    .option('--client-name <name>', 'the client_name shown on consent screens (default "authkeep")')
    .option('--scope <scopes>', 'the scope the client may ask for, space-separated')
    .addHelpText(
      'after',
      helpEpilogue([
        'authkeep client-metadata https://app.example.com/oauth/client.json > client.json',
        'authkeep client-metadata https://app.example.com/oauth/client.json --client-name "My agent" --scope "mcp:read"',
        'authkeep client-metadata https://app.example.com/oauth/client.json --redirect-uri http://127.0.0.1:33418/callback',
      ]),
    )
    .action(
      action(
        deps,
        exit,
        (cmd, global) => parseClientMetadataOptions(cmd.args[0] as string, cmd.opts<ClientMetadataFlags>(), global),
        runClientMetadata,
      ),
    );
}
