/**
 * clients: the MCP clients `authkeep setup` knows, and for each the config file it reads, that
 * file's format, where server entries live in it, the names it accepts, and the shape of a stdio
 * entry. Each entry below notes the client documentation it follows.
 *
 * Not for: editing the text (json-config.ts, toml-config.ts) or files (config-file.ts).
 */
import { homedir } from 'node:os';
import path from 'node:path';
import { shellQuote } from '../output.js';

export const CLIENT_IDS = ['claude-code', 'claude-desktop', 'cursor', 'vscode', 'codex'] as const;
export type ClientId = (typeof CLIENT_IDS)[number];

/** How the client starts `authkeep proxy`. */
export interface StdioCommand {
  command: string;
  args: string[];
  /** Environment variables the proxy reads (`${NAME}` in a --header); Codex must be told to pass them. */
  envVars: string[];
}

export interface PathContext {
  env: NodeJS.ProcessEnv;
  platform: NodeJS.Platform;
  cwd: string;
  /** Cursor: the project's `.cursor/mcp.json` instead of the user's. */
  project: boolean;
}

export interface ClientConfig {
  id: ClientId;
  title: string;
  format: 'json' | 'jsonc' | 'toml';
  /** The key whose object (JSON) or table (TOML) maps server names to entries. */
  containerKey: string;
  /** Server names the client accepts as keys; `setup` derives and checks names with it. */
  namePattern: RegExp;
  nameRule: string;
  /** Has a user file and a project file (`--project` picks the project one). */
  hasProjectFile: boolean;
  defaultPath(ctx: PathContext): string;
  entry(command: StdioCommand): Record<string, string | string[]>;
}

// Letters, digits, '-' and '_': what `claude mcp add` and `codex mcp add` accept as a name, and
// safe in every client's tool names (the others do not document a rule of their own).
const SAFE_NAME = /^[A-Za-z0-9_-]{1,64}$/;
const SAFE_NAME_RULE = "1 to 64 letters, digits, '-' or '_'";

function userHome(env: NodeJS.ProcessEnv, platform: NodeJS.Platform): string {
  const fromEnv = platform === 'win32' ? env.USERPROFILE : env.HOME;
  return fromEnv && fromEnv !== '' ? fromEnv : homedir();
}

function stdioEntry(c: StdioCommand): { command: string; args: string[] } {
  return { command: c.command, args: c.args };
}

