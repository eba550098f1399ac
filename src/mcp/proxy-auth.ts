/**
 * proxy-auth: which fetch the proxy's transports use. With stored credentials, `keeper.fetch`
 * (single-flight refresh, one retry after a 401, step-up); a server that does not ask for OAuth
 * (the unauthenticated probe gets no 401) is spoken to without it until it answers 401; an
 * `Authorization` given with `--header` turns authkeep's sign-in off. When only a sign-in helps,
 * keeper.login() runs once (SignInGate) and the request that needed it waits. Every request, with
 * or without a token, carries the user's `--header` values: it goes only to the server's origin
 * and follows redirects only within it (origin-bound-fetch.ts), whatever the transport asks.
 *
 * Not for: the transports (proxy-bridge.ts) or the OAuth steps (session/, oauth/).
 */
import { NeedsAuthError, type NeedsAuthReason, unreachableParty } from '../errors.js';
import type { HttpOptions } from '../oauth/http.js';
import { probeServer } from '../oauth/protected-resource.js';
import { fetchWithinOrigin, requireServerOrigin } from '../session/origin-bound-fetch.js';
import type { SessionKeeper } from '../session/session-keeper.js';
import { CURABLE, SignInGate } from '../session/sign-in-gate.js';
import { describeError } from './proxy-errors.js';
import type { ProxyLog } from './proxy-log.js';

export class ProxyAuth {
  /** 'oauth': keeper.fetch; 'none': the server did not ask (yet); 'headers': the user's Authorization. */
  private mode: 'oauth' | 'none' | 'headers' = 'none';
  private readonly keeperFetch: typeof fetch;
  /** Without a token: the same base fetch, bound to the server's origin like keeper.fetch. */
  private readonly plainFetch: typeof fetch;
  private readonly gate: SignInGate;
  private reason: string = 'no_credentials';

  constructor(
    private readonly keeper: SessionKeeper,
    private readonly url: string,
    private readonly headers: Record<string, string>,
    private readonly log: ProxyLog,
    private readonly http: HttpOptions,
    scope: string | undefined,
    /** 'auto' where no browser can open: the device grant when the AS offers it (proxy-sign-in.ts). */
    mode: 'browser' | 'auto' = 'browser',
    /** What requests to the server are sent with (proxy-http.ts). */
    base?: typeof fetch,
  ) {
    this.keeperFetch = keeper.fetch(url, base);
    this.plainFetch = fetchWithinOrigin(base ?? ((input, init) => fetch(input, init)));
    this.gate = new SignInGate(async () => {
      this.log.info(`authorization needed (${this.reason}): signing in to ${this.url}`);
      try {
        const status = await this.keeper.login(this.url, {
          ...(scope ? { scope } : {}),
          ...(mode === 'auto' ? { mode } : {}),
        });
        this.log.info(`signed in (issuer ${status.issuer ?? '?'}, client ${status.clientId ?? '?'})`);
      } catch (err) {
        this.log.error(`sign-in failed: ${describeError(err)}`);
        throw err;
      }
    });
  }

  /** Before connecting: make sure we hold a token, signing in if the server needs it. */
  async prepare(): Promise<void> {
    if (Object.keys(this.headers).some((name) => name.toLowerCase() === 'authorization')) {
      this.mode = 'headers';
      this.log.info('an Authorization header was given with --header: authkeep does not sign in for this server');
      return;
    }
    try {
      await this.keeper.getAccessToken(this.url);
      this.mode = 'oauth';
      this.log.info('using stored credentials');
      return;
    } catch (err) {
      if (!(err instanceof NeedsAuthError)) throw err;
      if (err.reason === 'no_credentials' && !(await this.serverAsksForAuth())) {
        this.log.info('the server did not ask for authorization; connecting without OAuth');
        return;
      }
      if (err.reason === 'as_unreachable') {
        // The access token has expired and the AS cannot be reached now: start anyway; every request
        // tries again (and the client gets an error, not a hang, while the AS is down).
        this.log.warn(`the authorization server is unreachable (${err.message}); starting, requests will retry`);
        this.mode = 'oauth';
        return;
      }
      if (!CURABLE.has(err.reason)) throw err;
      await this.signIn(err.reason);
      this.mode = 'oauth';
    }
  }

  /**
   * Does the server answer an unauthenticated request with 401? The one probe (POST like an
   * initialize, then GET like an SSE client), with the user's --header values.
   */
  private async serverAsksForAuth(): Promise<boolean> {
    const probe = await probeServer(this.url, { ...this.http, headers: this.headers, sseFallback: true }).catch(
      (err: unknown) => {
        throw unreachableParty(err, { serverUrl: this.url });
      },
    );
    return probe.status === 401;
  }

  /** keeper.login(), one at a time; the request that needed it waits (see SignInGate). */
  signIn(reason: NeedsAuthReason | 'challenged'): Promise<void> {
    this.reason = reason;
    return this.gate.signIn();
  }

  /** The transports' fetch. Never throws for a curable needs-auth before one sign-in was tried. */
  readonly fetch: typeof fetch = async (input, init) => {
    if (this.mode === 'oauth') {
      try {
        return await this.keeperFetch(input, init);
      } catch (err) {
        if (!(err instanceof NeedsAuthError) || !CURABLE.has(err.reason)) throw err;
        await this.signIn(err.reason);
        return await this.keeperFetch(input, init);
      }
    }
    requireServerOrigin(input instanceof Request ? input.url : String(input), this.url);
    const response = await this.plainFetch(input, init);
    if (response.status !== 401 || this.mode !== 'none') return response;
    // The server asks for authorization after all (e.g. it did not at start-up): sign in, resend.
    await response.body?.cancel().catch(() => undefined);
    await this.signIn('challenged');
    this.mode = 'oauth';
    return await this.keeperFetch(input, init);
  };
}
