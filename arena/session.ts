/**
 * One agent session: a separate OS process (forked by the runner) that connects to every MCP
 * server of the arena with @modelcontextprotocol/sdk's Client over Streamable HTTP and calls the
 * `echo` tool at seeded random intervals until told to stop.
 *
 * Variants:
 *   - `naive`: the SDK's own client auth (`auth()` inside StreamableHTTPClientTransport) with the
 *     file-backed provider of naive-provider.ts. When the SDK needs a browser sign-in its
 *     provider opens the robot browser, the code arrives at this process's callback listener, and
 *     the simulated user finishes it with `transport.finishAuth(code)` and reconnects, as in the
 *     SDK's simpleOAuthClient example.
 *   - `authkeep`: the same sessions with `fetch: keeper.fetch(url)` as the transport's fetch; on a
 *     NeedsAuthError the simulated user runs `keeper.login(url)` through the robot browser.
 *   - `naive-v2`, `mcp-remote`, `authkeep-proxy`: in arena/variants/ (naive-v2.ts, stdio-proxy.ts).
 * Either way, a call that fails because the server needs a sign-in is retried once after it.
 * Scenarios (arena/scenarios.ts) may give a session its own home and environment (a fleet host),
 * machine grants for authkeep (no browser), or client credentials for naive (the SDK's
 * ClientCredentialsProvider in place of the file provider).
 *
 * Protocol with the runner (IPC): child -> `ready`, then events (see SessionEvent), then `done`;
 * runner -> `go` (start now), `stop` (finish in-flight calls and exit).
 *
 * Not for: judging anything (the runner and the AS's audit do that).
 */

