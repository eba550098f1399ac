/**
 * sdk-v2 (package subpath `authkeep/sdk-v2`): authkeep for @modelcontextprotocol/client 2.x, an
 * optional peer dependency. A separate entry so the package root never imports the 2.x client, at
 * run time or in its type declarations: 1.x users need not install it.
 *
 * Not for: the adapter's logic (mcp/auth-provider.ts, mcp/sdk-v2-auth-provider.ts).
 */
import type { AuthKeeper } from './auth-keeper.js';
import { type KeeperAuthProviderOptions, KeeperAuthProviderV2 } from './mcp/sdk-v2-auth-provider.js';
import { canonicalServerUrl } from './session/canonical-url.js';

export { type KeeperAuthProviderOptions, KeeperAuthProviderV2 };

/**
 * An `OAuthClientProvider` for @modelcontextprotocol/client 2.x, backed by `keeper`: pass it as a
 * transport's `authProvider`. The SDK never holds the refresh token; refresh stays single-flight
 * across processes and sign-in is AuthKeeper's own (coordinated, one browser tab). See
 * src/mcp/sdk-v2-auth-provider.ts. The simpler path is `fetch: keeper.fetch(serverUrl)`.
 */
export function authProviderV2(
  keeper: AuthKeeper,
  serverUrl: string,
  options: KeeperAuthProviderOptions = {},
): KeeperAuthProviderV2 {
  return new KeeperAuthProviderV2(keeper, canonicalServerUrl(serverUrl), options);
}
