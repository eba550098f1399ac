/**
 * secrets: the one check that no secret reached a place it must not (an error, a log line, a
 * terminal), and the witness that collects every secret that existed during a test.
 *
 * `assertNoSecrets(haystacks, secrets)` looks at everything a secret could reach: strings as they
 * are; errors through String(err), message, stack, JSON.stringify and util.inspect, and then their
 * `cause` chain (JSON.stringify drops it, and every refresh failure wraps the token-endpoint error
 * as its cause), AggregateError `errors`, and every own property (enumerable or not: `detail`,
 * `info`); objects and arrays through JSON.stringify and every own property, recursively. Each
 * secret is also looked for URL-encoded. A failure names the secret by its label and the path where
 * it was found, never by its value: the test output must not carry it either.
 *
 * `witnessSecrets(as)` makes the real authorization server the witness: every secret it received
 * (codes, verifiers, refresh tokens, client secrets, device codes, tokens presented for revocation,
 * from the body or the Authorization header) or issued (access and refresh tokens of every rotation,
 * codes, device codes, client secrets and registration access tokens), across every process that
 * talked to it. The AS's own audit (arena/testbed/audit.ts) keeps only fingerprints of these; the
 * witness keeps the values, in the test process only.
 *
 * Not for: secrets a hostile test server plants (the test knows those and passes them directly).
 */
import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import Provider from 'oidc-provider';
import { SECRET_PARAMETERS } from '../../arena/testbed/audit.js';
import type { RunningAuthorizationServer } from '../../arena/testbed/index.js';

/** Secrets by label (a Map or a record), or a bare list (labelled by position). */
export type Secrets = ReadonlyMap<string, string> | Readonly<Record<string, string>> | Iterable<string>;

/** Shorter values are not secrets we hand out (and would match by accident). */
const MIN_SECRET_LENGTH = 8;

function labelled(secrets: Secrets): Array<[label: string, value: string]> {
  let entries: Array<[string, string]>;
  if (secrets instanceof Map) entries = [...secrets.entries()].map(([label, value]) => [label, value]);
  else if (typeof (secrets as Iterable<string>)[Symbol.iterator] === 'function')
    entries = [...(secrets as Iterable<string>)].map((value, i) => [`secret #${i + 1}`, value]);
  else entries = Object.entries(secrets as Record<string, string>);
  return entries.filter(([, value]) => typeof value === 'string' && value.length >= MIN_SECRET_LENGTH);
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value) ?? '';
  } catch {
    return '';
  }
}

/**
 * Every text a value can be rendered as, each with the path it was found at. Walks cause chains,
 * AggregateError errors and own properties (enumerable or not), once per object.
 */
export function renderings(value: unknown, path = 'value'): Array<[where: string, text: string]> {
  const out: Array<[string, string]> = [];
  const seen = new Set<object>();
  const visit = (v: unknown, where: string, depth: number): void => {
    if (typeof v === 'string') {
      out.push([where, v]);
      return;
    }
    if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint' || typeof v === 'symbol') {
      out.push([where, String(v)]);
      return;
    }
    if (typeof v === 'function' || v === null || v === undefined || depth > 20) return;
    const obj = v as object;
    if (seen.has(obj)) return;
    seen.add(obj);
    if (Buffer.isBuffer(obj) || obj instanceof Uint8Array) {
      out.push([where, Buffer.from(obj).toString('utf8')]);
      return;
    }
    if (obj instanceof Error) {
      out.push([`String(${where})`, String(obj)]);
      out.push([`${where}.stack`, obj.stack ?? '']);
    }
    out.push([`JSON.stringify(${where})`, safeJson(obj)]);
    if (depth === 0) out.push([`inspect(${where})`, inspect(obj, { depth: 12, showHidden: true })]);
    if (obj instanceof Map) {
      for (const [k, item] of obj) {
        visit(k, `${where}.keys()`, depth + 1);
        visit(item, `${where}.get(${String(k)})`, depth + 1);
      }
    }
    if (obj instanceof Set) for (const item of obj) visit(item, `${where}.values()`, depth + 1);
    if (obj instanceof Error) {
      // Not always own properties: walk them by name whatever they are.
      visit(obj.message, `${where}.message`, depth + 1);
      visit((obj as { cause?: unknown }).cause, `${where}.cause`, depth + 1);
      if (obj instanceof AggregateError) {
        for (const [i, e] of obj.errors.entries()) visit(e, `${where}.errors[${i}]`, depth + 1);
      }
    }
    for (const key of Object.getOwnPropertyNames(obj)) {
      if (obj instanceof Error && (key === 'stack' || key === 'message' || key === 'cause')) continue;
      let item: unknown;
      try {
        item = (obj as Record<string, unknown>)[key];
      } catch {
        continue;
      }
      visit(item, Array.isArray(obj) ? `${where}[${key}]` : `${where}.${key}`, depth + 1);
    }
  };
  visit(value, path, 0);
  return out;
}

/**
 * Fails when any of `secrets` (or its URL-encoded form) appears anywhere in `haystacks` (see the
 * file comment for where that is). `what` names the haystacks in the failure message. Returns the
 * number of texts checked, so a caller can assert it looked at something.
 */
