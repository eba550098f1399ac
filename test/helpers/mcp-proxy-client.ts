/**
 * mcp-proxy-client: spawns the stdio proxy (`authkeep proxy`, from src/cli/main.ts) as a real child process and
 * connects a real @modelcontextprotocol/sdk Client to it over StdioClientTransport, the way an
 * MCP client application launches `authkeep proxy`. Collects the child's stderr and any stdio
 * protocol errors (a stray byte on stdout would show up as one).
 */

import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';

export const CLI_MAIN = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));

export interface ProxiedClient {
  client: Client;
  transport: StdioClientTransport;
  /** Everything the proxy wrote to stderr so far. */
  stderr(): string;
  /** Errors the stdio transport reported (e.g. a line on stdout that is not JSON-RPC). */
  protocolErrors: Error[];
  pid: number | null;
  close(): Promise<void>;
}

export async function connectThroughProxy(
  t: TestContext,
  args: string[],
  env: Record<string, string>,
  name = 'authkeep-proxy-test',
): Promise<ProxiedClient> {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: ['--import', import.meta.resolve('tsx'), CLI_MAIN, 'proxy', ...args],
    env: { ...(process.env as Record<string, string>), ...env },
    stderr: 'pipe',
  });
  let stderr = '';
  transport.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const protocolErrors: Error[] = [];
  const client = new Client({ name, version: '0.0.0' });
  client.onerror = (error) => protocolErrors.push(error);
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await client.close();
  };
  t.after(close);
  try {
    await client.connect(transport);
  } catch (err) {
    throw new Error(`connecting through the proxy failed: ${(err as Error).message}\n--- proxy stderr ---\n${stderr}`);
  }
  return { client, transport, stderr: () => stderr, protocolErrors, pid: transport.pid, close };
}

/** The text of a tool result. */
export function resultText(result: unknown): string {
  const content = (result as { content?: Array<{ type: string; text?: string }> }).content ?? [];
  return content.map((c) => c.text ?? '').join('');
}
