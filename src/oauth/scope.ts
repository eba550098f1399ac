/**
 * scope: which scope string to ask for, per the MCP authorization spec's "Scope Selection
 * Strategy", "Refresh Tokens" (offline_access) and "Step-Up Authorization Flow" (union) sections.
 * Scopes are space-delimited, case-sensitive strings (RFC 6749 section 3.3).
 *
 * Not for: building the authorize URL (authorize-url.ts) or deciding when to step up (session/).
 */

export const OFFLINE_ACCESS = 'offline_access';

/** Split a scope string into its distinct scope tokens, in order (RFC 6749 section 3.3). */
export function scopeList(scope: string | undefined): string[] {
  if (!scope) return [];
  return [...new Set(scope.split(' ').filter((s) => s !== ''))];
}

function joinScopes(scopes: readonly string[]): string | undefined {
  return scopes.length === 0 ? undefined : scopes.join(' ');
}

/**
 * MCP "Scope Selection Strategy", for the initial authorization: 1. the `scope` of the 401's
 * WWW-Authenticate challenge, if provided (authoritative for the current operation); 2. else all
 * of the PRM's `scopes_supported`; 3. else omit `scope`. The AS's `scopes_supported` plays no
 * part in this choice (accepted so callers can pass what they have; offline_access is added by
 * withOfflineAccess).
 */
export function selectScope(input: {
  challengeScope?: string | undefined;
  resourceScopesSupported?: readonly string[] | undefined;
  asScopesSupported?: readonly string[] | undefined;
}): string | undefined {
  const fromChallenge = joinScopes(scopeList(input.challengeScope));
  if (fromChallenge !== undefined) return fromChallenge;
  if (input.resourceScopesSupported !== undefined) {
    return joinScopes(scopeList(input.resourceScopesSupported.join(' ')));
  }
  return undefined;
}

/**
 * MCP "Refresh Tokens" (SEP-2207): a client MAY add `offline_access` to the scope of the
 * authorization and token requests when the AS metadata lists it in `scopes_supported`; asking for
 * it when the AS does not list it is requesting an unsupported scope (conformance
 * `auth/offline-access-not-supported`), so it is then REMOVED even if a server's challenge or PRM
 * named it (servers SHOULD NOT). When the scope is omitted altogether it stays omitted: a lone
 * `offline_access` would replace the AS's default scope rather than add to it.
 */
export function withOfflineAccess(
  scope: string | undefined,
  asScopesSupported: readonly string[] | undefined,
): string | undefined {
  const scopes = scopeList(scope);
  if (scopes.length === 0) return undefined;
  const supported = asScopesSupported?.includes(OFFLINE_ACCESS) === true;
  const rest = scopes.filter((s) => s !== OFFLINE_ACCESS);
  return joinScopes(supported ? [...rest, OFFLINE_ACCESS] : rest);
}

/**
 * MCP "Step-Up Authorization Flow" step 2: the union of the previously requested (or granted)
 * scopes and the challenge's, so re-authorizing never loses a permission. Order: `a`'s, then the
 * new ones of `b`. Undefined when both are empty.
 */
export function unionScopes(a: string | undefined, b: string | undefined): string | undefined {
  return joinScopes(scopeList(`${a ?? ''} ${b ?? ''}`));
}

/**
 * Does a grant with scope `granted` cover `wanted`? An omitted `granted` means the AS granted what
 * was requested (RFC 6749 section 5.1); an omitted `wanted` is covered by anything.
 * `offline_access` is about refresh tokens, not the resource, so it is not required to be echoed.
 */
export function scopeCovers(granted: string | undefined, wanted: string | undefined): boolean {
  if (granted === undefined) return true;
  const have = new Set(scopeList(granted));
  return scopeList(wanted).every((s) => s === OFFLINE_ACCESS || have.has(s));
}
