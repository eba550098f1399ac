/**
 * mcp-sse-server: a protected MCP server that only speaks the older HTTP+SSE transport
 * (2024-11-05: GET <path> opens the event stream and names a POST endpoint), built on the SDK's
 * SSEServerTransport, for the proxy's transport fallback. Like the testbed's servers it accepts
 * only JWT access tokens of the test AS for its own resource (jose against the AS's JWKS), answers
 * 401 with a Bearer challenge naming its protected resource metadata, and checks the token before
 * the method, so a POST to the SSE path is 401 without a token and 405 with one (which is what
 * tells an http-first client to fall back).
 *
 * For: test/mcp. Records the values of the `x-authkeep-test` request header it saw, and can drop
 * every open event stream to simulate a lost connection.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { SSEServerTransport } from '@modelcontextprotocol/sdk/server/sse.js';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { z } from 'zod';
import { closeServer, listenEphemeral, readBody, sendJson, sendText } from '../../arena/testbed/http-util.js';
import type { RunningAuthorizationServer } from '../../arena/testbed/index.js';

export interface RunningSseServer {
  /** The SSE endpoint, e.g. http://127.0.0.1:PORT/sse (also the resource). */
  url: string;
  resource: string;
  /** Values of the x-authkeep-test header, in arrival order. */
  testHeaders: string[];
  counts(): { unauthorized: number; streams: number; toolCalls: number; posts: number };
  /** End every open event stream (the client sees its connection drop). */
  dropStreams(): void;
  close(): Promise<void>;
}

export async function startSseMcpServer(as: RunningAuthorizationServer): Promise<RunningSseServer> {
  const server = createServer();
  const origin = await listenEphemeral(server);
  const ssePath = '/sse';
  const resource = `${origin}${ssePath}`;
  const prmPath = `/.well-known/oauth-protected-resource${ssePath}`;
  as.addResource({ resource, scopes: ['mcp:read', 'mcp:write', 'mcp:admin'] });
  const jwks = createRemoteJWKSet(new URL(as.endpoints.jwks));
  const transports = new Map<string, { transport: SSEServerTransport; res: ServerResponse }>();
  const counts = { unauthorized: 0, streams: 0, toolCalls: 0, posts: 0 };
  const testHeaders: string[] = [];

  function unauthorized(res: ServerResponse, error?: string): void {
    counts.unauthorized += 1;
    const params = [
      ...(error ? [`error="${error}"`] : []),
      'scope="mcp:read"',
      `resource_metadata="${origin}${prmPath}"`,
    ];
    sendJson(res, 401, { error: error ?? 'unauthorized' }, { 'WWW-Authenticate': `Bearer ${params.join(', ')}` });
  }

  async function authenticate(req: IncomingMessage, res: ServerResponse): Promise<AuthInfo | undefined> {
    const match = /^Bearer +(\S+)$/i.exec(req.headers.authorization ?? '');
    if (!match?.[1]) {
      unauthorized(res);
      return undefined;
    }
    try {
      const { payload } = await jwtVerify(match[1], jwks, {
        issuer: as.issuer,
        audience: resource,
        algorithms: ['ES256'],
        typ: 'at+jwt',
      });
      const scopes = typeof payload.scope === 'string' ? payload.scope.split(' ') : [];
      if (!scopes.includes('mcp:read')) {
        unauthorized(res, 'insufficient_scope');
        return undefined;
      }
      return { token: match[1], clientId: String(payload.client_id ?? ''), scopes, resource: new URL(resource) };
    } catch {
      unauthorized(res, 'invalid_token');
      return undefined;
    }
  }

  function mcpServer(): McpServer {
    const mcp = new McpServer({ name: 'testbed-sse-only', version: '1.0.0' });
    mcp.registerTool(
      'echo',
      { description: 'Echo the text back.', inputSchema: { text: z.string() } },
      async ({ text }) => {
        counts.toolCalls += 1;
        return { content: [{ type: 'text', text }] };
      },
    );
    return mcp;
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', origin);
    if (url.pathname === prmPath && req.method === 'GET') {
      sendJson(res, 200, {
        resource,
        authorization_servers: [as.issuer],
        scopes_supported: ['mcp:read'],
        bearer_methods_supported: ['header'],
      });
      return;
    }
    if (url.pathname !== ssePath && url.pathname !== '/messages') return sendText(res, 404, 'not found');
    const header = req.headers['x-authkeep-test'];
    if (typeof header === 'string') testHeaders.push(header);
    const auth = await authenticate(req, res);
    if (!auth) return;
    if (url.pathname === ssePath) {
      if (req.method !== 'GET') return sendText(res, 405, 'method not allowed', { Allow: 'GET' });
      counts.streams += 1;
      const transport = new SSEServerTransport('/messages', res);
      transports.set(transport.sessionId, { transport, res });
      res.on('close', () => transports.delete(transport.sessionId));
      await mcpServer().connect(transport);
      return;
    }
    if (req.method !== 'POST') return sendText(res, 405, 'method not allowed', { Allow: 'POST' });
    counts.posts += 1;
    const entry = transports.get(url.searchParams.get('sessionId') ?? '');
    if (!entry) return sendText(res, 404, 'unknown session');
    const body: unknown = JSON.parse((await readBody(req)).toString('utf8'));
    await entry.transport.handlePostMessage(Object.assign(req, { auth }), res, body);
  }

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { error: 'server_error', detail: String(err) });
      else res.end();
    });
  });

  return {
    url: resource,
    resource,
    testHeaders,
    counts: () => ({ ...counts }),
    dropStreams: () => {
      for (const { res } of transports.values()) res.destroy();
      transports.clear();
    },
    close: async () => {
      for (const { res } of transports.values()) res.destroy();
      await closeServer(server);
    },
  };
}
