/**
 * Connect an @modelcontextprotocol/client 2.x Client to a protected MCP server with
 * `keeper.fetch(url)` as the transport's `fetch` (a 2.x `FetchLike`): the simpler path. Every
 * request carries a fresh token; a 401 gets another token (adopted from another process, or
 * refreshed single-flight) and the SAME request is re-sent, and a 403 insufficient_scope
 * re-authorizes with the union of scopes, so no call fails because of a token. The SDK's own
 * OAuth machinery is not involved at all. 2.x middleware composes around it as around any fetch,
 * e.g. `fetch: applyMiddlewares(withLogging())(keeper.fetch(url))`.
 *
 *   node --import tsx examples/sdk-v2-fetch.ts <server-url> [tool] [json-arguments] [--allow-http]
 *
 * Sign in beforehand with `authkeep login <server-url>`, or let this example do it on first use.
 *
 * In your project (`npm install authkeep @modelcontextprotocol/client@2.4.0`):
 *   import { AuthKeeper, NeedsAuthError } from 'authkeep';
 */
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { AuthKeeper, NeedsAuthError } from '../src/index.js';

const args = process.argv.slice(2).filter((a) => a !== '--allow-http');
const [serverUrl, tool, toolArguments] = args;
if (!serverUrl) {
  process.stderr.write('usage: sdk-v2-fetch.ts <server-url> [tool] [json-arguments] [--allow-http]\n');
  process.exit(2);
}

const keeper = new AuthKeeper({ allowInsecureLoopback: process.argv.includes('--allow-http') });

// keeper.fetch never signs in by itself: it throws NeedsAuthError (with a reason) when only an
// interactive sign-in can help. Do that once up front.
try {
  await keeper.getAccessToken(serverUrl);
} catch (err) {
  if (!(err instanceof NeedsAuthError)) throw err;
  console.error(`signing in (${err.reason}): your browser will open`);
  await keeper.login(serverUrl);
}

const transport = new StreamableHTTPClientTransport(new URL(serverUrl), { fetch: keeper.fetch(serverUrl) });
const client = new Client({ name: 'authkeep-example-sdk-v2-fetch', version: '0.1.0' });
await client.connect(transport);

const { tools } = await client.listTools();
console.log(`tools: ${tools.map((t) => t.name).join(', ')}`);
if (tool) {
  const result = await client.callTool({
    name: tool,
    arguments: toolArguments ? (JSON.parse(toolArguments) as Record<string, unknown>) : {},
  });
  console.log(JSON.stringify(result.content));
}
await client.close();
