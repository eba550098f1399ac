/**
 * The `naive-v2` variant's sessions: @modelcontextprotocol/client 2.x's own client auth (`auth()`
 * inside its StreamableHTTPClientTransport with an `authProvider`), with the straightforward file
 * provider (naive-v2-provider.ts), as the 1.x `naive` variant does with the 1.x SDK. When the SDK
 * needs a browser sign-in, the provider opens the robot browser, the callback reaches this
 * process's listener, and the simulated user finishes it with `transport.finishAuth(params)` (2.x
 * takes the callback's whole query and checks its `iss`, RFC 9207) and reconnects; the call is
 * retried once after it.
 *
 * For: arena/session.ts. Not for: judging (the runner and the audit do that).
 */
import { Client, StreamableHTTPClientTransport, UnauthorizedError } from '@modelcontextprotocol/client';

import type { Pair, VariantContext } from '../session.js';
import { NaiveFileOAuthProviderV2 } from './naive-v2-provider.js';

export async function naiveV2Pairs(context: VariantContext): Promise<Pair[]> {
  const { config, emit, errorText, openBrowser } = context;
  return Promise.all(
    config.servers.map(async (server): Promise<Pair> => {
      const provider = new NaiveFileOAuthProviderV2({
        dir: config.storeDir,
        serverUrl: server.url,
        openBrowser,
        clientName: 'naive-mcp-client-v2',
      });
      await provider.start();
      let client: Client | undefined;
      let transport: StreamableHTTPClientTransport | undefined;

      const connect = async (): Promise<Client> => {
        transport = new StreamableHTTPClientTransport(new URL(server.url), { authProvider: provider });
        const fresh = new Client({ name: 'arena-naive-v2', version: '1.0.0' });
        await fresh.connect(transport, { timeout: config.callTimeoutMs });
        return fresh;
      };
      const dropClient = async (): Promise<void> => {
        const old = client;
        client = undefined;
        await old?.close().catch(() => {});
      };

      const call = async (): Promise<void> => {
        for (let attempt = 1; ; attempt++) {
          try {
            client ??= await connect();
            await client.callTool(
              { name: 'echo', arguments: { text: `s${config.session}` } },
              { timeout: config.callTimeoutMs },
            );
            emit({ type: 'call', t: Date.now(), server: server.index, ok: true });
            return;
          } catch (err) {
            if (err instanceof UnauthorizedError && attempt === 1 && transport) {
              // The SDK could not get a token without the user: the robot went through the AS's
              // pages and the callback is at our listener. Finish as the SDK documents it.
              emit({ type: 'needs_auth', t: Date.now(), server: server.index });
              const received = provider.callback.take();
              try {
                if (!received.params || !received.code)
                  throw new Error(
                    `no authorization code at the callback${received.error ? ` (${received.error})` : ''}`,
                  );
                await transport.finishAuth(received.params);
                emit({ type: 'login', t: Date.now(), server: server.index, ok: true });
              } catch (loginErr) {
                emit({ type: 'login', t: Date.now(), server: server.index, ok: false, error: errorText(loginErr) });
                await dropClient();
                emit({ type: 'call', t: Date.now(), server: server.index, ok: false, error: errorText(loginErr) });
                return;
              }
              await dropClient();
              continue;
            }
            if (!client) await dropClient();
            emit({ type: 'call', t: Date.now(), server: server.index, ok: false, error: errorText(err) });
            return;
          }
        }
      };

      return {
        serverIndex: server.index,
        url: server.url,
        call,
        close: async () => {
          await dropClient();
          await provider.callback.close();
        },
      };
    }),
  );
}
