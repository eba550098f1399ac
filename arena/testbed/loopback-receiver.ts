/**
 * A minimal loopback redirect-URI listener on 127.0.0.1:0 that captures the authorization
 * response (code, state, iss or error) of hand-driven flows.
 *
 * For: tests and the arena's baseline clients that drive the flow without authkeep.
 * Not for: authkeep itself (it has its own, stricter callback), state checking (the caller does).
 * The captured parameters include the code: never log them.
 */
import { createServer } from 'node:http';

import { closeServer, listenEphemeral, sendText } from './http-util.js';

export interface LoopbackReceiver {
  /** e.g. http://127.0.0.1:PORT/callback */
  redirectUri: string;
  /** Resolves with the query of the first request to the callback path. */
  waitForCallback(timeoutMs?: number): Promise<URLSearchParams>;
  close(): Promise<void>;
}

export async function startLoopbackReceiver(options: { path?: string } = {}): Promise<LoopbackReceiver> {
  const path = options.path ?? '/callback';
  let resolveCallback!: (params: URLSearchParams) => void;
  const received = new Promise<URLSearchParams>((resolve) => {
    resolveCallback = resolve;
  });
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (url.pathname !== path) return sendText(res, 404, 'not found');
    resolveCallback(url.searchParams);
    sendText(res, 200, url.searchParams.has('error') ? 'authorization failed' : 'authorization complete');
  });
  const origin = await listenEphemeral(server);
  return {
    redirectUri: `${origin}${path}`,
    waitForCallback: async (timeoutMs = 10_000) => {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('no authorization response')), timeoutMs);
      });
      try {
        return await Promise.race([received, timeout]);
      } finally {
        clearTimeout(timer);
      }
    },
    close: () => closeServer(server),
  };
}
