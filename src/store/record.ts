/**
 * record: the ONE stored value per MCP server (docs/DESIGN.md invariant 2). It holds the issuer,
 * the client registration, and tokens stamped with the client_id and issuer they were issued to,
 * plus a generation for compare-and-swap. Parsed with zod because the file is untrusted input.
 *
 * The protocol's shapes (AuthorizationServer, Registration) are oauth/types.ts's; this file only
 * builds their schemas. Not for: reading or writing files (see credential-store.ts).
 */
import { z } from 'zod';
import { NEEDS_AUTH_REASONS } from '../errors.js';
import {
  type AuthorizationServer,
  REGISTRATION_METHODS,
  type Registration,
  TOKEN_ENDPOINT_AUTH_METHODS,
} from '../oauth/types.js';

export const RECORD_VERSION = 1 as const;

export const RegistrationMethodSchema = z.enum(REGISTRATION_METHODS);
export const TokenEndpointAuthMethodSchema = z.enum(TOKEN_ENDPOINT_AUTH_METHODS);

/**
 * The protocol's Registration as stored. The shape's keys are exactly the type's (`satisfies
 * Record<keyof ...>`) and its output is the type, so neither can gain a field the other lacks.
 */
export const RegistrationSchema = z.object({
  issuer: z.string().min(1),
  clientId: z.string().min(1),
  clientSecret: z.string().min(1).exactOptional(),
  method: RegistrationMethodSchema,
  tokenEndpointAuthMethod: TokenEndpointAuthMethodSchema,
  redirectUris: z.array(z.string()).default([]),
  grantTypes: z.array(z.string()).exactOptional(),
  clientSecretExpiresAt: z.number().exactOptional(),
  registeredAt: z.string(),
} satisfies Record<keyof Registration, z.ZodType>) satisfies z.ZodType<Registration>;

/** The protocol's AuthorizationServer as stored (the fields we use, so a refresh needs no discovery). */
export const AuthorizationServerSchema = z.object({
  issuer: z.string().min(1),
  authorization_endpoint: z.string().exactOptional(),
  token_endpoint: z.string().min(1),
  registration_endpoint: z.string().exactOptional(),
  revocation_endpoint: z.string().exactOptional(),
  scopes_supported: z.array(z.string()).exactOptional(),
  code_challenge_methods_supported: z.array(z.string()).exactOptional(),
  token_endpoint_auth_methods_supported: z.array(z.string()).exactOptional(),
  client_id_metadata_document_supported: z.boolean().exactOptional(),
  authorization_response_iss_parameter_supported: z.boolean().exactOptional(),
  device_authorization_endpoint: z.string().exactOptional(),
  grant_types_supported: z.array(z.string()).exactOptional(),
} satisfies Record<keyof AuthorizationServer, z.ZodType>) satisfies z.ZodType<AuthorizationServer>;

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

/** The needs-auth marker: why a sign-in is needed (one of NEEDS_AUTH_REASONS), and the evidence. */
export const NeedsAuthStateSchema = z.object({
  reason: z.enum(NEEDS_AUTH_REASONS),
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
