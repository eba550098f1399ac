/**
 * record: the ONE stored value per MCP server (docs/DESIGN.md invariant 2). It holds the issuer,
 * the client registration, and tokens stamped with the client_id and issuer they were issued to,
 * plus a generation for compare-and-swap. Parsed with zod because the file is untrusted input; with
 * zod/mini, whose schemas cost a fraction of classic zod's to build: every `authkeep token` builds
 * them before it can answer.
 *
 * The protocol's shapes (AuthorizationServer, Registration) are oauth/types.ts's; this file only
 * builds their schemas. Not for: reading or writing files (see credential-store.ts).
 */
import * as z from 'zod/mini';
import { ENTERPRISE_STEPS, NEEDS_AUTH_REASONS } from '../errors.js';
import { DPOP_ALGS, type DpopKey } from '../oauth/dpop.js';
import {
  type AuthorizationServer,
  REGISTRATION_METHODS,
  type Registration,
  TOKEN_ENDPOINT_AUTH_METHODS,
} from '../oauth/types.js';
import { MachineGrantSchema } from './grant-schema.js';

export const RECORD_VERSION = 1 as const;

export const RegistrationMethodSchema = z.enum(REGISTRATION_METHODS);
export const TokenEndpointAuthMethodSchema = z.enum(TOKEN_ENDPOINT_AUTH_METHODS);

/**
 * The protocol's Registration as stored. The shape's keys are exactly the type's (`satisfies
 * Record<keyof ...>`) and its output is the type, so neither can gain a field the other lacks.
 */
export const RegistrationSchema = z.object({
  issuer: z.string().check(z.minLength(1)),
  clientId: z.string().check(z.minLength(1)),
  clientSecret: z.exactOptional(z.string().check(z.minLength(1))),
  method: RegistrationMethodSchema,
  tokenEndpointAuthMethod: TokenEndpointAuthMethodSchema,
  redirectUris: z._default(z.array(z.string()), []),
  grantTypes: z.exactOptional(z.array(z.string())),
  clientSecretExpiresAt: z.exactOptional(z.number()),
  registeredAt: z.string(),
} satisfies Record<keyof Registration, z.ZodMiniType>) satisfies z.ZodMiniType<Registration>;

/** The protocol's AuthorizationServer as stored (the fields we use, so a refresh needs no discovery). */
export const AuthorizationServerSchema = z.object({
  issuer: z.string().check(z.minLength(1)),
  authorization_endpoint: z.exactOptional(z.string()),
  token_endpoint: z.string().check(z.minLength(1)),
  registration_endpoint: z.exactOptional(z.string()),
  revocation_endpoint: z.exactOptional(z.string()),
  scopes_supported: z.exactOptional(z.array(z.string())),
  code_challenge_methods_supported: z.exactOptional(z.array(z.string())),
  token_endpoint_auth_methods_supported: z.exactOptional(z.array(z.string())),
  client_id_metadata_document_supported: z.exactOptional(z.boolean()),
  authorization_response_iss_parameter_supported: z.exactOptional(z.boolean()),
  device_authorization_endpoint: z.exactOptional(z.string()),
  grant_types_supported: z.exactOptional(z.array(z.string())),
  dpop_signing_alg_values_supported: z.exactOptional(z.array(z.string())),
  id_token_signing_alg_values_supported: z.exactOptional(z.array(z.string())),
} satisfies Record<keyof AuthorizationServer, z.ZodMiniType>) satisfies z.ZodMiniType<AuthorizationServer>;

/**
 * The server's DPoP key pair (RFC 9449), generated at sign-in and written with the tokens bound to
 * it, in the same record: a token and its key are never apart. `privateJwk.d` is a secret: no
 * status, inspection or log shows it.
 */
export const DpopKeySchema = z.object({
  alg: z.enum(DPOP_ALGS),
  privateJwk: z.object({
    kty: z.literal('EC'),
    crv: z.string().check(z.minLength(1)),
    x: z.string().check(z.minLength(1)),
    y: z.string().check(z.minLength(1)),
    d: z.string().check(z.minLength(1)),
  }),
}) satisfies z.ZodMiniType<DpopKey>;

