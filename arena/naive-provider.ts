/**
 * The `naive` variant's OAuthClientProvider: the status quo, written the straightforward way the
 * @modelcontextprotocol/sdk docs and examples suggest (its InMemoryOAuthClientProvider, made
 * persistent the way file-backed providers such as mcp-remote's do it), so that every agent
 * session of the user shares the sign-in:
 *
 *   - one directory for all processes, files per server: `<hash>_client_info.json`,
 *     `<hash>_tokens.json`, `<hash>_code_verifier.txt`, each written by its own `writeFile`;
 *   - one code-verifier slot per server; no lock; no state parameter (the example has none);
 *   - `invalidateCredentials` deletes what the SDK says is invalid (the SDK calls it on
 *     invalid_grant / invalid_client and then retries);
 *   - `redirectToAuthorization` opens the browser (here: the robot) and the code arrives at this
 *     process's callback listener, as in the SDK's simpleOAuthClient example.
 *
 * The one concession to the arena: `application_type: 'native'`, so that the AS ignores the port
 * of a loopback redirect URI (RFC 8252 section 7.3) and a registration made by one process works
 * with another process's callback port. Without it, oidc-provider treats the client as `web` and
 * refuses every other process's redirect_uri, which would make the baseline fail for a reason the
 * field report does not describe.
 *
 * No deliberate bugs: everything that goes wrong for this provider follows from the design above
 * (separate non-atomic writes, a shared verifier slot, no cross-process coordination).
 *
 * Not for: anything but the arena's baseline.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, unlink, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';

import type { OAuthClientProvider } from '@modelcontextprotocol/sdk/client/auth.js';
import type {
  OAuthClientInformationMixed,
  OAuthClientMetadata,
  OAuthTokens,
} from '@modelcontextprotocol/sdk/shared/auth.js';

export interface NaiveProviderOptions {
  /** The shared credentials directory (one per user, shared by every process). */
  dir: string;
  serverUrl: string;
  /** Opens the authorization URL in "the browser". */
  openBrowser: (url: string) => Promise<void>;
  clientName?: string;
}

/** A callback listener on an ephemeral port that keeps the last authorization code it received. */
export class CallbackListener {
  private server: Server | undefined;
  private lastCode: string | undefined;
  private lastError: string | undefined;
  /** The whole query of the last callback (the v2 SDK's finishAuth takes it: code, iss, state). */
  private lastParams: URLSearchParams | undefined;
  port = 0;

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://localhost');
      if (url.pathname !== '/callback') {
        res.writeHead(404).end();
        return;
      }
      const code = url.searchParams.get('code');
      const error = url.searchParams.get('error');
      if (code) this.lastCode = code;
      if (error) this.lastError = error;
      if (code || error) this.lastParams = url.searchParams;
      res
        .writeHead(code ? 200 : 400, { 'content-type': 'text/html' })
        .end(code ? '<h1>Authorization Successful!</h1>' : '<h1>Authorization Failed</h1>');
    });
    await new Promise<void>((resolve) => this.server?.listen(0, resolve));
    this.port = (this.server.address() as AddressInfo).port;
  }

  /** The code received since the last take(), if any (and clears it). */
  take(): { code?: string; error?: string; params?: URLSearchParams } {
    const result = {
      ...(this.lastCode ? { code: this.lastCode } : {}),
      ...(this.lastError ? { error: this.lastError } : {}),
      ...(this.lastParams ? { params: this.lastParams } : {}),
    };
    this.lastCode = undefined;
    this.lastError = undefined;
    this.lastParams = undefined;
    return result;
  }

  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }
}

export class NaiveFileOAuthProvider implements OAuthClientProvider {
  readonly callback = new CallbackListener();
  private readonly base: string;

  constructor(private readonly options: NaiveProviderOptions) {
    const hash = createHash('sha256').update(options.serverUrl).digest('hex').slice(0, 16);
    this.base = path.join(options.dir, hash);
  }

  async start(): Promise<void> {
    await mkdir(this.options.dir, { recursive: true });
    await this.callback.start();
  }

  get redirectUrl(): string {
    return `http://localhost:${this.callback.port}/callback`;
  }

  get clientMetadata(): OAuthClientMetadata {
    return {
      client_name: this.options.clientName ?? 'naive-mcp-client',
      redirect_uris: [this.redirectUrl],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      application_type: 'native',
    } as OAuthClientMetadata;
  }

  async clientInformation(): Promise<OAuthClientInformationMixed | undefined> {
    return this.readJson<OAuthClientInformationMixed>('client_info.json');
  }

  async saveClientInformation(info: OAuthClientInformationMixed): Promise<void> {
    await writeFile(this.file('client_info.json'), JSON.stringify(info, null, 2));
  }

  async tokens(): Promise<OAuthTokens | undefined> {
    return this.readJson<OAuthTokens>('tokens.json');
  }

  async saveTokens(tokens: OAuthTokens): Promise<void> {
    await writeFile(this.file('tokens.json'), JSON.stringify(tokens, null, 2));
  }

  async redirectToAuthorization(authorizationUrl: URL): Promise<void> {
    await this.options.openBrowser(authorizationUrl.href);
  }

  async saveCodeVerifier(codeVerifier: string): Promise<void> {
    await writeFile(this.file('code_verifier.txt'), codeVerifier);
  }

  async codeVerifier(): Promise<string> {
    try {
      return await readFile(this.file('code_verifier.txt'), 'utf8');
    } catch {
      throw new Error('No code verifier saved');
    }
  }

  async invalidateCredentials(scope: 'all' | 'client' | 'tokens' | 'verifier' | 'discovery'): Promise<void> {
    const remove = async (name: string): Promise<void> => {
      await unlink(this.file(name)).catch(() => {});
    };
    if (scope === 'all' || scope === 'client') await remove('client_info.json');
    if (scope === 'all' || scope === 'tokens') await remove('tokens.json');
    if (scope === 'all' || scope === 'verifier') await remove('code_verifier.txt');
  }

  private file(name: string): string {
    return `${this.base}_${name}`;
  }

  private async readJson<T>(name: string): Promise<T | undefined> {
    try {
      return JSON.parse(await readFile(this.file(name), 'utf8')) as T;
    } catch {
      return undefined;
    }
  }
}
