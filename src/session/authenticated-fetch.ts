/**
 * authenticated-fetch: a `fetch` for one MCP server that adds the bearer token, answers a 401 by
 * parsing the challenge and getting another token once (adopting another process's or refreshing),
 * and a 403 `insufficient_scope` by re-authorizing with the union of the granted and demanded
 * scopes, a bounded number of times (MCP authorization spec, "Scope Challenge Handling";
 * RFC 6750 section 3.1).
 *
 * Not for: deciding when to refresh (token-manager.ts) or running a sign-in (sign-in.ts).
 */
import { AuthkeepError } from '../errors.js';
import { unionScopes } from '../oauth/scope.js';
import { bearerChallengeFromResponse } from '../oauth/www-authenticate.js';

export interface AuthenticatedFetchDeps {
  serverUrl: string;
  getAccessToken: () => Promise<string>;
  recoverFromRejection: (rejected: string) => Promise<string>;
  /** Interactive re-authorization with `scope`; resolves when new tokens are stored. */
  stepUp: (scope: string) => Promise<void>;
  /** The scope of the current grant, if known. */
  grantedScope: () => Promise<string | undefined>;
  maxStepUps: number;
  fetch: typeof fetch;
  /**
   * The server still answers 401 after a fresh token: find out whether it moved to another
   * authorization server (throws NeedsAuthError `issuer_changed` if so).
   */
  checkAuthorizationServer?: () => Promise<void>;
}

export function createAuthenticatedFetch(deps: AuthenticatedFetchDeps): typeof fetch {
  const authenticatedFetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    // Buffer a Request body once so the request can be replayed after a refresh or step-up.
    const request = input instanceof Request ? input : undefined;
    const url = request ? request.url : input instanceof URL ? input.href : input;
    const body = init?.body ?? (request?.body ? await request.arrayBuffer() : undefined);
    const baseHeaders = new Headers(request?.headers);
    new Headers(init?.headers).forEach((value, key) => {
      baseHeaders.set(key, value);
    });
    const send = (token: string): Promise<Response> => {
      const headers = new Headers(baseHeaders);
      headers.set('authorization', `Bearer ${token}`);
      return deps.fetch(url, {
        ...init,
        method: init?.method ?? request?.method ?? 'GET',
        headers,
        body: body ?? null,
      });
    };

    let token = await deps.getAccessToken();
    let response = await send(token);
    let recovered = false;
    let stepUps = 0;
    for (;;) {
      if (response.status !== 401 && response.status !== 403) return response;
      const challenge = safeBearerChallenge(response);
      if (challenge?.error === 'insufficient_scope') {
        // MCP "Scope Challenge Handling": re-authorize with granted + demanded scopes, bounded.
        await response.body?.cancel();
        if (stepUps >= deps.maxStepUps) {
          throw new AuthkeepError(
            'step_up_exhausted',
            `${deps.serverUrl} still answers ${response.status} insufficient_scope after ${stepUps} re-authorization(s)`,
            { field: 'scope', detail: { demanded: challenge.scope } },
          );
        }
        stepUps++;
        await deps.stepUp(unionScopes(await deps.grantedScope(), challenge.scope) ?? '');
        token = await deps.getAccessToken();
      } else if (response.status === 401 && !recovered) {
        // RFC 6750 section 3.1 invalid_token, a bare 401 or an unreadable challenge: another
        // token once (adopting another process's, else refreshing), then let the caller see it.
        recovered = true;
        await response.body?.cancel();
        token = await deps.recoverFromRejection(token);
      } else {
        // Still 401 with a fresh token: throws needs-auth issuer_changed if the server moved to
        // another AS; otherwise the caller sees the server's own answer.
        if (response.status === 401) await deps.checkAuthorizationServer?.();
        return response;
      }
      response = await send(token);
    }
  };
  return authenticatedFetch as typeof fetch;
}

/** The Bearer challenge of a 401/403, or undefined when absent or malformed (never throws). */
function safeBearerChallenge(response: Response): ReturnType<typeof bearerChallengeFromResponse> {
  try {
    return bearerChallengeFromResponse(response);
  } catch {
    return undefined;
  }
}
