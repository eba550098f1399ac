/**
 * The test bed's public surface: the real authorization server (oidc-provider) with its audit,
 * protected MCP servers of every discovery variant, the robot browser, and a loopback receiver.
 *
 * For: tests and the arena. Not for: the shipped authkeep library (nothing in src/ imports this).
 * robot-browser-cli.ts is deliberately not re-exported: it runs when loaded.
 */
export * from './audit.js';
export * from './authorization-server.js';
export type { InteractionBehavior } from './interactions.js';
export * from './loopback-receiver.js';
export * from './mcp-server.js';
export * from './robot-browser.js';
export * from './robot-browser-command.js';
