/**
 * The arena's scenarios (`npm start -- --scenario NAME`): which world each column of the report
 * runs in. `default` is today's arena, unchanged. The others:
 *
 *   - `fleet` (issue 12): one service identity on several hosts (separate homes, nothing shared
 *     on disk), signed in once. `authkeep-files`: each host its own file store, holding a copy of
 *     that one record (what copying a signed-in home to every machine gives); `authkeep-fleet`:
 *     every host on the fleet store (one Redis, one sealed record); `authkeep-host-logins`: each
 *     host its own file store and its own sign-in (one grant per host; no copy).
 *   - `ci-workers` (issue 10): processes on one machine identity (client credentials, SEP-1046,
 *     no browser) sharing one home: authkeep (one token request per server per expiry,
 *     machine-wide) against the SDK's ClientCredentialsProvider (each process its own token).
 *   - `dpop`: every server is the `dpop` kind (RFC 9449, nonces at the AS and the server).
 *   - `short-ttl`: access tokens live 45 real seconds, whatever the time compression: under the
 *     fixed 60 s margin mcp-remote keeps before expiry (a client with such a margin sees every
 *     token as due). Everything else stays compressed.
 *   - `scale`: 64 sessions x 8 servers.
 *   - `chaos` (issue 13): 20% of token requests at the rotating AS fail transiently (before or
 *     after the AS processed them), sessions are SIGKILLed at random moments and at refresh
 *     answers and restarted with the same home (chaos.ts, testbed/token-faults.ts).
 *
 * For: arena/main.ts, report.ts and the scenario tests. Not for: running or judging (runner.ts,
 * metrics.ts).
 */

import { randomBytes } from 'node:crypto';
import { cp, mkdir } from 'node:fs/promises';
import path from 'node:path';

import { AuthKeeper, type MachineGrantOptions } from '../src/index.js';
import { SPENT_TOKEN_ANSWER_TIMEOUTS } from '../src/session/token-manager.js';
import { openStore } from '../src/store/open-store.js';
import { type ArenaBed, SERVER_KINDS, type ServerKind } from './bed.js';
import { CHAOS_DEFAULTS, type ChaosMetrics } from './chaos.js';
import type { VariantMetrics } from './metrics.js';
import type { Variant } from './session.js';
import { makeStoreKey, startRedis } from './testbed/redis-server.js';
import { createRobotBrowser } from './testbed/robot-browser.js';
import type { PreparedWorld, VariantWorld, WorldContext } from './world.js';

export const SCENARIO_NAMES = ['default', 'fleet', 'ci-workers', 'dpop', 'short-ttl', 'scale', 'chaos'] as const;
export type ScenarioName = (typeof SCENARIO_NAMES)[number];

/** A row the scenario adds to the report's table. */
export interface ScenarioRow {
  label: string;
  value: (m: VariantMetrics) => string;
}

export interface ScenarioColumn {
  /** The session code that runs it (session.ts). */
  variant: Variant;
  description: string;
  world: () => VariantWorld;
}

export interface Scenario {
  name: ScenarioName;
  title: string;
  /** What the world is and what to read in it (the report's scenario section). */
  description: string;
  /** Replaces the CLI's defaults when the option is not given. */
  defaults: { sessions?: number; servers?: number; variants?: string[] };
  /** Columns of its own, by name; when present, the only columns it runs. */
  columns?: Record<string, ScenarioColumn>;
  /** The world a plain variant (naive, authkeep, ...) runs in; none: today's. */
  plainWorld?: (variant: string) => VariantWorld;
  /** Rows added to the table. */
  rows: ScenarioRow[];
}

const kind = (name: ServerKind['name']): ServerKind => SERVER_KINDS.find((k) => k.name === name) as ServerKind;

/** The kinds on the root authorization server, which rotates refresh tokens (and revokes on reuse). */
const ROTATING_KINDS = [kind('header'), kind('well-known'), kind('two-challenges')];

const signInRow: ScenarioRow = {
  label: 'sign-ins at the IdP (code exchanges)',
  value: (m) => String(m.codeExchanges),
};

// ---------------------------------------------------------------------------------------------
// fleet

/** Hosts in the fleet scenario; session i runs on host i mod HOSTS. */
export const FLEET_HOSTS = 3;

const hostOf = (session: number): number => session % FLEET_HOSTS;

async function makeHomes(context: WorldContext): Promise<string[]> {
  const homes = Array.from({ length: FLEET_HOSTS }, (_, h) => path.join(context.storeDir, `host-${h}`));
  for (const home of homes) await mkdir(home, { recursive: true });
  return homes;
}

