/**
 * doctor: `authkeep doctor [url]`: checks what can silently break authentication, and for each
 * problem says what is wrong and the command that fixes it:
 *   - at rest: the store mode (keychain: sealed under a data key in the OS keychain, where it
 *     lives; file: plaintext, a warning when `auto` found no persistent keychain), and every record
 *     or kept registration still in plaintext in keychain mode;
 *   - store integrity: every record parses (an unreadable one is moved to quarantine and its server
 *     needs a sign-in); quarantined files are listed;
 *   - store trust and file modes: every store directory (the home, servers/, outcomes/,
 *     quarantine/, locks/, registrations/, logs/) the user's own, not writable by others, not a
 *     symbolic link (the store refuses those) and 0700; files in them regular files of the user's
 *     own, records, registrations, outcomes and logs 0600;
 *   - state and drift: each server's status (needs-auth with its reason, drift included);
 *   - machine grants: where the next token comes from, and whether each secret's source (an
 *     environment variable, a file) is present here (never its value);
 *   - locks: stale lock files (dead, silent or over-long holders), with who held them;
 *   - reachability: the server and its authorization server answer HTTP within a short timeout;
 *   - client ID metadata documents: for each server signed in with one (and `--client-metadata-url`),
 *     the published document is fetched (bounded, no redirect) and must be a JSON object whose
 *     `client_id` is its URL and whose `redirect_uris` include the loopback redirect authkeep uses.
 * Exit 0 when nothing failed (warnings allowed), 1 otherwise.
 *
 * Not for: repairing anything itself; it prints the commands and the user runs them. It sees the
 * store only through its interface (`keeper.store.inspect()`), never its files.
 */
import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import type { Command } from 'commander';
import { displayJson, displayText } from '../../display-text.js';
import { AuthkeepError } from '../../errors.js';
import {
  checkPublishedDocument,
  DEFAULT_LOOPBACK_REDIRECT_URIS,
  redirectUriListed,
} from '../../oauth/client-metadata-document.js';
import type { ServerStatus } from '../../session/status.js';
import type { PermissionFinding, StoreInspection } from '../../store/credential-store.js';
import { RedisCredentialStore } from '../../store/redis/redis-credential-store.js';
import { action, type ExitSlot, helpEpilogue, parseClientMetadataUrl, parseServerUrl } from '../command-helpers.js';
import type { CliDeps } from '../deps.js';
import { describeNeedsAuth } from '../errors.js';
import { ExitCode } from '../exit-codes.js';
import { type GlobalOptions, keeperOptions } from '../global-options.js';
import { formatDuration, makeStyle, shellQuote } from '../output.js';

export interface DoctorOptions {
  global: GlobalOptions;
  serverUrl?: string | undefined;
  /** `--client-metadata-url`: also check the document published there (default redirect URIs). */
  clientMetadataUrl?: string | undefined;
  json: boolean;
  /** Timeout of each reachability request. Default 5 s. */
  timeoutMs: number;
}

export function parseDoctorOptions(
  url: string | undefined,
  flags: { json?: boolean; clientMetadataUrl?: string },
  global: GlobalOptions,
): DoctorOptions {
  return {
    global,
    serverUrl: url === undefined ? undefined : parseServerUrl(url),
    clientMetadataUrl:
      flags.clientMetadataUrl === undefined
        ? undefined
        : parseClientMetadataUrl(flags.clientMetadataUrl, '--client-metadata-url', global.allowHttp),
    json: flags.json === true,
    timeoutMs: 5_000,
  };
}

export type CheckKind =
  | 'store'
  | 'at_rest'
  | 'file_mode'
  | 'quarantine'
  | 'state'
  | 'credential'
  | 'lock'
  | 'reachability'
  | 'client_metadata';
export type CheckStatus = 'ok' | 'warn' | 'fail';

export interface DoctorCheck {
  check: CheckKind;
  status: CheckStatus;
  /** What was checked: a path, a server URL, a lock name. */
  subject: string;
  message: string;
  /** The command that fixes it (fail and warn only). */
  fix?: string;
}

export interface DoctorReport {
  ok: boolean;
  home: string;
  checks: DoctorCheck[];
}

function modeString(mode: number): string {
  return `0${(mode & 0o777).toString(8).padStart(3, '0')}`;
}

