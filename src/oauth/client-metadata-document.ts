/**
 * client-metadata-document: this client's Client ID Metadata Document (MCP authorization "Client
 * ID Metadata Documents", draft-ietf-oauth-client-id-metadata-document): the rules for its URL
 * (which is the client_id), the document to publish there, and the check of a published one
 * (client_id equal to the URL, a JSON object, redirect URIs covering those authkeep uses).
 *
 * Not for: choosing CIMD over other registrations (registration.ts), or hosting the document: the
 * user publishes it; authkeep prints it and checks it.
 */
import { AuthkeepError } from '../errors.js';
import {
  assertSecureUrl,
  describeRequest,
  discardBody,
  type HttpOptions,
  httpRequest,
  isJsonObject,
  readJsonBody,
} from './http.js';

/**
 * The loopback redirect URI authkeep listens on unless told otherwise (sign-in.ts: 127.0.0.1,
 * `/callback`, a free port). Without a port: RFC 8252 section 7.3 has the AS accept any port of a
 * loopback IP redirect URI, so one document serves every sign-in's ephemeral port.
 */
export const DEFAULT_LOOPBACK_REDIRECT_URIS: readonly string[] = ['http://127.0.0.1/callback'];

/** A published document is read up to this many bytes (a hostile host gets cut off). */
export const MAX_DOCUMENT_BYTES = 64 * 1024;

/**
 * The client_id URL rules of the draft (section 3): https (http only on loopback when allowed, for
 * local tests), a path component, no fragment, no credentials, no `.` or `..` segments; and, so the
 * client_id an AS compares is the string published, the URL in its WHATWG serialisation (no
 * uppercase host, no default port). Throws invalid_argument / insecure_url naming `field`.
 */
export function assertClientMetadataUrl(value: string, field: string, allowInsecureLoopback: boolean): URL {
  const url = assertSecureUrl(value, field, allowInsecureLoopback);
  const fail = (why: string) => {
    throw new AuthkeepError('invalid_argument', `${field} ${why}`, { field });
  };
  if (value.includes('#')) fail('must not contain a fragment (#...)');
  const rawPath =
    value
      .slice(value.indexOf('//') + 2)
      .replace(/^[^/?#]*/, '')
      .split(/[?#]/)[0] ?? '';
  if (rawPath.split('/').some((segment) => /^(\.|%2e){1,2}$/i.test(segment))) {
    fail('must not contain "." or ".." path segments');
  }
  if (url.pathname === '/' || url.pathname === '') {
    fail('must contain a path component (e.g. https://example.com/client.json)');
  }
  if (url.href !== value) fail(`is not in its normal form; use ${url.href}`);
  return url;
}

export interface ClientMetadataDocumentOptions {
  clientName: string;
  redirectUris: readonly string[];
  scope?: string | undefined;
}

/**
 * The document to publish at `clientId` (RFC 7591 section 2 client metadata, client_id its own
 * URL): a public native client (`none`: a document cannot hold a secret) using the authorization
 * code and refresh token grants, as authkeep signs in.
 */
export function buildClientMetadataDocument(
  clientId: string,
  options: ClientMetadataDocumentOptions,
): Record<string, string | string[]> {
  return {
    client_id: clientId,
    client_name: options.clientName,
    redirect_uris: [...options.redirectUris],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
    // OIDC Registration: loopback http redirect URIs are a native client's (RFC 8252).
    application_type: 'native',
    ...(options.scope ? { scope: options.scope } : {}),
  };
}

/** RFC 8252 section 7.3: a loopback IP redirect URI matches whatever its port. */
function withoutLoopbackPort(uri: string): string | undefined {
  try {
    const url = new URL(uri);
    if (url.protocol !== 'http:' || !['127.0.0.1', '[::1]', 'localhost'].includes(url.hostname)) return undefined;
    url.port = '';
    return url.href;
  } catch {
    return undefined;
  }
}

function serialised(uri: string): string {
  try {
    return new URL(uri).href;
  } catch {
    return uri;
  }
}

/**
 * Whether a redirect URI authkeep uses is one the document lists: the same URL, or for a loopback
 * host the same URL on another port (the AS must accept any port there, RFC 8252 section 7.3).
 */
export function redirectUriListed(used: string, listed: readonly string[]): boolean {
  const exact = serialised(used);
  if (listed.some((uri) => serialised(uri) === exact)) return true;
  const portless = withoutLoopbackPort(used);
  return portless !== undefined && listed.some((uri) => withoutLoopbackPort(uri) === portless);
}

export type PublishedDocumentCheck =
  | { ok: true; redirectUris: string[] }
  | { ok: false; field: string; problem: string };

/**
 * Fetch the document published at `url` (no redirect followed, bounded, with the timeout of
 * `http`) and check what an AS checks first: a 200 JSON object whose `client_id` is exactly `url`,
 * and that every redirect URI in `usedRedirectUris` is listed. Network failures throw
 * as_unreachable; anything else wrong is returned naming the field.
 */
export async function checkPublishedDocument(
  url: string,
  usedRedirectUris: readonly string[],
  http: HttpOptions,
): Promise<PublishedDocumentCheck> {
  const purpose = 'client ID metadata document';
  const target = assertSecureUrl(url, 'client_id', http.allowInsecureLoopback);
  const description = describeRequest('GET', target, purpose);
  const response = await httpRequest(target, { method: 'GET', headers: { accept: 'application/json' } }, http, purpose);
  if (response.status !== 200) {
    await discardBody(response);
    return { ok: false, field: 'status', problem: `${description} answered HTTP ${response.status}, not 200` };
  }
  const body = await readJsonBody(response, description, MAX_DOCUMENT_BYTES);
  if (!body.ok) {
    return {
      ok: false,
      field: 'body',
      problem: `the document is ${body.reason === 'too_large' ? `larger than ${MAX_DOCUMENT_BYTES} bytes` : body.reason === 'empty' ? 'empty' : 'not JSON'}`,
    };
  }
  if (!isJsonObject(body.value)) return { ok: false, field: 'body', problem: 'the document is not a JSON object' };
  const doc = body.value;
  if (doc.client_id !== url) {
    return {
      ok: false,
      field: 'client_id',
      problem:
        typeof doc.client_id === 'string'
          ? `its client_id is ${JSON.stringify(doc.client_id)}, not the document's URL`
          : 'it has no client_id string (it must be the document URL)',
    };
  }
  const listed = Array.isArray(doc.redirect_uris) ? doc.redirect_uris.filter((u) => typeof u === 'string') : [];
  if (!Array.isArray(doc.redirect_uris) || listed.length === 0) {
    return { ok: false, field: 'redirect_uris', problem: 'it lists no redirect_uris' };
  }
  const missing = usedRedirectUris.filter((uri) => !redirectUriListed(uri, listed));
  if (missing.length > 0) {
    return {
      ok: false,
      field: 'redirect_uris',
      problem: `its redirect_uris do not include ${missing.join(', ')} (authkeep's loopback redirect URI)`,
    };
  }
  return { ok: true, redirectUris: listed };
}
