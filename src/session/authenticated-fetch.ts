/**
 * authenticated-fetch: a `fetch` for one MCP server that adds the access token (Bearer, or DPoP:
 * `Authorization: DPoP` and a fresh proof per request, RFC 9449 section 7, signed by oauth4webapi,
 * one retry when the server asks for its nonce, section 9), answers a 401 by
 * parsing the challenge and getting another token once (adopting another process's or refreshing),
 * and a 403 `insufficient_scope` by re-authorizing with the union of the demanded (first) and
 * granted scopes, a bounded number of times (MCP authorization spec, "Scope Challenge Handling",
 * "Step-Up Authorization Flow" (SEP-2350); RFC 6750 section 3.1).
 *
 * A server is not trusted to drive loops: step-ups go through the keeper's sign-in gate (one at a
 * time, a cool-down after a failure, a per-server budget), and when a fresh token is refused too,
 * refreshing after a 401 (which spends and rotates the refresh token) and rediscovering back off
 * per server (RefusalBackoff): meanwhile the caller sees the server's 401 as it is.
 *
 * The token stays on the server's origin: a URL outside it is refused before anything is sent
 * (`origin_mismatch`), and a redirect is followed only within it (origin-bound-fetch.ts); a
 * redirect elsewhere reaches the caller as the 3xx it is.
 *
 * Not for: deciding when to refresh (token-manager.ts) or running a sign-in (sign-in.ts).
 */
import {
  allowInsecureRequests,
  type CustomFetchOptions,
  customFetch,
  type DPoPHandle,
  isDPoPNonceError,
  type ProtectedResourceRequestBody,
  protectedResourceRequest,
  WWWAuthenticateChallengeError,
} from 'oauth4webapi';
import { AuthkeepError, NeedsAuthError } from '../errors.js';
import type { DpopKey } from '../oauth/dpop.js';
import { unionScopes } from '../oauth/scope.js';
import { type AuthChallenge, authChallengeFromResponse } from '../oauth/www-authenticate.js';
import { fetchWithinOrigin, requireServerOrigin } from './origin-bound-fetch.js';
import type { Credential } from './token-manager.js';

export interface AuthenticatedFetchDeps {
  serverUrl: string;
  getCredential: () => Promise<Credential>;
  recoverFromRejection: (rejected: string) => Promise<Credential>;
  /** A token other than `rejected` that another process stored, if any (no refresh, no lock). */
  adoptNewer?: (rejected: string) => Promise<Credential | undefined>;
  /** The DPoP handle of a stored key (RFC 9449): signs the proofs, remembers the server's nonce. */
  dpopHandle: (key: DpopKey) => Promise<DPoPHandle>;
  /** Interactive re-authorization with `scope`; resolves when new tokens are stored. */
  stepUp: (scope: string) => Promise<void>;
  /** The scope of the current grant, if known. */
  grantedScope: () => Promise<string | undefined>;
  maxStepUps: number;
  fetch: typeof fetch;
  /**
   * The server refused a token and no other one helped (still 401 after a fresh token, or none to
   * be had): find out whether it moved to another authorization server, starting from the 401's
   * challenge (throws NeedsAuthError `issuer_changed` if so).
   */
  checkAuthorizationServer?: (challenge: AuthChallenge | undefined) => Promise<void>;
  /** The server's refusals of fresh tokens (shared by every fetch of that server). */
  refusals?: RefusalBackoff;
}

/**
 * After a server refused a token that was just refreshed for it, the next refresh-after-401 (and
 * rediscovery) for that server waits: 10 s, doubling per further refusal, at most 10 minutes. Any
 * answer other than 401 ends the back-off.
 */
export class RefusalBackoff {
  static readonly FIRST_MS = 10_000;
  static readonly MAX_MS = 10 * 60_000;
  private delayMs = 0;
  private until = 0;

  constructor(private readonly now: () => number = Date.now) {}

