/**
 * record: the ONE stored value per MCP server (DESIGN.md invariant 2). It holds the issuer, the
 * client registration, and tokens stamped with the client_id and issuer they were issued to, plus
 * a generation for compare-and-swap. Parsed with zod because the file is untrusted input.
 *
 * Not for: reading or writing files (see credential-store.ts).
 */
import { z } from 'zod';

export const RECORD_VERSION = 1 as const;

export const RegistrationMethodSchema = z.enum(['pre_registered', 'client_id_metadata_document', 'dynamic']);
export type RegistrationMethod = z.infer<typeof RegistrationMethodSchema>;

export const TokenEndpointAuthMethodSchema = z.enum(['none', 'client_secret_basic', 'client_secret_post']);
export type TokenEndpointAuthMethod = z.infer<typeof TokenEndpointAuthMethodSchema>;

/** What the client registration is, and which issuer it is valid at. */
export const RegistrationSchema = z.object({
  issuer: z.string().min(1),
  clientId: z.string().min(1),
  clientSecret: z.string().min(1).optional(),
  method: RegistrationMethodSchema,
  tokenEndpointAuthMethod: TokenEndpointAuthMethodSchema,
  redirectUris: z.array(z.string()).default([]),
  /**
   * The grant types of a dynamic registration that asked for the device_code grant (the AS's
   * answer, else what was asked). Absent: not asked for (or unknown: pre-registered clients).
   */
  grantTypes: z.array(z.string()).optional(),
  registeredAt: z.string(),
});
export type Registration = z.infer<typeof RegistrationSchema>;

/** The AS metadata fields we use, cached so a refresh needs no discovery. */
export const AuthorizationServerSchema = z.object({
  issuer: z.string().min(1),
  authorization_endpoint: z.string().optional(),
  token_endpoint: z.string().min(1),
  registration_endpoint: z.string().optional(),
  revocation_endpoint: z.string().optional(),
  scopes_supported: z.array(z.string()).optional(),
  code_challenge_methods_supported: z.array(z.string()).optional(),
  token_endpoint_auth_methods_supported: z.array(z.string()).optional(),
  client_id_metadata_document_supported: z.boolean().optional(),
  authorization_response_iss_parameter_supported: z.boolean().optional(),
  /** RFC 8628 section 4: present when the AS offers the device authorization grant. */
  device_authorization_endpoint: z.string().optional(),
  /** RFC 8414 section 2. */
  grant_types_supported: z.array(z.string()).optional(),
});
export type AuthorizationServerRecord = z.infer<typeof AuthorizationServerSchema>;

/** Tokens, stamped with the registration and issuer they were issued to (invariant 5). */
export const TokensSchema = z.object({
  accessToken: z.string().min(1),
  tokenType: z.string().min(1),
  /** Epoch milliseconds; undefined when the AS gave no expires_in. */
  expiresAt: z.number().optional(),
  /** Epoch milliseconds at which the access token was obtained. */
  obtainedAt: z.number(),
  refreshToken: z.string().min(1).optional(),
  /** Epoch milliseconds at which the current refresh token was obtained. */
  refreshTokenObtainedAt: z.number().optional(),
  scope: z.string().optional(),
  clientId: z.string().min(1),
  issuer: z.string().min(1),
});
export type Tokens = z.infer<typeof TokensSchema>;

export const NeedsAuthStateSchema = z.object({
  reason: z.string(),
  error: z.string().optional(),
  errorDescription: z.string().optional(),
  at: z.string(),
  request: z.string().optional(),
});
export type NeedsAuthState = z.infer<typeof NeedsAuthStateSchema>;

export const ServerRecordSchema = z.object({
  version: z.literal(RECORD_VERSION),
  /** The canonical MCP server URL this record is for (the store key). */
  serverUrl: z.string().min(1),
  /** Incremented by every write; compare-and-swap checks it (invariant 4). */
  generation: z.number().int().nonnegative(),
  /** The RFC 8707 resource exactly as the PRM publishes it (or the server URL without PRM). */
  resource: z.string().min(1),
  resourceMetadataUrl: z.string().optional(),
  authorizationServer: AuthorizationServerSchema,
  registration: RegistrationSchema,
  tokens: TokensSchema.optional(),
  /** Set when the server needs an interactive sign-in; cleared by a successful login. */
  needsAuth: NeedsAuthStateSchema.optional(),
  lastRefreshAt: z.number().optional(),
  updatedAt: z.string(),
});
export type ServerRecord = z.infer<typeof ServerRecordSchema>;
