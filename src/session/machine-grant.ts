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
import { AuthkeepError, atStep } from '../errors.js';
import { importClientSigningKey } from '../oauth/client-assertion.js';
import { type ClientCredential, requestClientCredentialsToken } from '../oauth/client-credentials.js';
import {
  describeSource,
  type EnterpriseIdp,
  JWT_BEARER_GRANT_TYPE,
  type MachineGrant,
  type MachineGrantType,
  type SecretSource,
} from '../oauth/grants.js';
import { assertSecureUrl, fetchMetadataDocument, type HttpOptions } from '../oauth/http.js';
import { checkAssertion, requestJwtBearerToken } from '../oauth/jwt-bearer.js';
import { unionScopes } from '../oauth/scope.js';
import type { TokenSet } from '../oauth/token-endpoint.js';
import { exchangeIdTokenForIdJag } from '../oauth/token-exchange.js';
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
  /**
   * id_jag (enterprise-managed authorization, SEP-990): where the user's ID token from the IdP is.
   * Absent: the ID token of the IdP session authkeep keeps for `idp.issuer` (idp-session.ts;
   * `login` signs in to the IdP first when there is none).
   */
  idToken?: SecretSource;
  /** id_jag: the enterprise IdP; its token endpoint is discovered from `issuer` (OpenID discovery) when not given. */
  idp?: { issuer: string; tokenEndpoint?: string; clientId: string; clientSecret?: SecretSource };
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
  if (options.type === 'id_jag' && (!options.idp?.issuer || !options.idp.clientId)) {
    throw invalid('enterprise-managed authorization needs the IdP (idp: issuer and clientId)', 'grant.idp');
  }
  checkSource(options.idToken, 'grant.idToken');
  checkSource(options.idp?.clientSecret, 'grant.idp.clientSecret');
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
    grantTypes: [options.type === 'client_credentials' ? 'client_credentials' : JWT_BEARER_GRANT_TYPE],
    registeredAt: new Date().toISOString(),
  };
  const grant: MachineGrant = {
    type: options.type,
    ...(typeof options.clientSecret === 'object' ? { clientSecret: { ...options.clientSecret } } : {}),
    ...(options.privateKey ? { privateKey: { ...options.privateKey } } : {}),
    ...(options.assertion ? { assertion: { ...options.assertion } } : {}),
    ...(options.audience ? { audience: options.audience } : {}),
    ...(options.idToken ? { idToken: { ...options.idToken } } : {}),
    ...(options.idp
      ? {
          idp: {
            issuer: options.idp.issuer,
            tokenEndpoint: options.idp.tokenEndpoint ?? '',
            clientId: options.idp.clientId,
            ...(options.idp.clientSecret ? { clientSecret: { ...options.idp.clientSecret } } : {}),
          },
        }
      : {}),
    ...(scope ? { scope } : {}),
  };
  return { registration, grant };
}

