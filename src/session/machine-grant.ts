/**
 * machine-grant: signing in and renewing without a person, for a record whose grant is a machine
 * grant (oauth/grants.ts): the client credentials grant or the JWT bearer grant. `login(url,
 * {grant})` turns the caller's options into a pre-registered registration plus the stored grant
 * (references to the secrets, never the secrets) and gets the first token; the token manager's
 * refresh transaction calls `nextMachineToken` where a signed-in record would refresh, so renewals
 * are single-flight across processes exactly like refreshes (docs/DESIGN.md invariant 3).
 *
 * Each renewal reads its secrets again (secret-source.ts): a rotated workload token, a new key
 * file or a changed variable is picked up without a new login.
 *
 * Not for: the token requests themselves (oauth/client-credentials.ts, oauth/jwt-bearer.ts).
 */
import { AuthkeepError } from '../errors.js';
import { importClientSigningKey } from '../oauth/client-assertion.js';
import { type ClientCredential, requestClientCredentialsToken } from '../oauth/client-credentials.js';
import {
  describeSource,
  JWT_BEARER_GRANT_TYPE,
  type MachineGrant,
  type MachineGrantType,
  type SecretSource,
} from '../oauth/grants.js';
import type { HttpOptions } from '../oauth/http.js';
import { checkAssertion, requestJwtBearerToken } from '../oauth/jwt-bearer.js';
import { unionScopes } from '../oauth/scope.js';
import type { TokenSet } from '../oauth/token-endpoint.js';
import type { AuthorizationServer, Registration, TokenEndpointAuthMethod } from '../oauth/types.js';
import type { DiscoveredServer } from './discover-server.js';
import type { Logger } from './log.js';
import { readSecret, type SecretReader } from './secret-source.js';
import type { SignInResult } from './sign-in.js';
import { stampTokens } from './stamp-tokens.js';

/**
 * A machine identity, as the library and the CLI take it. The client is pre-registered at the
 * authorization server (`clientId`); it authenticates with a secret (`clientSecret`: the value,
 * stored with the registration like any pre-registered client's, or where to read it at each
 * request), a private key (`privateKey`, private_key_jwt), or not at all.
 */
export interface MachineGrantOptions {
  /** `client_credentials` (SEP-1046) or `jwt_bearer` (RFC 7523 section 2.1, workload identity federation). */
  type: MachineGrantType;
  clientId: string;
  clientSecret?: string | SecretSource;
  /** A PEM (PKCS #8) or JWK private key, for private_key_jwt (RFC 7523 section 2.2). */
  privateKey?: SecretSource;
  /**
   * Default: private_key_jwt with `privateKey`; with `clientSecret`, client_secret_basic unless
   * the AS lists only client_secret_post; else none.
   */
  tokenEndpointAuthMethod?: TokenEndpointAuthMethod;
  /** jwt_bearer: where the platform's token is, read again at each renewal. */
  assertion?: SecretSource;
  /** jwt_bearer: the audience the assertion must name. Default: the authorization server's issuer. */
  audience?: string;
  /** Scope asked for at each renewal (added to what the server asks for at login). */
  scope?: string;
}

function invalid(message: string, field: string): AuthkeepError {
  return new AuthkeepError('invalid_argument', message, { field });
}

function checkSource(source: SecretSource | undefined, field: string): void {
  if (source === undefined) return;
  const value = 'env' in source ? source.env : source.file;
  if (typeof value !== 'string' || value === '') throw invalid(`${field} names no environment variable or file`, field);
}

/** The token endpoint auth method `options` imply at `as`. */
function authMethodFor(options: MachineGrantOptions, as: AuthorizationServer): TokenEndpointAuthMethod {
  if (options.tokenEndpointAuthMethod) return options.tokenEndpointAuthMethod;
  if (options.privateKey) return 'private_key_jwt';
  if (options.clientSecret === undefined) return 'none';
  const supported = as.token_endpoint_auth_methods_supported;
  return supported?.includes('client_secret_basic') === false && supported.includes('client_secret_post')
    ? 'client_secret_post'
    : 'client_secret_basic';
}