/** Signs the service identity in once, as its operator would: one keeper, one tab per server. */
async function signInOnce(keeper: AuthKeeper, bed: ArenaBed): Promise<void> {
  try {
    for (const server of bed.servers) await keeper.login(server.url);
  } finally {
    await keeper.close();
  }
}

function operatorKeeper(home: string, store?: ReturnType<typeof openStore>): AuthKeeper {
  return new AuthKeeper({
    home,
    clientName: 'arena-authkeep',
    allowInsecureLoopback: true,
    openAuthorizationUrl: async (url) => {
      await createRobotBrowser({ timeoutMs: 15_000 }).open(url);
    },
    loginTimeoutMs: 30_000,
    store: store ?? 'file',
  });
}

const FILE_ENV = { AUTHKEEP_STORE: 'file' };

const fleetColumns: Record<string, ScenarioColumn> = {
  'authkeep-files': {
    variant: 'authkeep',
    description:
      'each host its own file store (AUTHKEEP_STORE=file), holding a copy of the one record the operator signed in (host 0 signed in, its home copied to the others)',
    world: () => ({
      column: 'authkeep-files',
      bed: { kinds: ROTATING_KINDS },
      prepare: async (context): Promise<PreparedWorld> => {
        const homes = await makeHomes(context);
        await signInOnce(operatorKeeper(homes[0] as string), context.bed);
        for (const home of homes.slice(1)) await cp(homes[0] as string, home, { recursive: true });
        return {
          session: (i) => ({ storeDir: homes[hostOf(i)] as string, env: FILE_ENV, host: hostOf(i) }),
          notes: [
            `${FLEET_HOSTS} hosts, file store each; signed in once on host 0 (${context.bed.servers.length} sign-ins), home copied to hosts 1-${FLEET_HOSTS - 1}`,
          ],
          close: async () => {},
        };
      },
    }),
  },
  'authkeep-fleet': {
    variant: 'authkeep',
    description:
      'every host on the fleet store: one redis-server, AUTHKEEP_STORE=redis://... and one AUTHKEEP_STORE_KEY; signed in once',
    world: () => ({
      column: 'authkeep-fleet',
      bed: { kinds: ROTATING_KINDS },
      prepare: async (context): Promise<PreparedWorld> => {
        const homes = await makeHomes(context);
        const redis = await startRedis();
        try {
          const env = { AUTHKEEP_STORE: redis.url, AUTHKEEP_STORE_KEY: makeStoreKey() };
          const store = openStore({ home: homes[0] as string, account: 'default', env });
          try {
            await signInOnce(operatorKeeper(homes[0] as string, store), context.bed);
          } finally {
            await (store as { close?: () => Promise<void> }).close?.();
          }
          return {
            session: (i) => ({ storeDir: homes[hostOf(i)] as string, env, host: hostOf(i) }),
            notes: [
              `${FLEET_HOSTS} hosts, empty homes, one redis-server (fleet store, sealed records); signed in once (${context.bed.servers.length} sign-ins)`,
            ],
            close: () => redis.stop(),
          };
        } catch (err) {
          await redis.stop();
          throw err;
        }
      },
    }),
  },
  'authkeep-host-logins': {
    variant: 'authkeep',
    description:
      'each host its own file store and its own sign-in at the cold start (one grant per host; a person at each host)',
    world: () => ({
      column: 'authkeep-host-logins',
      bed: { kinds: ROTATING_KINDS },
      prepare: async (context): Promise<PreparedWorld> => {
        const homes = await makeHomes(context);
        return {
          session: (i) => ({ storeDir: homes[hostOf(i)] as string, env: FILE_ENV, host: hostOf(i) }),
          notes: [`${FLEET_HOSTS} hosts, file store each, each signing in at the cold start`],
          close: async () => {},
        };
      },
    }),
  },
};

// ---------------------------------------------------------------------------------------------
// ci-workers

export const CI_CLIENT_ID = 'arena-ci';
const CI_SECRET_ENV = 'ARENA_CI_SECRET';
const CI_SCOPE = 'mcp:read mcp:write mcp:admin';

