/**
 * The `naive-v2` variant's provider: naive-provider.ts's straightforward file-backed provider
 * (one shared directory, one file per item and server, one verifier slot, no lock, no state,
 * `invalidateCredentials` deletes) offered to @modelcontextprotocol/client 2.x as its
 * `OAuthClientProvider`. The files and their handling are the 1.x provider's, unchanged: what 2.x
 * hands over (tokens and client information stamped with the issuer, SEP-2352) is written as it
 * comes, and read back as it was written.
 *
 * For: arena/variants/naive-v2.ts. Not for: anything but the arena's baseline.
 */
import type { OAuthClientProvider } from '@modelcontextprotocol/client';

import { NaiveFileOAuthProvider } from '../naive-provider.js';

export class NaiveFileOAuthProviderV2 extends NaiveFileOAuthProvider implements OAuthClientProvider {}
