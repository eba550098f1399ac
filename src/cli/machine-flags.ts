/**
 * machine-flags: the flags `authkeep login` and `authkeep proxy` share for machine identities
 * (no browser, no person): `--client-credentials` (SEP-1046) or `--assertion-file` /
 * `--assertion-env` (the RFC 7523 JWT bearer grant, workload identity federation), with
 * `--client-id` and the client's credential: `--client-secret-env`, `--client-secret-file`,
 * `--private-key`, `--private-key-env`; or `--idp` with `--idp-client-id` (SEP-990: the ID token of
 * the user's session at that IdP, or `--id-token-file` / `--id-token-env`). Secrets are named by
 * where they are, never passed on the command line (argv is visible to every local user); the
 * record stores the same references.
 *
 * Not for: the grants themselves (session/machine-grant.ts).
 */
import path from 'node:path';
import type { Command } from 'commander';
import type { SecretSource } from '../oauth/grants.js';
import type { TokenEndpointAuthMethod } from '../oauth/types.js';
import type { MachineGrantOptions } from '../session/machine-grant.js';
import { UsageError } from './errors.js';

export interface MachineFlags {
  clientCredentials?: boolean;
  clientId?: string;
  clientSecretEnv?: string;
  clientSecretFile?: string;
  privateKey?: string;
  privateKeyEnv?: string;
  assertionFile?: string;
  assertionEnv?: string;
  audience?: string;
  tokenEndpointAuthMethod?: string;
  idp?: string;
  idpClientId?: string;
  idpClientSecretEnv?: string;
  idpClientSecretFile?: string;
  idTokenFile?: string;
  idTokenEnv?: string;
}

const AUTH_METHODS = ['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none'] as const;

/** Adds the machine-identity flags (login has its own --client-id and --client-secret-file already when `withClient` is false). */
export function addMachineFlags(command: Command, withClient: boolean): Command {
  if (withClient) {
    command
      .option('--client-id <id>', 'the pre-registered client (with --client-credentials or --assertion-*)')
      .option('--client-secret-file <file>', "read the client's secret from this file at each token request");
  }
  return command
    .option('--client-credentials', 'no browser: get tokens with the client credentials grant (needs --client-id)')
    .option(
      '--client-secret-env <var>',
      "read the client's secret from this environment variable at each token request",
    )
    .option('--private-key <file>', 'authenticate with private_key_jwt, signing with this PEM or JWK key file')
    .option('--private-key-env <var>', 'the same, with the key in this environment variable')
    .option(
      '--assertion-file <file>',
      'no browser: JWT bearer grant with the workload token in this file (read again at each renewal)',
    )
    .option('--assertion-env <var>', 'the same, with the workload token in this environment variable')
    .option(
      '--audience <aud>',
      "the audience the workload token must name (default: the authorization server's issuer)",
    )
    .option(
      '--idp <issuer>',
      "enterprise-managed: exchange the user's ID token at this identity provider for each server (from your session there, signed in to once, or --id-token-*)",
    )
    .option('--idp-client-id <id>', "this client's client_id at the identity provider")
    .option('--idp-client-secret-env <var>', "this client's secret at the identity provider, from this variable")
    .option('--idp-client-secret-file <file>', "this client's secret at the identity provider, from this file")
    .option(
      '--id-token-file <file>',
      "the user's ID token from the identity provider, in this file (read at each renewal)",
    )
    .option('--id-token-env <var>', "the user's ID token from the identity provider, in this variable")
    .option(
      '--token-endpoint-auth-method <method>',
      `client authentication of a machine grant: ${AUTH_METHODS.join(' | ')} (default: from the key or secret and the server's metadata)`,
    );
}

function envName(value: string, flag: string): SecretSource {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(value)) {
    throw new UsageError(
      `${flag} takes the NAME of an environment variable, got something else`,
      `e.g. ${flag} CI_CLIENT_SECRET`,
    );
  }
  return { env: value };
}

function fileName(value: string, flag: string): SecretSource {
  if (value === '') throw new UsageError(`${flag} needs a file path`);
  return { file: path.resolve(value) };
}