const PROBLEM_TEXT: Record<PermissionFinding['problem'], string> = {
  mode: 'has the wrong mode',
  owner: 'is not yours: another user may have planted it',
  symlink: 'is a symbolic link (authkeep follows none in its store)',
  not_directory: 'is not a directory',
  not_file: 'is not a regular file',
};

/** How secrets are kept at rest: the mode, where the key lives, and what is still plaintext. */
function atRestChecks(inspection: StoreInspection, home: string): DoctorCheck[] {
  const sealing = inspection.sealing;
  if (sealing === undefined) return [];
  if (sealing.mode === 'file') {
    return [
      sealing.requested === 'auto'
        ? {
            check: 'at_rest',
            status: 'warn',
            subject: home,
            message: `credentials are kept in plaintext files (0600): no persistent OS keychain here (${sealing.fallbackReason ?? 'none found'})`,
            fix: 'on Linux run a Secret Service (e.g. gnome-keyring) in this session, then use --store keychain; or say --store file to keep plaintext files on purpose',
          }
        : {
            check: 'at_rest',
            status: 'ok',
            subject: home,
            message: 'store mode file: credentials are kept in plaintext files (0600), as asked',
          },
    ];
  }
  if (sealing.unavailable !== undefined) {
    return [
      {
        check: 'at_rest',
        status: 'fail',
        subject: sealing.keyLocation ?? home,
        message: `store mode keychain, but ${sealing.unavailable}`,
        fix: 'unlock or start the OS keychain (on Linux a Secret Service such as gnome-keyring), then run: authkeep doctor',
      },
    ];
  }
  const checks: DoctorCheck[] = [
    {
      check: 'at_rest',
      status: 'ok',
      subject: sealing.keyLocation ?? home,
      message: `store mode keychain${sealing.requested === 'auto' ? ' (auto)' : ''}: records and registrations are sealed with AES-256-GCM; the data key is in the ${sealing.keyLocation ?? 'OS keychain'}`,
    },
  ];
  for (const file of sealing.plaintextFiles) {
    const registration = /[\\/]registrations[\\/][^\\/]+$/.test(file);
    checks.push({
      check: 'at_rest',
      status: 'warn',
      subject: file,
      message: registration
        ? `${file} (a kept client registration) is still in plaintext: it is sealed in place at the next sign-in to its issuer`
        : `${file} is still in plaintext: it is sealed in place the next time it is used (a token, a refresh, a sign-in)`,
      fix: registration ? 'sign in to a server of that issuer once' : 'use it once: authkeep token <url>',
    });
  }
  return checks;
}

/** One finding of the store's inspection as a check (a refused path fails, with its fix). */
function permissionCheck(finding: PermissionFinding): DoctorCheck {
  const mode = modeString(finding.mode);
  const refusal = finding.refused ? '; authkeep refuses to use it until it is fixed' : '';
  let message: string;
  if (finding.problem !== 'mode') {
    message = `${finding.path} ${PROBLEM_TEXT[finding.problem]}${refusal}`;
  } else if (finding.kind === 'home') {
    message = `the authkeep home ${finding.path} is ${mode}: other users can plant or rename files in it${refusal}`;
  } else if (finding.kind === 'directory') {
    message = finding.refused
      ? `directory ${finding.path} is ${mode}: other users can plant or swap files in it${refusal}`
      : `directory ${finding.path} is ${mode}, should be 0700 (only you may list or enter it)`;
  } else {
    message = `${finding.path} is ${mode}: other users can read what is in it; should be 0600`;
  }
  return { check: 'file_mode', status: 'fail', subject: finding.path, message, fix: finding.fix };
}

/** Every store directory trusted and 0700, files the user's own and 0600, from the store's inspection. */
function permissionChecks(inspection: StoreInspection): DoctorCheck[] {
  const { permissions, location: home } = inspection;
  if (!permissions.checked) return [];
  const checks = permissions.findings.map(permissionCheck);
  if (checks.length === 0) {
    const files = permissions.filesChecked;
    checks.push({
      check: 'file_mode',
      status: 'ok',
      subject: home,
      message: `${files} file${files === 1 ? '' : 's'} checked: yours and private; directories yours and 0700`,
    });
  }
  return checks;
}

