/**
 * cli-run: runs the real `authkeep` command (bin/authkeep.cjs, from source through tsx) as a child
 * process with its own AUTHKEEP_HOME and the robot browser as `$BROWSER`, and collects its exit
 * code, stdout and stderr. Shared by the CLI tests. With AUTHKEEP_TEST_BIN set, the tests run that
 * command instead: .ci/pack-check.sh points it at the one installed from the packed tarball.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { writeRobotBrowserScript } from '../../arena/testbed/index.js';

/** The command under test: this checkout's, on its TypeScript source, unless AUTHKEEP_TEST_BIN names another. */
export const BIN = process.env.AUTHKEEP_TEST_BIN || fileURLToPath(new URL('../../bin/authkeep.cjs', import.meta.url));
const FROM_SOURCE = !process.env.AUTHKEEP_TEST_BIN;

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliEnv {
  /** AUTHKEEP_HOME of the children. */
  home: string;
  /** Path of the robot browser script (the children's $BROWSER). */
  browser: string;
  /** File the robot browser appends one line to per open. */
  browserLog: string;
  /** The environment every child gets (plus per-call extras). */
  env: NodeJS.ProcessEnv;
}

/** A temp dir with a home and the robot browser script; removed after the test. */
export async function cliEnv(t: TestContext): Promise<CliEnv> {
  const dir = await mkdtemp(path.join(tmpdir(), 'authkeep-cli-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const home = path.join(dir, 'home');
  const browser = await writeRobotBrowserScript(dir);
  const browserLog = path.join(dir, 'robot-browser.log');
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    AUTHKEEP_HOME: home,
    BROWSER: browser,
    ROBOT_BROWSER_LOG: browserLog,
    NO_COLOR: '1',
    // Plaintext files unless a test asks for the keychain: no test depends on a Secret Service.
    AUTHKEEP_STORE: process.env.AUTHKEEP_STORE || 'file',
  };
  delete env.AUTHKEEP_DEBUG;
  if (FROM_SOURCE) env.AUTHKEEP_FROM_SOURCE = '1';
  else delete env.AUTHKEEP_FROM_SOURCE;
  return { home, browser, browserLog, env };
}

export interface SpawnOptions {
  env?: NodeJS.ProcessEnv;
  /** Written to stdin, which is then closed (default: closed at once). */
  input?: string;
  /** Keep stdin open for the caller to write (spawnCli only). */
  keepStdinOpen?: boolean;
  /** Another command file to run instead of BIN (a bundle from cli-bundle.ts's bundledCli). */
  bin?: string;
}

export function spawnCli(ctx: CliEnv, args: string[], options: SpawnOptions = {}): ChildProcessWithoutNullStreams {
  const child = spawn(process.execPath, [options.bin ?? BIN, ...args], {
    env: { ...ctx.env, ...options.env },
    stdio: 'pipe',
  });
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  if (!options.keepStdinOpen) child.stdin.end(options.input ?? '');
  return child;
}

/**
 * How long a CLI process may run, or take to print an awaited line, before the test fails saying
 * so. A bound for reporting a hung process, not a timing assumption: a process that starts in a
 * second on an idle machine can take a minute on a saturated one.
 */
export const HANG_TIMEOUT_MS = 300_000;

/** Collect a spawned child's output and wait for it to exit (killing it after `timeoutMs`). */
export function collect(child: ChildProcessWithoutNullStreams, timeoutMs = HANG_TIMEOUT_MS): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: string) => (stdout += chunk));
  child.stderr.on('data', (chunk: string) => (stderr += chunk));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(
          `authkeep ${child.spawnargs.slice(2).join(' ')} did not exit within ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`,
        ),
      );
    }, timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Run `authkeep ...args` to completion. */
export function runCliProcess(
  ctx: CliEnv,
  args: string[],
  options: SpawnOptions = {},
  timeoutMs?: number,
): Promise<CliResult> {
  return collect(spawnCli(ctx, args, options), timeoutMs);
}

/** Resolve once `stream` has produced text matching `pattern` (checked on the accumulated text). */
export function waitForOutput(
  stream: NodeJS.ReadableStream,
  pattern: RegExp,
  timeoutMs = HANG_TIMEOUT_MS,
): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let text = '';
    const onData = (chunk: string | Buffer) => {
      text += chunk.toString();
      const match = pattern.exec(text);
      if (match) {
        cleanup();
        resolve(match);
      }
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`no output matching ${pattern} within ${timeoutMs} ms; got: ${text}`));
    }, timeoutMs);
    const cleanup = () => {
      clearTimeout(timer);
      stream.off('data', onData);
    };
    stream.on('data', onData);
  });
}

/** The JSON payload of a JWT (no signature check: the MCP server checks that). */
export function jwtPayload(token: string): Record<string, unknown> {
  const part = token.split('.')[1];
  if (part === undefined) throw new Error('not a JWT');
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as Record<string, unknown>;
}
