/**
 * redis-server: a real redis-server (the Debian package) for the fleet store's tests, on a free
 * 127.0.0.1 port, with no persistence unless given `persistenceArgs(dir)`, started by the test and
 * killed after it. Ready when it prints "Ready to accept connections" (an event, not a delay).
 *
 * For: the fleet store's tests and the arena's fleet scenario. Not for: production code.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import net from 'node:net';

export interface RedisServer {
  port: number;
  url: string;
  proc: ChildProcess;
  /** What it printed so far (its log: startup, warnings, persistence), for failure messages. */
  output(): string;
  /** Stop it (SIGKILL) and wait for the exit. */
  stop(): Promise<void>;
}

/** A port that was free a moment ago (redis-server takes no port 0). */
async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => server.listen(0, '127.0.0.1', resolve).once('error', reject));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export async function startRedis(options: { port?: number; args?: string[] } = {}): Promise<RedisServer> {
  const port = options.port ?? (await freePort());
  const proc = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...(options.args ?? [])],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  let out = '';
  await new Promise<void>((resolve, reject) => {
    proc.once('error', reject);
    proc.once('exit', (code) => reject(new Error(`redis-server exited (${code}) before it was ready: ${out}`)));
    proc.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk;
      if (out.includes('Ready to accept connections')) resolve();
    });
  });
  return {
    port,
    url: `redis://127.0.0.1:${port}/0`,
    proc,
    output: () => out,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      await exited;
    },
  };
}

/**
 * Arguments for a redis-server that keeps its data across a crash (SIGKILL) and a start on the
 * same port: an append-only file in `dir`, fsynced before each write is answered, so every write
 * a client was told about is there after the restart.
 */
export function persistenceArgs(dir: string): string[] {
  return ['--appendonly', 'yes', '--appendfsync', 'always', '--dir', dir];
}

/** A fresh base64 sealing key, as `openssl rand -base64 32` makes. */
export function makeStoreKey(): string {
  return randomBytes(32).toString('base64');
}
