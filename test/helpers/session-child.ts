/**
 * session-child: one "agent session" process for the concurrency tests. Modes:
 *   token-loop <home> <goAt> <durationMs> <url>...  getAccessToken for every server in a loop
 *     until the duration ends; checks each token is unexpired (JWT exp) and, now and then, that
 *     the server accepts it. Prints one JSON summary line (never a token).
 *   login <home> <goAt> <url>  calls keeper.login at goAt (browser: $BROWSER) and prints a
 *     fingerprint of the access token it ends up holding.
 */
import { createHash } from 'node:crypto';
import { AuthKeeper, NeedsAuthError } from '../../src/index.js';

const [mode, home, goAtArg, ...rest] = process.argv.slice(2);
if (!mode || !home || !goAtArg) throw new Error('usage: session-child <mode> <home> <goAt> ...');
const goAt = Number(goAtArg);

function fingerprint(token: string): string {
  return createHash('sha256').update(token).digest('hex').slice(0, 16);
}

function jwtExpiry(token: string): number {
  const payload = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as { exp?: number };
  return (payload.exp ?? 0) * 1000;
}

async function waitUntil(at: number): Promise<void> {
  const delay = at - Date.now();
  if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
}

async function tokenLoop(durationMs: number, urls: string[]): Promise<void> {
  const keeper = new AuthKeeper({ home: home as string, allowInsecureLoopback: true });
  const summary = { pid: process.pid, calls: 0, expired: 0, rejected: 0, errors: [] as string[], probes: 0 };
  await waitUntil(goAt);
  const end = goAt + durationMs;
  let i = 0;
  while (Date.now() < end) {
    for (const url of urls) {
      try {
        const token = await keeper.getAccessToken(url);
        summary.calls++;
        if (jwtExpiry(token) <= Date.now()) summary.expired++;
        if (i % 25 === 0) {
          summary.probes++;
          const res = await fetch(url, {
            method: 'POST',
            headers: {
              authorization: `Bearer ${token}`,
              'content-type': 'application/json',
              accept: 'application/json, text/event-stream',
            },
            body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }),
          });
          await res.body?.cancel();
          if (res.status === 401 || res.status === 403) summary.rejected++;
        }
      } catch (err) {
        summary.errors.push(
          err instanceof NeedsAuthError ? `needs-auth ${err.reason}` : String((err as Error).message),
        );
      }
    }
    i++;
    await new Promise((resolve) => setTimeout(resolve, 5 + Math.random() * 20));
  }
  process.stdout.write(`${JSON.stringify(summary)}\n`);
}

async function login(url: string): Promise<void> {
  const loginTimeoutMs = Number(process.env.AUTHKEEP_TEST_LOGIN_TIMEOUT_MS ?? 30_000);
  const keeper = new AuthKeeper({ home: home as string, allowInsecureLoopback: true, loginTimeoutMs });
  await waitUntil(goAt + Number(process.env.AUTHKEEP_TEST_START_DELAY_MS ?? 0));
  try {
    await keeper.login(url);
  } catch (err) {
    const failure =
      err instanceof NeedsAuthError
        ? { reason: err.reason, error: err.info.error }
        : { code: (err as { code?: string }).code };
    process.stdout.write(`${JSON.stringify({ pid: process.pid, failed: failure })}\n`);
    process.exitCode = 3;
    return;
  }
  const token = await keeper.getAccessToken(url);
  process.stdout.write(`${JSON.stringify({ pid: process.pid, token: fingerprint(token) })}\n`);
}

if (mode === 'token-loop') {
  const [durationMs, ...urls] = rest;
  await tokenLoop(Number(durationMs), urls);
} else if (mode === 'login') {
  await login(rest[0] as string);
} else {
  throw new Error(`unknown mode ${mode}`);
}
