/**
 * canonical-url: the one spelling of an MCP server URL that keys its record and is compared
 * against the protected resource metadata (MCP authorization spec, "Canonical Server URI";
 * RFC 8707 section 2). Lowercase scheme and host, no default port, no fragment, and no trailing
 * slash on an empty path.
 *
 * Not for: deciding whether http is allowed (see oauth/http.ts).
 */
import { AuthkeepError } from '../errors.js';

export function canonicalServerUrl(input: string | URL): string {
  let url: URL;
  try {
    url = new URL(String(input));
  } catch {
    throw new AuthkeepError('invalid_argument', `serverUrl is not an absolute URL: ${JSON.stringify(String(input))}`, {
      field: 'serverUrl',
    });
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new AuthkeepError('invalid_argument', `serverUrl must be http(s), got ${url.protocol}`, {
      field: 'serverUrl',
    });
  }
  if (url.username || url.password) {
    throw new AuthkeepError('invalid_argument', 'serverUrl must not carry credentials', { field: 'serverUrl' });
  }
  url.hash = '';
  const href = url.href;
  return url.pathname === '/' && !url.search ? href.slice(0, -1) : href;
}
