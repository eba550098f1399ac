/**
 * The client the official MCP conformance suite runs (`@modelcontextprotocol/conformance client
 * --command "npm run -s conformance:client"`): the suite starts a scenario's MCP server and
 * authorization server, then runs this with the server URL as the LAST argument, and judges the
 * OAuth traffic it sees. See conformance/SCENARIOS.md for what each scenario checks.
 *
 * What it does, using only authkeep's public API:
 *   1. an AuthKeeper with a fresh temporary `home` (no state shared between runs),
 *      `allowInsecureLoopback` (the suite serves plain http on localhost), pre-registered client
 *      credentials when the suite passes them in MCP_CONFORMANCE_CONTEXT, and the suite's client ID
 *      metadata document URL (used only where the AS advertises CIMD support);
 *   2. the headless authorize step the suite expects: GET the authorize URL with redirect
 *      'manual', read the Location header (the suite's AS answers 302 straight to our redirect_uri
 *      with code and state), then GET that Location, which is authkeep's own loopback callback, so
 *      the sign-in completes exactly as it would after a browser;
 *   3. an MCP SDK Client over StreamableHTTPClientTransport with `fetch: keeper.fetch(url)`;
 *   4. tools/list, then tools/call of the first tool (the auth scenarios serve `test-tool`; the
 *      step-up scenario demands more scope for tools/call, which keeper.fetch handles);
 *   5. whenever a step fails with NeedsAuthError (nothing stored yet; the server moved to another
 *      authorization server, `issuer_changed`), `keeper.login(url)` (fresh discovery every time)
 *      and that step once more (connecting: with a fresh connection), as an application would.
 *
 * Exit 0 on success; otherwise 1 with ONE line on stderr: `authkeep-conformance: FAIL <reason>`.
 * Some scenarios expect a failure (auth/resource-mismatch, auth/scope-retry-limit): the suite
 * then judges only the traffic, not this exit code.
 *
 * Environment:
 *   MCP_CONFORMANCE_SCENARIO   set by the suite: the scenario name (only logged).
 *   MCP_CONFORMANCE_CONTEXT    set by the suite for some scenarios: JSON {name, client_id,
 *                              client_secret, ...} (auth/pre-registration); the machine-identity
 *                              scenarios add private_key_pem (client-credentials-jwt) or valid_jwt
 *                              (wif-jwt-bearer), and configure a machine grant (machineGrantsFor).
 *   AUTHKEEP_CONFORMANCE_CIMD_URL  override the client ID metadata document URL ('' = none).
 *   AUTHKEEP_CONFORMANCE_DEBUG=1   authkeep's structured log (never secrets) on stderr.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  AuthKeeper,
  isAuthkeepError,
  type MachineGrantOptions,
  NeedsAuthError,
  type StaticClient,
  VERSION,
} from '../src/index.js';

/** The URL the suite's auth/basic-cimd scenario expects as client_id (its AS never fetches it). */
const SUITE_CIMD_URL = 'https://conformance-test.local/client-metadata.json';
const HTTP_TIMEOUT_MS = 10_000;
const LOGIN_TIMEOUT_MS = 20_000; // below the suite's 30 s client timeout, so we fail with a reason

interface SuiteContext {
  name?: string;
  client_id?: string;
  client_secret?: string;
  [key: string]: unknown;
}

function debug(message: string): void {
  if (process.env.AUTHKEEP_CONFORMANCE_DEBUG) process.stderr.write(`[conformance-client] ${message}\n`);
}

function fail(reason: string): never {
  process.stderr.write(`authkeep-conformance: FAIL ${reason.replace(/\s+/g, ' ').trim()}\n`);
  process.exit(1);
}

function readContext(): SuiteContext {
  const raw = process.env.MCP_CONFORMANCE_CONTEXT;
  if (!raw) return {};
  try {
    const parsed: unknown = JSON.parse(raw);
    return parsed && typeof parsed === 'object' ? (parsed as SuiteContext) : {};
  } catch {
    return fail('MCP_CONFORMANCE_CONTEXT is not JSON');
  }
}

