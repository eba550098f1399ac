/**
 * child-process: real child processes for the tests (TypeScript run through tsx), their stdout
 * read line by line, and a start barrier. A child calls `readyForGo()` once it has loaded
 * everything: it prints READY and waits for "go" on stdin. The parent's `startTogether()` waits
 * for every child's READY and only then writes "go" to all of them, so children start together on
 * an event, however long loading takes on a busy machine, never after a guessed delay.
 *
 * Not for: the CLI's processes (cli-run.ts spawns `authkeep` itself).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface Child {
  proc: ChildProcess;
  pid: number;
  /** Every stdout line so far. */
  lines: string[];
  /** Resolves with the first line (past or future) matching `pattern`; rejects if the child exits first (all its output read). */
  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** Calls `listener` for every stdout line from now on. */
  onLine(listener: (line: string) => void): void;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr(): string;
}

/**
 * How long a child may take to print an awaited line before the test fails saying so. A bound for
 * reporting a hung child, not a timing assumption: loading eight children through tsx takes
 * several seconds on an idle machine and minutes on a saturated one.
 */
export const LINE_TIMEOUT_MS = 600_000;

/** Spawn `script` (a path) under tsx with `args`; stdin is a pipe, stdout is read line by line. */
export function spawnTsx(script: string, args: string[], env: NodeJS.ProcessEnv = {}): Child {
  return spawnChild(['--import', 'tsx', script], args, env);
}

/** Spawn a plain JavaScript `script` with Node alone (no loader): the package as users run it. */
export function spawnNode(script: string, args: string[], env: NodeJS.ProcessEnv = {}): Child {
  return spawnChild([script], args, env);
}

function spawnChild(nodeArgs: string[], args: string[], env: NodeJS.ProcessEnv): Child {
  const script = nodeArgs.at(-1) as string;
  const proc = spawn(process.execPath, [...nodeArgs, ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  if (proc.pid === undefined) throw new Error(`could not spawn ${script}`);
  const name = path.basename(script);
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
  // A child that exits early must not turn a write to its stdin into an unhandled EPIPE.
  proc.stdin!.on('error', () => undefined);
  // 'close', not 'exit': 'exit' can come before the last of the child's stdout has been read, and
  // a line the child printed just before exiting would then look never printed. 'close' comes
  // after its stdio streams ended (the children here start no process that keeps them open).
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on('close', (code, signal) => resolve({ code, signal })),
  );
  return {
    proc,
    pid: proc.pid,
    lines,
    exited,
    stderr: () => err,
    onLine: (listener) => void listeners.add(listener),
    waitForLine(pattern, timeoutMs = LINE_TIMEOUT_MS) {
      const found = lines.find((line) => pattern.test(line));
      if (found !== undefined) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          listeners.delete(listener);
          reject(
            new Error(
              `child ${name} (pid ${proc.pid}) printed no line matching ${pattern} in ${timeoutMs} ms; stderr: ${err}`,
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
          reject(new Error(`child ${name} (pid ${proc.pid}) exited before printing ${pattern}; stderr: ${err}`));
        });
      });
    },
  };
}

/**
 * Child side of the barrier: print READY, then resolve on the first line arriving on stdin. If
 * stdin closes first (the test gave up, or died), exit: nobody will say go.
 */
export async function readyForGo(): Promise<void> {
  const go = new Promise<void>((resolve) => {
    const ended = (): void => {
      process.stderr.write('stdin closed before "go": exiting\n');
      process.exit(2);
    };
    process.stdin.once('end', ended);
    process.stdin.once('data', () => {
      process.stdin.off('end', ended);
      resolve();
    });
  });
  process.stdout.write('READY\n');
  await go;
  process.stdin.pause();
}

/** Tell one child that printed READY to go. */
export async function go(child: Child): Promise<void> {
  await child.waitForLine(/^READY$/);
  child.proc.stdin!.write('go\n');
}

/**
 * Parent side of the barrier: wait until every child printed READY, then tell them all to go.
 * Returns the epoch ms of the go.
 */
export async function startTogether(children: Child[]): Promise<number> {
  await Promise.all(children.map((child) => child.waitForLine(/^READY$/)));
  const at = Date.now();
  for (const child of children) child.proc.stdin!.write('go\n');
  return at;
}

/** The child's last stdout line parsed as JSON (its summary), or a failure naming the child. */
export function lastJsonLine<T>(child: Child): T {
  const last = child.lines.filter((line) => line.startsWith('{')).at(-1);
  if (last === undefined) throw new Error(`child pid ${child.pid} printed no summary; stderr: ${child.stderr()}`);
  return JSON.parse(last) as T;
}

/**
 * Start `children` together, wait until every one has exited, and return each one's summary (its
 * last JSON line), failing with its stderr when a child did not exit 0.
 */
export async function runTogether<T>(children: Child[]): Promise<T[]> {
  await startTogether(children);
  const exits = await Promise.all(children.map((child) => child.exited));
  return children.map((child, i) => {
    if (exits[i]?.code !== 0) {
      throw new Error(`child pid ${child.pid} exited ${exits[i]?.code ?? exits[i]?.signal}: ${cleanStderr(child)}`);
    }
    return lastJsonLine<T>(child);
  });
}

/** stderr without oidc-provider's runtime warning (for assertion messages). */
export function cleanStderr(child: Child): string {
  return child.stderr().replace(/.*oidc-provider WARNING.*\n?/g, '');
}
