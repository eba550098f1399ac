/**
 * The stdio-proxy variants' sessions, `mcp-remote` and `authkeep-proxy`: each session launches
 * the proxy once per server as an MCP client application does (a child process per server, the
 * SDK's Client over StdioClientTransport) and calls `echo` through it. The proxy does all of the
 * OAuth itself; this process never sees a token or a sign-in.
 *
 *   - `mcp-remote`: the real mcp-remote package (devDependency, pinned), `node <its bin> <url>
 *     --allow-http`, with MCP_REMOTE_CONFIG_DIR = the variant's shared directory (all sessions
 *     share it, as a user's processes share ~/.mcp-auth).
 *   - `authkeep-proxy`: `authkeep proxy <url> --allow-http` (bin/authkeep.cjs: the built CLI when
 *     dist/ is there, else the source), with AUTHKEEP_HOME = the variant's shared directory.
 *
 * Sign-ins: both open the browser through `$BROWSER` (mcp-remote through the `open` package and
 * its bundled xdg-open, which runs `$BROWSER` when no desktop is found), here a script running the
 * robot browser (arena/testbed/robot-browser-cli.ts). It appends `open` and `done` lines to this
 * session's ROBOT_BROWSER_EVENTS file, which becomes the session's `tab` and `tab_stuck` events.
 * The proxies never tell the client that a sign-in is needed, so these sessions have no
 * needs-auth or login events.
 *
 * A proxy that exits (it could not start, or gave up) is what the user's MCP client shows as a
 * failed server: every call to it fails at once with the proxy's last error line until it is
 * launched again, after 2 s, doubled per failed launch up to 60 s (so a server a proxy cannot use
 * does not become a fork loop). When the run ends, a proxy still starting is closed at once.
 *
 * For: arena/session.ts. Not for: judging (the runner and the audit do that).
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';

import type { Pair, VariantContext } from '../session.js';
import { writeRobotBrowserScript } from '../testbed/robot-browser-command.js';

export type StdioProxyVariant = 'mcp-remote' | 'authkeep-proxy';

interface Launch {
  command: string;
  args: string[];
  env: Record<string, string>;
}

const FIRST_RELAUNCH_MS = 2_000;
const MAX_RELAUNCH_MS = 60_000;
/** A proxy that signs in at start-up may wait for another process's sign-in (mcp-remote: minutes). */
const CONNECT_TIMEOUT_MS = 90_000;
const STDERR_TAIL = 4_000;

/** The command line a user's MCP client config holds for the variant (absolute paths). */
export function proxyLaunch(variant: StdioProxyVariant, url: string, storeDir: string): Launch {
  if (variant === 'mcp-remote') {
    const require = createRequire(import.meta.url);
    const pkgFile = require.resolve('mcp-remote/package.json');
    const pkg = require(pkgFile) as { bin: Record<string, string> };
    const bin = path.join(path.dirname(pkgFile), pkg.bin['mcp-remote'] as string);
    return {
      command: process.execPath,
      args: [bin, url, '--allow-http'],
      env: { MCP_REMOTE_CONFIG_DIR: path.join(storeDir, 'mcp-auth') },
    };
  }
  // The package's `authkeep` command: the built CLI when dist/ is there (`npm run build`), else
  // the source through tsx (about 2 s of CPU per start instead of 0.2 s).
  const bin = fileURLToPath(new URL('../../bin/authkeep.cjs', import.meta.url));
  return {
    command: process.execPath,
    args: [bin, 'proxy', url, '--allow-http'],
    env: { AUTHKEEP_HOME: path.join(storeDir, 'authkeep') },
  };
}

/** The last line of a proxy's stderr that says what went wrong, else its last line. */
function lastErrorLine(stderr: string): string | undefined {
  const lines = stderr
    .split('\n')
    .map((l) => l.replace(/^\[\d+\]\s*/, '').trim())
    .filter(Boolean);
  return [...lines].reverse().find((l) => /error|fail|denied|refus|cannot|unable/i.test(l)) ?? lines.at(-1);
}