function ciWorld(variant: string): VariantWorld {
  // A fresh secret per run, handed to the sessions in their environment (never argv or logs).
  const secret = randomBytes(24).toString('base64url');
  const grant: MachineGrantOptions = {
    type: 'client_credentials',
    clientId: CI_CLIENT_ID,
    clientSecret: { env: CI_SECRET_ENV },
  };
  return {
    column: variant,
    bed: {
      kinds: [kind('header'), kind('well-known')],
      as: {
        clientCredentials: true,
        staticClients: [
          {
            client_id: CI_CLIENT_ID,
            client_secret: secret,
            grant_types: ['client_credentials'],
            response_types: [],
            redirect_uris: [],
            scope: CI_SCOPE,
          },
        ],
      },
    },
    ...(variant === 'authkeep'
      ? { machineGrants: (bed: ArenaBed) => Object.fromEntries(bed.servers.map((s) => [s.url, grant])) }
      : // The scope the client is registered for: without one, the SDK's token has no scope and
        // the servers answer 403 insufficient_scope (its upscoping cannot add one to this grant).
        { clientCredentials: { clientId: CI_CLIENT_ID, clientSecretEnv: CI_SECRET_ENV, scope: CI_SCOPE } }),
    prepare: async () => ({
      session: () => ({ env: { [CI_SECRET_ENV]: secret } }),
      notes: [`one pre-registered confidential client (${CI_CLIENT_ID}, client_secret_basic), no browser`],
      close: async () => {},
    }),
  };
}

// ---------------------------------------------------------------------------------------------
// chaos

function chaosWorld(variant: string): VariantWorld {
  const c = CHAOS_DEFAULTS;
  return {
    column: variant,
    bed: { kinds: ROTATING_KINDS },
    chaos: c,
    prepare: async () => ({
      // Plaintext records: each refresh's stored token is fingerprinted from the record (chaos.ts).
      session: () => ({ env: FILE_ENV }),
      notes: [
        `${Math.round(c.faultRate * 100)}% of token requests at the rotating AS fail (503, temporarily_unavailable, no answer, reset in turn); a third of the 503 / no-answer / reset faults come after the AS processed the request`,
        `a session killed every ${c.killMeanIntervalMs / 1000} s on average (seeded), and the sender of ${Math.round(c.answerKillChance * 100)}% of refresh answers killed at the answer; each restarted after ${c.restartDelayMs} ms with the same home`,
        `authkeep's request timeout ${c.httpTimeoutMs / 1000} s (httpTimeoutMs; a sent refresh's answer awaited ${(SPENT_TOKEN_ANSWER_TIMEOUTS * c.httpTimeoutMs) / 1000} s), file store`,
      ],
      close: async () => {},
    }),
  };
}

const chaosRow = (label: string, value: (c: ChaosMetrics) => string): ScenarioRow => ({
  label,
  value: (m) => (m.chaos ? value(m.chaos) : 'n/a'),
});

const ms = (n: number | null): string => (n === null ? 'n/a' : `${Math.round(n)}`);

const CHAOS_ROWS: ScenarioRow[] = [
  chaosRow(
    'token requests faulted (before / after)',
    (c) => `${c.faultsBefore} / ${c.faultsAfter} of ${c.tokenRequests}`,
  ),
  chaosRow('kills (timer / at a refresh answer)', (c) => `${c.kills.timer} / ${c.kills.answer}`),
  chaosRow(
    'chains lost: lost answer / kill / late answer',
    (c) => `${c.lossesByCause.lost_answer} / ${c.lossesByCause.kill} / ${c.lossesByCause.client_timeout}`,
  ),
  chaosRow('reuses / revocations not explained', (c) => `${c.unexplainedReuses} / ${c.unexplainedRevocations}`),
  chaosRow(
    'forced re-auths: after a loss / other',
    (c) => `${c.forcedReauthsAfterLoss} / ${c.forcedReauthsUnexplained}`,
  ),
  chaosRow('unreadable records (of read back)', (c) => `${c.unreadableRecords} (${c.recordsChecked})`),
  chaosRow(
    'loss window AS answer->record, ms p50/p95/max',
    (c) => `${ms(c.window.medianMs)} / ${ms(c.window.p95Ms)} / ${ms(c.window.maxMs)}`,
  ),
  chaosRow(
    '  inside the client, ms p50/p95/max',
    (c) => `${ms(c.clientWindow.medianMs)} / ${ms(c.clientWindow.p95Ms)} / ${ms(c.clientWindow.maxMs)}`,
  ),
];

// ---------------------------------------------------------------------------------------------

/** short-ttl: real seconds an access token lives (mcp-remote refreshes within 60 s of expiry). */
export const SHORT_TTL_SECONDS = 45;

