/**
 * mcp-sdk-v2-child: one process running a real @modelcontextprotocol/client 2.x Client whose
 * StreamableHTTPClientTransport has `authProvider: authProviderV2(keeper, url)`, for
 * test/mcp/sdk-v2.test.ts. The transport's fetch records which access token each request carried
 * (fingerprints only, never a token) and how the server answered a refused one. Prints one JSON
 * summary line on stdout.
 *
 *   loop <home> <lifetimes> <url>   connect, print READY, wait for "go" on stdin (the parent's
 *                                   start barrier), then call `echo` until requests have carried
 *                                   `lifetimes` different access tokens since "go" (so the process
 *                                   raced that many expiries, however slow the machine) and the
 *                                   last call succeeded; every call must return its own text
 *   fresh <home> <url>              connect with nothing stored (the provider signs in via
 *                                   $BROWSER), then call `echo` three times
 */
import { Client, StreamableHTTPClientTransport, UnauthorizedError } from '@modelcontextprotocol/client';
import { fingerprint } from '../../arena/testbed/audit.js';
import { AuthKeeper } from '../../src/index.js';
import { authProviderV2 } from '../../src/sdk-v2.js';

/**
 * A child with this many failed calls and connects is broken, not slow: it reports `capped` and
 * stops. A bound for reporting, not a timing assumption.
 */
const MAX_FAILURES = 50;

export interface V2ChildSummary {
  calls: number;
  /** Calls (and connects) that failed or returned another text: `<label>: <message>`. */
  failures: string[];
  transportErrors: string[];
  /** Every distinct access token a request carried, connect included: fingerprint and JWT exp (s). */
  served: Array<{ token: string; exp: number }>;
  /** How many of them were first carried after "go". */
  servedAfterGo: number;
  /**
   * Tokens whose exp had passed when the SDK asked the provider for them. The token manager
   * refreshes one server at most once a second (refresh-policy.ts, MIN_REFRESH_INTERVAL_MS), so
   * a token a slow AS issued with less than that left is served until then. Reported, not judged.
   */
  stale: number;
  /**
   * 401s the server answered `access token expired`: a token that expired on its way to the
   * server, or one served late as above.
   */
  expired401s: number;
  /** 401s for anything else (signature, issuer, audience, ...): never allowed. */
  otherRefusals: string[];
  capped: boolean;
}

function text(result: unknown): string {
  const content = (result as { content?: Array<{ text?: string }> }).content ?? [];
  return content.map((c) => c.text ?? '').join('');
}

function jwtExpiry(token: string): number {
  const payload = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as { exp?: number };
  return (payload.exp ?? 0) * 1000;
}

/** The start barrier, child side: print READY, then resolve on the first line arriving on stdin. */
async function readyForGo(): Promise<void> {
  const go = new Promise<void>((resolve) => process.stdin.once('data', () => resolve()));
  process.stdout.write('READY\n');
  await go;
  process.stdin.pause();
}

async function main(): Promise<V2ChildSummary> {
  const [mode, home, ...rest] = process.argv.slice(2);
  if (!home || (mode !== 'loop' && mode !== 'fresh')) throw new Error('usage: mcp-sdk-v2-child loop|fresh <home> ...');
  const url = rest.at(-1) as string;
  const summary: V2ChildSummary = {
    calls: 0,
    failures: [],
    transportErrors: [],
    served: [],
    servedAfterGo: 0,
    stale: 0,
    expired401s: 0,
    otherRefusals: [],
    capped: false,
  };
  const keeper = new AuthKeeper({ home, allowInsecureLoopback: true, loginTimeoutMs: 20_000 });
  const provider = authProviderV2(keeper, url);
  const tokens = provider.tokens.bind(provider);
  provider.tokens = async (ctx) => {
    const askedAt = Date.now();
    const t = await tokens(ctx);
    if (t?.refresh_token !== undefined) throw new Error('the provider handed the SDK a refresh token');
    if (t && jwtExpiry(t.access_token) <= askedAt) summary.stale++;
    return t;
  };
  const served = new Map<string, number>();
  let afterGo: Set<string> | undefined;
  const recordingFetch = async (input: string | URL, init?: RequestInit): Promise<Response> => {
    const authorization = new Headers(init?.headers).get('authorization');
    if (authorization?.startsWith('Bearer ')) {
      const raw = authorization.slice('Bearer '.length);
      const token = fingerprint(raw);
      served.set(token, jwtExpiry(raw) / 1000);
      afterGo?.add(token);
    }
    const response = await fetch(input, init);
    if (response.status === 401) {
      const challenge = response.headers.get('www-authenticate') ?? '';
      if (challenge.includes('access token expired')) summary.expired401s++;
      else summary.otherRefusals.push(challenge.replace(/resource_metadata="[^"]*"/, '').trim());
    }
    return response;
  };

  // A connect whose token expires on its way to the server fails like a call would (the
  // provider recovers inside the SDK's auth(), which then ends in UnauthorizedError); it is
  // recorded as a failure and tried again, within the same failure budget as the calls.
  let client: Client | undefined;
  while (client === undefined) {
    const transport = new StreamableHTTPClientTransport(new URL(url), {
      authProvider: provider,
      fetch: recordingFetch,
    });
    transport.onerror = (error) => summary.transportErrors.push(error.message);
    const fresh = new Client({ name: `authkeep-sdk-v2-child-${process.pid}`, version: '0.0.0' });
    try {
      await fresh.connect(transport);
      client = fresh;
    } catch (err) {
      if (!(err instanceof UnauthorizedError) || summary.failures.length + 1 >= MAX_FAILURES) throw err;
      summary.failures.push(`connect: ${err.message}`);
    }
  }
  const connected = client;

  const call = async (label: string): Promise<boolean> => {
    summary.calls++;
    try {
      const got = text(await connected.callTool({ name: 'echo', arguments: { text: label } }));
      if (got === label) return true;
      summary.failures.push(`${label}: got ${JSON.stringify(got)}`);
    } catch (err) {
      summary.failures.push(`${label}: ${(err as Error).message}`);
    }
    return false;
  };

  if (mode === 'fresh') {
    for (let i = 0; i < 3; i++) await call(`fresh-${process.pid}-${i}`);
  } else {
    const lifetimes = Number(rest[0]);
    await readyForGo();
    afterGo = new Set();
    // Until `lifetimes` tokens were carried AND the last call went through: a call that failed
    // had its token recovered inside auth(), and the next call carries the recovered one.
    for (let i = 0, ok = false; afterGo.size < lifetimes || !ok; i++) {
      if (summary.failures.length >= MAX_FAILURES) {
        summary.capped = true;
        break;
      }
      ok = await call(`p${process.pid}-${i}`);
      // Space the calls as an agent's are; nothing waits on this pause.
      await new Promise((resolve) => setTimeout(resolve, 20 + Math.random() * 30));
    }
  }
  await connected.close();
  summary.served = [...served].map(([token, exp]) => ({ token, exp }));
  summary.servedAfterGo = afterGo?.size ?? 0;
  return summary;
}

main().then(
  (summary) => {
    process.stdout.write(`${JSON.stringify(summary)}\n`);
    process.exit(0);
  },
  (err: unknown) => {
    process.stderr.write(`mcp-sdk-v2-child: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
