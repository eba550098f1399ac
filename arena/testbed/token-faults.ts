/**
 * token-faults: a real HTTP fault layer at an authorization server's token endpoint (the arena's
 * `chaos` scenario). A seeded share of token requests fails transiently, the kinds taken in turn:
 * a 503 with a plain body, a 400 `temporarily_unavailable` (RFC 6749 section 5.2's transient
 * error), an answer that never comes (the client's own timeout must fire), and a reset connection
 * (socket destroyed). Each fault happens either before the AS processes the request (nothing is
 * spent) or after it (the AS rotated the refresh token or redeemed the code, and the client never
 * gets the answer: that chain is lost whatever the client does). `temporarily_unavailable` is the
 * AS's own word that it did nothing, so it is always before.
 *
 * For: authorization-server.ts (its routing applies the faults, the audit records them) and
 * arena/chaos.ts. Not for: deciding what a client should do about them.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

import { mulberry32 } from '../random.js';

export const FAULT_KINDS = ['http_503', 'temporarily_unavailable', 'no_answer', 'reset'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];
export type FaultPhase = 'before' | 'after';

export interface TokenFault {
  kind: FaultKind;
  phase: FaultPhase;
}

/** What the audit keeps of a fault (HttpAuditEntry.fault). */
export interface AuditedFault extends TokenFault {
  /** After: the status the AS answered before the layer took its answer away. */
  asStatus?: number;
}

export interface TokenFaultOptions {
  seed: number;
  /** Share of token requests that fail (default 0.2). */
  rate?: number;
  /** Of the faults that may come after processing (every kind but temporarily_unavailable), the share that does (default 1/3). */
  afterShare?: number;
  /** An answer that never comes is held at most this long, then the connection is destroyed (default 60 s). */
  holdCapMs?: number;
}

export interface TokenFaultPlan {
  /** The fault for the next token request, or undefined: it goes through untouched. */
  next(): TokenFault | undefined;
  holdCapMs: number;
}

/** Faults drawn with the seeded random; the kinds in turn (503, temporarily_unavailable, no answer, reset). */
export function tokenFaultPlan(options: TokenFaultOptions): TokenFaultPlan {
  const random = mulberry32(options.seed);
  const rate = options.rate ?? 0.2;
  const afterShare = options.afterShare ?? 1 / 3;
  let turn = 0;
  return {
    holdCapMs: options.holdCapMs ?? 60_000,
    next: () => {
      // Two draws per request whatever the outcome, so the sequence depends on the count of requests only.
      const failing = random() < rate;
      const after = random() < afterShare;
      if (!failing) return undefined;
      const kind = FAULT_KINDS[turn++ % FAULT_KINDS.length] as FaultKind;
      return { kind, phase: kind !== 'temporarily_unavailable' && after ? 'after' : 'before' };
    },
  };
}

/** Answer `res` with the fault instead of the AS's answer (or with none at all). */
export function inflict(fault: TokenFault, req: IncomingMessage, res: ServerResponse, holdCapMs: number): void {
  switch (fault.kind) {
    case 'http_503':
      res.writeHead(503, { 'content-type': 'text/plain', 'cache-control': 'no-store' });
      res.end('Service Unavailable');
      return;
    case 'temporarily_unavailable':
      res.writeHead(400, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(JSON.stringify({ error: 'temporarily_unavailable', error_description: 'try again later' }));
      return;
    case 'reset':
      req.socket.destroy();
      return;
    case 'no_answer': {
      // Held until the client gives up (its timeout closes the connection), at most holdCapMs.
      const timer = setTimeout(() => req.socket.destroy(), holdCapMs);
      timer.unref();
      req.socket.once('close', () => clearTimeout(timer));
      return;
    }
  }
}

/** Read and discard a request body the AS will never see; resolves with it (for the audit). */
export async function drainBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size <= 64 * 1024) chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Let the AS process the request, then take its answer away: `res.end` is replaced so the AS's
 * status is noted (`onAnswer`) and the fault goes out instead.
 */
export function interceptAnswer(
  fault: TokenFault,
  req: IncomingMessage,
  res: ServerResponse,
  holdCapMs: number,
  onAnswer: (status: number) => void,
): void {
  const end = res.end.bind(res) as (...args: unknown[]) => ServerResponse;
  let taken = false;
  res.end = ((...args: unknown[]) => {
    if (taken) return end(...args);
    taken = true;
    onAnswer(res.statusCode);
    if (res.headersSent) {
      // Too late to replace the status: cut the connection instead.
      req.socket.destroy();
      return res;
    }
    for (const name of res.getHeaderNames()) res.removeHeader(name);
    res.end = end as typeof res.end;
    inflict(fault, req, res, holdCapMs);
    return res;
  }) as typeof res.end;
}