/**
 * The headless "browser": the authorization endpoint answers with a redirect to our
 * redirect_uri; follow exactly that one hop, by hand, to authkeep's loopback callback.
 */
async function headlessAuthorize(authorizeUrl: string): Promise<void> {
  debug(`authorize: GET ${authorizeUrl}`);
  const response = await fetch(authorizeUrl, { redirect: 'manual', signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) });
  await response.body?.cancel();
  const location = response.headers.get('location');
  if (response.status < 300 || response.status > 399 || !location) {
    throw new Error(
      `authorization endpoint answered HTTP ${response.status} without a redirect (Location ${location ? 'present' : 'absent'})`,
    );
  }
  const callbackUrl = new URL(location, authorizeUrl);
  debug(`authorize: redirected to ${callbackUrl.origin}${callbackUrl.pathname}`);
  const callback = await fetch(callbackUrl, { redirect: 'manual', signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) });
  await callback.body?.cancel();
  debug(`authorize: callback answered HTTP ${callback.status}`);
}

/** NeedsAuthError anywhere in the cause chain (the SDK may wrap what the fetch threw). */
function needsAuth(err: unknown): NeedsAuthError | undefined {
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof NeedsAuthError) return e;
  }
  return undefined;
}

function describe(err: unknown): string {
  if (isAuthkeepError(err)) return `${err.code}${err.field ? ` [${err.field}]` : ''}: ${err.message}`;
  if (err instanceof Error) {
    const cause = err.cause instanceof Error ? ` (cause: ${err.cause.message})` : '';
    return `${err.name}: ${err.message}${cause}`;
  }
  return String(err);
}

const home = mkdtempSync(join(tmpdir(), 'authkeep-conformance-'));
process.on('exit', () => rmSync(home, { recursive: true, force: true }));

/** A secret the suite handed over, put where a machine grant reads it: a 0600 file in the home. */
function secretFile(name: string, value: string): { file: string } {
  const file = join(home, name);
  writeFileSync(file, value, { mode: 0o600 });
  return { file };
}

/**
 * The machine identity an operator would configure for this scenario (`authkeep login
 * --client-credentials ...`): the extension scenarios test a client set up for a grant without a
 * browser, which nothing in the server's metadata selects. The secrets go to files, as the CLI
 * would be given them.
 */
function machineGrantsFor(
  scenario: string,
  serverUrl: string,
  context: SuiteContext,
): Record<string, MachineGrantOptions> | undefined {
  const clientId = typeof context.client_id === 'string' ? context.client_id : undefined;
  if (!clientId) return undefined;
  if (typeof context.private_key_pem === 'string') {
    // auth/client-credentials-jwt: private_key_jwt (RFC 7523 section 2.2).
    return {
      [serverUrl]: {
        type: 'client_credentials',
        clientId,
        privateKey: secretFile('client-key.pem', context.private_key_pem),
      },
    };
  }
  if (typeof context.valid_jwt === 'string') {
    // auth/wif-jwt-bearer: the workload's token, as a platform would mount it.
    return {
      [serverUrl]: { type: 'jwt_bearer', clientId, assertion: secretFile('workload-token', context.valid_jwt) },
    };
  }
  if (
    typeof context.idp_id_token === 'string' &&
    typeof context.idp_issuer === 'string' &&
    typeof context.idp_client_id === 'string' &&
    typeof context.client_secret === 'string'
  ) {
    // auth/enterprise-managed-authorization (SEP-990): the user already signed in to the IdP;
    // its ID token is exchanged there for an ID-JAG, redeemed at the MCP authorization server.
    return {
      [serverUrl]: {
        type: 'id_jag',
        clientId,
        clientSecret: secretFile('client-secret', context.client_secret),
        idToken: secretFile('id-token', context.idp_id_token),
        idp: {
          issuer: context.idp_issuer,
          clientId: context.idp_client_id,
          ...(typeof context.idp_token_endpoint === 'string' ? { tokenEndpoint: context.idp_token_endpoint } : {}),
        },
      },
    };
  }
  if (scenario === 'auth/client-credentials-basic' && typeof context.client_secret === 'string') {
    return {
      [serverUrl]: {
        type: 'client_credentials',
        clientId,
        clientSecret: secretFile('client-secret', context.client_secret),
      },
    };
  }
  return undefined;
}

