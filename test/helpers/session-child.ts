/**
 * session-child: one "agent session" process for the concurrency tests. Every mode prints READY
 * once loaded and starts when "go" arrives on stdin (child-process.ts). Modes:
 *   token-loop <home> <lifetimes> <url>...  getAccessToken for every server in a loop until it
 *     has been handed `lifetimes` different tokens for each server (so it raced that many
 *     expiries, however slow the machine). Checks each token had not expired when it was asked
 *     for (JWT exp), notes whose it is (JWT iss, client_id, aud), and now and then that the server
 *     accepts it; a refusal is classified from the server's own answer (see `Rejection`); failed
 *     calls are grouped into outages (see `Outage`). Prints one JSON summary line (never a token).
 *     With SESSION_CHILD_PROBE=keeper the probe goes through keeper.fetch (DPoP-bound tokens need
 *     its proof), which answers a 401 itself: then any answer other than 200 is a rejection.
 *   token <home> <url>  one getAccessToken, then the token's fingerprint as {"token": ...}.
 *   login <home> <url>  calls keeper.login (browser: $BROWSER), printing the sign-in's log events
 *     as `{"event": name}` lines (the test synchronises on them), then a fingerprint of the access
 *     token it ends up holding.
 */
import { createHash } from 'node:crypto';
import { type RefreshSend, refreshLog } from '../../arena/testbed/refresh-sends.js';
import { AuthkeepError } from '../../src/errors.js';
import { AuthKeeper, NeedsAuthError } from '../../src/index.js';
import type { LogEvent } from '../../src/session/log.js';
import { fleetStoreSelected, openStore } from '../../src/store/open-store.js';
import { DEFAULT_ACCOUNT } from '../../src/store/paths.js';
import { RedisCredentialStore } from '../../src/store/redis/redis-credential-store.js';
import { readyForGo } from './child-process.js';

const [mode, home, ...rest] = process.argv.slice(2);
if (!mode || !home) throw new Error('usage: session-child <mode> <home> ...');

/** A run that has not crossed its expiries by then is stuck: it reports `capped` and stops. */
const CAP_MS = 120_000;

/** A probe the server refused, with the token's expiry relative to the probe. */
export interface Rejection {
  status: number;
  /** The server's error_description (`access token expired`, `access token invalid`, ...). */
  description: string;
  /** exp minus the instant the token was asked for: > 0, or it counts as stale, not as rejected. */
  msLeftWhenAsked: number;
  /** exp minus the instant the refusal arrived: <= 0 with `expired` means it expired in flight. */
  msLeftAtAnswer: number;
}

export interface TokenLoopSummary {
  pid: number;
  calls: number;
  /** Different tokens handed out, by server URL. */
  tokens: Record<string, number>;
  /** Tokens whose exp had passed when getAccessToken was called: never allowed. */
  stale: number;
  probes: number;
  /**
   * Probes refused because the token expired on the way to the server's verification: for each,
   * how long the token still had when it was asked for (the refresh policy's margin, which the
   * probe's round trip outlasted).
   */
  expiredInFlight: number[];
  /** Every other refusal. */
  rejected: Rejection[];
  errors: string[];
  /**
   * The failed calls above, grouped into runs of consecutive failures (one per outage this
   * process met), each with the call that ended it.
   */
  outages: Outage[];
  /**
   * Whose tokens this process was handed, by server URL: the distinct `iss client_id aud` of their
   * JWT claims (no secret), so a token of another client or issuer shows.
   */
  claims: Record<string, string[]>;
  /** When this process sent each refresh request (resource and time only). */
  refreshSends: RefreshSend[];
  capped: boolean;
}

/** Consecutive failed calls of one process, and the call that next returned a token. */
export interface Outage {
  /** The failures' distinct codes: AuthkeepError code, `needs_auth:<reason>`, or `untyped`. */
  codes: string[];
  calls: number;
  /** Epoch ms the first failed call was made. */
  firstAskedAt: number;
  /** Epoch ms the last failed call failed. */
  lastFailedAt: number;
  /** Epoch ms the call that next returned a token was made; null if none did. */
  recoveredAt: number | null;
}

function fingerprint(token: string): string {
  return createHash('sha256').update(token).digest('hex').slice(0, 16);
}

interface Claims {
  exp?: number;
  iss?: string;
  client_id?: string;
  aud?: string | string[];
}

function jwtClaims(token: string): Claims {
  return JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as Claims;
}

function failureCode(err: unknown): string {
  if (err instanceof NeedsAuthError) return `needs_auth:${err.reason}`;
  return err instanceof AuthkeepError ? err.code : 'untyped';
}

function errorDescription(header: string | null): string {
  return /error_description="([^"]*)"/.exec(header ?? '')?.[1] ?? header ?? '';
}

async function probe(url: string, token: string, keeper: AuthKeeper): Promise<Response> {
  const viaKeeper = process.env.SESSION_CHILD_PROBE === 'keeper';
  const res = await (viaKeeper ? keeper.fetch(url) : fetch)(url, {
    method: 'POST',
    headers: {
      ...(viaKeeper ? {} : { authorization: `Bearer ${token}` }),
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
    },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }),
  });
  await res.body?.cancel();
  return res;
}

