/**
 * grant-schema: the stored form of a record's machine grant (oauth/grants.ts), validated like the
 * rest of the record. It holds only references (an environment variable's name, a file's path),
 * so a record read back can never hand out a secret it does not have.
 *
 * Not for: the rest of the record (record.ts).
 */
import * as z from 'zod/mini';
import { type EnterpriseIdp, MACHINE_GRANT_TYPES, type MachineGrant, type SecretSource } from '../oauth/grants.js';

export const SecretSourceSchema = z.union([
  z.strictObject({ env: z.string().check(z.minLength(1)) }),
  z.strictObject({ file: z.string().check(z.minLength(1)) }),
]) satisfies z.ZodMiniType<SecretSource>;

export const EnterpriseIdpSchema = z.object({
  issuer: z.string().check(z.minLength(1)),
  tokenEndpoint: z.string().check(z.minLength(1)),
  clientId: z.string().check(z.minLength(1)),
  clientSecret: z.exactOptional(SecretSourceSchema),
} satisfies Record<keyof EnterpriseIdp, z.ZodMiniType>) satisfies z.ZodMiniType<EnterpriseIdp>;

export const MachineGrantSchema = z.object({
  type: z.enum(MACHINE_GRANT_TYPES),
  clientSecret: z.exactOptional(SecretSourceSchema),
  privateKey: z.exactOptional(SecretSourceSchema),
  assertion: z.exactOptional(SecretSourceSchema),
  idToken: z.exactOptional(SecretSourceSchema),
  idp: z.exactOptional(EnterpriseIdpSchema),
  audience: z.exactOptional(z.string().check(z.minLength(1))),
  scope: z.exactOptional(z.string()),
} satisfies Record<keyof MachineGrant, z.ZodMiniType>) satisfies z.ZodMiniType<MachineGrant>;