function one(
  flags: MachineFlags,
  a: [keyof MachineFlags, string, 'env' | 'file'],
  b: [keyof MachineFlags, string, 'env' | 'file'],
): SecretSource | undefined {
  const [ka, fa, ta] = a;
  const [kb, fb, tb] = b;
  const va = flags[ka];
  const vb = flags[kb];
  if (typeof va === 'string' && typeof vb === 'string') throw new UsageError(`${fa} and ${fb} exclude each other`);
  if (typeof va === 'string') return ta === 'env' ? envName(va, fa) : fileName(va, fa);
  if (typeof vb === 'string') return tb === 'env' ? envName(vb, fb) : fileName(vb, fb);
  return undefined;
}

/**
 * The machine grant the flags describe, or undefined when they describe none (an interactive
 * sign-in; `--client-secret-file` alone is then login's pre-registered client).
 */
export function parseMachineFlags(flags: MachineFlags): MachineGrantOptions | undefined {
  const assertion = one(
    flags,
    ['assertionEnv', '--assertion-env', 'env'],
    ['assertionFile', '--assertion-file', 'file'],
  );
  const idToken = one(flags, ['idTokenEnv', '--id-token-env', 'env'], ['idTokenFile', '--id-token-file', 'file']);
  const enterprise = flags.idp !== undefined || idToken !== undefined;
  const machine = flags.clientCredentials === true || assertion !== undefined || enterprise;
  const secretEnv = flags.clientSecretEnv !== undefined;
  const key = flags.privateKey !== undefined || flags.privateKeyEnv !== undefined;
  if (!machine) {
    for (const [set, flag] of [
      [secretEnv, '--client-secret-env'],
      [key, '--private-key'],
      [flags.audience !== undefined, '--audience'],
      [flags.tokenEndpointAuthMethod !== undefined, '--token-endpoint-auth-method'],
    ] as const) {
      if (set) {
        throw new UsageError(
          `${flag} is for a machine identity`,
          'add --client-credentials, or --assertion-file / --assertion-env for a workload token',
        );
      }
    }
    return undefined;
  }
  if ([flags.clientCredentials === true, assertion !== undefined, enterprise].filter(Boolean).length > 1) {
    throw new UsageError('--client-credentials, --assertion-* and --idp are different grants; choose one');
  }
  let idp: MachineGrantOptions['idp'];
  if (enterprise) {
    if (!flags.idp || !flags.idpClientId) {
      throw new UsageError(
        'enterprise-managed authorization needs --idp ISSUER and --idp-client-id ID (and, to take the ID token from elsewhere than your session at the IdP, --id-token-file FILE or --id-token-env VAR)',
      );
    }
    const idpSecret = one(
      flags,
      ['idpClientSecretEnv', '--idp-client-secret-env', 'env'],
      ['idpClientSecretFile', '--idp-client-secret-file', 'file'],
    );
    idp = { issuer: flags.idp, clientId: flags.idpClientId, ...(idpSecret ? { clientSecret: idpSecret } : {}) };
  }
  if (flags.clientId === undefined || flags.clientId === '') {
    throw new UsageError('a machine identity needs its pre-registered client: --client-id ID');
  }
  const clientSecret = one(
    flags,
    ['clientSecretEnv', '--client-secret-env', 'env'],
    ['clientSecretFile', '--client-secret-file', 'file'],
  );
  const privateKey = one(flags, ['privateKeyEnv', '--private-key-env', 'env'], ['privateKey', '--private-key', 'file']);
  if (clientSecret && privateKey) throw new UsageError('a client secret and a private key exclude each other');
  if (flags.clientCredentials === true && !clientSecret && !privateKey) {
    throw new UsageError(
      '--client-credentials needs the client credential',
      'add --client-secret-env VAR, --client-secret-file FILE or --private-key FILE',
    );
  }
  const method = flags.tokenEndpointAuthMethod;
  if (method !== undefined && !(AUTH_METHODS as readonly string[]).includes(method)) {
    throw new UsageError(`--token-endpoint-auth-method must be one of ${AUTH_METHODS.join(', ')}`);
  }
  return {
    type: enterprise ? 'id_jag' : assertion ? 'jwt_bearer' : 'client_credentials',
    ...(idp ? { idp } : {}),
    ...(idToken ? { idToken } : {}),
    clientId: flags.clientId,
    ...(clientSecret ? { clientSecret } : {}),
    ...(privateKey ? { privateKey } : {}),
    ...(assertion ? { assertion } : {}),
    ...(flags.audience ? { audience: flags.audience } : {}),
    ...(method ? { tokenEndpointAuthMethod: method as TokenEndpointAuthMethod } : {}),
  };
}