async function tokenLoop(lifetimes: number, urls: string[]): Promise<void> {
  const refreshSends: RefreshSend[] = [];
  // With the fleet store (AUTHKEEP_STORE=redis://...) the records are in Redis; refresh.ok events
  // carry the resource and obtainedAt, so refreshLog reads no record for them.
  const fleet = fleetStoreSelected() ? openStore({ home: home as string, account: DEFAULT_ACCOUNT }) : undefined;
  const keeper = new AuthKeeper({
    home: home as string,
    allowInsecureLoopback: true,
    log: refreshLog(home as string, (send) => refreshSends.push(send)),
    ...(fleet ? { store: fleet } : {}),
  });
  const claims = new Map<string, Set<string>>(urls.map((url) => [url, new Set<string>()]));
  const seen = new Map<string, Set<string>>(urls.map((url) => [url, new Set<string>()]));
  const summary: TokenLoopSummary = {
    pid: process.pid,
    calls: 0,
    tokens: {},
    stale: 0,
    probes: 0,
    expiredInFlight: [],
    rejected: [],
    errors: [],
    outages: [],
    claims: {},
    refreshSends,
    capped: false,
  };
  let outage: Outage | undefined;
  // Connected before READY, as a running agent is: the race starts with every process connected,
  // not with every connection (and the client library's loading) at once on the go.
  if (fleet instanceof RedisCredentialStore) await fleet.redis.send(['PING']);
  await readyForGo();
  const capAt = Date.now() + CAP_MS;
  const done = (): boolean => [...seen.values()].every((tokens) => tokens.size >= lifetimes);
  for (let i = 0; !done(); i++) {
    if (Date.now() > capAt) {
      summary.capped = true;
      break;
    }
    for (const url of urls) {
      try {
        const askedAt = Date.now();
        let token: string;
        try {
          token = await keeper.getAccessToken(url);
        } catch (err) {
          const code = failureCode(err);
          outage ??= { codes: [], calls: 0, firstAskedAt: askedAt, lastFailedAt: 0, recoveredAt: null };
          if (!outage.codes.includes(code)) outage.codes.push(code);
          outage.calls++;
          outage.lastFailedAt = Date.now();
          throw err;
        }
        if (outage) {
          outage.recoveredAt = askedAt;
          summary.outages.push(outage);
          outage = undefined;
        }
        summary.calls++;
        seen.get(url)?.add(fingerprint(token));
        const payload = jwtClaims(token);
        const exp = (payload.exp ?? 0) * 1000;
        claims.get(url)?.add(`${payload.iss} ${payload.client_id} ${[payload.aud].flat().join(',')}`);
        if (exp <= askedAt) summary.stale++;
        if (i % 25 === 0) {
          summary.probes++;
          const res = await probe(url, token, keeper);
          if (res.status !== 200 && process.env.SESSION_CHILD_PROBE === 'keeper') {
            summary.rejected.push({
              status: res.status,
              description: errorDescription(res.headers.get('www-authenticate')),
              msLeftWhenAsked: exp - askedAt,
              msLeftAtAnswer: exp - Date.now(),
            });
          } else if (res.status === 401 || res.status === 403) {
            const answeredAt = Date.now();
            const description = errorDescription(res.headers.get('www-authenticate'));
            // The server checks exp when the probe arrives: a token with less life left than the
            // round trip took expired in flight. Anything else is a token it should not have had.
            if (res.status === 401 && description === 'access token expired' && exp <= answeredAt) {
              summary.expiredInFlight.push(exp - askedAt);
            } else {
              summary.rejected.push({
                status: res.status,
                description,
                msLeftWhenAsked: exp - askedAt,
                msLeftAtAnswer: exp - answeredAt,
              });
            }
          }
        }
      } catch (err) {
        summary.errors.push(
          err instanceof NeedsAuthError ? `needs-auth ${err.reason}` : String((err as Error).message),
        );
      }
    }
    // Space the calls as an agent's are; nothing waits on this pause.
    await new Promise((resolve) => setTimeout(resolve, 5 + Math.random() * 20));
  }
  for (const [url, tokens] of seen) summary.tokens[url] = tokens.size;
  for (const [url, seenClaims] of claims) summary.claims[url] = [...seenClaims];
  if (outage) summary.outages.push(outage);
  process.stdout.write(`${JSON.stringify(summary)}\n`);
}

/** The sign-in events a test can synchronise on (names only: log events never carry secrets). */
const SIGN_IN_EVENTS = new Set(['login.authorize', 'login.waiting', 'login.adopted', 'login.ok', 'login.failed']);

async function login(url: string): Promise<void> {
  const loginTimeoutMs = Number(process.env.AUTHKEEP_TEST_LOGIN_TIMEOUT_MS ?? 30_000);
  const keeper = new AuthKeeper({
    home: home as string,
    allowInsecureLoopback: true,
    loginTimeoutMs,
    log: (event: LogEvent) => {
      if (SIGN_IN_EVENTS.has(event.event)) process.stdout.write(`${JSON.stringify({ event: event.event })}\n`);
    },
  });
  await readyForGo();
  process.stdout.write(`${JSON.stringify({ event: 'login.called' })}\n`);
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

/** One getAccessToken once "go" arrives; prints the token's fingerprint (never the token). */
async function tokenOnce(url: string): Promise<void> {
  const keeper = new AuthKeeper({ home: home as string, allowInsecureLoopback: true });
  await readyForGo();
  try {
    const token = await keeper.getAccessToken(url);
    process.stdout.write(`${JSON.stringify({ pid: process.pid, token: fingerprint(token) })}\n`);
  } catch (err) {
    process.stdout.write(`${JSON.stringify({ pid: process.pid, failed: (err as { code?: string }).code })}\n`);
    process.exitCode = 3;
  }
}

if (mode === 'token') {
  await tokenOnce(rest[0] as string);
} else if (mode === 'token-loop') {
  const [lifetimes, ...urls] = rest;
  await tokenLoop(Number(lifetimes), urls);
} else if (mode === 'login') {
  await login(rest[0] as string);
} else {
  throw new Error(`unknown mode ${mode}`);
}
