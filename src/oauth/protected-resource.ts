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
 * Resource match rule (RFC 9728 section 3.3, exact): the `resource` of a document must be
 * identical to the resource identifier its URL was built from. For the path-based well-known URI
 * (and a server at the root) that is the server URL; for the `resource_metadata` URL of the
 * server's 401 challenge it is "the URL that the client used to make the request", the server URL.
 * The ROOT well-known URI of a server with a path (`https://h/.well-known/oauth-protected-resource`
 * for `https://h/public/mcp`, the second place the MCP spec says to look) was built from the
 * origin `https://h`, which its `resource` names (the MCP conformance suite serves that); a root
 * document naming exactly the server URL is accepted too: it identifies this very server, no
 * less exactly than the challenge's rule. Compared as parsed URLs: scheme and host
 * case-insensitively (the MCP spec's "Canonical Server URI" asks clients to accept uppercase
 * ones), a default port elided, path and query exactly (no prefix, no trailing-slash leniency), no
 * fragment, no userinfo. A document that fails its rule is not used (resource_mismatch naming
 * `resource`): the next candidate URL is tried, and when none has a usable document the mismatch
 * is thrown, so a foreign resource (conformance `auth/resource-mismatch`) ends discovery before
 * any authorization request. The caller sends `resource` to the AS exactly as published (never
 * re-serialized through a URL parser, which would add a trailing "/").
 */
import * as z from 'zod/mini';
import { AuthkeepError } from '../errors.js';
import { VERSION } from '../version.js';
import {
  assertSecureUrl,
  discardBody,
  fetchMetadataDocument,
  type HttpOptions,
  httpRequest,
  isJsonObject,
  type MetadataDocument,
  safeUrl,
} from './http.js';
import { authChallengeFromResponse } from './www-authenticate.js';

const WELL_KNOWN_PRM = '/.well-known/oauth-protected-resource';

/** RFC 9728 section 2, the fields an MCP client uses; unknown members are dropped. */
export const ProtectedResourceMetadataSchema = z.object({
  resource: z.string().check(z.minLength(1)),
  /** Required non-empty by the MCP spec ("Authorization Server Location"). */
  authorization_servers: z.array(z.string().check(z.minLength(1))).check(z.minLength(1)),
  scopes_supported: z.optional(z.array(z.string())),
  bearer_methods_supported: z.optional(z.array(z.string())),
  /** RFC 9728 section 2: the resource takes DPoP-bound access tokens only (RFC 9449). */
  dpop_bound_access_tokens_required: z.catch(z.optional(z.boolean()), undefined),
  resource_name: z.optional(z.string()),
  resource_documentation: z.optional(z.string()),
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
 * Where a protected resource metadata document was fetched from, which decides the resource
 * identifier it must carry (RFC 9728 section 3.3): the challenge's `resource_metadata` URL, the
 * path-based well-known URI, or the root one.
 */
export type MetadataSource = 'resource_metadata' | 'path' | 'root';

/**
 * RFC 9728 section 3.3: the resource identifiers a document fetched from `source` may carry for
 * the server at `serverUrl`: the server URL itself; for the root well-known URI of a server with
 * a path also the origin, the identifier that URI was built from (see the file comment).
 */
export function expectedResources(serverUrl: string, source: MetadataSource): string[] {
  const server = new URL(serverUrl);
  if (source === 'root' && (server.pathname !== '/' || server.search !== '')) return [server.origin, serverUrl];
  return [serverUrl];
}

/**
 * Is `resource` identical to the resource identifier `expected` (see the file comment: scheme and
 * host compared case-insensitively, a default port elided, the rest exactly)?
 */
export function resourceIdentical(resource: string, expected: string): boolean {
  let res: URL;
  let exp: URL;
  try {
    res = new URL(resource);
    exp = new URL(expected);
  } catch {
    return false;
  }
  if (resource.includes('#') || res.username !== '' || res.password !== '') return false;
  // URL lowercases scheme and host and drops a default port; the path and query are kept as sent.
  return (
    res.protocol === exp.protocol && res.host === exp.host && res.pathname === exp.pathname && res.search === exp.search
  );
}

function fieldOf(path: readonly PropertyKey[]): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else out += out === '' ? String(key) : `.${String(key)}`;
  }
  return out || 'body';
}

