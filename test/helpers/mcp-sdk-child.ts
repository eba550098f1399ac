/**
 * mcp-sdk-child: one process running a real @modelcontextprotocol/sdk Client whose
 * StreamableHTTPClientTransport has `authProvider: keeper.authProvider(url)`, for
 * test/mcp/auth-provider.test.ts. Prints one JSON summary line on stdout.
 *
 *   loop <home> <goAt> <durationMs> <url>   connect, wait for goAt, call `echo` until the duration
 *                                            has passed; every call must return its own text
 *   fresh <home> <url>                       connect with nothing stored (the provider signs in via
 *                                            $BROWSER), then call `echo` three times
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { AuthKeeper } from '../../src/index.js';

interface Summary {
  calls: number;
  failures: string[];
  transportErrors: string[];
  tokensServed: number;
}

function text(result: unknown): string {
  const content = (result as { content?: Array<{ text?: string }> }).content ?? [];
  return content.map((c) => c.text ?? '').join('');
}

async function main(): Promise<Summary> {
  const [mode, home, ...rest] = process.argv.slice(2);
  if (!home || (mode !== 'loop' && mode !== 'fresh')) throw new Error('usage: mcp-sdk-child loop|fresh <home> ...');
  const url = rest.at(-1) as string;
  const keeper = new AuthKeeper({ home, allowInsecureLoopback: true, loginTimeoutMs: 20_000 });
  const provider = keeper.authProvider(url);
  const served = new Set<string>();
  const tokens = provider.tokens.bind(provider);
  provider.tokens = async () => {
    const t = await tokens();
    if (t?.refresh_token !== undefined) throw new Error('the provider handed the SDK a refresh token');
    if (t) served.add(t.access_token);
    return t;
  };
  const transport = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider });
  const summary: Summary = { calls: 0, failures: [], transportErrors: [], tokensServed: 0 };
  transport.onerror = (error) => summary.transportErrors.push(error.message);
  const client = new Client({ name: `authkeep-sdk-child-${process.pid}`, version: '0.0.0' });
  await client.connect(transport);

  const call = async (label: string) => {
    summary.calls++;
    try {
      const got = text(await client.callTool({ name: 'echo', arguments: { text: label } }));
      if (got !== label) summary.failures.push(`${label}: got ${JSON.stringify(got)}`);
    } catch (err) {
      summary.failures.push(`${label}: ${(err as Error).message}`);
    }
  };

  if (mode === 'fresh') {
    for (let i = 0; i < 3; i++) await call(`fresh-${process.pid}-${i}`);
  } else {
    const goAt = Number(rest[0]);
    const durationMs = Number(rest[1]);
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, goAt - Date.now())));
    const until = goAt + durationMs;
    for (let i = 0; Date.now() < until; i++) {
      await call(`p${process.pid}-${i}`);
      await new Promise((resolve) => setTimeout(resolve, 20 + Math.random() * 30));
    }
  }
  await client.close();
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
