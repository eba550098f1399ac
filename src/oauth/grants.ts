/**
 * grants: the shapes of the machine grants, the ways to get the next access token without a
 * person: the client credentials grant (RFC 6749 section 4.4, MCP SEP-1046) and the JWT bearer
 * grant (RFC 7523 section 2.1, workload identity federation, MCP SEP-1933). A record holding one
 * gets its next token from it when the current one is due, where a signed-in record refreshes.
 *
 * A grant holds only references to where its secrets are (an environment variable's name, a
 * file's path), read again at each renewal (platforms rotate workload tokens); never a secret.
 * A literal client secret the user gave the library is kept where registrations keep theirs
 * (Registration.clientSecret).
 *
 * Not for: reading the sources (secret-source.ts) or the requests (client-credentials.ts,
 * jwt-bearer.ts).
 */

/** Where a secret is read from at each use: an environment variable, or a file (trailing newline dropped). */
export type SecretSource = { env: string } | { file: string };

export const MACHINE_GRANT_TYPES = ['client_credentials', 'jwt_bearer', 'id_jag'] as const;
export type MachineGrantType = (typeof MACHINE_GRANT_TYPES)[number];

/** RFC 7523 section 2.1 `grant_type`. */
export const JWT_BEARER_GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:jwt-bearer';

/**
 * Enterprise-managed authorization (MCP SEP-990): where the user's identity comes from, the
 * enterprise IdP. Its ID token is exchanged there (RFC 8693) for an identity assertion JWT
 * authorization grant (ID-JAG) naming the MCP authorization server as audience and the MCP
 * server as resource, which the MCP authorization server redeems (RFC 7523).
 */
export interface EnterpriseIdp {
  issuer: string;
  /** The IdP's token endpoint (RFC 8693 section 2.1), discovered from `issuer` when not configured. */
  tokenEndpoint: string;
  /** The MCP client's client_id at the IdP. */
  clientId: string;
  /** Where the client's secret at the IdP is read, when it has one (client_secret_basic there). */
  clientSecret?: SecretSource;
}

/** A machine grant as stored in a record: how to get the next token, and where its secrets are. */
export interface MachineGrant {
  type: MachineGrantType;
  /** client_secret_basic / client_secret_post: where the client secret is read (absent: the registration holds it, or no secret). */
  clientSecret?: SecretSource;
  /** private_key_jwt (RFC 7523 section 2.2): where the signing key is read, a PEM (PKCS #8) or a JWK. */
  privateKey?: SecretSource;
  /** jwt_bearer: where the assertion is read, at each renewal. */
  assertion?: SecretSource;
  /** id_jag: where the user's ID token from the enterprise IdP is read, at each renewal. */
  idToken?: SecretSource;
  /** id_jag: the enterprise IdP that exchanges the ID token for an ID-JAG. */
  idp?: EnterpriseIdp;
  /**
   * jwt_bearer: the audience the assertion must name before it is sent (RFC 7523 section 3,
   * item 3). Default: the authorization server's issuer. An assertion for another audience is
   * never sent.
   */
  audience?: string;
  /** The scope asked for at each renewal. */
  scope?: string;
}

/** A secret source in words, for status and errors: names the variable or the file, never the value. */
export function describeSource(source: SecretSource): string {
  return 'env' in source ? `environment variable ${source.env}` : `file ${source.file}`;
}