import { readFileSync } from 'node:fs';
import { type OAuthClientProvider, UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { ClientCredentialsProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

import { AuthKeeper, type MachineGrantOptions } from '../src/index.js';
import type { LogSink } from '../src/session/log.js';
import { recordKey, storeLayout } from '../src/store/paths.js';
import { NaiveFileOAuthProvider } from './naive-provider.js';
import { deriveSeed, exponentialDelay, mulberry32 } from './random.js';
import { fingerprint } from './testbed/audit.js';
import { refreshLog } from './testbed/refresh-sends.js';
import { createRobotBrowser } from './testbed/robot-browser.js';

export type Variant = 'naive' | 'authkeep' | 'naive-v2' | 'authkeep-proxy' | 'mcp-remote';

export interface SessionConfig {
  variant: Variant;
  session: number;
  servers: Array<{ index: number; url: string }>;
  /** The shared credentials directory of this variant (one "user"). */
  storeDir: string;
  seed: number;
  meanIntervalMs: number;
  callTimeoutMs: number;
  /** authkeep: per server URL, the machine grant to sign in with instead of a browser (scenario ci-workers). */
  machineGrants?: Record<string, MachineGrantOptions>;
  /**
   * naive: the SDK's ClientCredentialsProvider (its tokens in this process's memory) instead of
   * the file provider; the secret is read from the named environment variable (scenario ci-workers).
   */
  clientCredentials?: { clientId: string; clientSecretEnv: string; scope: string };
  /**
   * Scenario chaos: every request carries `x-testbed-sender: <pid>` (the AS's audit names the
   * process, so a refresh answer can kill its sender); authkeep's requests time out after
   * `httpTimeoutMs`; each refresh the record stored is reported (`refresh_stored`); and a
   * needs-auth `as_unreachable` fails the call without a sign-in (the AS is down, a browser
   * would not help). `incarnation`: how many processes of this session were killed before this one.
   */
  chaos?: { httpTimeoutMs: number; incarnation: number };
}

export type SessionEvent =
  | { type: 'call'; t: number; server: number; ok: boolean; error?: string }
  /** A browser tab opened for the server's authorization page. */
  | { type: 'tab'; t: number; server: number }
  /** A tab that did not reach the client's redirect URI: where it ended (no query: it may hold a code). */
  | { type: 'tab_stuck'; t: number; server: number; status: number; at: string }
  /** The client told the user the server needs a sign-in (with the client's reason, if any). */
  | { type: 'needs_auth'; t: number; server: number; reason?: string; detail?: string }
  | { type: 'login'; t: number; server: number; ok: boolean; error?: string }
  /** authkeep only: a refresh request left this process for the server's resource. */
  | { type: 'refresh_sent'; t: number; server: number }
  /**
   * authkeep, scenario chaos: a refresh's tokens were written to the record (`t`, just after the
   * write); `answeredAt`: when the answer was parsed (the record's lastRefreshAt); `rt`: the
   * fingerprint of the refresh token stored (audit.ts: a truncated hash, never the token).
   */
  | { type: 'refresh_stored'; t: number; server: number; answeredAt?: number; rt?: string };

export type ChildMessage =
  | { type: 'ready' }
  | { type: 'done' }
  | { type: 'event'; event: SessionEvent }
  | { type: 'fatal'; error: string };
export type ParentMessage = { type: 'go' } | { type: 'stop' };

export interface Pair {
  serverIndex: number;
  url: string;
  /** Run one call (connecting first when needed); resolves with the outcome. */
  call(): Promise<void>;
  /** The run is over: end a connect still in flight (a proxy still starting) now. */
  stop?(): void;
  close(): Promise<void>;
}

const send = (message: ChildMessage): void => {
  process.send?.(message);
};
const emit = (event: SessionEvent): void => send({ type: 'event', event });

/** What a variant's session code (arena/variants/) gets from this process. */
export interface VariantContext {
  config: SessionConfig;
  emit: (event: SessionEvent) => void;
  errorText: (err: unknown) => string;
  /** The simulated user's browser tab (in this process). */
  openBrowser: (url: string) => Promise<void>;
}

function errorText(err: unknown): string {
  if (err instanceof Error) return `${err.name}: ${err.message}`.slice(0, 300);
  return String(err).slice(0, 300);
}

function serverIndexOf(config: SessionConfig, authorizationUrl: string): number {
  try {
    const resource = new URL(authorizationUrl).searchParams.get('resource');
    return config.servers.find((s) => s.url === resource)?.index ?? -1;
  } catch {
    return -1;
  }
}

async function main(): Promise<void> {
  const config = JSON.parse(process.argv[2] ?? '{}') as SessionConfig;
  // A fresh robot (cookie jar) per tab: one jar shared by concurrent sign-ins to the same AS
  // makes oidc-provider refuse the resume step (the session cookie of one flow replaces
  // another's), which would be the simulated user's fault, not the client's.
  const openBrowser = async (url: string): Promise<void> => {
    const robot = createRobotBrowser({ timeoutMs: 15_000 });
    const server = serverIndexOf(config, url);
    emit({ type: 'tab', t: Date.now(), server });
    const visit = await robot.open(url);
    if (!visit.reachedRedirectUri) {
      const end = new URL(visit.finalUrl);
      emit({ type: 'tab_stuck', t: Date.now(), server, status: visit.status, at: `${end.origin}${end.pathname}` });
    }
  };

  const context: VariantContext = { config, emit, errorText, openBrowser };
  const pairs =
    config.variant === 'naive'
      ? await naivePairs(config, openBrowser)
      : config.variant === 'authkeep'
        ? authkeepPairs(config, openBrowser)
        : // Loaded only by their own sessions (the 2.x SDK is a second SDK to load).
          config.variant === 'naive-v2'
          ? await (await import('./variants/naive-v2.js')).naiveV2Pairs(context)
          : await (await import('./variants/stdio-proxy.js')).stdioProxyPairs(context, config.variant);

  let stopping = false;
  let wake: Array<() => void> = [];
  const sleep = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        wake = wake.filter((w) => w !== done);
        resolve();
      }
      wake.push(done);
    });

  const go = new Promise<void>((resolve) => {
    process.on('message', (message: ParentMessage) => {
      if (message.type === 'go') resolve();
      if (message.type === 'stop') {
        stopping = true;
        for (const pair of pairs) pair.stop?.();
        for (const w of [...wake]) w();
        resolve();
      }
    });
  });
  process.on('disconnect', () => process.exit(0));
  send({ type: 'ready' });
  await go;

  await Promise.all(
    pairs.map(async (pair) => {
      const random = mulberry32(deriveSeed(config.seed, config.session, pair.serverIndex));
      // Cold start: every session calls every server at once.
      while (!stopping) {
        await pair.call();
        if (stopping) break;
        await sleep(exponentialDelay(random, config.meanIntervalMs));
      }
    }),
  );
  await Promise.all(pairs.map((p) => p.close().catch(() => {})));
  send({ type: 'done' });
  setTimeout(() => process.exit(0), 200).unref();
  process.disconnect?.();
}

