/**
 * proxy-sign-in: how the proxy shows a sign-in to a person it cannot talk to. An MCP client starts
 * the proxy with a short environment, often on a machine with no desktop (SSH, a container), and
 * keeps its stderr in a log. So the sign-in URL, or the device code, always goes to stderr and to
 * the proxy's log file, and the browser is only tried on top of that: a browser command that cannot
 * start or that fails is logged, never fatal, and the sign-in keeps waiting within its time limit.
 *
 * Which flow: when `browserUnavailable` says no browser can open here, the device authorization
 * grant (RFC 8628) is preferred when the authorization server offers it (keeper.login mode
 * 'auto'), because its code can be entered in a browser on any device, while the browser flow's
 * redirect comes back to 127.0.0.1 and so completes only in a browser on this machine. When a
 * browser may open, the browser flow stays: one click, no code to type.
 *
 * Not for: the flows themselves (session/) or when a sign-in is needed (proxy-auth.ts).
 */
import { AuthkeepError } from '../errors.js';
import { browserUnavailable, createBrowserOpener, type OpenAuthorizationUrl } from '../session/browser.js';
import type { ShowDeviceCode } from '../session/device-sign-in.js';
import type { ProxyLog } from './proxy-log.js';

export interface ProxySignInPrompts {
  openAuthorizationUrl: OpenAuthorizationUrl;
  showDeviceCode: ShowDeviceCode;
  /** 'auto' (device grant when offered) when no browser can open here, else 'browser'. */
  mode: 'browser' | 'auto';
  /** Why no browser can open here, when none can. */
  noBrowser: string | undefined;
}

function expiresIn(seconds: number): string {
  return seconds >= 60 ? `${Math.round(seconds / 60)} min` : `${seconds} s`;
}

/** The sign-in prompts of the proxy for `serverUrl`. Everything the AS supplied is sanitised by the log. */
export function proxySignInPrompts(
  log: ProxyLog,
  serverUrl: string,
  env: NodeJS.ProcessEnv = process.env,
  platform: NodeJS.Platform = process.platform,
): ProxySignInPrompts {
  const noBrowser = browserUnavailable(env, platform);
  const byHand = 'open the URL above in a browser on this machine';
  const open = createBrowserOpener({
    env,
    platform,
    onFailure: (failure) => log.warn(`the browser command ${failure.command} failed (${failure.reason}); ${byHand}`),
  });
  return {
    mode: noBrowser === undefined ? 'browser' : 'auto',
    noBrowser,
    openAuthorizationUrl: async (url) => {
      log.warn(`to sign in to ${serverUrl}, open this URL in a browser on this machine: ${url}`);
      // Tried even when none was predicted: the prediction only chose the flow.
      try {
        await open(url);
      } catch (err) {
        // Not an http(s) URL: nobody should open it, by hand or otherwise.
        if (err instanceof AuthkeepError && err.field === 'authorization_endpoint') throw err;
        log.warn(`could not open a browser (${(err as Error).message}); ${byHand}`);
      }
    },
    showDeviceCode: (info) => {
      log.warn(
        `to sign in to ${serverUrl}, open ${info.verificationUri} in a browser on any device and enter the code ${info.userCode}` +
          `${info.verificationUriComplete ? ` (or open ${info.verificationUriComplete}, which carries the code)` : ''}` +
          `; the code expires in ${expiresIn(info.expiresInSeconds)}`,
      );
    },
  };
}