export async function stdioProxyPairs(context: VariantContext, variant: StdioProxyVariant): Promise<Pair[]> {
  const { config, emit, errorText } = context;
  const own = await mkdtemp(path.join(tmpdir(), `arena-${variant}-s${config.session}-`));
  const browser = await writeRobotBrowserScript(own);
  const browserEvents = path.join(own, 'browser-events.jsonl');
  const serverOf = (resource: string): number =>
    config.servers.find((s) => s.url === resource || s.url === resource.replace(/\/$/, ''))?.index ?? -1;

  // The robot's tabs, opened by the proxies: read from its event file as they appear.
  let consumed = 0;
  const readTabs = async (): Promise<void> => {
    const text = await readFile(browserEvents, 'utf8').catch(() => '');
    const end = text.lastIndexOf('\n') + 1;
    if (end <= consumed) return;
    const fresh = text.slice(consumed, end);
    consumed = end;
    for (const line of fresh.split('\n').filter(Boolean)) {
      const e = JSON.parse(line) as { t: number; phase: string; resource: string; status?: number; ok?: boolean };
      const server = serverOf(e.resource);
      if (e.phase === 'open') emit({ type: 'tab', t: e.t, server });
      else if (e.phase === 'done' && !e.ok) emit({ type: 'tab_stuck', t: e.t, server, status: e.status ?? 0, at: '' });
    }
  };
  const tabTimer = setInterval(() => void readTabs(), 200);
  // Proxies still running when this process exits (the runner stopped it) are ended with it.
  const running = new Set<number>();
  process.once('exit', () => {
    for (const pid of running) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {}
    }
  });

  const pairs = config.servers.map((server): Pair => {
    const launch = proxyLaunch(variant, server.url, config.storeDir);
    let client: Client | undefined;
    /** A Client still connecting (its proxy starting, maybe signing in). */
    let connecting: Client | undefined;
    let stopped = false;
    let stderr = '';
    let down: { reason: string; until: number } | undefined;
    let relaunchMs = FIRST_RELAUNCH_MS;

    const fail = (error: string): void => emit({ type: 'call', t: Date.now(), server: server.index, ok: false, error });
    const drop = async (reason: string): Promise<void> => {
      const old = client;
      client = undefined;
      down = { reason, until: Date.now() + relaunchMs };
      relaunchMs = Math.min(MAX_RELAUNCH_MS, relaunchMs * 2);
      await old?.close().catch(() => {});
    };
    const connect = async (): Promise<Client> => {
      stderr = '';
      const transport = new StdioClientTransport({
        command: launch.command,
        args: launch.args,
        env: {
          ...(process.env as Record<string, string>),
          ...launch.env,
          BROWSER: browser,
          ROBOT_BROWSER_EVENTS: browserEvents,
        },
        stderr: 'pipe',
      });
      transport.stderr?.on('data', (chunk: Buffer) => {
        if (process.env.ARENA_DEBUG) process.stderr.write(chunk);
        stderr = (stderr + chunk.toString()).slice(-STDERR_TAIL);
      });
      const fresh = new Client({ name: `arena-${variant}`, version: '1.0.0' });
      // The proxy exited (or its pipe broke): the next call relaunches it after the back-off.
      fresh.onclose = () => {
        if (client === fresh) void drop(`the proxy exited: ${lastErrorLine(stderr) ?? 'no message'}`);
      };
      const started = transport.start.bind(transport);
      transport.start = async () => {
        await started();
        const pid = transport.pid;
        if (pid !== null) {
          running.add(pid);
          // The Client's own handler (set before start) still runs.
          const onclose = transport.onclose;
          transport.onclose = () => {
            running.delete(pid);
            onclose?.();
          };
        }
      };
      if (stopped) throw new Error('the run is over');
      connecting = fresh;
      try {
        await fresh.connect(transport, { timeout: CONNECT_TIMEOUT_MS });
      } catch (err) {
        await fresh.close().catch(() => {});
        throw new Error(`the proxy did not start: ${lastErrorLine(stderr) ?? errorText(err)}`);
      } finally {
        connecting = undefined;
      }
      relaunchMs = FIRST_RELAUNCH_MS;
      down = undefined;
      return fresh;
    };

    const call = async (): Promise<void> => {
      if (!client && down && Date.now() < down.until) return fail(down.reason);
      try {
        client ??= await connect();
      } catch (err) {
        if (stopped) return; // ended by the end of the run, not by the proxy
        await drop(errorText(err));
        return fail(errorText(err));
      }
      try {
        await client.callTool({ name: 'echo', arguments: { text: `s${config.session}` } }, undefined, {
          timeout: config.callTimeoutMs,
        });
        emit({ type: 'call', t: Date.now(), server: server.index, ok: true });
      } catch (err) {
        fail(errorText(err));
      }
    };

    return {
      serverIndex: server.index,
      url: server.url,
      call,
      stop: () => {
        stopped = true;
        void connecting?.close().catch(() => {});
      },
      close: async () => {
        const old = client;
        client = undefined;
        await old?.close().catch(() => {});
      },
    };
  });

  // The last pair to close reads the last tabs and removes this session's directory.
  let open = pairs.length;
  return pairs.map((pair) => ({
    ...pair,
    close: async () => {
      await pair.close();
      if (--open > 0) return;
      clearInterval(tabTimer);
      await readTabs();
      await rm(own, { recursive: true, force: true }).catch(() => {});
    },
  }));
}
