/**
 * A fleet of CI workers on one machine identity: 8 real processes sharing a store, on the client
 * credentials grant (the secret in each process's environment), against oidc-provider. Judged by
 * the authorization server's own audit: one token request per expiry, machine-wide, exactly as
 * refreshes are single-flight (docs/DESIGN.md invariant 3).
 *
 * Determinism: children start together on their READY lines; "at one expiry" is the stored
 * token's expiry written into the record (records.ts), not a wait; the loop test runs until each
 * process has been handed so many tokens, not for a fixed time.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { MIN_REFRESH_SPACING_MS, refreshSpacing } from '../../arena/testbed/refresh-sends.js';
import { startBed } from '../helpers/bed.js';
import {
  type Child,
  cleanStderr,
  lastJsonLine,
  runTogether,
  spawnTsx,
  startTogether,
} from '../helpers/child-process.js';
import { expireStoredTokens } from '../helpers/records.js';
import { allSecrets, assertNoSecrets, witnessSecrets } from '../helpers/secrets.js';
import type { TokenLoopSummary } from '../helpers/session-child.js';

const CHILD = fileURLToPath(new URL('../helpers/session-child.ts', import.meta.url));
const SECRET = 'fleet-secret-0123456789abcdef';

function spawnChildren(t: { after(fn: () => void): void }, count: number, args: string[], env = {}): Child[] {
  const children = Array.from({ length: count }, () => spawnTsx(CHILD, args, env));
  t.after(() => {
    for (const child of children) if (child.proc.exitCode === null) child.proc.kill('SIGKILL');
  });
  return children;
}

async function fleetBed(t: Parameters<typeof startBed>[0], ttlSeconds: number) {
  return startBed(t, {
    as: {
      accessTokenTtlSeconds: ttlSeconds,
      clientCredentials: true,
      staticClients: [
        {
          client_id: 'ci-fleet',
          client_secret: SECRET,
          grant_types: ['client_credentials'],
          response_types: [],
          redirect_uris: [],
          scope: 'mcp:read mcp:write mcp:admin',
        },
      ],
    },
  });
}

test('8 processes at one expiry on client credentials: exactly one token request, all 8 hold its token', async (t) => {
  const bed = await fleetBed(t, 3600);
  const witness = witnessSecrets(bed.as);
  const server = bed.servers[0]!;
  const env = { CI_SECRET: SECRET };
  await bed.keeper({ secretReader: { env, readFile: async () => '' } }).login(server.url, {
    grant: { type: 'client_credentials', clientId: 'ci-fleet', clientSecret: { env: 'CI_SECRET' } },
  });
  await expireStoredTokens(bed.home, server.url);
  const before = bed.as.audit.counts().clientCredentialsGrants;

  const children = spawnChildren(t, 8, ['token', bed.home, server.url], env);
  await startTogether(children);
  const exits = await Promise.all(children.map((child) => child.exited));
  const tokens = new Set<string>();
  for (const [i, child] of children.entries()) {
    assert.equal(exits[i]?.code, 0, cleanStderr(child));
    tokens.add(lastJsonLine<{ token: string }>(child).token);
    assertNoSecrets([child.stderr(), child.lines], allSecrets(witness.secrets(), [SECRET]), `child ${child.pid}`);
  }
  assert.equal(bed.as.audit.counts().clientCredentialsGrants - before, 1, 'one token request for the expiry');
  assert.equal(tokens.size, 1, 'all 8 hold the token of that one request');
  assert.equal(bed.as.audit.counts().authorizationRequests, 0, 'no browser anywhere');
});

test('8 processes racing 4+ expiries of 2 s client-credentials tokens: one token request per expiry, no sign-in', async (t) => {
  const lifetimes = 5;
  const bed = await fleetBed(t, 2);
  const server = bed.servers[0]!;
  const env = { CI_SECRET: SECRET };
  await bed.keeper({ secretReader: { env, readFile: async () => '' } }).login(server.url, {
    grant: { type: 'client_credentials', clientId: 'ci-fleet', clientSecret: { env: 'CI_SECRET' } },
  });
  const before = bed.as.audit.counts().clientCredentialsGrants;

  const children = spawnChildren(t, 8, ['token-loop', bed.home, String(lifetimes), server.url], env);
  const summaries = await runTogether<TokenLoopSummary>(children);
  for (const summary of summaries) {
    assert.equal(summary.capped, false, `pid ${summary.pid} was handed ${lifetimes} tokens`);
    assert.deepEqual(summary.errors, []);
    assert.equal(summary.stale, 0, 'no expired token was handed out');
    assert.deepEqual(summary.rejected, [], 'the server accepted every probed token');
  }
  const requests = bed.as.audit.counts().clientCredentialsGrants - before;
  const spacing = refreshSpacing(
    summaries.flatMap((s) => s.refreshSends),
    server.resource,
  );
  t.diagnostic(`${requests} token requests over ${spacing.spanMs} ms, min gap ${spacing.minGapMs} ms`);
  assert.equal(spacing.count, requests, 'every token request the AS saw was sent by a child');
  assert.ok(requests >= lifetimes - 1, `${lifetimes - 1} expiries crossed (${requests})`);
  assert.ok(
    spacing.minGapMs >= MIN_REFRESH_SPACING_MS,
    `two requests ${spacing.minGapMs} ms apart: one expiry renewed twice`,
  );
  assert.ok(requests <= spacing.maxCount, `${requests} requests in ${spacing.spanMs} ms: at most ${spacing.maxCount}`);
  assert.equal(bed.as.audit.counts().authorizationRequests, 0);
});
