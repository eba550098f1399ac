/**
 * mcp-sdk-child: one process running a real @modelcontextprotocol/sdk Client whose
 * StreamableHTTPClientTransport has `authProvider: keeper.authProvider(url)`, for
 * test/mcp/auth-provider.test.ts. Prints one JSON summary line on stdout.
 *
 *   loop <home> <lifetimes> <url>   connect, print READY, wait for "go" (child-process.ts), then
 *                                   call `echo` until the provider has served `lifetimes`
 *                                   different access tokens (so the process raced that many
 *                                   expiries, however slow the machine); every call must return
 *                                   its own text
 *   fresh <home> <url>              connect with nothing stored (the provider signs in via
 *                                   $BROWSER), then call `echo` three times
 */
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { type RefreshSend, refreshLog } from '../../arena/testbed/refresh-sends.js';
import { AuthKeeper } from '../../src/index.js';
import { readyForGo } from './child-process.js';

/** A loop that has not been served its tokens by then is stuck: it reports `capped` and stops. */
const CAP_MS = 120_000;

export interface SdkChildSummary {
  calls: number;
  /** Calls that failed or returned another text: `<label>: <message>`. */
  failures: string[];
  transportErrors: string[];
  /** Different access tokens the provider served after "go". */
  tokensServed: number;
  /** Tokens whose exp had passed when the SDK asked the provider for them: never allowed. */
  stale: number;
  /** When this process sent each refresh request (resource and time only). */
  refreshSends: RefreshSend[];
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

async function main(): Promise<SdkChildSummary> {
  const [mode, home, ...rest] = process.argv.slice(2);
  if (!home || (mode !== 'loop' && mode !== 'fresh')) throw new Error('usage: mcp-sdk-child loop|fresh <home> ...');
  const url = rest.at(-1) as string;
  const refreshSends: RefreshSend[] = [];
  const keeper = new AuthKeeper({
    home,
    allowInsecureLoopback: true,
    loginTimeoutMs: 20_000,
    log: refreshLog(home, (send) => refreshSends.push(send)),
  });
  const provider = keeper.authProvider(url);
  const served = new Set<string>();
  const summary: SdkChildSummary = {
    calls: 0,
    failures: [],
    transportErrors: [],
    tokensServed: 0,
    stale: 0,
    refreshSends,
    capped: false,
  };
  const tokens = provider.tokens.bind(provider);
  provider.tokens = async () => {
    const askedAt = Date.now();
    const t = await tokens();
    if (t?.refresh_token !== undefined) throw new Error('the provider handed the SDK a refresh token');
    if (t) {
      served.add(t.access_token);
      if (jwtExpiry(t.access_token) <= askedAt) summary.stale++;
    }
    return t;
  };
  // A connect whose token expires on its way to the server fails like a call would (see the
  // test); it is recorded as a failure and tried again, at most a few times.
  let client: Client | undefined;
  for (let attempt = 1; client === undefined; attempt++) {
    const transport = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider });
    transport.onerror = (error) => summary.transportErrors.push(error.message);
    const fresh = new Client({ name: `authkeep-sdk-child-${process.pid}`, version: '0.0.0' });
    try {
      await fresh.connect(transport);
      client = fresh;
    } catch (err) {
      if (!(err instanceof UnauthorizedError) || attempt === 3) throw err;
      summary.failures.push(`connect: ${err.message}`);
    }
  }
  const connected = client;

  const call = async (label: string) => {
    summary.calls++;
    try {
      const got = text(await connected.callTool({ name: 'echo', arguments: { text: label } }));
      if (got !== label) summary.failures.push(`${label}: got ${JSON.stringify(got)}`);
    } catch (err) {
      summary.failures.push(`${label}: ${(err as Error).message}`);
    }
  };

  if (mode === 'fresh') {
    for (let i = 0; i < 3; i++) await call(`fresh-${process.pid}-${i}`);
  } else {
    const lifetimes = Number(rest[0]);
    await readyForGo();
    served.clear();
    const capAt = Date.now() + CAP_MS;
    for (let i = 0; served.size < lifetimes; i++) {
      if (Date.now() > capAt) {
        summary.capped = true;
        break;
      }
      await call(`p${process.pid}-${i}`);
      // Space the calls as an agent's are; nothing waits on this pause.
      await new Promise((resolve) => setTimeout(resolve, 20 + Math.random() * 30));
    }
  }
  await connected.close();
  await keeper.close();
  summary.tokensServed = served.size;
  return summary;
}

main().then(
  (summary) => {
    process.stdout.write(`${JSON.stringify(summary)}\n`);
    process.exit(0);
  },
  (err: unknown) => {
    process.stderr.write(`mcp-sdk-child: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
