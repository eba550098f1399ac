/**
 * paste-redirect: `login --no-browser`, for SSH sessions and machines without a browser. The user
 * opens the authorize URL on any machine; the AS redirects that browser to our loopback redirect
 * URI, which fails to load there; the user pastes that URL (carrying code, state and iss) back
 * here. We deliver it by a GET to our own loopback listener, so the pasted response goes through
 * exactly the same checks (path, state, then iss and code exchange) as a browser redirect would.
 *
 * Not for: validating the response (oauth/authorization-response.ts does, in the sign-in) or
 * opening browsers (session/browser.ts). The pasted URL holds a code: it is never echoed.
 */
import { createInterface } from 'node:readline';
import { displayText } from '../display-text.js';
import { AuthkeepError } from '../errors.js';
import type { Writer } from './deps.js';

export interface PasteRedirectDeps {
  stderr: Writer;
  stdin: NodeJS.ReadableStream;
  fetch: typeof fetch;
}

/** Lines of `input`, one per `next()`; `next()` rejects once the input has ended. */
export interface LineReader {
  next(): Promise<string>;
  close(): void;
}

/**
 * One reader for the whole prompt: a line typed (or pasted) ahead of the question is kept for the
 * next `next()`, not lost with a closed interface.
 */
export function lineReader(input: NodeJS.ReadableStream): LineReader {
  const rl = createInterface({ input, terminal: false });
  const lines: string[] = [];
  const waiting: Array<{ resolve(line: string): void; reject(err: Error): void }> = [];
  let ended = false;
  const closed = () => new AuthkeepError('authorization_denied', 'no redirect URL was pasted (stdin closed)');
  rl.on('line', (line) => {
    const waiter = waiting.shift();
    if (waiter) waiter.resolve(line);
    else lines.push(line);
  });
  rl.once('close', () => {
    ended = true;
    for (const waiter of waiting.splice(0)) waiter.reject(closed());
  });
  return {
    next() {
      const line = lines.shift();
      if (line !== undefined) return Promise.resolve(line);
      if (ended) return Promise.reject(closed());
      return new Promise((resolve, reject) => waiting.push({ resolve, reject }));
    },
    close: () => rl.close(),
  };
}

/**
 * Check that `pasted` is the redirect URI of this sign-in (same scheme, port and path; the loopback
 * host may be spelled 127.0.0.1 or localhost) and return the URL to GET on our listener.
 */
export function deliveryUrl(pasted: string, redirectUri: string): URL {
  let url: URL;
  try {
    url = new URL(pasted.trim());
  } catch {
    throw new AuthkeepError(
      'invalid_argument',
      'the pasted text is not a URL; paste the whole address from the browser',
      { field: 'redirect_url' },
    );
  }
  const expected = new URL(redirectUri);
  const loopback = (host: string) => host === '127.0.0.1' || host === 'localhost' || host === '[::1]';
  if (
    url.protocol !== expected.protocol ||
    url.port !== expected.port ||
    url.pathname !== expected.pathname ||
    !loopback(url.hostname)
  ) {
    throw new AuthkeepError(
      'invalid_argument',
      `the pasted URL is not this sign-in's redirect URL (expected it to start with ${expected.origin}${expected.pathname})`,
      { field: 'redirect_url' },
    );
  }
  if (!url.searchParams.has('code') && !url.searchParams.has('error')) {
    throw new AuthkeepError(
      'invalid_argument',
      'the pasted URL carries neither code nor error; paste the address after the sign-in finished',
      {
        field: 'redirect_url',
      },
    );
  }
  // Our listener binds 127.0.0.1 whatever host name the redirect URI spells.
  url.hostname = '127.0.0.1';
  return url;
}

/** An opener that prints the URL on stderr, reads the pasted redirect URL and delivers it. */
export function pasteRedirectOpener(deps: PasteRedirectDeps): (authorizeUrl: string) => Promise<void> {
  return async (authorizeUrl) => {
    const redirectUri = new URL(authorizeUrl).searchParams.get('redirect_uri');
    if (!redirectUri)
      throw new AuthkeepError('authorize_url_mismatch', 'the authorize URL has no redirect_uri', {
        field: 'redirect_uri',
      });
    deps.stderr.write(
      `Open this URL in a browser on any machine and sign in:\n\n  ${displayText(authorizeUrl, 8000)}\n\n` +
        `The browser then goes to ${new URL(redirectUri).origin}${new URL(redirectUri).pathname}?code=... ` +
        '(the page may fail to load; that is expected).\nPaste that whole address here and press Enter:\n',
    );
    // Not the redirect URL (a typo, half an address, the wrong tab): say why and ask again. Only
    // the end of stdin or the sign-in's own time limit ends the wait.
    const reader = lineReader(deps.stdin);
    let target: URL;
    try {
      for (;;) {
        const line = await reader.next();
        if (line.trim() === '') continue;
        try {
          target = deliveryUrl(line, redirectUri);
          break;
        } catch (err) {
          if (!(err instanceof AuthkeepError) || err.code !== 'invalid_argument') throw err;
          deps.stderr.write(`${displayText(err.message, 2000)}.\nPaste the address again and press Enter:\n`);
        }
      }
    } finally {
      reader.close();
    }
    const response = await deps.fetch(target, { redirect: 'manual', signal: AbortSignal.timeout(10_000) });
    await response.arrayBuffer().catch(() => undefined);
    // A 400 means our listener refused it (wrong state: another sign-in's URL) or the AS answered
    // with an error; the sign-in itself reports which. Anything else was accepted.
    if (response.status === 400 && !target.searchParams.has('error')) {
      throw new AuthkeepError(
        'state_mismatch',
        "the pasted URL does not belong to this sign-in (its state differs); paste this sign-in's redirect",
        {
          field: 'state',
        },
      );
    }
  };
}