/**
 * The registration and the stored grant `options` describe at `as`; `scope` is the login's
 * (options.scope with what the server asks for). Refuses inconsistent options by name.
 */
export function machineRegistration(
  options: MachineGrantOptions,
  as: AuthorizationServer,
  scope: string | undefined,
): { registration: Registration; grant: MachineGrant } {
  if (!options.clientId) throw invalid('a machine grant needs the pre-registered clientId', 'grant.clientId');
  checkSource(options.privateKey, 'grant.privateKey');
  checkSource(options.assertion, 'grant.assertion');
  if (typeof options.clientSecret === 'object') checkSource(options.clientSecret, 'grant.clientSecret');
  if (options.clientSecret !== undefined && options.privateKey !== undefined) {
    throw invalid('a machine grant authenticates with a client secret or a private key, not both', 'grant.privateKey');
  }
  const method = authMethodFor(options, as);
  if (method === 'private_key_jwt' && !options.privateKey) {
    throw invalid('private_key_jwt needs the private key (privateKey)', 'grant.privateKey');
  }
  if ((method === 'client_secret_basic' || method === 'client_secret_post') && options.clientSecret === undefined) {
    throw invalid(`${method} needs the client secret (clientSecret)`, 'grant.clientSecret');
  }
  if (options.type === 'jwt_bearer' && !options.assertion) {
    throw invalid('the JWT bearer grant needs the assertion (a file or an environment variable)', 'grant.assertion');
  }
  if (options.type === 'client_credentials' && options.assertion) {
    throw invalid('an assertion is for the JWT bearer grant, not client credentials', 'grant.assertion');
  }
  const literalSecret = typeof options.clientSecret === 'string' ? options.clientSecret : undefined;
  const registration: Registration = {
    issuer: as.issuer,
    clientId: options.clientId,
    ...(literalSecret !== undefined && method !== 'none' ? { clientSecret: literalSecret } : {}),
    method: 'pre_registered',
    tokenEndpointAuthMethod: method,
    redirectUris: [],
    grantTypes: [options.type === 'jwt_bearer' ? JWT_BEARER_GRANT_TYPE : 'client_credentials'],
    registeredAt: new Date().toISOString(),
  };
  const grant: MachineGrant = {
    type: options.type,
    ...(typeof options.clientSecret === 'object' ? { clientSecret: { ...options.clientSecret } } : {}),
    ...(options.privateKey ? { privateKey: { ...options.privateKey } } : {}),
    ...(options.assertion ? { assertion: { ...options.assertion } } : {}),
    ...(options.audience ? { audience: options.audience } : {}),
    ...(scope ? { scope } : {}),
  };
  return { registration, grant };
}

/** The client's credential for one request: the secret or key read now from where the grant says. */
async function clientCredential(
  grant: MachineGrant,
  registration: Registration,
  reader: SecretReader | undefined,
): Promise<ClientCredential> {
  switch (registration.tokenEndpointAuthMethod) {
    case 'private_key_jwt': {
      if (!grant.privateKey) throw invalid('private_key_jwt but the grant names no private key', 'grant.privateKey');
      return { signingKey: await importClientSigningKey(await readSecret(grant.privateKey, 'privateKey', reader)) };
    }
    case 'client_secret_basic':
    case 'client_secret_post':
      if (grant.clientSecret) return { clientSecret: await readSecret(grant.clientSecret, 'clientSecret', reader) };
      if (registration.clientSecret) return { clientSecret: registration.clientSecret };
      throw invalid(
        `${registration.tokenEndpointAuthMethod} but no client secret is stored or named`,
        'grant.clientSecret',
      );
    case 'none':
      return { none: true };
  }
}

/** What a renewal needs from the record. */
export interface MachineGrantTarget {
  authorizationServer: AuthorizationServer;
  registration: Registration;
  resource: string;
  grant: MachineGrant;
}