/** The naive variant: the SDK's auth() with the straightforward file-backed provider. */
async function naivePairs(config: SessionConfig, openBrowser: (url: string) => Promise<void>): Promise<Pair[]> {
  return Promise.all(
    config.servers.map(async (server): Promise<Pair> => {
      const cc = config.clientCredentials;
      const fileProvider = cc
        ? undefined
        : new NaiveFileOAuthProvider({ dir: config.storeDir, serverUrl: server.url, openBrowser });
      await fileProvider?.start();
      const provider: OAuthClientProvider =
        fileProvider ??
        new ClientCredentialsProvider({
          clientId: cc?.clientId ?? '',
          clientSecret: process.env[cc?.clientSecretEnv ?? ''] ?? '',
          scope: cc?.scope ?? '',
        });
      let client: Client | undefined;
      let transport: StreamableHTTPClientTransport | undefined;

      const connect = async (): Promise<Client> => {
        transport = new StreamableHTTPClientTransport(new URL(server.url), {
          authProvider: provider,
          ...(config.chaos ? { requestInit: { headers: { [SENDER_HEADER]: String(process.pid) } } } : {}),
        });
        const fresh = new Client({ name: 'arena-naive', version: '1.0.0' });
        await fresh.connect(transport, { timeout: config.callTimeoutMs });
        return fresh;
      };

      const call = async (): Promise<void> => {
        for (let attempt = 1; ; attempt++) {
          try {
            client ??= await connect();
            await client.callTool({ name: 'echo', arguments: { text: `s${config.session}` } }, undefined, {
              timeout: config.callTimeoutMs,
            });
            emit({ type: 'call', t: Date.now(), server: server.index, ok: true });
            return;
          } catch (err) {
            const needsAuth = err instanceof UnauthorizedError;
            if (needsAuth && attempt === 1 && transport && fileProvider) {
              // The SDK could not get a token without the user: it opened the browser (our robot
              // went through the AS's pages) and the code is at our callback. Finish as the
              // SDK's example does, then reconnect.
              emit({ type: 'needs_auth', t: Date.now(), server: server.index });
              const received = fileProvider.callback.take();
              try {
                if (!received.code)
                  throw new Error(
                    `no authorization code at the callback${received.error ? ` (${received.error})` : ''}`,
                  );
                await transport.finishAuth(received.code);
                emit({ type: 'login', t: Date.now(), server: server.index, ok: true });
              } catch (loginErr) {
                emit({ type: 'login', t: Date.now(), server: server.index, ok: false, error: errorText(loginErr) });
                await dropClient();
                emit({ type: 'call', t: Date.now(), server: server.index, ok: false, error: errorText(loginErr) });
                return;
              }
              await dropClient();
              continue;
            }
            // A failed connect leaves nothing to reuse.
            if (!client) await dropClient();
            emit({ type: 'call', t: Date.now(), server: server.index, ok: false, error: errorText(err) });
            return;
          }
        }
      };

      const dropClient = async (): Promise<void> => {
        const old = client;
        client = undefined;
        await old?.close().catch(() => {});
      };

      return {
        serverIndex: server.index,
        url: server.url,
        call,
        close: async () => {
          await dropClient();
          await fileProvider?.callback.close();
        },
      };
    }),
  );
}