export const CLIENTS: Record<ClientId, ClientConfig> = {
  // Claude Code, project scope: `.mcp.json` in the project root, {"mcpServers": {NAME: {"type":
  // "stdio", "command", "args", "env"?}}}, strict JSON; what `claude mcp add --scope project NAME --
  // COMMAND ARGS...` writes. Claude Code itself expands ${VAR} and ${VAR:-default} in command,
  // args, env, url and headers when it starts a server.
  'claude-code': {
    id: 'claude-code',
    title: 'Claude Code',
    format: 'json',
    containerKey: 'mcpServers',
    namePattern: SAFE_NAME,
    nameRule: SAFE_NAME_RULE,
    hasProjectFile: false,
    defaultPath: (ctx) => path.join(ctx.cwd, '.mcp.json'),
    entry: (c) => ({ type: 'stdio', ...stdioEntry(c) }),
  },
  // Claude Desktop: claude_desktop_config.json, {"mcpServers": {NAME: {"command", "args",
  // "env"?}}}, strict JSON, beside other settings (globalShortcut, preferences...). macOS
  // ~/Library/Application Support/Claude/, Windows %APPDATA%\Claude\; on Linux (community builds)
  // $XDG_CONFIG_HOME/Claude/. No variable expansion; the app's environment is inherited.
  'claude-desktop': {
    id: 'claude-desktop',
    title: 'Claude Desktop',
    format: 'json',
    containerKey: 'mcpServers',
    namePattern: SAFE_NAME,
    nameRule: SAFE_NAME_RULE,
    hasProjectFile: false,
    defaultPath: ({ env, platform }) => {
      const file = 'claude_desktop_config.json';
      if (platform === 'darwin') {
        return path.join(userHome(env, platform), 'Library', 'Application Support', 'Claude', file);
      }
      if (platform === 'win32') {
        const appData = env.APPDATA || path.join(userHome(env, platform), 'AppData', 'Roaming');
        return path.win32.join(appData, 'Claude', file);
      }
      const config = env.XDG_CONFIG_HOME || path.join(userHome(env, platform), '.config');
      return path.join(config, 'Claude', file);
    },
    entry: stdioEntry,
  },
  // Cursor: ~/.cursor/mcp.json (every project) or .cursor/mcp.json in the project, {"mcpServers":
  // {NAME: {"command", "args", "env"?}}}; read as strict JSON here (Cursor does not document
  // comments). Cursor interpolates ${env:NAME}, ${userHome}, ${workspaceFolder}; a plain ${NAME}
  // reaches the proxy unchanged and the proxy expands it.
  cursor: {
    id: 'cursor',
    title: 'Cursor',
    format: 'json',
    containerKey: 'mcpServers',
    namePattern: SAFE_NAME,
    nameRule: SAFE_NAME_RULE,
    hasProjectFile: true,
    defaultPath: ({ env, platform, cwd, project }) =>
      project ? path.join(cwd, '.cursor', 'mcp.json') : path.join(userHome(env, platform), '.cursor', 'mcp.json'),
    entry: stdioEntry,
  },
  // VS Code: .vscode/mcp.json in the workspace, {"servers": {NAME: {"type": "stdio", "command",
  // "args", "env"?}}, "inputs": [...]}, JSON with comments and trailing commas (VS Code's own
  // JSONC). Variables are ${env:NAME}, ${input:ID}, ${workspaceFolder}...; a plain ${NAME} reaches
  // the proxy unchanged.
  vscode: {
    id: 'vscode',
    title: 'VS Code',
    format: 'jsonc',
    containerKey: 'servers',
    namePattern: SAFE_NAME,
    nameRule: SAFE_NAME_RULE,
    hasProjectFile: false,
    defaultPath: ({ cwd }) => path.join(cwd, '.vscode', 'mcp.json'),
    entry: (c) => ({ type: 'stdio', ...stdioEntry(c) }),
  },
  // Codex: $CODEX_HOME/config.toml (default ~/.codex/config.toml), one [mcp_servers.NAME] table
  // per server with command = "...", args = [...], and env_vars = [...] naming variables to pass
  // through: Codex starts servers with only a default allow-list of the environment. Names are
  // what `codex mcp add` accepts: letters, digits, '-' and '_'.
  codex: {
    id: 'codex',
    title: 'Codex',
    format: 'toml',
    containerKey: 'mcp_servers',
    namePattern: SAFE_NAME,
    nameRule: SAFE_NAME_RULE,
    hasProjectFile: false,
    defaultPath: ({ env, platform }) =>
      path.join(env.CODEX_HOME || path.join(userHome(env, platform), '.codex'), 'config.toml'),
    entry: (c) => ({ ...stdioEntry(c), ...(c.envVars.length > 0 ? { env_vars: c.envVars } : {}) }),
  },
};

/** A default server name from the URL's host (and port): `mcp.example.com` -> `mcp-example-com`. */
export function defaultServerName(serverUrl: string, client: ClientConfig): string {
  const url = new URL(serverUrl);
  const base = `${url.hostname.replace(/^\[|\]$/g, '')}${url.port ? `-${url.port}` : ''}`.toLowerCase();
  const name = base
    .replace(/[^a-z0-9_-]+/g, '-')
    .replace(/-{2,}/g, '-')
    .replace(/^-|-$/g, '')
    .slice(0, 64)
    .replace(/-$/, '');
  return client.namePattern.test(name) ? name : 'mcp-server';
}

/** The `claude mcp add` command line that adds the same entry to the project's .mcp.json. */
export function claudeMcpAddLine(name: string, command: StdioCommand): string {
  return ['claude', 'mcp', 'add', '--scope', 'project', name, '--', command.command, ...command.args]
    .map(shellQuote)
    .join(' ');
}