function stateCheck(s: ServerStatus, now: number): DoctorCheck {
  if (s.state === 'ok') {
    const expiry = s.accessTokenExpiresAt ? Date.parse(s.accessTokenExpiresAt) - now : undefined;
    const access =
      expiry === undefined
        ? 'access token without expiry'
        : expiry >= 0
          ? `access token valid for ${formatDuration(expiry)}`
          : `access token expired ${formatDuration(expiry)} ago`;
    return {
      check: 'state',
      status: 'ok',
      subject: s.serverUrl,
      message: s.grant
        ? `${s.serverUrl}: machine grant (${access}); the next token comes from ${s.grant.description}`
        : `${s.serverUrl}: signed in (${access}${s.hasRefreshToken ? ', refresh token stored' : ', no refresh token'})`,
    };
  }
  const n = s.needsAuth;
  const reason = n?.reason ?? 'no_credentials';
  return {
    check: reason === 'store_corrupt' ? 'store' : 'state',
    status: 'fail',
    subject: s.serverUrl,
    message: `${s.serverUrl}: needs-auth (${reason}): ${n ? describeNeedsAuth(n) : 'no stored credentials'}${s.unreadable?.movedAt ? `; moved aside at ${s.unreadable.movedAt}` : ''}`,
    fix: n?.fix ?? `authkeep login ${s.serverUrl}`,
  };
}

const SOURCE_TEXT = {
  clientSecret: 'client secret',
  privateKey: 'private key',
  assertion: 'assertion',
  idToken: 'ID token',
  idpClientSecret: 'client secret at the identity provider',
} as const;

/**
 * A machine grant's sources, checked from this process: each variable set, each file readable.
 * Another process (a CI job, the proxy) may have another environment: a warning, not a failure.
 * Only presence is checked; nothing is read into the report.
 */
async function grantSourceChecks(s: ServerStatus, env: NodeJS.ProcessEnv): Promise<DoctorCheck[]> {
  if (!s.grant) return [];
  const checks: DoctorCheck[] = [];
  for (const { what, from } of s.grant.sources) {
    const name = SOURCE_TEXT[what];
    if ('env' in from) {
      const set = env[from.env] !== undefined && env[from.env] !== '';
      checks.push({
        check: 'credential',
        status: set ? 'ok' : 'warn',
        subject: s.serverUrl,
        message: set
          ? `${s.serverUrl}: the ${name} comes from environment variable ${from.env}, which is set here`
          : `${s.serverUrl}: the ${name} comes from environment variable ${from.env}, which is not set here`,
        ...(set ? {} : { fix: `set ${from.env} in the environment of the processes that use ${s.serverUrl}` }),
      });
      continue;
    }
    const readable = await access(from.file, constants.R_OK).then(
      () => undefined,
      (err: NodeJS.ErrnoException) => err.code ?? 'unreadable',
    );
    // A secret or key the user keeps should be theirs alone; a platform's token file (an assertion,
    // an ID token) is the platform's to protect, and Kubernetes mounts them 0644.
    const mode = readable === undefined && USER_KEPT.has(what) ? await stat(from.file).then((st) => st.mode) : 0;
    const exposed = (mode & 0o077) !== 0;
    checks.push({
      check: 'credential',
      status: readable === undefined && !exposed ? 'ok' : 'warn',
      subject: s.serverUrl,
      message:
        readable !== undefined
          ? `${s.serverUrl}: the ${name} comes from file ${from.file}, which cannot be read here (${readable})`
          : exposed
            ? `${s.serverUrl}: the ${name} comes from file ${from.file}, which other users can read (${modeString(mode)})`
            : `${s.serverUrl}: the ${name} comes from file ${from.file}, which is readable`,
      ...(readable !== undefined
        ? { fix: `make ${shellQuote(from.file)} readable by the processes that use ${s.serverUrl}` }
        : exposed
          ? { fix: `chmod 600 ${shellQuote(from.file)}` }
          : {}),
    });
  }
  return checks;
}

/** Sources whose file the user keeps (not a platform-mounted token). */
const USER_KEPT: ReadonlySet<string> = new Set(['clientSecret', 'privateKey', 'idpClientSecret']);

/** A lock as the store's inspection reports it. */
type StoreLock = StoreInspection['locks'][number];

const STALE_TEXT: Record<NonNullable<StoreLock['stale']>, string> = {
  dead_pid: 'its holder process is gone',
  heartbeat: 'its holder stopped heartbeating (hung)',
  max_hold: 'it was held longer than its bound',
  unreadable: 'it is unreadable (its creator died while writing it)',
};

