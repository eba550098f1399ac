/**
 * hostile-world: an MCP server and its authorization server on ONE hostile server (see
 * hostile-server.ts), well-behaved until a test re-routes one endpoint to misbehave, plus the
 * "browser" that approves at once (the AS redirects with a code, the state and iss) and a temp
 * home. Shared by the security tests, each of which breaks one thing.
 *
 * Not for: realistic sign-ins (arena/testbed has oidc-provider for that).
 */
import type { TestContext } from 'node:test';
import { tempHome } from './bed.js';
import { asMetadata, type HostileServer, startHostileServer } from './hostile-server.js';

export interface HostileWorld {
  server: HostileServer;
  origin: string;
  mcpUrl: string;
  home: string;
  /** An openAuthorizationUrl that approves at once with `code` (and the AS's iss). */
  approve(code?: string): (url: string) => Promise<void>;
}

/** Routes: 401 on POST /mcp, PRM, AS metadata, DCR (client-1, public), token endpoint answering `tokens`. */
export async function hostileWorld(
  t: TestContext,
  tokens: Record<string, unknown> = {
    access_token: 'access-token-1',
    token_type: 'Bearer',
    expires_in: 3600,
    refresh_token: 'refresh-token-1',
    scope: 'mcp:read',
  },
): Promise<HostileWorld> {
  const server = await startHostileServer();
  t.after(() => server.close());
  const origin = server.url;
  const mcpUrl = `${origin}/mcp`;
  server
    .on('POST', '/mcp', {
      status: 401,
      headers: { 'www-authenticate': `Bearer resource_metadata="${origin}/prm", scope="mcp:read"` },
      body: '',
    })
    .json('/prm', { resource: mcpUrl, authorization_servers: [origin], scopes_supported: ['mcp:read'] })
    .json('/.well-known/oauth-authorization-server', asMetadata(origin, origin, { revocation_endpoint: undefined }))
    .on('POST', '/register', { status: 201, json: { client_id: 'client-1', token_endpoint_auth_method: 'none' } })
    .on('POST', '/token', { json: tokens });
  const home = await tempHome(t);
  return {
    server,
    origin,
    mcpUrl,
    home,
    approve:
      (code = 'auth-code-1') =>
      async (url) => {
        const authorize = new URL(url);
        const redirect = new URL(authorize.searchParams.get('redirect_uri') as string);
        redirect.searchParams.set('code', code);
        redirect.searchParams.set('state', authorize.searchParams.get('state') as string);
        redirect.searchParams.set('iss', origin);
        await (await fetch(redirect)).text();
      },
  };
}
