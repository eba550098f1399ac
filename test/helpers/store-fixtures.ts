/**
 * store-fixtures: shared helpers for the store tests: temp homes, valid records, real child
 * processes (spawned with tsx, line-oriented stdout), a pid that is certainly dead.
 *
 * Not for: production code, or tests outside test/store.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { RECORD_VERSION, type ServerRecord, type Tokens } from '../../src/store/record.js';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const HELPERS_DIR = path.join(REPO_ROOT, 'test', 'helpers');

export async function makeTempDir(prefix = 'authkeep-store-'): Promise<{ dir: string; cleanup(): Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export const ISSUER = 'https://as.example.test/tenant';

/** A valid record (generation 0 = "new") with tokens whose values carry `tag`. */
export function makeRecord(
  serverUrl: string,
  options: { generation?: number; tag?: string; issuer?: string; clientId?: string; registeredAt?: string } = {},
): ServerRecord {
  const issuer = options.issuer ?? ISSUER;
  const clientId = options.clientId ?? 'client-1';
  const tag = options.tag ?? 'x';
  const tokens: Tokens = {
    accessToken: `at.${tag}`,
    tokenType: 'Bearer',
    expiresAt: Date.now() + 3_600_000,
    obtainedAt: Date.now(),
    refreshToken: `rt.${tag}`,
    clientId,
    issuer,
  };
  return {
    version: RECORD_VERSION,
    serverUrl,
    generation: options.generation ?? 0,
    resource: serverUrl,
    authorizationServer: { issuer, token_endpoint: `${issuer}/token`, code_challenge_methods_supported: ['S256'] },
    registration: {
      issuer,
      clientId,
      method: 'dynamic',
      tokenEndpointAuthMethod: 'none',
      redirectUris: ['http://127.0.0.1/callback'],
      registeredAt: options.registeredAt ?? new Date().toISOString(),
    },
    tokens,
    updatedAt: new Date().toISOString(),
  };
}

export interface Child {
  proc: ChildProcess;
  pid: number;
  /** Every stdout line so far. */
  lines: string[];
  /** Resolves with the first line (past or future) matching `pattern`. */
  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<string>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr(): string;
}

/** Spawn `test/helpers/<script>` under tsx with `args`; stdout is read line by line. */
export function spawnHelper(script: string, args: string[]): Child {
  const proc = spawn(process.execPath, ['--import', 'tsx', path.join(HELPERS_DIR, script), ...args], {
    cwd: REPO_ROOT,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  if (proc.pid === undefined) throw new Error(`could not spawn ${script}`);
  const lines: string[] = [];
  const listeners = new Set<(line: string) => void>();
  let buffer = '';
  let err = '';
  proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    buffer += chunk;
    for (let nl = buffer.indexOf('\n'); nl >= 0; nl = buffer.indexOf('\n')) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      lines.push(line);
      for (const listener of [...listeners]) listener(line);
    }
  });
  proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on('exit', (code, signal) => resolve({ code, signal })),
  );
  return {
    proc,
    pid: proc.pid,
    lines,
    exited,
    stderr: () => err,
    waitForLine(pattern, timeoutMs = 15_000) {
      const found = lines.find((line) => pattern.test(line));
      if (found !== undefined) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          listeners.delete(listener);
          reject(
            new Error(
              `child ${script} (pid ${proc.pid}) printed no line matching ${pattern} in ${timeoutMs} ms; stderr: ${err}`,
            ),
          );
        }, timeoutMs);
        const listener = (line: string): void => {
          if (!pattern.test(line)) return;
          clearTimeout(timer);
          listeners.delete(listener);
          resolve(line);
        };
        listeners.add(listener);
        void exited.then(() => {
          if (!listeners.has(listener)) return;
          clearTimeout(timer);
          listeners.delete(listener);
          reject(new Error(`child ${script} (pid ${proc.pid}) exited before printing ${pattern}; stderr: ${err}`));
        });
      });
    },
  };
}

/** The pid of a process that has exited and been reaped. */
export async function deadPid(): Promise<number> {
  const proc = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  const pid = proc.pid;
  if (pid === undefined) throw new Error('could not spawn');
  await new Promise((resolve) => proc.on('exit', resolve));
  return pid;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** High-resolution wall-clock milliseconds, comparable across processes on one host. */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}