function lockCheck(lock: StoreLock): DoctorCheck {
  const who = lock.info
    ? `pid ${lock.info.pid} on ${lock.info.hostname} (${lock.info.purpose}) since ${lock.info.acquiredAt}`
    : 'an unknown holder';
  if (lock.stale === undefined) {
    return {
      check: 'lock',
      status: 'ok',
      subject: lock.name,
      message: `lock ${lock.name} is held by ${who}, heartbeat ${formatDuration(lock.heartbeatAgeMs)} ago`,
    };
  }
  return {
    check: 'lock',
    status: 'fail',
    subject: lock.name,
    message: `stale lock ${lock.name}: ${STALE_TEXT[lock.stale]}; held by ${who}`,
    fix: `the next authkeep command takes it over by itself; to clear it now: rm ${shellQuote(lock.path)}`,
  };
}

function describeFetchError(err: unknown): string {
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (e.name === 'TimeoutError' || e.name === 'AbortError') return 'no answer in time';
  return e.cause?.code ?? e.cause?.message ?? e.message ?? String(err);
}

async function reach(
  deps: CliDeps,
  what: string,
  subject: string,
  url: string,
  method: 'HEAD' | 'GET',
  timeoutMs: number,
  retryWith: string,
): Promise<DoctorCheck> {
  const started = deps.now();
  try {
    const response = await deps.fetch(url, { method, redirect: 'manual', signal: AbortSignal.timeout(timeoutMs) });
    await response.body?.cancel().catch(() => undefined);
    return {
      check: 'reachability',
      status: 'ok',
      subject,
      message: `${what} ${new URL(url).origin} answered HTTP ${response.status} in ${deps.now() - started} ms`,
    };
  } catch (err) {
    return {
      check: 'reachability',
      status: 'fail',
      subject,
      message: `${what} ${new URL(url).origin} is unreachable: ${describeFetchError(err)} (${method} ${url}, ${timeoutMs} ms timeout)`,
      fix: `check the network, VPN or proxy and that ${new URL(url).host} is up; then run: ${retryWith}`,
    };
  }
}

/**
 * The client ID metadata document published at `url`, as an authorization server will read it:
 * `client_id` equal to `url`, JSON, and `redirectUris` (the ones authkeep signs in with) listed.
 * `subject` is the server signed in with it, or the URL itself.
 */
async function clientMetadataCheck(
  deps: CliDeps,
  subject: string,
  url: string,
  redirectUris: readonly string[],
  allowHttp: boolean,
  timeoutMs: number,
): Promise<DoctorCheck> {
  const fix = `publish at ${url} the output of: authkeep client-metadata ${shellQuote(url)}${redirectUris
    .filter(
      (uri) => !DEFAULT_LOOPBACK_REDIRECT_URIS.includes(uri) && !redirectUriListed(uri, DEFAULT_LOOPBACK_REDIRECT_URIS),
    )
    .map((uri) => ` --redirect-uri ${shellQuote(uri)}`)
    .join('')}`;
  const about =
    subject === url ? `client ID metadata document ${url}` : `${subject}: client ID metadata document ${url}`;
  try {
    const result = await checkPublishedDocument(url, redirectUris, {
      allowInsecureLoopback: allowHttp,
      timeoutMs,
      fetch: deps.fetch,
    });
    if (result.ok) {
      return {
        check: 'client_metadata',
        status: 'ok',
        subject,
        message: `${about}: client_id matches, redirect_uris ${result.redirectUris.join(' ')} include ${redirectUris.join(' ')}`,
      };
    }
    return {
      check: 'client_metadata',
      status: 'fail',
      subject,
      message: `${about} [${result.field}]: ${result.problem}; authorization servers will refuse this client`,
      fix,
    };
  } catch (err) {
    const reason = err instanceof AuthkeepError ? err.message : describeFetchError(err);
    return {
      check: 'client_metadata',
      status: 'fail',
      subject,
      message: `${about} could not be read: ${reason}`,
      fix: `make ${url} reachable (${fix})`,
    };
  }
}

/** RFC 8414 section 3.1: the well-known URI is inserted between the host and the issuer's path. */
function asMetadataUrl(issuer: string): string {
  const url = new URL(issuer);
  const suffix = url.pathname === '/' ? '' : url.pathname.replace(/\/$/, '');
  return `${url.origin}/.well-known/oauth-authorization-server${suffix}`;
}

