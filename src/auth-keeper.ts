/**
 * auth-keeper (package root): the AuthKeeper users import. It is the session layer's class plus
 * `authProvider()`, the @modelcontextprotocol/sdk adapter, composed here at the top so that the
 * session layer never imports from the mcp layer above it (docs/DESIGN.md: data flows down).
 *
 * Not for: behaviour (session/session-keeper.ts, SessionKeeper) or the adapter's logic (mcp/auth-provider.ts).
 */
import { KeeperAuthProvider, type KeeperAuthProviderOptions } from './mcp/auth-provider.js';
import { canonicalServerUrl } from './session/canonical-url.js';
import { SessionKeeper } from './session/session-keeper.js';

export class AuthKeeper extends SessionKeeper {
  /**
   * An `OAuthClientProvider` for @modelcontextprotocol/sdk, backed by this AuthKeeper: pass it as
   * a transport's `authProvider`. Refresh stays single-flight across processes and sign-in is
   * AuthKeeper's own (coordinated, one browser tab); see src/mcp/auth-provider.ts for how the
   * SDK's `auth()` maps onto it. The simpler path is `fetch: keeper.fetch(serverUrl)`.
   */
  authProvider(serverUrl: string, options: KeeperAuthProviderOptions = {}): KeeperAuthProvider {
    return new KeeperAuthProvider(this, canonicalServerUrl(serverUrl), options);
  }
}
