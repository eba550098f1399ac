/**
 * Wires the AS's AuditLog to the host app and to oidc-provider: one HTTP entry per request
 * (query on arrival; body, client, grant type, resources from the provider's parsed context on the
 * way out), and one event entry per provider event (by wrapping `emit`, so none can be missed),
 * linked to the request during which it was emitted.
 *
 * For: authorization-server.ts. Not for: the log's shape or counters (audit.ts).
 */
import type { AsyncLocalStorage } from 'node:async_hooks';
import type { IncomingMessage } from 'node:http';
import Provider, { type KoaContextWithOIDC } from 'oidc-provider';

import {
  type AsEndpoint,
  type AuditLog,
  bodyPairs,
  type EventAuditEntry,
  fingerprint,
  type HttpAuditEntry,
  toAuditParams,
} from './audit.js';

export function startHttpEntry(audit: AuditLog, req: IncomingMessage, url: URL): HttpAuditEntry {
  const { names, params } = toAuditParams(url.searchParams.entries());
  const entry: HttpAuditEntry = {
    kind: 'http',
    seq: audit.seq(),
    time: Date.now(),
    method: req.method ?? 'GET',
    path: url.pathname,
    endpoint: 'other',
    queryNames: names,
    query: params,
    resources: url.searchParams.getAll('resource'),
    events: [],
  };
  const sender = req.headers['x-testbed-sender'];
  if (typeof sender === 'string' && /^[\w.:-]{1,64}$/.test(sender)) entry.sender = sender;
  const basic = basicClientId(req.headers.authorization);
  const queryClient = url.searchParams.get('client_id');
  if (basic !== undefined) entry.clientId = basic;
  else if (queryClient !== null) entry.clientId = queryClient;
  return entry;
}

/** The client_id of an HTTP Basic Authorization header (never the secret). */
function basicClientId(header: string | undefined): string | undefined {
  if (!header || !/^basic /i.test(header)) return undefined;
  try {
    const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) return undefined;
    return decodeURIComponent(decoded.slice(0, colon).replace(/\+/g, ' '));
  } catch {
    return undefined;
  }
}

const ROUTE_ENDPOINTS: Record<string, AsEndpoint> = {
  authorization: 'authorization',
  resume: 'resume',
  token: 'token',
  registration: 'registration',
  client: 'registration',
  revocation: 'revocation',
  discovery: 'discovery',
  jwks: 'jwks',
};

/** Koa middleware (runs around the provider's router): fills body, client and resource facts. */
export function installRequestAudit(provider: Provider, inFlight: WeakMap<IncomingMessage, HttpAuditEntry>): void {
  provider.use(async (ctx, next) => {
    await next();
    const entry = inFlight.get(ctx.req);
    if (!entry) return;
    const oidc = (ctx as unknown as Partial<KoaContextWithOIDC>).oidc;
    if (!oidc) return;
    const route = oidc.route;
    if (route && ROUTE_ENDPOINTS[route]) entry.endpoint = ROUTE_ENDPOINTS[route];
    const body = (oidc as unknown as { body?: unknown }).body;
    if (body !== undefined) {
      const { names, params } = toAuditParams(bodyPairs(body, ctx.is('application/json') === 'application/json'));
      entry.bodyNames = names;
      entry.body = params;
      const grantType = params.grant_type?.[0];
      if (grantType) entry.grantType = grantType;
      if (entry.clientId === undefined && params.client_id?.[0]) entry.clientId = params.client_id[0];
      if (params.resource?.length) entry.resources = [...entry.resources, ...params.resource];
      if (entry.endpoint === 'token' || entry.endpoint === 'revocation') {
        entry.clientAuth =
          basicClientId(ctx.get('authorization')) !== undefined
            ? 'client_secret_basic'
            : params.client_secret
              ? 'client_secret_post'
              : params.client_assertion
                ? 'private_key_jwt'
                : 'none';
      }
    }
    if (entry.resources.length === 0) {
      const source = oidc.entities?.RefreshToken ?? oidc.entities?.AuthorizationCode;
      entry.resources = resourceList((source as { resource?: unknown } | undefined)?.resource);
    }
  });
}

