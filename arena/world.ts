/**
 * What a scenario (arena/scenarios.ts) changes for one column of the report: the bed (server
 * kinds, authorization-server options), and, before the sessions start, a `prepare` step that
 * may set up shared infrastructure (a Redis), sign in once, and give each session its own store
 * directory, environment and machine grants (the "hosts" of a fleet). No world: today's arena.
 *
 * For: arena/runner.ts and arena/scenarios.ts. Not for: judging (metrics.ts).
 */
import type { MachineGrantOptions } from '../src/index.js';
import type { ArenaBed, BedOptions } from './bed.js';
import type { ChaosOptions } from './chaos.js';
import type { TimeScale } from './clock.js';

export interface SessionSetting {
  /** The session's AuthKeeper home / naive store directory (default: the one shared by all sessions). */
  storeDir?: string;
  /** Added to the session process's environment (e.g. AUTHKEEP_STORE). */
  env?: Record<string, string>;
  /** Which simulated host runs the session (fleet); for the report only. */
  host?: number;
}

export interface PreparedWorld {
  session(index: number): SessionSetting;
  /** Lines the report shows under the scenario (what was prepared, e.g. "signed in once on host 0"). */
  notes: string[];
  close(): Promise<void>;
}

export interface WorldContext {
  bed: ArenaBed;
  /** The variant's own temporary directory (removed after the run): hosts' homes go under it. */
  storeDir: string;
  sessions: number;
  scale: TimeScale;
}

export interface VariantWorld {
  /** The column's name in the report (e.g. `authkeep-fleet`). */
  column: string;
  bed?: BedOptions;
  /** Access tokens live this many real seconds instead of one simulated hour (scenario short-ttl). */
  accessTokenTtlSeconds?: number;
  /** Per server URL: the machine grant the authkeep sessions sign in with (no browser). */
  machineGrants?: (bed: ArenaBed) => Record<string, MachineGrantOptions>;
  /** The naive sessions' client credentials (the SDK's ClientCredentialsProvider, one token per process). */
  clientCredentials?: { clientId: string; clientSecretEnv: string; scope: string };
  prepare?: (context: WorldContext) => Promise<PreparedWorld>;
  /** Scenario chaos: token-endpoint faults at the rotating AS, sessions killed and restarted (chaos.ts). */
  chaos?: ChaosOptions;
}
