/**
 * protected-resource: finding and validating an MCP server's OAuth 2.0 Protected Resource
 * Metadata (RFC 9728), in the MCP authorization spec's order: the `resource_metadata` URL from the
 * server's 401 challenge, else the path-based well-known URI, else the root one. Also the
 * unauthenticated probe that yields that challenge.
 *
 * Not for: authorization server metadata (authorization-server-metadata.ts), parsing
 * WWW-Authenticate (www-authenticate.ts), or choosing among several authorization servers (the
 * session layer; RFC 9728 section 7.6).
 *
 * Resource match rule (RFC 9728 section 3.3 with the MCP extension): RFC 9728 wants `resource`
 * identical to the URL the metadata was derived from, but the MCP spec also lets a path-bearing
 * endpoint (`https://h/public/mcp`) publish its metadata at the ROOT well-known URI, whose
 * `resource` is then the origin (`https://h`); the MCP conformance suite serves exactly that. So
 * `resource` must have the server URL's origin (scheme and host compared case-insensitively, as the
 * spec's "Canonical Server URI" asks), no fragment, and a path equal to the server URL's path or
 * a whole-segment prefix of it (`https://h/public` covers `https://h/public/mcp`, `https://h/pub`
 * does not). Anything else is refused (resource_mismatch naming `resource`), e.g. another origin
 * (conformance `auth/resource-mismatch`). The caller then sends `resource` to the AS exactly as
 * published (never re-serialized through a URL parser, which would add a trailing "/").
 */
import { z } from 'zod';
import { AuthkeepError } from '../errors.js';
import {
  assertSecureUrl,
  describeRequest,
  discardBody,
  type HttpOptions,
  httpRequest,
  isJsonObject,
  readJsonBody,
  safeUrl,
} from './http.js';
import { bearerChallengeFromResponse } from './www-authenticate.js';

const WELL_KNOWN_PRM = '/.well-known/oauth-protected-resource';

/** RFC 9728 section 2, the fields an MCP client uses; unknown members are dropped. */
export const ProtectedResourceMetadataSchema = z.object({
  resource: z.string().min(1),
  /** Required non-empty by the MCP spec ("Authorization Server Location"). */
  authorization_servers: z.array(z.string().min(1)).min(1),
  scopes_supported: z.array(z.string()).optional(),
  bearer_methods_supported: z.array(z.string()).optional(),
  resource_name: z.string().optional(),
  resource_documentation: z.string().optional(),
});
export type ProtectedResourceMetadata = z.infer<typeof ProtectedResourceMetadataSchema>;

/**
 * The well-known URIs to try, in the MCP spec's order ("Protected Resource Metadata Discovery
 * Requirements"): path-based (RFC 9728 section 3.1, the suffix inserted between host and path,
 * terminating "/" removed), then the root. A server at the root yields only the root URI.
 */
export function protectedResourceMetadataUrls(serverUrl: URL): URL[] {
  const path = serverUrl.pathname.replace(/\/+$/, '');
  const root = new URL(WELL_KNOWN_PRM, serverUrl.origin);
  if (path === '') return [root];
  const pathBased = new URL(`${WELL_KNOWN_PRM}${path}`, serverUrl.origin);
  pathBased.search = serverUrl.search;
  return [pathBased, root];
}

/**
 * Does the PRM `resource` identify the server at `serverUrl`? See the match rule in the file
 * comment (RFC 9728 section 3.3; MCP "Canonical Server URI" and root well-known extension).
 */
export function resourceMatchesServer(resource: string, serverUrl: string): boolean {
  let res: URL;
  let srv: URL;
  try {
    res = new URL(resource);
    srv = new URL(serverUrl);
  } catch {
    return false;
  }
  if (res.hash !== '' || resource.includes('#')) return false;
  if (res.username || res.password) return false;
  // URL lowercases scheme and host and drops a default port.
  if (res.protocol !== srv.protocol || res.host !== srv.host) return false;
  const resPath = res.pathname.replace(/\/+$/, '');
  const srvPath = srv.pathname.replace(/\/+$/, '');
  if (res.search !== '') return res.search === srv.search && resPath === srvPath;
  return resPath === '' || resPath === srvPath || srvPath.startsWith(`${resPath}/`);
}

