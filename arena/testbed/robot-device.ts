/**
 * The robot user of the device authorization grant (RFC 8628): given the verification URI the
 * client showed (with the user code in it, or the plain URI plus the code), it does what a person
 * at oidc-provider's default device pages does, with its own cookie jar:
 *
 *   1. GET the verification URI. With `user_code` in it, oidc-provider answers an auto-submitting
 *      form (xsrf + user_code); without, the code input form (xsrf), which the robot fills in;
 *   2. POST that form to the code verification endpoint; the answer is the confirmation form
 *      (xsrf, user_code, confirm=yes), or with `abort` the robot presses [ Abort ] instead;
 *   3. POST the confirmation, then follow the redirects through the bed's auto-approving login and
 *      consent (interactions.ts, which denies when `behavior.denyConsent`) back to the device
 *      resume endpoint, which answers the success page (or an error page).
 *
 * For: tests and the arena, against the test bed's oidc-provider only (its default HTML).
 * Not for: general HTML (a regex finds oidc-provider's own forms), anything off loopback.
 */
import { CookieJar } from './cookie-jar.js';

export interface DeviceRobotOptions {
  /** The user code, when `verificationUri` does not carry it (typed in like a person would). */
  userCode?: string;
  /** Press [ Abort ] on the confirmation page instead of continuing (the AS then answers access_denied). */
  abort?: boolean;
  /** Maximum number of requests (default 20). */
  maxHops?: number;
  /** Per-request timeout in ms (default 10000). */
  timeoutMs?: number;
}

export interface DeviceRobotResult {
  /** oidc-provider's success page was reached. */
  approved: boolean;
  /** Status of the last response. */
  status: number;
  /** Number of requests made. */
  hops: number;
  /** The last page's <title> (e.g. "Sign-in Success"). */
  title: string | undefined;
}

export class DeviceRobotError extends Error {
  constructor(
    message: string,
    readonly hops: number,
  ) {
    super(message);
    this.name = 'DeviceRobotError';
  }
}

interface Form {
  action: string;
  fields: Record<string, string>;
}

function decodeEntities(text: string): string {
  return text
    .replace(/&quot;/g, '"')
    .replace(/&#39;|&#x27;/g, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

/** The first <form method="post"> of an oidc-provider page, with its named inputs. */
function firstForm(html: string, base: URL): Form | undefined {
  const match = /<form\b([^>]*)>([\s\S]*?)<\/form>/i.exec(html);
  if (!match) return undefined;
  const attributes = match[1] ?? '';
  const action = /\baction="([^"]*)"/i.exec(attributes)?.[1];
  if (!/\bmethod="post"/i.test(attributes) || action === undefined) return undefined;
  const fields: Record<string, string> = {};
  for (const input of (match[2] ?? '').matchAll(/<input\b([^>]*)>/gi)) {
    const attrs = input[1] ?? '';
    const name = /\bname="([^"]*)"/i.exec(attrs)?.[1];
    if (name === undefined) continue;
    fields[decodeEntities(name)] = decodeEntities(/\bvalue="([^"]*)"/i.exec(attrs)?.[1] ?? '');
  }
  return { action: new URL(decodeEntities(action), base).href, fields };
}

/** Complete one device verification at the test bed's AS. */
export async function completeDeviceVerification(
  verificationUri: string,
  options: DeviceRobotOptions = {},
): Promise<DeviceRobotResult> {
  const jar = new CookieJar();
  const maxHops = options.maxHops ?? 20;
  const timeoutMs = options.timeoutMs ?? 10_000;
  let request: { url: URL; form?: Record<string, string> } = { url: new URL(verificationUri) };
  let submittedConfirm = false;

  for (let hop = 1; hop <= maxHops; hop++) {
    const { url, form } = request;
    const cookie = jar.header(url);
    const response = await fetch(url, {
      method: form ? 'POST' : 'GET',
      redirect: 'manual',
      headers: {
        accept: 'text/html,*/*',
        ...(cookie ? { cookie } : {}),
        ...(form ? { 'content-type': 'application/x-www-form-urlencoded' } : {}),
      },
      ...(form ? { body: new URLSearchParams(form).toString() } : {}),
      signal: AbortSignal.timeout(timeoutMs),
    });
    jar.store(url, response.headers.getSetCookie());
    const location = response.headers.get('location');
    if (response.status >= 300 && response.status < 400 && location) {
      await response.body?.cancel();
      request = { url: new URL(location, url) };
      continue;
    }
    const html = await response.text();
    const title = /<title>([^<]*)<\/title>/i.exec(html)?.[1]?.trim();
    const next = response.status === 200 ? firstForm(html, url) : undefined;
    if (!next || submittedConfirm) {
      return {
        approved: response.status === 200 && title === 'Sign-in Success',
        status: response.status,
        hops: hop,
        title,
      };
    }
    const fields = { ...next.fields };
    if ('confirm' in fields) {
      // The confirmation page: continue, or press [ Abort ].
      if (options.abort) {
        delete fields.confirm;
        fields.abort = 'yes';
      }
      submittedConfirm = true;
    } else if ('user_code' in fields && fields.user_code === '') {
      if (options.userCode === undefined)
        throw new DeviceRobotError('the verification page asks for the user code and none was given', hop);
      fields.user_code = options.userCode;
    }
    request = { url: new URL(next.action), form: fields };
  }
  throw new DeviceRobotError(`more than ${maxHops} requests`, maxHops);
}