async function main(): Promise<void> {
  const serverUrl = process.argv[process.argv.length - 1];
  if (!serverUrl || process.argv.length < 3 || !/^https?:\/\//.test(serverUrl)) {
    fail('usage: node --import tsx conformance/client.ts <server-url>');
  }
  const scenario = process.env.MCP_CONFORMANCE_SCENARIO ?? '(none)';
  const context = readContext();
  debug(`scenario ${scenario}, server ${serverUrl}, context keys: ${Object.keys(context).join(',') || 'none'}`);

  const staticClients: Record<string, StaticClient> = {};
  if (typeof context.client_id === 'string') {
    // Pre-registered credentials, keyed by the MCP server URL (known before discovery). The
    // token endpoint auth method is left to authkeep (from the AS's metadata).
    staticClients[serverUrl] = {
      clientId: context.client_id,
      ...(typeof context.client_secret === 'string' ? { clientSecret: context.client_secret } : {}),
    };
  }

  const machineGrants = machineGrantsFor(scenario, serverUrl, context);

  // Empty AUTHKEEP_CONFORMANCE_CIMD_URL: no CIMD, so DCR is used even where the AS offers CIMD.
  const cimdUrl = process.env.AUTHKEEP_CONFORMANCE_CIMD_URL ?? SUITE_CIMD_URL;

  const keeper = new AuthKeeper({
    home,
    clientName: 'authkeep-conformance',
    ...(cimdUrl ? { clientMetadataUrl: cimdUrl } : {}),
    ...(Object.keys(staticClients).length ? { staticClients } : {}),
    ...(machineGrants ? { machineGrants } : {}),
    openAuthorizationUrl: headlessAuthorize,
    callback: { host: '127.0.0.1' },
    allowInsecureLoopback: true,
    loginTimeoutMs: LOGIN_TIMEOUT_MS,
    httpTimeoutMs: HTTP_TIMEOUT_MS,
    ...(process.env.AUTHKEEP_CONFORMANCE_DEBUG
      ? { log: (event) => process.stderr.write(`[authkeep] ${JSON.stringify(event)}\n`) }
      : {}),
  });

  const connect = async (): Promise<Client> => {
    const client = new Client({ name: 'authkeep-conformance', version: VERSION });
    const transport = new StreamableHTTPClientTransport(new URL(serverUrl), { fetch: keeper.fetch(serverUrl) });
    await client.connect(transport);
    return client;
  };

  /** `step`, and after a NeedsAuthError one sign-in and `step` once more. */
  const signedIn = async <T>(what: string, step: () => Promise<T>): Promise<T> => {
    try {
      return await step();
    } catch (err) {
      const missing = needsAuth(err);
      if (!missing) return fail(`${what}: ${describe(err)}`);
      debug(`${what}: needs-auth (${missing.reason}); signing in`);
      try {
        await keeper.login(serverUrl);
      } catch (loginErr) {
        return fail(`login: ${describe(loginErr)}`);
      }
      try {
        return await step();
      } catch (retryErr) {
        return fail(`${what} after login: ${describe(retryErr)}`);
      }
    }
  };

  const client = await signedIn('connect', connect);
  try {
    const { tools } = await signedIn('tools/list', () => client.listTools());
    debug(`tools/list: ${tools.map((t) => t.name).join(', ') || '(none)'}`);
    const tool = tools[0];
    if (tool) {
      const result = await signedIn(`tools/call ${tool.name}`, () =>
        client.callTool({ name: tool.name, arguments: {} }),
      );
      if (result.isError) fail(`tools/call ${tool.name} returned isError`);
      debug(`tools/call ${tool.name}: ok`);
    }
  } finally {
    await client.close().catch(() => undefined);
  }
  debug('done');
}

main().then(
  () => process.exit(0),
  (err: unknown) => fail(`unexpected: ${describe(err)}`),
);
