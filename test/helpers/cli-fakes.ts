/**
 * cli-fakes: in-process fakes for the CLI's dependencies (CliDeps): buffered stdout/stderr, a
 * scripted keeper, a fetch that records requests. For testing commands' run() functions and
 * flag parsing apart from the network and the store.
 */
import { PassThrough } from 'node:stream';
import type { CliDeps, Keeper, Writer } from '../../src/cli/deps.js';
import type { AuthKeeperOptions, LogoutResult } from '../../src/session/session-keeper.js';
import type { ServerStatus } from '../../src/session/status.js';
import type { CredentialStore } from '../../src/store/credential-store.js';
import { FileCredentialStore } from '../../src/store/file-credential-store.js';

export class BufferWriter implements Writer {
  text = '';
  constructor(readonly isTTY = false) {}
  write(chunk: string): boolean {
    this.text += chunk;
    return true;
  }
}

export interface FakeKeeperScript {
  home?: string;
  store?: CredentialStore;
  login?(serverUrl: string, options: { scope?: string }, keeperOptions: AuthKeeperOptions): Promise<ServerStatus>;
  getAccessToken?(serverUrl: string): Promise<string>;
  status?(serverUrl?: string): Promise<ServerStatus[]>;
  logout?(serverUrl: string, options?: { requireRevocation?: boolean }): Promise<LogoutResult>;
}

export interface FakeDeps extends CliDeps {
  stdout: BufferWriter;
  stderr: BufferWriter;
  stdinStream: PassThrough;
  /** Options each created keeper was given. */
  keeperOptions: AuthKeeperOptions[];
  fetched: string[];
}

export function fakeDeps(
  script: FakeKeeperScript = {},
  extra: Partial<CliDeps> & { env?: NodeJS.ProcessEnv } = {},
): FakeDeps {
  const keeperOptions: AuthKeeperOptions[] = [];
  const fetched: string[] = [];
  const stdinStream = new PassThrough();
  const unexpected = (what: string) => () => Promise.reject(new Error(`unexpected call to ${what}`));
  const deps: FakeDeps = {
    stdout: new BufferWriter(),
    stderr: new BufferWriter(),
    stdin: stdinStream,
    stdinStream,
    env: { AUTHKEEP_HOME: script.home ?? '/tmp/authkeep-fake-home' },
    keeperOptions,
    fetched,
    createKeeper: (options): Keeper => {
      keeperOptions.push(options);
      return {
        home: options.home ?? script.home ?? '/tmp/authkeep-fake-home',
        // The real file store on the fake home: nothing is stored there unless a test puts it there.
        store:
          script.store ?? new FileCredentialStore({ home: options.home ?? script.home ?? '/tmp/authkeep-fake-home' }),
        login: script.login ? (url, o = {}) => script.login!(url, o, options) : unexpected('login'),
        getAccessToken: script.getAccessToken ?? unexpected('getAccessToken'),
        status: script.status ?? (async () => []),
        logout: script.logout ?? unexpected('logout'),
      };
    },
    fetch: async (input) => {
      fetched.push(String(input));
      return new Response(null, { status: 401 });
    },
    now: () => Date.parse('2025-01-01T00:00:00Z'),
    ...extra,
  } as FakeDeps;
  return deps;
}