  /** May a 401 be answered with a refresh now? */
  allows(): boolean {
    return this.now() >= this.until;
  }

  /** The server refused a fresh token too. */
  refused(): void {
    this.delayMs = Math.min(RefusalBackoff.MAX_MS, Math.max(RefusalBackoff.FIRST_MS, this.delayMs * 2));
    this.until = this.now() + this.delayMs;
  }

  /** The server accepted a token. */
  accepted(): void {
    this.delayMs = 0;
    this.until = 0;
  }
}

export function createAuthenticatedFetch(deps: AuthenticatedFetchDeps): typeof fetch {
  const sameOriginFetch = fetchWithinOrigin(deps.fetch);
  const authenticatedFetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    // Buffer a Request body once so the request can be replayed after a refresh or step-up.
    const request = input instanceof Request ? input : undefined;
    const url = requireServerOrigin(input instanceof Request ? input.url : String(input), deps.serverUrl).href;
    const body = init?.body ?? (request?.body ? await request.arrayBuffer() : undefined);
    const baseHeaders = new Headers(request?.headers);
    new Headers(init?.headers).forEach((value, key) => {
      baseHeaders.set(key, value);
    });
    const method = init?.method ?? request?.method ?? 'GET';
    const send = async (credential: Credential): Promise<Response> => {
      const headers = new Headers(baseHeaders);
      if (credential.tokenType === 'DPoP' && credential.dpop) {
        const handle = await deps.dpopHandle(credential.dpop);
        return sendWithProof(sameOriginFetch, url, method, headers, body, init, credential.accessToken, handle);
      }
      headers.set('authorization', `Bearer ${credential.accessToken}`);
      return sameOriginFetch(url, { ...init, method, headers, body: body ?? null });
    };

    let credential = await deps.getCredential();
    let token = credential.accessToken;
    let response = await send(credential);
    let recovered = false;
    let refreshed = false;
    let stepUps = 0;
    for (;;) {
      if (response.status !== 401) deps.refusals?.accepted();
      if (response.status !== 401 && response.status !== 403) return response;
      const challenge = safeChallenge(response, credential.tokenType === 'DPoP' ? 'dpop' : 'bearer');
      if (challenge?.error === 'insufficient_scope') {
        // MCP "Step-Up Authorization Flow" (SEP-2350): re-authorize with the union of the
        // challenge's scopes (first: they are what this request needs) and those already granted
        // (the challenge need not repeat them), a bounded number of times.
        await response.body?.cancel();
        if (stepUps >= deps.maxStepUps) {
          throw new AuthkeepError(
            'step_up_exhausted',
            `${deps.serverUrl} still answers ${response.status} insufficient_scope after ${stepUps} re-authorization(s)`,
            { field: 'scope', detail: { demanded: challenge.scope } },
          );
        }
        stepUps++;
        await deps.stepUp(unionScopes(challenge.scope, await deps.grantedScope()) ?? '');
        credential = await deps.getCredential();
      } else if (response.status === 401 && !recovered) {
        // RFC 6750 section 3.1 invalid_token, a bare 401 or an unreadable challenge: another
        // token once (adopting another process's, else refreshing), then let the caller see it.
        // While the server's refusals of fresh tokens are backed off: only a token another
        // process stored meanwhile, else the server's 401 as it is.
        recovered = true;
        if (deps.refusals?.allows() === false) {
          const newer = await deps.adoptNewer?.(token);
          if (newer === undefined) return response;
          await response.body?.cancel();
          credential = newer;
        } else {
          await response.body?.cancel();
          refreshed = true;
          credential = await recoverOrExplain(deps, token, challenge);
        }
      } else {
        // Still 401 with a fresh token: back off, and throw needs-auth issuer_changed if the
        // server moved to another AS; otherwise the caller sees the server's own answer.
        if (response.status === 401 && refreshed) {
          deps.refusals?.refused();
          await deps.checkAuthorizationServer?.(challenge);
        }
        return response;
      }
      token = credential.accessToken;
      response = await send(credential);
    }
  };
  return authenticatedFetch as typeof fetch;
}