function fieldOf(path: readonly PropertyKey[]): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else out += out === '' ? String(key) : `.${String(key)}`;
  }
  return out || 'body';
}

/** Validate a PRM document fetched from `url` for the server at `serverUrl`. */
export function validateProtectedResourceMetadata(
  body: unknown,
  serverUrl: string,
  url: string,
  allowInsecureLoopback: boolean,
): ProtectedResourceMetadata {
  if (!isJsonObject(body)) {
    throw new AuthkeepError('metadata_invalid', `protected resource metadata at ${safeUrl(url)} is not a JSON object`, {
      field: 'body',
      detail: { url: safeUrl(url) },
    });
  }
  const parsed = ProtectedResourceMetadataSchema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field = issue ? fieldOf(issue.path) : 'body';
    throw new AuthkeepError(
      'metadata_invalid',
      `protected resource metadata at ${safeUrl(url)} has an invalid ${field}${field === 'authorization_servers' ? ' (MCP requires at least one authorization server)' : ''}`,
      { field, detail: { url: safeUrl(url) } },
    );
  }
  const metadata = parsed.data;
  if (!resourceMatchesServer(metadata.resource, serverUrl)) {
    throw new AuthkeepError(
      'resource_mismatch',
      `protected resource metadata at ${safeUrl(url)} is for resource ${JSON.stringify(metadata.resource)}, not for ${serverUrl}`,
      { field: 'resource', detail: { expected: serverUrl, actual: metadata.resource, url: safeUrl(url) } },
    );
  }
  metadata.authorization_servers.forEach((issuer, i) => {
    assertSecureUrl(issuer, `authorization_servers[${i}]`, allowInsecureLoopback, 'metadata_invalid');
  });
  return metadata;
}

/** Statuses that mean "no metadata at this URL"; the next candidate is tried. */
function isAbsent(status: number): boolean {
  return (status >= 300 && status < 400) || [400, 401, 403, 404, 405, 406, 410].includes(status);
}

/**
 * RFC 9728 section 3 / MCP "Protected Resource Metadata Discovery Requirements": try the
 * challenge's `resource_metadata` URL, then the path-based and root well-known URIs. The first JSON
 * 200 wins and is validated (errors are thrown, not skipped). Returns undefined only when every
 * candidate says there is nothing there (404 and the like), so the caller can fall back to the
 * 2025-03-26 flow; a 5xx/429 anywhere without a later success is discovery_failed, and a
 * non-JSON 200 without a later success is metadata_invalid.
 */
export async function discoverProtectedResource(
  serverUrl: string,
  options: HttpOptions & { resourceMetadataUrl?: string },
): Promise<{ metadata: ProtectedResourceMetadata; url: string } | undefined> {
  const server = assertSecureUrl(serverUrl, 'serverUrl', options.allowInsecureLoopback);
  const candidates: URL[] = [];
  if (options.resourceMetadataUrl !== undefined) {
    candidates.push(
      assertSecureUrl(
        options.resourceMetadataUrl,
        'resource_metadata',
        options.allowInsecureLoopback,
        'metadata_invalid',
      ),
    );
  }
  for (const url of protectedResourceMetadataUrls(server)) {
    if (!candidates.some((c) => c.href === url.href)) candidates.push(url);
  }

  let deferred: AuthkeepError | undefined;
  for (const url of candidates) {
    const description = describeRequest('GET', url, 'protected resource metadata');
    const response = await httpRequest(
      url,
      { method: 'GET', headers: { accept: 'application/json' } },
      options,
      'protected resource metadata',
    );
    if (response.status !== 200) {
      await discardBody(response);
      if (!isAbsent(response.status)) {
        deferred ??= new AuthkeepError('discovery_failed', `${description} answered HTTP ${response.status}`, {
          field: 'status',
          detail: { url: safeUrl(url), status: response.status, request: description },
        });
      }
      continue;
    }
    const body = await readJsonBody(response, description);
    if (!body.ok) {
      deferred ??= new AuthkeepError(
        'metadata_invalid',
        `${description} answered 200 with a body that is ${body.reason.replace('_', ' ')}`,
        {
          field: 'body',
          detail: { url: safeUrl(url), reason: body.reason },
        },
      );
      continue;
    }
    const metadata = validateProtectedResourceMetadata(body.value, serverUrl, url.href, options.allowInsecureLoopback);
    return { metadata, url: url.href };
  }
  if (deferred) throw deferred;
  return undefined;
}