/** Validate a PRM document fetched from `url` (found as `source`) for the server at `serverUrl`. */
export function validateProtectedResourceMetadata(
  body: unknown,
  serverUrl: string,
  url: string,
  source: MetadataSource,
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
  const expected = expectedResources(serverUrl, source);
  if (!expected.some((identifier) => resourceIdentical(metadata.resource, identifier))) {
    throw new AuthkeepError(
      'resource_mismatch',
      `protected resource metadata at ${safeUrl(url)} is for resource ${JSON.stringify(metadata.resource)}; a document found ${SOURCE_TEXT[source]} must name exactly ${expected.map((e) => JSON.stringify(e)).join(' or ')} (RFC 9728 section 3.3)`,
      {
        field: 'resource',
        detail: { expected: expected.join(' '), actual: metadata.resource, url: safeUrl(url), source },
      },
    );
  }
  metadata.authorization_servers.forEach((issuer, i) => {
    assertSecureUrl(issuer, `authorization_servers[${i}]`, allowInsecureLoopback, 'metadata_invalid');
  });
  return metadata;
}

const SOURCE_TEXT: Record<MetadataSource, string> = {
  resource_metadata: "through the server's resource_metadata challenge",
  path: 'at the path-based well-known URI',
  root: 'at the root well-known URI',
};

/**
 * RFC 9728 section 3 / MCP "Protected Resource Metadata Discovery Requirements": try the
 * challenge's `resource_metadata` URL, then the path-based and root well-known URIs. The first JSON
 * 200 that passes validation wins. A document that is invalid is thrown at once; one whose
 * `resource` fails its URL's rule (section 3.3) is not used and the next candidate is tried (a
 * URL asked before is not fetched again), the mismatch thrown when no candidate has a usable
 * document. Returns undefined only when every candidate says there is nothing there (404 and the
 * like), so the caller can fall back to the 2025-03-26 flow; a 5xx/429 anywhere without a later
 * success is discovery_failed, and a non-JSON 200 without a later success is metadata_invalid.
 */
export async function discoverProtectedResource(
  serverUrl: string,
  options: HttpOptions & { resourceMetadataUrl?: string },
): Promise<{ metadata: ProtectedResourceMetadata; url: string } | undefined> {
  const server = assertSecureUrl(serverUrl, 'serverUrl', options.allowInsecureLoopback);
  const candidates: Array<{ url: URL; source: MetadataSource }> = [];
  if (options.resourceMetadataUrl !== undefined) {
    const url = assertSecureUrl(
      options.resourceMetadataUrl,
      'resource_metadata',
      options.allowInsecureLoopback,
      'metadata_invalid',
    );
    candidates.push({ url, source: 'resource_metadata' });
  }
  const [first, second] = protectedResourceMetadataUrls(server);
  if (first) candidates.push({ url: first, source: second ? 'path' : 'root' });
  if (second) candidates.push({ url: second, source: 'root' });

  const fetched = new Map<string, MetadataDocument>();
  let deferred: AuthkeepError | undefined;
  let mismatch: AuthkeepError | undefined;
  for (const { url, source } of candidates) {
    let result = fetched.get(url.href);
    if (result === undefined) {
      result = await fetchMetadataDocument(url, options, 'protected resource metadata');
      fetched.set(url.href, result);
    }
    if (result.kind === 'absent') continue;
    if (result.kind === 'failed') {
      deferred ??= result.error;
      continue;
    }
    try {
      const metadata = validateProtectedResourceMetadata(
        result.body,
        serverUrl,
        url.href,
        source,
        options.allowInsecureLoopback,
      );
      return { metadata, url: url.href };
    } catch (err) {
      if (!(err instanceof AuthkeepError) || err.code !== 'resource_mismatch') throw err;
      mismatch ??= err;
    }
  }
  if (mismatch) throw mismatch;
  if (deferred) throw deferred;
  return undefined;
}

export interface ProbeResult {
  /** Status of the answer that decided: a POST's, or the GET's when the GET fallback ran. */
  status: number;
  challenge?: { resourceMetadata?: string; scope?: string; error?: string; errorDescription?: string };
  /**
   * The 401 challenged with the `DPoP` scheme and not `Bearer` (RFC 9449 section 7.1): the server
   * takes DPoP-bound tokens only.
   */
  dpopOnly?: boolean;
  /** The WWW-Authenticate field was present but malformed (RFC 9110 section 11.6.1); ignored. */
  challengeMalformed?: boolean;
}

export interface ProbeOptions extends HttpOptions {
  /** Extra headers sent with every probe request (the proxy's `--header` values). */
  headers?: Record<string, string>;
  /**
   * When both POSTs are answered with neither 401 nor 2xx, also GET the URL as an HTTP+SSE client
   * opens its stream (MCP 2024-11-05 transport), and report that answer. Default false.
   */
  sseFallback?: boolean;
}

/** The wire revision of the modern probe (stateless, per-request `_meta`, no `initialize`). */
const MODERN_PROTOCOL_VERSION = '2026-07-28';
/** The wire revision of the legacy probe (the `initialize` handshake). */
const LEGACY_PROTOCOL_VERSION = '2025-11-25';
const CLIENT_INFO = { name: 'authkeep', version: VERSION };

