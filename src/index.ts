/**
 * authkeep: an OAuth 2.1 client for remote MCP servers that stays correct when many processes,
 * and many servers inside one process, sign in and refresh at the same time.
 */
export { AuthKeeper } from './auth-keeper.js';
export type { AuthkeepErrorCode, EnterpriseStep, ErrorCode, NeedsAuthInfo, NeedsAuthReason } from './errors.js';
export {
  AUTHKEEP_ERROR_CODES,
  AuthkeepError,
  ENTERPRISE_STEPS,
  isAuthkeepError,
  NEEDS_AUTH_REASONS,
  NeedsAuthError,
  needsAuthHint,
} from './errors.js';
export { KeeperAuthProvider, type KeeperAuthProviderOptions } from './mcp/auth-provider.js';
export { runProxy } from './mcp/proxy.js';
export { type ProxyOptions, parseHeaderArgs } from './mcp/proxy-options.js';
export type { MachineGrant, MachineGrantType, SecretSource } from './oauth/grants.js';
export { type Challenge, parseWwwAuthenticate } from './oauth/www-authenticate.js';
export type { IdpClient } from './session/idp-session.js';
export type { LogEvent, LogLevel, LogSink } from './session/log.js';
export type { MachineGrantOptions } from './session/machine-grant.js';
export type { AuthKeeperOptions, LoginOptions, LogoutResult } from './session/session-keeper.js';
export type { CallbackOptions, StaticClient } from './session/sign-in.js';
export type { ServerStatus } from './session/status.js';
export type { CredentialStore } from './store/credential-store.js';
export type { ServerRecord } from './store/record.js';
export { USER_AGENT, VERSION } from './version.js';