function resourceList(value: unknown): string[] {
  if (typeof value === 'string') return [value];
  if (Array.isArray(value)) return value.filter((v): v is string => typeof v === 'string');
  return [];
}

/** Models whose opaque value is their jti: fingerprint it to correlate with presented tokens. */
const OPAQUE_VALUE_MODELS = new Set(['RefreshToken', 'AuthorizationCode']);

/** Record every provider event (wrapping emit, so no event name can be missed). */
export function installEventAudit(
  provider: Provider,
  audit: AuditLog,
  inFlight: WeakMap<IncomingMessage, HttpAuditEntry>,
  current: AsyncLocalStorage<HttpAuditEntry>,
): void {
  const emit = provider.emit.bind(provider);
  provider.emit = ((name: string | symbol, ...args: unknown[]): boolean => {
    if (typeof name === 'string') {
      try {
        recordEvent(name, args);
      } catch {
        // auditing must never break the provider
      }
    }
    return emit(name, ...args);
  }) as typeof provider.emit;

  function recordEvent(name: string, args: unknown[]): void {
    const ctx = (args.find(isKoaContext) ?? Provider.ctx) as KoaContextWithOIDC | undefined;
    const httpEntry = (ctx?.req ? inFlight.get(ctx.req) : undefined) ?? current.getStore();
    const entry: EventAuditEntry = { kind: 'event', seq: audit.seq(), time: Date.now(), event: name, resources: [] };
    if (httpEntry) {
      entry.requestSeq = httpEntry.seq;
      httpEntry.events.push(name);
    }
    const oidc = ctx?.oidc;
    let clientId: string | undefined;
    try {
      clientId = oidc?.client?.clientId;
    } catch {
      clientId = undefined;
    }

    const model = args.find(isModel);
    const err = args.find((a): a is Error & Record<string, unknown> => a instanceof Error);
    if (model) {
      clientId = typeof model.clientId === 'string' ? model.clientId : clientId;
      if (typeof model.grantId === 'string') entry.grantId = model.grantId;
      if (model.kind === 'Grant' && typeof model.jti === 'string') entry.grantId = model.jti;
      const audience = (model.resourceServer as { audience?: unknown } | undefined)?.audience;
      entry.resources = resourceList(model.resource ?? audience);
      if (typeof model.scope === 'string') entry.scope = model.scope;
      if (OPAQUE_VALUE_MODELS.has(String(model.kind)) && typeof model.jti === 'string') {
        entry.tokenFingerprint = fingerprint(model.jti);
      }
    }
    if (name === 'registration_create.success') {
      const client = args[1] as { clientId?: string } | undefined;
      if (client?.clientId) clientId = client.clientId;
      if (httpEntry && client?.clientId) httpEntry.clientId ??= client.clientId;
    }
    if (name === 'grant.revoked' && typeof args[1] === 'string') entry.grantId = args[1];
    if (err) {
      if (typeof err.error === 'string') entry.error = err.error;
      else entry.error = 'server_error';
      if (typeof err.error_description === 'string') entry.errorDescription = err.error_description;
      if (typeof err.error_detail === 'string') entry.errorDetail = err.error_detail;
      if (httpEntry) {
        httpEntry.error = entry.error;
        if (entry.errorDetail !== undefined) httpEntry.errorDetail = entry.errorDetail;
      }
    }
    if (!model && oidc) {
      const source = oidc.entities?.RefreshToken ?? oidc.entities?.AuthorizationCode;
      const fromParams = oidc.params?.resource;
      entry.resources = resourceList(fromParams ?? (source as { resource?: unknown } | undefined)?.resource);
      if (!entry.grantId) {
        const grantId = (source as { grantId?: unknown } | undefined)?.grantId;
        if (typeof grantId === 'string') entry.grantId = grantId;
      }
      if (entry.resources.length === 0 && httpEntry) entry.resources = [...httpEntry.resources];
    }
    if (clientId !== undefined) entry.clientId = clientId;
    audit.record(entry);
  }
}

function isKoaContext(value: unknown): boolean {
  return typeof value === 'object' && value !== null && 'req' in value && 'res' in value && 'oidc' in value;
}

function isModel(value: unknown): value is Record<string, unknown> & { kind: string } {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { kind?: unknown }).kind === 'string' &&
    !(value instanceof Error)
  );
}
