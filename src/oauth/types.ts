/**
 * types: the protocol layer's own shapes, as oauth4webapi keeps its `AuthorizationServer` and
 * `Client`: the authorization server metadata authkeep uses, and a client registration at one
 * issuer. The store builds its on-disk schema from these (store/record.ts); the protocol never
 * imports storage's types.
 *
 * Not for: validating what a server sends (each protocol step has its own zod schema for that).
 */

export const REGISTRATION_METHODS = ['pre_registered', 'client_id_metadata_document', 'dynamic'] as const;
/** How the client got its client_id (MCP "Client Registration": in that order of preference). */
export type RegistrationMethod = (typeof REGISTRATION_METHODS)[number];

export const TOKEN_ENDPOINT_AUTH_METHODS = [
  'none',
  'client_secret_basic',
  'client_secret_post',
  'private_key_jwt',
] as const;
/**
 * RFC 7591 section 2 `token_endpoint_auth_method` values authkeep can use (`private_key_jwt`, RFC
 * 7523 section 2.2, only with a machine grant, which says where its key is: oauth/grants.ts).
 */
export type TokenEndpointAuthMethod = (typeof TOKEN_ENDPOINT_AUTH_METHODS)[number];

/**
 * The authorization server metadata members authkeep uses (RFC 8414 section 2, RFC 9207 section 3,
 * RFC 8628 section 4, the MCP client ID metadata document flag), kept so a refresh needs no
 * discovery. Member names as the RFCs spell them, so it passes to oauth4webapi as it is (a type
 * alias, not an interface, so it fits oauth4webapi's index signature).
 */
export type AuthorizationServer = {
  issuer: string;
  authorization_endpoint?: string;
  token_endpoint: string;
  registration_endpoint?: string;
  revocation_endpoint?: string;
  scopes_supported?: string[];
  code_challenge_methods_supported?: string[];
  token_endpoint_auth_methods_supported?: string[];
  client_id_metadata_document_supported?: boolean;
  authorization_response_iss_parameter_supported?: boolean;
  /** RFC 8628 section 4: present when the AS offers the device authorization grant. */
  device_authorization_endpoint?: string;
  /** RFC 8414 section 2. */
  grant_types_supported?: string[];
  /** RFC 9449 section 5.1: the JWS algorithms the AS accepts in DPoP proofs (present: it supports DPoP). */
  dpop_signing_alg_values_supported?: string[];
  /** OpenID Connect Discovery 1.0 section 3: the ID token signing algorithms (an IdP signed in to with OpenID Connect). */
  id_token_signing_alg_values_supported?: string[];
};

/** A client registration, and the issuer it is valid at (RFC 7591 section 3.2.1 values). */
export interface Registration {
  issuer: string;
  clientId: string;
  clientSecret?: string;
  method: RegistrationMethod;
  tokenEndpointAuthMethod: TokenEndpointAuthMethod;
  redirectUris: string[];
  /**
   * The grant types of a dynamic registration that asked for the device_code grant (the AS's
   * answer, else what was asked). Absent: not asked for (or unknown: pre-registered clients).
   */
  grantTypes?: string[];
  /**
   * When the client secret expires, epoch ms (RFC 7591 section 3.2.1 `client_secret_expires_at`,
   * in seconds there). Absent: it does not expire (the AS sent 0 or nothing).
   */
  clientSecretExpiresAt?: number;
  /** ISO 8601. */
  registeredAt: string;
}

/**
 * RFC 7591 section 3.2.1: a client secret past its `client_secret_expires_at` is refused by the
 * AS; a registration holding one can only be replaced (registered again), never used.
 */
export function clientSecretExpired(registration: Registration, now: number): boolean {
  return (
    registration.clientSecret !== undefined &&
    registration.clientSecretExpiresAt !== undefined &&
    now >= registration.clientSecretExpiresAt
  );
}
