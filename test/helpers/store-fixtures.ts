/**
 * store-fixtures: shared helpers for the store tests: temp homes, valid records, real child
 * processes (spawned with tsx, line-oriented stdout), a pid that is certainly dead.
 *
 * Not for: production code, or tests outside test/store.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { RECORD_VERSION, type ServerRecord, type Tokens } from '../../src/store/record.js';
import { type Child, spawnTsx } from './child-process.js';

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

export type { Child } from './child-process.js';

/** Spawn `test/helpers/<script>` under tsx with `args`; stdout is read line by line. */
export function spawnHelper(script: string, args: string[]): Child {
  return spawnTsx(path.join(HELPERS_DIR, script), args);
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
