/**
 * deps: everything a command touches outside its own arguments, handed in (gh's Factory), so each
 * command's run() is tested with fakes and the real wiring lives in one place (main.ts).
 *
 * Not for: parsing flags (commands/*.ts) or formatting (output.ts).
 */
import type { AuthKeeperOptions, SessionKeeper } from '../session/session-keeper.js';

/** A text sink: process.stdout / process.stderr, or a buffer in tests. */
export interface Writer {
  write(chunk: string): unknown;
  /** True when a human is looking at it (spinners, colors). */
  readonly isTTY?: boolean;
  /** The terminal's width, when it is one (process.stdout.columns). */
  readonly columns?: number;
}

/** The part of SessionKeeper the commands use. */
export type Keeper = Pick<SessionKeeper, 'home' | 'store' | 'login' | 'getAccessToken' | 'status' | 'logout'>;

export type KeeperFactory = (options: AuthKeeperOptions) => Keeper;

export interface CliDeps {
  stdout: Writer;
  stderr: Writer;
  /** Read by `login --no-browser` (the pasted redirect URL). */
  stdin: NodeJS.ReadableStream;
  env: NodeJS.ProcessEnv;
  createKeeper: KeeperFactory;
  /** Used by `doctor`'s reachability checks and `login --no-browser`'s delivery of the pasted URL. */
  fetch: typeof fetch;
  now(): number;
}
