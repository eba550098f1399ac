/**
 * Connect an @modelcontextprotocol/sdk Client to a protected MCP server with authkeep as the
 * transport's `authProvider` (the SDK's OAuthClientProvider interface).
 *
 *   node --import tsx examples/sdk-auth-provider.ts <server-url> [tool] [json-arguments] [--allow-http]
 *   e.g. node --import tsx examples/sdk-auth-provider.ts https://mcp.example.com/mcp echo '{"text":"hi"}'
 *
 * The first run opens the browser (`$BROWSER`, else the platform opener) to sign in; later runs,
 * and every other process on this machine, reuse the stored record and refresh single-flight.
 * `--allow-http` permits an http://127.0.0.1 development server.
 *
 * In your project: `import { AuthKeeper } from 'authkeep';`
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { AuthKeeper } from '../src/index.js';

const args = process.argv.slice(2).filter((a) => a !== '--allow-http');
const [serverUrl, tool, toolArguments] = args;
if (!serverUrl) {
  process.stderr.write('usage: sdk-auth-provider.ts <server-url> [tool] [json-arguments] [--allow-http]\n');
  process.exit(2);
}

const keeper = new AuthKeeper({ allowInsecureLoopback: process.argv.includes('--allow-http') });

// tokens() comes from authkeep's single-flight token manager; the SDK never sees the refresh
// token, and a needed sign-in is authkeep's own (one browser tab across processes).
const transport = new StreamableHTTPClientTransport(new URL(serverUrl), {
  authProvider: keeper.authProvider(serverUrl),
});
const client = new Client({ name: 'authkeep-example-auth-provider', version: '0.1.0' });
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