/** Tokens, stamped with the registration and issuer they were issued to (invariant 5). */
export const TokensSchema = z.object({
  accessToken: z.string().check(z.minLength(1)),
  tokenType: z.string().check(z.minLength(1)),
  /** Epoch milliseconds; undefined when the AS gave no expires_in. */
  expiresAt: z.optional(z.number()),
  /** Epoch milliseconds at which the access token was obtained. */
  obtainedAt: z.number(),
  refreshToken: z.optional(z.string().check(z.minLength(1))),
  /** Epoch milliseconds at which the current refresh token was obtained. */
  refreshTokenObtainedAt: z.optional(z.number()),
  scope: z.optional(z.string()),
  clientId: z.string().check(z.minLength(1)),
  issuer: z.string().check(z.minLength(1)),
});
export type Tokens = z.infer<typeof TokensSchema>;

/** An IdP session's ID token (see ServerRecord.idpSession). The token is a credential: never shown. */
export const IdpSessionSchema = z.object({
  token: z.string().check(z.minLength(1)),
  /** Epoch milliseconds: the ID token's `exp`. */
  expiresAt: z.number(),
  /** Epoch milliseconds: the ID token's `iat`. */
  issuedAt: z.number(),
  subject: z.string(),
});

/** The needs-auth marker: why a sign-in is needed (one of NEEDS_AUTH_REASONS), and the evidence. */
export const NeedsAuthStateSchema = z.object({
  reason: z.enum(NEEDS_AUTH_REASONS),
  error: z.optional(z.string()),
  errorDescription: z.optional(z.string()),
  at: z.string(),
  request: z.optional(z.string()),
  /** Enterprise-managed authorization: which step failed (errors.ts ENTERPRISE_STEPS). */
  step: z.optional(z.enum(ENTERPRISE_STEPS)),
});
export type NeedsAuthState = z.infer<typeof NeedsAuthStateSchema>;

export const ServerRecordSchema = z.object({
  version: z.literal(RECORD_VERSION),
  /** The canonical MCP server URL this record is for (the store key). */
  serverUrl: z.string().check(z.minLength(1)),
  /** Incremented by every write; compare-and-swap checks it (invariant 4). */
  generation: z.int().check(z.nonnegative()),
  /** The RFC 8707 resource exactly as the PRM publishes it (or the server URL without PRM). */
  resource: z.string().check(z.minLength(1)),
  resourceMetadataUrl: z.optional(z.string()),
  authorizationServer: AuthorizationServerSchema,
  registration: RegistrationSchema,
  tokens: z.optional(TokensSchema),
  /** A machine grant: the next token comes from it, not from a refresh token (grant-schema.ts). */
  grant: z.exactOptional(MachineGrantSchema),
  /** Present when the tokens are DPoP-bound (tokenType `DPoP`): the key they are bound to. */
  dpop: z.optional(DpopKeySchema),
  /**
   * The server refused fresh DPoP-bound tokens with a Bearer-only challenge (it does not take the
   * DPoP scheme): its sign-ins ask for Bearer tokens unless it requires DPoP.
   */
  dpopRefused: z.optional(z.boolean()),
  /** Set when the server needs an interactive sign-in; cleared by a successful login. */
  needsAuth: z.optional(NeedsAuthStateSchema),
  lastRefreshAt: z.optional(z.number()),
  /**
   * The sign-in was made with http allowed (`--allow-http`, allowInsecureLoopback) for a server on
   * this machine; later uses allow it too. Honoured only while serverUrl is a loopback host
   * (session/loopback-http.ts), and http is never allowed for any other host whatever this says.
   */
  allowHttpLoopback: z.optional(z.literal(true)),
  /**
   * This record is an enterprise IdP session (session/idp-session.ts), keyed by the IdP's issuer:
   * the user's ID token from the OpenID Connect sign-in there (validated when it arrived), its
   * `exp` and subject. `tokens` holds the IdP's access and refresh tokens; the refresh token renews
   * the ID token. Every MCP server on that IdP (SEP-990) exchanges this one ID token.
   */
  idpSession: z.exactOptional(IdpSessionSchema),
  updatedAt: z.string(),
});
export type ServerRecord = z.infer<typeof ServerRecordSchema>;