export interface ProbeResult {
  /** Status of the answer that decided: the POST's, or the GET's when the GET fallback ran. */
  status: number;
  challenge?: { resourceMetadata?: string; scope?: string; error?: string; errorDescription?: string };
  /** The WWW-Authenticate field was present but malformed (RFC 9110 section 11.6.1); ignored. */
  challengeMalformed?: boolean;
}

export interface ProbeOptions extends HttpOptions {
  /** Extra headers sent with every probe request (the proxy's `--header` values). */
  headers?: Record<string, string>;
  /**
   * When the POST is answered with neither 401 nor 2xx, also GET the URL as an HTTP+SSE client
   * opens its stream (MCP 2024-11-05 transport), and report that answer. Default false.
   */
  sseFallback?: boolean;
}

const PROBE_PROTOCOL_VERSION = '2025-11-25';

/**
 * The MCP authorization flow's first step, and the one unauthenticated probe authkeep sends: an
 * MCP request without a token (a JSON-RPC `initialize` POST, as a Streamable HTTP client would
 * send it), to read the 401's Bearer challenge (`resource_metadata`, `scope`; RFC 9728 section
 * 5.1, RFC 6750 section 3). A 200 means this request needs no token (some servers protect only
 * later methods); discovery should still go on via the well-known URIs. A session the server
 * opened for the probe is closed. With `sseFallback`, a server that refuses the POST otherwise is
 * asked again with a GET (see ProbeOptions). Bounded by the http helper's timeout; a network
 * failure of the POST throws as_unreachable, of the GET fallback is reported as status 0.
 */
export async function probeServer(serverUrl: string, options: ProbeOptions): Promise<ProbeResult> {
  const url = assertSecureUrl(serverUrl, 'serverUrl', options.allowInsecureLoopback);
  const extra = options.headers ?? {};
  const response = await httpRequest(
    url,
    {
      method: 'POST',
      headers: {
        ...extra,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 0,
        method: 'initialize',
        params: {
          protocolVersion: PROBE_PROTOCOL_VERSION,
          capabilities: {},
          clientInfo: { name: 'authkeep', version: '0.1.0' },
        },
      }),
    },
    options,
    'unauthenticated probe',
  );
  await discardBody(response);
  const sessionId = response.headers.get('mcp-session-id');
  if (response.ok && sessionId) {
    await httpRequest(
      url,
      {
        method: 'DELETE',
        headers: { ...extra, 'mcp-session-id': sessionId, 'mcp-protocol-version': PROBE_PROTOCOL_VERSION },
      },
      options,
      'close probe session',
    )
      .then(discardBody)
      .catch(() => undefined);
  }
  if (options.sseFallback && response.status !== 401 && !response.ok) {
    const stream = await httpRequest(
      url,
      { method: 'GET', headers: { ...extra, accept: 'text/event-stream' } },
      options,
      'unauthenticated probe (SSE)',
    ).catch(() => undefined);
    if (stream === undefined) return { status: 0 };
    // An SSE stream never ends by itself: only its status and headers are wanted.
    await discardBody(stream);
    return probeResult(stream);
  }
  return probeResult(response);
}

function probeResult(response: Response): ProbeResult {
  const result: ProbeResult = { status: response.status };
  try {
    const challenge = bearerChallengeFromResponse(response);
    if (challenge) result.challenge = challenge;
  } catch (err) {
    if (!(err instanceof AuthkeepError) || err.code !== 'www_authenticate_malformed') throw err;
    result.challengeMalformed = true;
  }
  return result;
}
