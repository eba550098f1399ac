/**
 * Proxy benchmark: what `authkeep proxy` costs an MCP client, measured in one run against the
 * real testbed (oidc-provider and an SDK MCP server on loopback):
 *   - overhead: p50 and p90 of an `echo` tool call through the built `authkeep proxy` (an SDK
 *     Client over stdio, as MCP client applications launch it) against the same SDK Client
 *     calling the server directly with `keeper.fetch`, calls alternating so a busy machine slows
 *     both alike. Goal: at most +0.3 ms p50.
 *   - memory: RSS of the idle proxy after its calls, and of one process holding tokens for 8
 *     servers (an AuthKeeper that signed in to each and made a call). Reported, no goal.
 * mcp-remote is not measured here (see arena/README.md for why it is not yet a column).
 *
 *   npm run bench   (or, after a build: node --import tsx bench/proxy.bench.ts; PROXY_CALLS=300)
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { type Bed, startBed } from '../test/helpers/bed.js';
import { type BenchResult, recordResults } from './results.js';

const BIN = fileURLToPath(new URL('../bin/authkeep.cjs', import.meta.url));
const HOLDER = fileURLToPath(new URL('./holder-child.mjs', import.meta.url));
const CALLS = Number(process.env.PROXY_CALLS ?? 300);
const WARMUP = 20;
const GOAL_OVERHEAD_MS = 0.3;

const teardown: Array<() => unknown> = [];
const context = { after: (fn: () => unknown) => teardown.push(fn) } as unknown as Parameters<typeof startBed>[0];

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

/** Resident set size of `pid` in MB (Linux /proc), or undefined elsewhere. */
function rssMb(pid: number): number | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1]);
    return Number.isFinite(kb) ? Math.round(kb / 102.4) / 10 : undefined;
  } catch {
    return undefined;
  }
}

async function timedCall(client: Client, i: number): Promise<number> {
  const text = `call-${i}`;
  const start = process.hrtime.bigint();
  const result = (await client.callTool({ name: 'echo', arguments: { text } })) as {
    content?: Array<{ text?: string }>;
  };
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  if (result.content?.[0]?.text !== text) throw new Error(`echo answered ${JSON.stringify(result.content)}`);
  return ms;
}

async function overhead(bed: Bed, url: string): Promise<{ results: BenchResult[]; proxyPid: number }> {
  const keeper = bed.keeper();
  const direct = new Client({ name: 'bench-direct', version: '0.0.0' });
  await direct.connect(new StreamableHTTPClientTransport(new URL(url), { fetch: keeper.fetch(url) }));
  teardown.push(() => direct.close());

  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [BIN, 'proxy', url, '--allow-http'],
    env: { ...(process.env as Record<string, string>), AUTHKEEP_HOME: bed.home },
    stderr: 'ignore',
  });
  const proxied = new Client({ name: 'bench-proxy', version: '0.0.0' });
  await proxied.connect(transport);
  teardown.push(() => proxied.close());
  const proxyPid = transport.pid;
  if (proxyPid === null) throw new Error('the proxy did not start');

  for (let i = 0; i < WARMUP; i++) {
    await timedCall(direct, i);
    await timedCall(proxied, i);
  }
  const directMs: number[] = [];
  const proxyMs: number[] = [];
  for (let i = 0; i < CALLS; i++) {
    directMs.push(await timedCall(direct, i));
    proxyMs.push(await timedCall(proxied, i));
  }
  const d50 = percentile(directMs, 50);
  const p50 = percentile(proxyMs, 50);
  const ratio = p50 / d50;
  const goalRatio = (d50 + GOAL_OVERHEAD_MS) / d50;
  return {
    proxyPid,
    results: [
      {
        name: 'proxy overhead: echo tool call through authkeep proxy vs direct',
        ratio,
        goal: { ratio: goalRatio, compare: '<=' },
        goalMet: p50 - d50 <= GOAL_OVERHEAD_MS,
        calls: CALLS,
        directP50Ms: Number(d50.toFixed(3)),
        directP90Ms: Number(percentile(directMs, 90).toFixed(3)),
        proxyP50Ms: Number(p50.toFixed(3)),
        proxyP90Ms: Number(percentile(proxyMs, 90).toFixed(3)),
        overheadP50Ms: Number((p50 - d50).toFixed(3)),
        goalOverheadP50Ms: GOAL_OVERHEAD_MS,
      },
    ],
  };
}

/** RSS of a process that signed in to `urls` (already stored) and made one call to each. */
async function holderRss(bed: Bed, urls: string[]): Promise<number> {
  const child = spawn(process.execPath, [HOLDER, bed.home, ...urls], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  const line = out.split('\n').find((l) => l.startsWith('{'));
  if (code !== 0 || line === undefined) throw new Error(`holder-child exited ${code}: ${out}`);
  return (JSON.parse(line) as { rssMb: number }).rssMb;
}

async function main(): Promise<void> {
  const bed = await startBed(context, { servers: Array.from({ length: 8 }, () => ({ discovery: 'header' as const })) });
  const urls = bed.servers.map((s) => s.url);
  const keeper = bed.keeper();
  for (const url of urls) await keeper.login(url);
  const first = urls[0] as string;

  const { results, proxyPid } = await overhead(bed, first);
  const idleProxyMb = rssMb(proxyPid);
  const holderMb = await holderRss(bed, urls);
  results.push({
    name: 'memory: RSS of an idle authkeep proxy, and of a process holding 8 servers',
    ratio: holderMb / (idleProxyMb ?? holderMb),
    goal: { ratio: Number.POSITIVE_INFINITY, compare: '<=' },
    goalMet: true,
    idleProxyRssMb: idleProxyMb ?? null,
    eightServerProcessRssMb: holderMb,
  });
  const [o] = results;
  console.log(`proxy overhead (${CALLS} calls each, alternating):`);
  console.log(`  direct  p50 ${o?.directP50Ms} ms  p90 ${o?.directP90Ms} ms`);
  console.log(`  proxy   p50 ${o?.proxyP50Ms} ms  p90 ${o?.proxyP90Ms} ms`);
  console.log(
    `  overhead p50 ${o?.overheadP50Ms} ms = ${o?.ratio.toFixed(2)}x (goal <= +${GOAL_OVERHEAD_MS} ms${o?.goalMet ? '' : ', NOT MET'})`,
  );
  console.log(`memory: idle proxy ${idleProxyMb ?? 'n/a'} MB RSS; one process holding 8 servers ${holderMb} MB RSS`);
  recordResults(results);
}

try {
  await main();
} finally {
  for (const fn of teardown.reverse()) await fn();
}
