/**
 * mcp-sdk-v2-child: one process running a real @modelcontextprotocol/client 2.x Client whose
 * StreamableHTTPClientTransport has `authProvider: authProviderV2(keeper, url)`, for
 * test/mcp/sdk-v2.test.ts. The transport's fetch records which access token each request carried
 * (fingerprints only, never the token). Prints `ready` once connected (loop mode), and one JSON
 * summary line on stdout at the end.
 *
 *   loop <home> <tokens> <url>   connect, print `ready`, wait for a line on stdin (the parent's
 *                                start barrier), then call `echo` until requests have carried
 *                                <tokens> distinct access tokens (that many expiries crossed);
 *                                every call must return its own text (stops after 10 failures)
 *   fresh <home> <url>           connect with nothing stored (the provider signs in via $BROWSER),
 *                                then call `echo` three times
 */
import { createInterface } from 'node:readline';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { fingerprint } from '../../arena/testbed/audit.js';
import { AuthKeeper } from '../../src/index.js';
import { authProviderV2 } from '../../src/sdk-v2.js';

export interface V2ChildSummary {
  calls: number;
  failures: string[];
  transportErrors: string[];
  /** Fingerprints of the distinct access tokens the requests carried, in order of first use. */
  served: string[];
}

function text(result: unknown): string {
  const content = (result as { content?: Array<{ text?: string }> }).content ?? [];
  return content.map((c) => c.text ?? '').join('');
}

function firstLine(): Promise<void> {
  return new Promise((resolve) => {
    const lines = createInterface({ input: process.stdin });
    lines.once('line', () => {
      lines.close();
      resolve();
    });
  });
}

async function main(): Promise<V2ChildSummary> {
  const [mode, home, ...rest] = process.argv.slice(2);
  if (!home || (mode !== 'loop' && mode !== 'fresh')) throw new Error('usage: mcp-sdk-v2-child loop|fresh <home> ...');
  const url = rest.at(-1) as string;
  const keeper = new AuthKeeper({ home, allowInsecureLoopback: true, loginTimeoutMs: 20_000 });
  const provider = authProviderV2(keeper, url);
  const tokens = provider.tokens.bind(provider);
  provider.tokens = async (ctx) => {
    const t = await tokens(ctx);
    if (t?.refresh_token !== undefined) throw new Error('the provider handed the SDK a refresh token');
    return t;
  };
  const served = new Set<string>();
  const recordingFetch = (input: string | URL, init?: RequestInit): Promise<Response> => {
    const authorization = new Headers(init?.headers).get('authorization');
    if (authorization?.startsWith('Bearer ')) served.add(fingerprint(authorization.slice('Bearer '.length)));
    return fetch(input, init);
  };
  const transport = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider, fetch: recordingFetch });
  const summary: V2ChildSummary = { calls: 0, failures: [], transportErrors: [], served: [] };
  transport.onerror = (error) => summary.transportErrors.push(error.message);
  const client = new Client({ name: `authkeep-sdk-v2-child-${process.pid}`, version: '0.0.0' });
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
    const wanted = Number(rest[0]);
    process.stdout.write('ready\n');
    await firstLine();
    // Bounded by failures too, so a broken adapter ends the child instead of looping forever.
    for (let i = 0; served.size < wanted && summary.failures.length < 10; i++) await call(`p${process.pid}-${i}`);
  }
  await client.close();
  summary.served = [...served];
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