export function assertNoSecrets(haystacks: unknown, secrets: Secrets, what = 'output'): number {
  const list = labelled(secrets);
  const texts = Array.isArray(haystacks)
    ? haystacks.flatMap((h, i) => renderings(h, `${what}[${i}]`))
    : renderings(haystacks, what);
  for (const [where, text] of texts) {
    for (const [label, value] of list) {
      const encoded = encodeURIComponent(value);
      if (text.includes(value) || (encoded !== value && text.includes(encoded))) {
        assert.fail(`${label} leaked into ${where}`);
      }
    }
  }
  return texts.length;
}

/** Every secret the authorization server saw or issued, by label (values stay in this process). */
export interface SecretWitness {
  /** Label -> value, in the order they were seen. */
  secrets(): Map<string, string>;
  /** How many distinct values of a kind (e.g. `RefreshToken issued`, `refresh_token received`) were seen. */
  count(kind: string): number;
}

/** Response members that are secrets (RFC 6749 5.1, RFC 8628 3.2, RFC 7591 3.2.1). */
const SECRET_MEMBERS = [
  'access_token',
  'refresh_token',
  'id_token',
  'code',
  'device_code',
  'client_secret',
  'registration_access_token',
];

/** Provider models whose `jti` is the value handed out (the audit fingerprints the same ones). */
const OPAQUE_VALUE_MODELS = new Set(['AuthorizationCode', 'RefreshToken', 'DeviceCode']);

interface ContextLike {
  oidc?: { params?: Record<string, unknown> };
  body?: unknown;
  get?(name: string): string;
}

/**
 * Make `as` record every secret it receives or issues from now on (it wraps the provider's
 * `emit`, as the audit does, so every request that ends in an event is seen).
 */
export function witnessSecrets(as: RunningAuthorizationServer): SecretWitness {
  const byValue = new Map<string, string>();
  const kinds = new Map<string, Set<string>>();
  const add = (kind: string, value: unknown): void => {
    if (typeof value !== 'string' || value.length < MIN_SECRET_LENGTH) return;
    const values = kinds.get(kind) ?? new Set<string>();
    kinds.set(kind, values);
    values.add(value);
    if (!byValue.has(value)) byValue.set(value, `${kind} #${values.size}`);
  };
  const fromContext = (ctx: ContextLike): void => {
    const params = ctx.oidc?.params ?? {};
    for (const [name, value] of Object.entries(params)) {
      if (!SECRET_PARAMETERS.has(name)) continue;
      for (const v of Array.isArray(value) ? value : [value]) add(`${name} received`, v);
    }
    const body = ctx.body;
    if (body !== null && typeof body === 'object' && !Buffer.isBuffer(body)) {
      for (const name of SECRET_MEMBERS) add(`${name} issued`, (body as Record<string, unknown>)[name]);
    }
    const authorization = typeof ctx.get === 'function' ? ctx.get('authorization') : '';
    const basic = /^basic\s+(.+)$/i.exec(authorization)?.[1];
    if (basic) {
      const decoded = Buffer.from(basic, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon >= 0) add('client_secret received', decodeURIComponent(decoded.slice(colon + 1).replace(/\+/g, ' ')));
    }
    const bearer = /^(?:bearer|dpop)\s+(.+)$/i.exec(authorization)?.[1];
    if (bearer) add('access_token received', bearer);
  };
  const capture = (args: unknown[]): void => {
    const ctx = (args.find(isContext) ?? Provider.ctx) as ContextLike | undefined;
    if (ctx) fromContext(ctx);
    for (const arg of args) {
      if (arg === null || typeof arg !== 'object' || arg === ctx || arg instanceof Error) continue;
      const model = arg as { kind?: unknown; jti?: unknown; clientSecret?: unknown; code?: unknown };
      if (typeof model.kind === 'string' && OPAQUE_VALUE_MODELS.has(model.kind)) add(`${model.kind} issued`, model.jti);
      add('client_secret issued', model.clientSecret);
      add('code issued', model.code); // authorization.success's response parameters
    }
  };
  const emit = as.provider.emit.bind(as.provider);
  as.provider.emit = ((name: string | symbol, ...args: unknown[]): boolean => {
    try {
      capture(args);
    } catch {
      // witnessing must never break the provider
    }
    return emit(name, ...args);
  }) as typeof as.provider.emit;
  return {
    secrets: () => new Map([...byValue].map(([value, label]) => [label, value])),
    count: (kind) => kinds.get(kind)?.size ?? 0,
  };
}

function isContext(value: unknown): boolean {
  return typeof value === 'object' && value !== null && 'req' in value && 'res' in value && 'oidc' in value;
}

/** Several secret lists as one (a witness's, a record's, planted ones). */
export function allSecrets(...lists: Secrets[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const [i, list] of lists.entries()) {
    for (const [label, value] of labelled(list)) out.set(out.has(label) ? `${label} (list ${i + 1})` : label, value);
  }
  return out;
}
