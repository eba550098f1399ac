/**
 * Connect an @modelcontextprotocol/client 2.x Client to a protected MCP server with authkeep as the
 * transport's `authProvider` (2.x's OAuthClientProvider interface), from `authkeep/sdk-v2`.
 *
 *   node --import tsx examples/sdk-v2-auth-provider.ts <server-url> [tool] [json-arguments] [--allow-http]
 *   e.g. node --import tsx examples/sdk-v2-auth-provider.ts https://mcp.example.com/mcp echo '{"text":"hi"}'
 *
 * The first run opens the browser (`$BROWSER`, else the platform opener) to sign in; later runs,
 * and every other process on this machine (1.x or 2.x SDK alike), reuse the stored record and
 * refresh single-flight. `--allow-http` permits an http://127.0.0.1 development server.
 *
 * In your project (`npm install authkeep @modelcontextprotocol/client@2.4.0`):
 *   import { AuthKeeper } from 'authkeep';
 *   import { authProviderV2 } from 'authkeep/sdk-v2';
 */
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { AuthKeeper } from '../src/index.js';
import { authProviderV2 } from '../src/sdk-v2.js';

const args = process.argv.slice(2).filter((a) => a !== '--allow-http');
const [serverUrl, tool, toolArguments] = args;
if (!serverUrl) {
  process.stderr.write('usage: sdk-v2-auth-provider.ts <server-url> [tool] [json-arguments] [--allow-http]\n');
  process.exit(2);
}

const keeper = new AuthKeeper({ allowInsecureLoopback: process.argv.includes('--allow-http') });

// tokens() comes from authkeep's single-flight token manager, stamped with its issuer; the SDK
// never sees the refresh token, and a needed sign-in is authkeep's own (one browser tab across
// processes). A 403 insufficient_scope is re-authorized by authkeep with the union of scopes.
const transport = new StreamableHTTPClientTransport(new URL(serverUrl), {
  authProvider: authProviderV2(keeper, serverUrl),
});
const client = new Client({ name: 'authkeep-example-sdk-v2-auth-provider', version: '0.1.0' });
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