export async function diagnose(deps: CliDeps, options: DoctorOptions): Promise<DoctorReport> {
  const keeper = deps.createKeeper(keeperOptions(options.global, deps));
  const home = keeper.home;
  const checks: DoctorCheck[] = [];

  // Records parse. Read-only: an unreadable record is reported where it is (status says
  // store_corrupt, with the file and what is wrong); a quarantined one until its server is signed
  // in to again. A store that is not the user's own is refused (store_untrusted): the file checks
  // say where.
  let statuses: ServerStatus[] = [];
  let refused: AuthkeepError | undefined;
  try {
    statuses = await keeper.status(options.serverUrl);
  } catch (err) {
    if (
      !(err instanceof AuthkeepError) ||
      !['store_untrusted', 'keychain_unavailable', 'store_unreachable'].includes(err.code)
    )
      throw err;
    refused = err;
  }
  // The fleet store (AUTHKEEP_STORE=redis://...) is named by its URL without the password.
  const fleet = keeper.store instanceof RedisCredentialStore ? keeper.store : undefined;
  const where = fleet ? fleet.location : home;
  let inspection: StoreInspection;
  try {
    inspection = await keeper.store.inspect(options.serverUrl);
  } catch (err) {
    if (!(err instanceof AuthkeepError) || err.code !== 'store_unreachable') throw err;
    refused ??= err;
    inspection = {
      location: where,
      exists: false,
      quarantined: [],
      permissions: { checked: false, filesChecked: 0, findings: [] },
      locks: [],
      locksLocation: where,
    };
  }
  checks.push(
    refused?.code === 'store_unreachable'
      ? {
          check: 'store',
          status: 'fail',
          subject: where,
          message: refused.message,
          fix: 'check that Redis is running and reachable from this host, and AUTHKEEP_STORE / AUTHKEEP_REDIS_PASSWORD',
        }
      : refused
        ? { check: 'store', status: 'fail', subject: where, message: `the store is refused: ${refused.message}` }
        : fleet
          ? {
              check: 'store',
              status: 'ok',
              subject: where,
              message: `fleet store ${where}: reachable, ${inspection.locks.length} lease(s) held`,
            }
          : inspection.exists
            ? { check: 'store', status: 'ok', subject: home, message: `home ${home}` }
            : {
                check: 'store',
                status: 'ok',
                subject: home,
                message: `home ${home} does not exist yet (nothing stored)`,
              },
  );
  checks.push(...atRestChecks(inspection, home));
  if (statuses.length === 0 && !refused)
    checks.push({ check: 'state', status: 'ok', subject: home, message: 'no servers stored' });
  const now = deps.now();
  checks.push(...statuses.map((s) => stateCheck(s, now)));

  for (const s of statuses) checks.push(...(await grantSourceChecks(s, deps.env)));

  const shown = new Set(statuses.map((s) => s.unreadable?.file));
  for (const file of inspection.quarantined) {
    if (shown.has(file)) continue; // reported above with its server, as needs-auth store_corrupt
    checks.push({
      check: 'quarantine',
      status: 'warn',
      subject: file,
      message: `quarantined record ${file}: it was unreadable and was moved aside; its server has been signed in to again since`,
      fix: `remove it when you no longer need it: rm ${shellQuote(file)}`,
    });
  }

  checks.push(...permissionChecks(inspection));

  checks.push(...inspection.locks.map(lockCheck));
  if (inspection.locks.length === 0)
    checks.push({ check: 'lock', status: 'ok', subject: inspection.locksLocation, message: 'no locks held' });

  // Reachability of each server and its authorization server, in parallel.
  const probes: Array<Promise<DoctorCheck>> = [];
  const issuers = new Set<string>();
  for (const s of statuses) {
    if (s.unreadable !== undefined || !URL.canParse(s.serverUrl)) continue; // nothing readable to reach
    const again = `authkeep doctor ${s.serverUrl}`;
    if (s.idpSession) {
      // An enterprise IdP session (SEP-990): its record is keyed by the IdP's issuer; no MCP server.
      if (!issuers.has(s.serverUrl)) {
        issuers.add(s.serverUrl);
        probes.push(reach(deps, 'identity provider', s.serverUrl, s.serverUrl, 'HEAD', options.timeoutMs, again));
      }
      continue;
    }
    probes.push(reach(deps, 'server', s.serverUrl, s.serverUrl, 'HEAD', options.timeoutMs, again));
    if (s.issuer && !issuers.has(s.issuer)) {
      issuers.add(s.issuer);
      probes.push(
        reach(deps, 'authorization server', s.issuer, asMetadataUrl(s.issuer), 'GET', options.timeoutMs, again),
      );
    }
  }
  // Client ID metadata documents of the servers signed in with one, and the one named.
  for (const s of statuses) {
    if (s.registration !== 'client_id_metadata_document' || s.unreadable !== undefined) continue;
    const read = await keeper.store.read(s.serverUrl);
    if (read.kind !== 'ok') continue;
    const { registration } = read.record;
    const allowHttp = options.global.allowHttp || read.record.allowHttpLoopback === true;
    probes.push(
      clientMetadataCheck(
        deps,
        s.serverUrl,
        registration.clientId,
        registration.redirectUris,
        allowHttp,
        options.timeoutMs,
      ),
    );
  }
  if (options.clientMetadataUrl !== undefined) {
    const url = options.clientMetadataUrl;
    probes.push(
      clientMetadataCheck(deps, url, url, DEFAULT_LOOPBACK_REDIRECT_URIS, options.global.allowHttp, options.timeoutMs),
    );
  }
  checks.push(...(await Promise.all(probes)));

  return { ok: checks.every((c) => c.status !== 'fail'), home, checks };
}