/** The next access token of a machine grant: its secrets read now, then its one token request. */
export async function nextMachineToken(
  target: MachineGrantTarget,
  http: HttpOptions,
  now: number,
  reader?: SecretReader,
): Promise<TokenSet> {
  const { authorizationServer: as, registration, resource, grant } = target;
  const credential = await clientCredential(grant, registration, reader);
  const params = { resource, ...(grant.scope ? { scope: grant.scope } : {}) };
  if (grant.type === 'client_credentials') {
    return requestClientCredentialsToken(as, registration, credential, params, http);
  }
  if (!grant.assertion) throw invalid('the JWT bearer grant names no assertion', 'grant.assertion');
  const assertion = await readSecret(grant.assertion, 'assertion', reader);
  checkAssertion(assertion, grant.audience ?? as.issuer, now);
  return requestJwtBearerToken(as, registration, credential, { assertion, ...params }, http);
}

/** The grant in words, for status and doctor: its type, how the client authenticates, where each secret comes from. */
export function describeGrant(grant: MachineGrant, registration: Registration): string {
  const auth = registration.tokenEndpointAuthMethod;
  const credential =
    auth === 'private_key_jwt' && grant.privateKey
      ? `, key from ${describeSource(grant.privateKey)}`
      : auth !== 'none' && grant.clientSecret
        ? `, secret from ${describeSource(grant.clientSecret)}`
        : auth !== 'none' && registration.clientSecret
          ? ', secret stored with the registration'
          : '';
  const assertion = grant.assertion
    ? `; assertion from ${describeSource(grant.assertion)} (audience ${grant.audience ?? registration.issuer})`
    : '';
  return `${grant.type === 'jwt_bearer' ? 'JWT bearer' : 'client credentials'} (${auth}${credential})${assertion}`;
}

function sourceFlags(source: SecretSource, envFlag: string, fileFlag: string): string[] {
  return 'env' in source ? [envFlag, source.env] : [fileFlag, source.file];
}

/** The `authkeep login` flags that set up this grant again (for a needs-auth fix line); never a secret. */
export function machineLoginFlags(grant: MachineGrant, registration: Registration): string[] {
  // An assertion flag implies the JWT bearer grant.
  const flags = [
    ...(grant.type === 'client_credentials' ? ['--client-credentials'] : []),
    '--client-id',
    registration.clientId,
  ];
  if (grant.privateKey) flags.push(...sourceFlags(grant.privateKey, '--private-key-env', '--private-key'));
  if (grant.clientSecret) flags.push(...sourceFlags(grant.clientSecret, '--client-secret-env', '--client-secret-file'));
  if (grant.assertion) flags.push(...sourceFlags(grant.assertion, '--assertion-env', '--assertion-file'));
  if (grant.audience) flags.push('--audience', grant.audience);
  return flags;
}

/**
 * Sign in with a machine grant: the registration and grant `options` describe, and the first
 * token from it (no browser, no person). The caller stores the result like any sign-in's.
 */
export async function machineSignIn(
  server: DiscoveredServer,
  options: MachineGrantOptions,
  scope: string | undefined,
  context: { http: HttpOptions; logger: Logger; secretReader?: SecretReader | undefined },
): Promise<SignInResult> {
  const as = server.authorizationServer;
  const { registration, grant } = machineRegistration(options, as, unionScopes(options.scope, scope));
  const wire = grant.type === 'jwt_bearer' ? JWT_BEARER_GRANT_TYPE : 'client_credentials';
  if (as.grant_types_supported !== undefined && !as.grant_types_supported.includes(wire)) {
    // Metadata is often incomplete; the token endpoint's answer decides.
    context.logger.emit('warn', 'login.grant_not_listed', `the authorization server does not list ${wire}`, {
      serverUrl: server.serverUrl,
      issuer: as.issuer,
    });
  }
  context.logger.emit('info', 'login.machine_grant', `requesting a token with the ${grant.type} grant`, {
    serverUrl: server.serverUrl,
    issuer: as.issuer,
    clientId: registration.clientId,
    grant: grant.type,
  });
  const sentAt = Date.now();
  const response = await nextMachineToken(
    { authorizationServer: as, registration, resource: server.resource, grant },
    context.http,
    sentAt,
    context.secretReader,
  );
  const tokens = stampTokens(response, { registration, sentAt, receivedAt: Date.now(), requestedScope: grant.scope });
  return { registration, tokens, grant };
}
