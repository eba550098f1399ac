/**
 * bed: a real authorization server (oidc-provider, rotation with reuse revocation) and protected
 * MCP servers on 127.0.0.1, plus AuthKeeper instances in temp homes that sign in through the
 * robot browser. Shared by the session tests.
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import {
  type AuthorizationServerOptions,
  createRobotBrowser,
  type ProtectedMcpServerOptions,
  type RunningAuthorizationServer,
  type RunningMcpServer,
  startAuthorizationServer,
  startProtectedMcpServer,
} from '../../arena/testbed/index.js';
import { AuthKeeper, type AuthKeeperOptions } from '../../src/index.js';
import type { LogEvent } from '../../src/session/log.js';

export interface Bed {
  as: RunningAuthorizationServer;
  servers: RunningMcpServer[];
  home: string;
  logs: LogEvent[];
  robotOpens: () => number;
  keeper(options?: AuthKeeperOptions): AuthKeeper;
}

export async function tempHome(t: TestContext): Promise<string> {
  const home = await mkdtemp(path.join(tmpdir(), 'authkeep-test-'));
  t.after(() => rm(home, { recursive: true, force: true }));
  return home;
}

export async function startBed(
  t: TestContext,
  options: { as?: AuthorizationServerOptions; servers?: ProtectedMcpServerOptions[] } = {},
): Promise<Bed> {
  const as = await startAuthorizationServer({ accessTokenTtlSeconds: 3600, ...options.as });
  t.after(() => as.close());
  const servers: RunningMcpServer[] = [];
  for (const serverOptions of options.servers ?? [{ discovery: 'header' }]) {
    const server = await startProtectedMcpServer({ authorizationServer: as, ...serverOptions });
    t.after(() => server.close());
    servers.push(server);
  }
  const home = await tempHome(t);
  const robot = createRobotBrowser();
  const logs: LogEvent[] = [];
  return {
    as,
    servers,
    home,
    logs,
    robotOpens: () => robot.opened(),
    keeper: (extra = {}) =>
      new AuthKeeper({
        home,
        allowInsecureLoopback: true,
        openAuthorizationUrl: async (url) => {
          await robot.open(url);
        },
        log: (event) => logs.push(event),
        loginTimeoutMs: 20_000,
        ...extra,
      }),
  };
}

/** Calls the `echo` tool through a fetch, the way the MCP SDK's transport would (stateless JSON). */
export async function callTool(
  fetchFn: typeof fetch,
  serverUrl: string,
  name = 'echo',
  args: Record<string, unknown> = { text: 'hi' },
): Promise<Response> {
  return fetchFn(serverUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name, arguments: args } }),
  });
}

/** The `exp` of a JWT access token, in epoch ms (no signature check: the servers do that). */
export function jwtExpiresAt(token: string): number {
  const payload = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as { exp?: unknown };
  if (typeof payload.exp !== 'number') throw new Error('not a JWT with a numeric exp');
  return payload.exp * 1000;
}

/**
 * Resolves once the clock has passed `epochMs`: for letting a real token lifetime run out, which
 * is the thing under test. Never for waiting on another process or server: wait on its event.
 */
export async function untilPast(epochMs: number): Promise<void> {
  // A timer may fire a millisecond early; check the clock, not the timer.
  while (Date.now() <= epochMs) await new Promise((resolve) => setTimeout(resolve, epochMs - Date.now() + 1));
}

/** The stored record's access-token expiry (epoch ms), for the only record in `home`. */
export async function storedTokenExpiresAt(home: string): Promise<number> {
  const dir = path.join(home, 'servers');
  const files = (await readdir(dir)).filter((f) => f.endsWith('.json'));
  if (files.length !== 1) throw new Error(`expected one record in ${dir}, found ${files.length}`);
  const record = JSON.parse(await readFile(path.join(dir, files[0] as string), 'utf8')) as {
    tokens?: { expiresAt?: number };
  };
  if (record.tokens?.expiresAt === undefined) throw new Error('the stored tokens have no expiry');
  return record.tokens.expiresAt;
}