export async function runDoctor(deps: CliDeps, options: DoctorOptions): Promise<ExitCode> {
  const report = await diagnose(deps, options);
  if (options.json) {
    deps.stdout.write(`${displayJson(report, 2)}\n`);
  } else {
    deps.stdout.write(renderReport(report, makeStyle(deps.stdout, deps.env)));
  }
  return report.ok ? ExitCode.Ok : ExitCode.Error;
}

export function renderReport(report: DoctorReport, style: ReturnType<typeof makeStyle>): string {
  const mark: Record<CheckStatus, string> = { ok: style.green('✓'), warn: style.yellow('!'), fail: style.red('✗') };
  const width = Math.max(...report.checks.map((c) => c.check.length));
  let out = '';
  for (const c of report.checks) {
    // Messages quote issuers, AS answers and lock files: all printed through displayText.
    out += `${mark[c.status]} ${c.check.padEnd(width)}  ${displayText(c.message, 2000)}\n`;
    if (c.fix && c.status !== 'ok') out += `  ${' '.repeat(width)}  fix: ${displayText(c.fix, 2000)}\n`;
  }
  const fails = report.checks.filter((c) => c.status === 'fail').length;
  const warns = report.checks.filter((c) => c.status === 'warn').length;
  out +=
    fails === 0
      ? `\nNo problems found${warns ? ` (${warns} warning${warns === 1 ? '' : 's'})` : ''}.\n`
      : `\n${fails} problem${fails === 1 ? '' : 's'} found.\n`;
  return out;
}

export function registerDoctor(program: Command, deps: CliDeps, exit: ExitSlot): void {
  program
    .command('doctor')
    .summary('check the store, file modes, drift, locks, reachability and client ID metadata documents')
    .description(
      'Check what can silently break sign-in for every stored server (or only <url>): records that ' +
        'do not parse and quarantined files, file modes (0600 files, 0700 directories), drift and ' +
        'needs-auth states, stale locks, whether the server and its authorization server answer, and ' +
        'the published client ID metadata document of servers signed in with one (client_id, redirect_uris). ' +
        'Each problem comes with the command that fixes it. Exits 0 when all is well, 1 otherwise.',
    )
    .argument('[url]', 'only this MCP server')
    .option('--json', 'print {ok, home, checks: [{check, status, subject, message, fix}]}')
    .option(
      '--client-metadata-url <url>',
      'also check the client ID metadata document published at this URL (client_id, JSON, redirect_uris)',
    )
    .addHelpText(
      'after',
      helpEpilogue([
        'authkeep doctor',
        'authkeep doctor https://mcp.example.com/mcp',
        'authkeep doctor --json',
        'authkeep doctor --client-metadata-url https://app.example.com/oauth/client.json',
      ]),
    )
    .action(
      action(
        deps,
        exit,
        (cmd, global) =>
          parseDoctorOptions(cmd.args[0], cmd.opts<{ json?: boolean; clientMetadataUrl?: string }>(), global),
        runDoctor,
        (o) => o.serverUrl,
      ),
    );
}
