/**
 * display-text: the one sanitiser for text that servers and authorization servers supply
 * (error_description, the device flow's user_code and verification URIs, issuer, client_id, scope,
 * anything echoed back) before a human sees it on a terminal or a page. Such text could carry
 * terminal escape sequences (clear the screen, retitle the window, hide a user code, forge a
 * "Signed in" line) or bidi overrides that reorder what is shown. It lives at the bottom of the
 * layers, beside errors.ts, because library messages (NeedsAuthError's above all) are printed by
 * embedders as well as by the CLI and the proxy.
 *
 *  - displayText: C0 controls (newlines and tabs included), DEL, C1 controls, bidi and invisible
 *    formatting characters and lone surrogates become visible escapes (`\x1b`, `\n`, `\u202e`);
 *    the text is cut to a bounded number of characters. Escaping is idempotent.
 *  - displayJson: JSON that parses to exactly the same value, with the characters JSON.stringify
 *    leaves raw (DEL, C1, bidi) written as `\u` escapes, so `--json` output is safe to print too.
 *
 * Not for: HTML escaping (the loopback page escapes after this) or redacting secrets
 * (oauth/token-endpoint.ts redacts before anything is cut or shown).
 */

/** Characters of one server- or AS-supplied string kept for display. */
export const DISPLAY_TEXT_MAX = 300;

/**
 * Terminal-unsafe or misleading code points: C0, DEL, C1; ALM; zero-width and LRM/RLM;
 * line/paragraph separators and the bidi embeddings/overrides; word joiner, invisible operators
 * and the bidi isolates; BOM; interlinear annotations; lone surrogates.
 */
const UNSAFE =
  // biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
  /[\u0000-\u001f\u007f-\u009f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** The same set minus C0, which JSON.stringify already escapes (and whose \n is JSON's own layout). */
const UNSAFE_IN_JSON =
  /[\u007f-\u009f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

const NAMED: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

function escapeCodeUnit(c: string): string {
  const named = NAMED[c];
  if (named !== undefined) return named;
  const code = c.charCodeAt(0);
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
}

/**
 * `value` made safe to show: unsafe characters escaped visibly, at most `max` characters of the
 * original kept (whole code points; an ellipsis marks the cut).
 */
export function displayText(value: string, max: number = DISPLAY_TEXT_MAX): string {
  const points = Array.from(value);
  const kept = points.length > max ? `${points.slice(0, max).join('')}…` : value;
  return kept.replace(UNSAFE, escapeCodeUnit);
}

/** JSON.stringify whose output is also safe on a terminal; JSON.parse gives back exactly `value`. */
export function displayJson(value: unknown, space?: number): string {
  return (JSON.stringify(value, null, space) ?? 'null').replace(
    UNSAFE_IN_JSON,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}