export const SCENARIOS: Record<ScenarioName, Scenario> = {
  default: {
    name: 'default',
    title: 'default',
    description:
      "Today's arena: agent sessions on one machine sharing one home, five kinds of servers on three authorization servers, a cold start with no stored credentials.",
    defaults: {},
    rows: [],
  },
  fleet: {
    name: 'fleet',
    title: 'fleet: one service identity on several hosts',
    description: `${FLEET_HOSTS} hosts (separate homes, nothing shared on disk), the sessions spread over them, one service identity signed in once. Servers on the rotating authorization server only (a reused refresh token revokes the grant). Read: refresh-token reuses, revoked grants, refreshes per expiry and sign-ins, from the IdP's audit.`,
    defaults: { sessions: 6, servers: 3, variants: ['authkeep-files', 'authkeep-fleet'] },
    columns: fleetColumns,
    rows: [signInRow],
  },
  'ci-workers': {
    name: 'ci-workers',
    title: 'ci-workers: processes on one machine identity (client credentials)',
    description:
      "CI workers on one machine, one home, one pre-registered client on the client credentials grant (SEP-1046): no refresh token, no browser. Each renewal is a token request; the figure is token requests per server per access-token expiry (goal 1.00: one for the whole machine). The naive column is the SDK's ClientCredentialsProvider, each process holding its own token.",
    defaults: { sessions: 8, servers: 2, variants: ['naive', 'authkeep'] },
    plainWorld: ciWorld,
    rows: [{ label: 'client credentials token requests', value: (m) => String(m.clientCredentialsRequests) }],
  },
  dpop: {
    name: 'dpop',
    title: 'dpop: every server takes DPoP-bound tokens only',
    description:
      "Every server is the dpop kind (RFC 9449): DPoP-bound tokens only, nonces demanded at the authorization server and at the server; the authorization server binds the public client's refresh token to the key and does not rotate it. The AS's use_dpop_nonce answers are counted apart from refreshes.",
    defaults: { servers: 3 },
    plainWorld: (variant) => ({ column: variant, bed: { kinds: [kind('dpop')] } }),
    rows: [
      {
        label: 'use_dpop_nonce answers (not refreshes)',
        value: (m) => String(m.perServer.reduce((n, s) => n + s.dpopNonceChallenges, 0)),
      },
    ],
  },
  'short-ttl': {
    name: 'short-ttl',
    title: `short-ttl: access tokens live ${SHORT_TTL_SECONDS} real seconds`,
    description: `Today's world, but the authorization servers issue access tokens that live ${SHORT_TTL_SECONDS} real seconds (refresh tokens and grants stay compressed): under the fixed 60 s margin mcp-remote keeps before expiry, so a client with such a margin finds every token due. Run it long enough for several lifetimes (--days 10 at the default compression is 240 s, 5 lifetimes). Refreshes per expiry are per ${SHORT_TTL_SECONDS} s lifetime.`,
    defaults: {},
    plainWorld: (variant) => ({ column: variant, accessTokenTtlSeconds: SHORT_TTL_SECONDS }),
    rows: [],
  },
  scale: {
    name: 'scale',
    title: 'scale: 64 sessions x 8 servers',
    description: "Today's world at 64 sessions (processes) x 8 servers.",
    defaults: { sessions: 64, servers: 8 },
    rows: [],
  },
  chaos: {
    name: 'chaos',
    title: 'chaos: transient token-endpoint failures, sessions killed and restarted',
    description:
      "The rotating authorization server's three kinds of servers. 20% of token requests there fail transiently (a 503, a 400 temporarily_unavailable, an answer that never comes, a reset connection, in turn), some after the AS processed them (it rotated, the client never got the answer); sessions are SIGKILLed at seeded random moments and at refresh answers, and restarted with the same home. Goals: 0 forced re-auths, 0 reuses, 0 revoked grants, 0 unreadable records, except the chains lost physically: a rotation whose answer a fault took away, or whose sender was killed before its record held the new token. Those are counted apart, with the width of that window (from the AS's answer to the record write).",
    defaults: { sessions: 8, servers: 3 },
    plainWorld: chaosWorld,
    rows: CHAOS_ROWS,
  },
};

/** The column names a scenario accepts: its own, or the plain variants. */
export function scenarioColumns(scenario: Scenario, plainVariants: readonly string[]): string[] {
  return scenario.columns ? Object.keys(scenario.columns) : [...plainVariants];
}

/** How to run a column of a scenario: the session variant and its world (none: today's). */
export function columnRun(scenario: Scenario, column: string): { variant: Variant; world?: VariantWorld } {
  const own = scenario.columns?.[column];
  if (own) return { variant: own.variant, world: own.world() };
  return {
    variant: column as Variant,
    ...(scenario.plainWorld ? { world: scenario.plainWorld(column) } : {}),
  };
}