/** The authkeep variant: AuthKeeper's authenticated fetch as the transport's fetch. */
function authkeepPairs(config: SessionConfig, openBrowser: (url: string) => Promise<void>): Pair[] {
  // When each refresh was sent (the arena test judges refresh spacing by the sender's clock).
  const debug: LogSink | undefined = process.env.ARENA_DEBUG
    ? (e) => process.stderr.write(`${JSON.stringify({ ...e, t: Date.now() })}\n`)
    : undefined;
  const log = refreshLog(
    config.storeDir,
    ({ resource, at }) => {
      const server = config.servers.find((s) => s.url === resource)?.index ?? -1;
      emit({ type: 'refresh_sent', t: at, server });
    },
    config.chaos ? refreshStored(config, debug) : debug,
  );
  const debugFetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const res = await fetch(input, init);
    if (res.status === 401) {
      const url = input instanceof Request ? input.url : String(input);
      process.stderr.write(
        `${JSON.stringify({ event: 'http.401', serverUrl: url, message: res.headers.get('www-authenticate') ?? '', t: Date.now() })}\n`,
      );
    }
    return res;
  };
  const baseFetch = process.env.ARENA_DEBUG ? debugFetch : undefined;
  const keeper = new AuthKeeper({
    home: config.storeDir,
    clientName: 'arena-authkeep',
    allowInsecureLoopback: true,
    openAuthorizationUrl: openBrowser,
    loginTimeoutMs: 30_000,
    // An agent session is long-lived: keep its tokens fresh from a timer (one refresh per
    // lifetime per server machine-wide) rather than on the first call of a token's last quarter.
    refreshMode: 'keep-fresh',
    log,
    ...(config.machineGrants ? { machineGrants: config.machineGrants } : {}),
    ...(config.chaos
      ? { httpTimeoutMs: config.chaos.httpTimeoutMs, fetch: senderFetch(baseFetch ?? fetch) }
      : baseFetch
        ? { fetch: baseFetch }
        : {}),
  });
  return config.servers.map((server): Pair => {
    let client: Client | undefined;
    const connect = async (): Promise<Client> => {
      const transport = new StreamableHTTPClientTransport(new URL(server.url), { fetch: keeper.fetch(server.url) });
      const fresh = new Client({ name: 'arena-authkeep', version: '1.0.0' });
      await fresh.connect(transport, { timeout: config.callTimeoutMs });
      return fresh;
    };
    const call = async (): Promise<void> => {
      for (let attempt = 1; ; attempt++) {
        try {
          client ??= await connect();
          await client.callTool({ name: 'echo', arguments: { text: `s${config.session}` } }, undefined, {
            timeout: config.callTimeoutMs,
          });
          emit({ type: 'call', t: Date.now(), server: server.index, ok: true });
          return;
        } catch (err) {
          const needs = err as { name?: string; reason?: string; message?: string };
          // Chaos: the AS stayed unreachable through every retry; a sign-in would meet the same AS.
          const unreachable = config.chaos !== undefined && needs?.reason === 'as_unreachable';
          if (needs?.name === 'NeedsAuthError' && attempt === 1 && !unreachable) {
            emit({
              type: 'needs_auth',
              t: Date.now(),
              server: server.index,
              ...(needs.reason ? { reason: needs.reason } : {}),
              detail: String(needs.message ?? '').slice(0, 300),
            });
            try {
              await keeper.login(server.url);
              emit({ type: 'login', t: Date.now(), server: server.index, ok: true });
            } catch (loginErr) {
              emit({ type: 'login', t: Date.now(), server: server.index, ok: false, error: errorText(loginErr) });
              emit({ type: 'call', t: Date.now(), server: server.index, ok: false, error: errorText(loginErr) });
              return;
            }
            continue;
          }
          emit({ type: 'call', t: Date.now(), server: server.index, ok: false, error: errorText(err) });
          return;
        }
      }
    };
    return {
      serverIndex: server.index,
      url: server.url,
      call,
      close: async () => {
        await client?.close().catch(() => {});
        // Before the process exits: let a background refresh in flight persist its rotated token.
        await keeper.close();
      },
    };
  });
}

/** The header naming the sending process (scenario chaos; the AS's audit records it). */
const SENDER_HEADER = 'x-testbed-sender';

/** A fetch that names this process on every request. */
function senderFetch(base: typeof fetch): typeof fetch {
  return (input, init) => {
    const headers = new Headers(init?.headers ?? (input instanceof Request ? input.headers : undefined));
    headers.set(SENDER_HEADER, String(process.pid));
    return base(input, { ...init, headers });
  };
}

/**
 * Reports each refresh written to the record (the `refresh.ok` event follows the write): when,
 * when its answer was parsed, and the fingerprint of the refresh token now stored. The chaos world
 * keeps plaintext records (AUTHKEEP_STORE=file); the token itself never leaves this function.
 */
function refreshStored(config: SessionConfig, next?: LogSink): LogSink {
  const layout = storeLayout(config.storeDir);
  return (event) => {
    if (event.event === 'refresh.ok' && event.serverUrl !== undefined) {
      const t = Date.now();
      try {
        const record = JSON.parse(readFileSync(layout.recordPath(recordKey(event.serverUrl)), 'utf8')) as {
          resource?: string;
          lastRefreshAt?: number;
          tokens?: { refreshToken?: string };
        };
        const server = config.servers.find((s) => s.url === record.resource)?.index ?? -1;
        const rt = record.tokens?.refreshToken;
        emit({
          type: 'refresh_stored',
          t,
          server,
          ...(record.lastRefreshAt !== undefined ? { answeredAt: record.lastRefreshAt } : {}),
          ...(rt ? { rt: fingerprint(rt) } : {}),
        });
      } catch {
        emit({ type: 'refresh_stored', t, server: -1 });
      }
    }
    next?.(event);
  };
}

main().catch((err: unknown) => {
  send({ type: 'fatal', error: errorText(err) });
  process.exitCode = 1;
  setTimeout(() => process.exit(1), 200).unref();
});
