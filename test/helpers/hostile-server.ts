/**
 * hostile-server: a tiny real HTTP server on 127.0.0.1:0 that answers whatever a test tells it
 * (any status, JSON or raw body, headers, a delay, a hang, a dropped connection) and records every
 * request it receives (method, path, headers, body), so tests can assert both what authkeep sent
 * and in which order.
 *
 * Not for: behaving like a real authorization server (arena/testbed/ has oidc-provider for that).
 */
import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { AuthorizationServer } from '../../src/oauth/types.js';

export interface RecordedRequest {
  method: string;
  /** Path and query, exactly as received. */
  path: string;
  pathname: string;
  headers: IncomingHttpHeaders;
  body: string;
  /** The body parsed as application/x-www-form-urlencoded. */
  form: URLSearchParams;
  /** The body parsed as JSON, when it is JSON. */
  json: unknown;
}

export interface Reply {
  status?: number;
  /** Serialized with content-type application/json. */
  json?: unknown;
  /** Sent as is (content-type text/plain unless headers say otherwise). */
  body?: string;
  headers?: Record<string, string>;
  /** Wait this long before answering. */
  delayMs?: number;
  /** Never answer (for timeout tests). */
  hang?: boolean;
  /** Destroy the socket without answering. */
  drop?: boolean;
  /** After `body` (or nothing), send filler bytes until the client goes away (a body that never ends). */
  endless?: boolean;
}

export type Responder = Reply | ((req: RecordedRequest, server: HostileServer) => Reply | Promise<Reply>);

export class HostileServer {
  readonly requests: RecordedRequest[] = [];
  /** Bytes of `endless` filler written so far (what a client read, or the kernel buffered for it). */
  endlessBytes = 0;
  private readonly routes = new Map<string, Responder[]>();
  private readonly sockets = new Set<Socket>();
  private readonly server: Server;
  url = '';

  constructor() {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        const path = req.url ?? '/';
        const pathname = new URL(path, 'http://127.0.0.1').pathname;
        let json: unknown;
        try {
          json = body ? JSON.parse(body) : undefined;
        } catch {
          json = undefined;
        }
        const recorded: RecordedRequest = {
          method: req.method ?? 'GET',
          path,
          pathname,
          headers: req.headers,
          body,
          form: new URLSearchParams(body),
          json,
        };
        this.requests.push(recorded);
        void this.answer(recorded, res);
      });
    });
    this.server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    const { port } = this.server.address() as AddressInfo;
    this.url = `http://127.0.0.1:${port}`;
    return this;
  }

  /**
   * Answer `METHOD pathname` with the responders in turn; the last one keeps answering. Unrouted
   * requests get 404.
   */
  on(method: string, pathname: string, ...responders: Responder[]): this {
    this.routes.set(`${method.toUpperCase()} ${pathname}`, responders);
    return this;
  }

  /** Shorthand for a GET answered with JSON 200. */
  json(pathname: string, value: unknown): this {
    return this.on('GET', pathname, { json: value });
  }

  /** Request lines recorded so far, e.g. `GET /.well-known/oauth-protected-resource/mcp`. */
  lines(): string[] {
    return this.requests.map((r) => `${r.method} ${r.path}`);
  }

  requestsTo(method: string, pathname: string): RecordedRequest[] {
    return this.requests.filter((r) => r.method === method.toUpperCase() && r.pathname === pathname);
  }

  reset(): void {
    this.requests.length = 0;
    this.endlessBytes = 0;
    this.routes.clear();
  }

  private async answer(req: RecordedRequest, res: ServerResponse): Promise<void> {
    const queue = this.routes.get(`${req.method} ${req.pathname}`);
    let responder: Responder | undefined;
    if (queue && queue.length > 0) responder = queue.length > 1 ? queue.shift() : queue[0];
    const reply: Reply =
      responder === undefined
        ? { status: 404, json: { error: 'not_found' } }
        : typeof responder === 'function'
          ? await responder(req, this)
          : responder;
    if (reply.delayMs) await new Promise((r) => setTimeout(r, reply.delayMs));
    if (reply.hang) return;
    if (reply.drop) {
      res.socket?.destroy();
      return;
    }
    const headers: Record<string, string> = { ...(reply.headers ?? {}) };
    let payload = '';
    if (reply.json !== undefined) {
      payload = JSON.stringify(reply.json);
      headers['content-type'] ??= 'application/json';
    } else if (reply.body !== undefined) {
      payload = reply.body;
      headers['content-type'] ??= 'text/plain';
    }
    res.writeHead(reply.status ?? 200, headers);
    if (reply.endless) {
      res.write(payload);
      const filler = Buffer.alloc(64 * 1024, 0x20);
      const more = (): void => {
        while (!res.destroyed) {
          this.endlessBytes += filler.length;
          if (!res.write(filler)) break;
        }
      };
      res.on('drain', more);
      res.on('close', () => res.off('drain', more));
      more();
      return;
    }
    res.end(payload);
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

export async function startHostileServer(): Promise<HostileServer> {
  return new HostileServer().start();
}

/** Standard AS metadata for an issuer served by a HostileServer (endpoints on the same origin). */
export function asMetadata(
  issuer: string,
  origin: string,
  overrides: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    issuer,
    authorization_endpoint: `${origin}/authorize`,
    token_endpoint: `${origin}/token`,
    registration_endpoint: `${origin}/register`,
    revocation_endpoint: `${origin}/revoke`,
    response_types_supported: ['code'],
    code_challenge_methods_supported: ['S256'],
    token_endpoint_auth_methods_supported: ['none'],
    ...overrides,
  };
}

/**
 * The stored AS record of a hostile server at `origin`: issuer, the authorize and token
 * endpoints, S256; `extra` adds or overrides fields (registration/revocation endpoints, auth methods).
 */
export function asRecord(origin: string, extra: Partial<AuthorizationServer> = {}): AuthorizationServer {
  return {
    issuer: origin,
    authorization_endpoint: `${origin}/authorize`,
    token_endpoint: `${origin}/token`,
    code_challenge_methods_supported: ['S256'],
    ...extra,
  };
}
