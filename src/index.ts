/**
 * authkeep: an OAuth 2.1 client for remote MCP servers that stays correct when many processes,
 * and many servers inside one process, sign in and refresh at the same time.
 */
export { AuthKeeper } from './auth-keeper.js';
export type { AuthKeeperOptions, LoginOptions } from './session/auth-keeper.js';
export { KeeperAuthProvider, type KeeperAuthProviderOptions } from './mcp/auth-provider.js';
export { runProxy, parseHeaderArgs, type ProxyOptions } from './mcp/proxy.js';
export { AuthkeepError, NeedsAuthError, isAuthkeepError, needsAuthHint } from './errors.js';
export type { AuthkeepErrorCode, NeedsAuthReason, NeedsAuthInfo } from './errors.js';
export { parseWwwAuthenticate, type Challenge } from './oauth/www-authenticate.js';
export type { ServerStatus } from './session/status.js';
export type { StaticClient, CallbackOptions } from './session/sign-in.js';
export type { LogEvent, LogSink, LogLevel } from './session/log.js';
export type { CredentialStore } from './store/credential-store.js';
export type { ServerRecord } from './store/record.js';