/**
 * The MCP authorization flow's first step ("MCP request without token", answered "HTTP 401 with
 * WWW-Authenticate"), and the one unauthenticated probe authkeep sends, for a server on either
 * wire (MCP 2026-07-28 "Versioning: Backward Compatibility with Initialization-Based Versions",
 * Streamable HTTP: "attempt a modern request and inspect the 400 before falling back"):
 *   1. a 2026-07-28 request: `server/discover` (every server implements it) with the
 *      `MCP-Protocol-Version` and `Mcp-Method` headers and the `_meta` the revision requires;
 *   2. answered 401 or 2xx, that answer decides (a 2xx means the method needs no token: discovery
 *      goes on via the well-known URIs); any other answer is a legacy server refusing the modern
 *      request (400, 404, 405, ...), which is asked again as a legacy client opens: an
 *      `initialize` POST (2025-11-25 and earlier have no `server/discover`); a session a server
 *      opened for a probe is closed;
 *   3. with `sseFallback`, a server that refuses that POST too is asked with a GET as an HTTP+SSE
 *      client opens its stream (see ProbeOptions).
 * The 401's Bearer challenge (`resource_metadata`, `scope`; RFC 9728 section 5.1, RFC 6750
 * section 3) is read from the answer that decided. Bounded by the http helper's timeout; a
 * network failure of a POST throws as_unreachable, of the GET fallback is reported as status 0.
 */
export async function probeServer(serverUrl: string, options: ProbeOptions): Promise<ProbeResult> {
  const url = assertSecureUrl(serverUrl, 'serverUrl', options.allowInsecureLoopback);
  const extra = options.headers ?? {};
  const modern = await probePost(url, serverDiscoverRequest(), MODERN_PROTOCOL_VERSION, extra, options);
  if (modern.status === 401 || modern.ok) return probeResult(modern);
  const legacy = await probePost(url, initializeRequest(), LEGACY_PROTOCOL_VERSION, extra, options);
  if (options.sseFallback && legacy.status !== 401 && !legacy.ok) {
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
  return probeResult(legacy);
}

/** MCP 2026-07-28 `server/discover`, with the `_meta` every request of that revision carries. */
function serverDiscoverRequest(): { method: string; body: unknown } {
  return {
    method: 'server/discover',
    body: {
      jsonrpc: '2.0',
      id: 0,
      method: 'server/discover',
      params: {
        _meta: {
          'io.modelcontextprotocol/protocolVersion': MODERN_PROTOCOL_VERSION,
          'io.modelcontextprotocol/clientInfo': CLIENT_INFO,
          'io.modelcontextprotocol/clientCapabilities': {},
        },
      },
    },
  };
}

/** The `initialize` request of the initialization-based revisions (2025-11-25 and earlier). */
function initializeRequest(): { method: string; body: unknown } {
  return {
    method: 'initialize',
    body: {
      jsonrpc: '2.0',
      id: 0,
      method: 'initialize',
      params: { protocolVersion: LEGACY_PROTOCOL_VERSION, capabilities: {}, clientInfo: CLIENT_INFO },
    },
  };
}

/** One unauthenticated POST of `request`; a session the server opened for it is closed. */
async function probePost(
  url: URL,
  request: { method: string; body: unknown },
  protocolVersion: string,
  extra: Record<string, string>,
  options: ProbeOptions,
): Promise<Response> {
  const modern = protocolVersion === MODERN_PROTOCOL_VERSION;
  const response = await httpRequest(
    url,
    {
      method: 'POST',
      headers: {
        ...extra,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        // 2026-07-28 Streamable HTTP "Request Metadata": both REQUIRED on every POST.
        ...(modern ? { 'mcp-protocol-version': protocolVersion, 'mcp-method': request.method } : {}),
      },
      body: JSON.stringify(request.body),
    },
    options,
    `unauthenticated probe (${request.method})`,
  );
  await discardBody(response);
  const sessionId = response.headers.get('mcp-session-id');
  if (response.ok && sessionId) {
    await httpRequest(
      url,
      { method: 'DELETE', headers: { ...extra, 'mcp-session-id': sessionId, 'mcp-protocol-version': protocolVersion } },
      options,
      'close probe session',
    )
      .then(discardBody)
      .catch(() => undefined);
  }
  return response;
}

function probeResult(response: Response): ProbeResult {
  const result: ProbeResult = { status: response.status };
  try {
    const challenge = authChallengeFromResponse(response);
    if (challenge) {
      const { scheme, algs: _algs, ...fields } = challenge;
      result.challenge = fields;
      if (scheme === 'dpop') result.dpopOnly = true;
    }
  } catch (err) {
    if (!(err instanceof AuthkeepError) || err.code !== 'www_authenticate_malformed') throw err;
    result.challengeMalformed = true;
  }
  return result;
}