/** The client's credential for one request: the secret or key read now from where the grant says. */
export async function machineCredential(
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

/**
 * A step-up of a machine identity (MCP authorization, Step-Up Authorization Flow: a client acting on
 * its own behalf MAY step up): the stored grant run again with `scope`, the union of what was
 * granted and what the server challenged, with the stored registration. No person, no browser;
 * the AS decides whether the client may have that scope.
 */
export async function machineStepUp(
  server: DiscoveredServer,
  stored: { registration: Registration; grant: MachineGrant },
  scope: string | undefined,
  context: MachineSignInContext,
): Promise<SignInResult> {
  const union = unionScopes(scope, stored.grant.scope);
  const grant: MachineGrant = { ...stored.grant, ...(union ? { scope: union } : {}) };
  context.logger.emit('info', 'login.machine_step_up', `requesting a token with the ${grant.type} grant again`, {
    serverUrl: server.serverUrl,
    issuer: server.authorizationServer.issuer,
    clientId: stored.registration.clientId,
    grant: grant.type,
    ...(grant.scope ? { scope: grant.scope } : {}),
  });
  return tokenFromGrant(server, stored.registration, grant, context);
}

/** What a machine sign-in or step-up needs besides the server and the grant. */
export interface MachineSignInContext {
  http: HttpOptions;
  logger: Logger;
  secretReader?: SecretReader | undefined;
  idpSessions?: IdpSessionTokens | undefined;
}

/** The grant's token request for `server`, stamped as a sign-in's result (no person involved). */
async function tokenFromGrant(
  server: DiscoveredServer,
  registration: Registration,
  grant: MachineGrant,
  context: MachineSignInContext,
): Promise<SignInResult> {
  const sentAt = Date.now();
  const response = await nextMachineToken(
    {
      serverUrl: server.serverUrl,
      authorizationServer: server.authorizationServer,
      registration,
      resource: server.resource,
      grant,
    },
    context.http,
    sentAt,
    context.secretReader,
    context.idpSessions,
  );
  const tokens = stampTokens(response, { registration, sentAt, receivedAt: Date.now(), requestedScope: grant.scope });
  return { registration, tokens, grant };
}

/**
 * The ID token of the user's session at an enterprise IdP (idp-session.ts IdpSessions.idToken),
 * for a grant that names no ID token source; `serverUrl` is the MCP server it is for.
 */
export type IdpSessionTokens = (idp: EnterpriseIdp, serverUrl: string) => Promise<string>;

/** What a renewal needs from the record. */
export interface MachineGrantTarget {
  /** The MCP server (errors name it). */
  serverUrl?: string;
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
  idpSessions?: IdpSessionTokens,
): Promise<TokenSet> {
  const { authorizationServer: as, registration, resource, grant } = target;
  const credential = await machineCredential(grant, registration, reader);
  const params = { resource, ...(grant.scope ? { scope: grant.scope } : {}) };
  if (grant.type === 'client_credentials') {
    return requestClientCredentialsToken(as, registration, credential, params, http);
  }
  if (grant.type === 'id_jag') {
    const idJag = await identityAssertion(target, http, now, reader, idpSessions);
    try {
      return await requestJwtBearerToken(as, registration, credential, { assertion: idJag, ...params }, http);
    } catch (err) {
      throw atStep(err, 'jwt_bearer');
    }
  }
  if (!grant.assertion) throw invalid('the JWT bearer grant names no assertion', 'grant.assertion');
  const assertion = await readSecret(grant.assertion, 'assertion', reader);
  checkAssertion(assertion, grant.audience ?? as.issuer, now);
  return requestJwtBearerToken(as, registration, credential, { assertion, ...params }, http);
}

/**
 * SEP-990 step 1: the user's ID token (from the IdP session authkeep keeps, renewed there when due;
 * or read now from the configured file or variable, where an expired one is not sent: the user
 * must sign in to the IdP again) exchanged at the IdP (RFC 8693) for an ID-JAG whose audience is
 * this authorization server and whose resource is the MCP server. Checked before it is redeemed: a
 * JWT naming this authorization server. Failures name their step: `idp_sign_in` for the ID token,
 * `token_exchange` for the exchange and the ID-JAG.
 */
async function identityAssertion(
  target: MachineGrantTarget,
  http: HttpOptions,
  now: number,
  reader: SecretReader | undefined,
  idpSessions: IdpSessionTokens | undefined,
): Promise<string> {
  const { grant, resource } = target;
  const idp = grant.idp;
  if (!idp) throw invalid('the enterprise grant names no IdP', 'grant.idp');
  let idToken: string;
  try {
    if (grant.idToken) {
      idToken = await readSecret(grant.idToken, 'idToken', reader);
      checkIdTokenFresh(idToken, now);
    } else {
      if (!idpSessions) throw invalid('no IdP session store to take the ID token from', 'grant.idToken');
      idToken = await idpSessions(idp, target.serverUrl ?? resource);
    }
  } catch (err) {
    throw atStep(err, 'idp_sign_in');
  }
  try {
    return await exchange(target, idp, idToken, http, now, reader);
  } catch (err) {
    throw atStep(err, 'token_exchange');
  }
}

/** RFC 8693 at the IdP, then the ID-JAG checked: a JWT naming this authorization server. */
async function exchange(
  target: MachineGrantTarget,
  idp: EnterpriseIdp,
  idToken: string,
  http: HttpOptions,
  now: number,
  reader: SecretReader | undefined,
): Promise<string> {
  const { grant, authorizationServer: as, resource } = target;
  const idpRegistration: Registration = {
    issuer: idp.issuer,
    clientId: idp.clientId,
    method: 'pre_registered',
    tokenEndpointAuthMethod: idp.clientSecret ? 'client_secret_basic' : 'none',
    redirectUris: [],
    registeredAt: new Date(0).toISOString(),
  };
  const idpCredential: ClientCredential = idp.clientSecret
    ? { clientSecret: await readSecret(idp.clientSecret, 'idp.clientSecret', reader) }
    : { none: true };
  const idJag = await exchangeIdTokenForIdJag(
    { issuer: idp.issuer, token_endpoint: idp.tokenEndpoint },
    idpRegistration,
    idpCredential,
    { idToken, audience: as.issuer, resource, ...(grant.scope ? { scope: grant.scope } : {}) },
    http,
  );
  checkAssertion(idJag, as.issuer, now);
  return idJag;
}

/** An ID token past its `exp` is not sent (the IdP would refuse it): sign in to the IdP again. */
function checkIdTokenFresh(idToken: string, now: number): void {
  let exp: unknown;
  try {
    exp = (JSON.parse(Buffer.from(idToken.split('.')[1] ?? '', 'base64url').toString('utf8')) as { exp?: unknown }).exp;
  } catch {
    throw new AuthkeepError('credential_unavailable', 'the ID token is not a JWT', { field: 'idToken' });
  }
  if (typeof exp === 'number' && exp * 1000 <= now) {
    throw new AuthkeepError(
      'credential_unavailable',
      `the ID token expired at ${new Date(exp * 1000).toISOString()}; sign in to the identity provider again`,
      { field: 'idToken.exp' },
    );
  }
}

/** OpenID Connect Discovery 1.0 section 4 at the IdP: its token endpoint (issuer compared exactly). */
async function idpTokenEndpoint(issuer: string, http: HttpOptions): Promise<string> {
  const url = new URL(`${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`);
  assertSecureUrl(url, 'idp.issuer', http.allowInsecureLoopback);
  const document = await fetchMetadataDocument(url, http, 'identity provider metadata');
  if (document.kind === 'failed') throw document.error;
  const body = document.kind === 'json' ? (document.body as { issuer?: unknown; token_endpoint?: unknown }) : {};
  if (document.kind === 'absent' || body.issuer !== issuer || typeof body.token_endpoint !== 'string') {
    throw new AuthkeepError(
      'discovery_failed',
      `no OpenID configuration naming ${issuer} with a token_endpoint at ${url.href}`,
      {
        field: 'idp.issuer',
      },
    );
  }
  return body.token_endpoint;
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
  const enterprise = grant.idp
    ? `; ID token from ${grant.idToken ? describeSource(grant.idToken) : `the IdP session at ${grant.idp.issuer}`}, exchanged at ${grant.idp.issuer} (client ${grant.idp.clientId}) for an ID-JAG`
    : '';
  const name = {
    client_credentials: 'client credentials',
    jwt_bearer: 'JWT bearer',
    id_jag: 'enterprise-managed (ID-JAG)',
  };
  return `${name[grant.type]} (${auth}${credential})${assertion}${enterprise}`;
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
  if (grant.idp) flags.push('--idp', grant.idp.issuer, '--idp-client-id', grant.idp.clientId);
  if (grant.idp?.clientSecret)
    flags.push(...sourceFlags(grant.idp.clientSecret, '--idp-client-secret-env', '--idp-client-secret-file'));
  if (grant.idToken) flags.push(...sourceFlags(grant.idToken, '--id-token-env', '--id-token-file'));
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
  context: MachineSignInContext,
): Promise<SignInResult> {
  const as = server.authorizationServer;
  const { registration, grant } = machineRegistration(options, as, unionScopes(options.scope, scope));
  if (grant.idp && grant.idp.tokenEndpoint === '')
    grant.idp.tokenEndpoint = await idpTokenEndpoint(grant.idp.issuer, context.http);
  const wire = grant.type === 'client_credentials' ? 'client_credentials' : JWT_BEARER_GRANT_TYPE;
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
  return tokenFromGrant(server, registration, grant, context);
}