/**
 * Another token after the server refused `token`. When none can be had (no refresh token, the
 * refresh refused), the server may have moved to another authorization server (SEP-2352): then
 * the needs-auth reason is `issuer_changed`, naming both issuers, so the sign-in that follows
 * registers at the new one; otherwise the recovery's own reason.
 */
async function recoverOrExplain(
  deps: AuthenticatedFetchDeps,
  token: string,
  challenge: AuthChallenge | undefined,
): Promise<Credential> {
  try {
    return await deps.recoverFromRejection(token);
  } catch (err) {
    if (err instanceof NeedsAuthError) await deps.checkAuthorizationServer?.(challenge);
    throw err;
  }
}

/**
 * The challenge of a 401/403 (the scheme the token was presented with first: a DPoP-bound token's
 * refusal is a `DPoP` challenge, RFC 9449 section 7.1), or undefined when absent or malformed
 * (never throws).
 */
function safeChallenge(response: Response, presented: 'bearer' | 'dpop'): AuthChallenge | undefined {
  try {
    return authChallengeFromResponse(response, presented);
  } catch {
    return undefined;
  }
}

/**
 * RFC 9449 section 7.1: a DPoP-bound token as `Authorization: DPoP <token>` with a proof of
 * possession for this request (htm, htu, ath; a fresh jti), built by oauth4webapi's
 * protectedResourceRequest. Section 9: a 401 `use_dpop_nonce` (isDPoPNonceError) is sent once
 * more, with a new proof carrying the `DPoP-Nonce` the server just gave (the handle keeps it, per
 * origin, for the next requests too). Any other challenge is returned as the server's response,
 * for the caller's 401/403 handling. The URL's scheme was checked where the server was discovered.
 */
export async function sendWithProof(
  fetchImpl: typeof fetch,
  url: string,
  method: string,
  headers: Headers,
  body: BodyInit | ArrayBuffer | undefined,
  init: RequestInit | undefined,
  accessToken: string,
  handle: DPoPHandle,
): Promise<Response> {
  const payload = await proofRequestBody(body);
  headers.delete('authorization');
  headers.delete('dpop');
  const ownUserAgent = headers.has('user-agent');
  const options = {
    DPoP: handle,
    [allowInsecureRequests]: true,
    [customFetch]: (target: string, request: CustomFetchOptions<string, ProtectedResourceRequestBody>) => {
      const sent = { ...request.headers };
      // oauth4webapi names itself as the User-Agent; a request keeps its own (or none).
      if (!ownUserAgent) delete sent['user-agent'];
      return fetchImpl(target, { ...init, ...(request as RequestInit), headers: sent });
    },
    ...(init?.signal ? { signal: init.signal } : {}),
  };
  for (let attempt = 0; ; attempt++) {
    try {
      return await protectedResourceRequest(accessToken, method, new URL(url), headers, payload, options);
    } catch (err) {
      if (!(err instanceof WWWAuthenticateChallengeError)) throw err;
      if (attempt === 0 && isDPoPNonceError(err)) {
        await err.response.body?.cancel().catch(() => undefined);
        continue;
      }
      return err.response;
    }
  }
}

type ProofRequestBody = string | ArrayBuffer | Uint8Array | URLSearchParams | ReadableStream | null;

/** A request body in a form protectedResourceRequest sends (a Blob or FormData read into bytes). */
async function proofRequestBody(body: BodyInit | ArrayBuffer | undefined): Promise<ProofRequestBody> {
  if (body === undefined || body === null) return null;
  if (typeof body === 'string' || body instanceof ArrayBuffer || body instanceof URLSearchParams) return body;
  if (body instanceof ReadableStream) return body;
  if (ArrayBuffer.isView(body)) return new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
  return new Response(body).arrayBuffer();
}
