/**
 * secret-service: a real Secret Service for the keychain tests on Linux: a private D-Bus session
 * bus (dbus-daemon with its own config: no service activation, so nothing but the daemon started
 * here can own org.freedesktop.secrets) and gnome-keyring-daemon on it with only its `secrets`
 * component, its login keyring created and unlocked with a password given on stdin, its files in a
 * temp directory. Readiness is an event, not a guess: `gdbus wait` returns when the daemon has
 * claimed org.freedesktop.secrets on the bus (`gnome-keyring-daemon --daemonize` may return just
 * before). Stopping the bus stops the daemon (it exits when its bus goes away).
 *
 * Not on Linux: `unavailableReason()` says why, and the tests skip with that message. On Linux a
 * Secret Service that cannot be started is a failure, never a skip: the .ci/run installs the
 * Debian packages (gnome-keyring, dbus, dbus-x11, libsecret-tools, libglib2.0-bin for gdbus).
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface SecretService {
  /** Environment for this process and children: the private bus. */
  env: { DBUS_SESSION_BUS_ADDRESS: string };
  stop(): Promise<void>;
}

/** Why the keychain tests cannot run on this platform (undefined on Linux: they must run). */
export function unavailableReason(): string | undefined {
  return process.platform === 'linux'
    ? undefined
    : `the keychain tests start gnome-keyring on a private D-Bus; on ${process.platform} the OS keychain is not started by tests`;
}

function busConfig(dir: string): string {
  return `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir=${dir}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
`;
}

/** Run `command`, its stdin `input`; reject naming the command (and its stderr) if it fails. */
function runWithInput(command: string, args: string[], input: string, env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
    child.on('error', (e) => reject(new Error(`${command} could not start: ${e.message}`)));
    child.on('exit', (code) =>
      code === 0 ? resolve(out) : reject(new Error(`${command} exited ${code}: ${err.trim().slice(0, 500)}`)),
    );
    child.stdin.end(input);
  });
}

/** Start a private bus and gnome-keyring on it. Throws, saying what is missing, when it cannot. */
export async function startSecretService(): Promise<SecretService> {
  const dir = await mkdtemp(path.join(tmpdir(), 'authkeep-secret-service-'));
  const config = path.join(dir, 'bus.conf');
  await writeFile(config, busConfig(dir));
  let busPid: number | undefined;
  const stop = async () => {
    if (busPid !== undefined) {
      try {
        process.kill(busPid, 'SIGTERM');
      } catch {
        // already gone
      }
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const printed = await run('dbus-daemon', [
      `--config-file=${config}`,
      '--print-address=1',
      '--print-pid=1',
      '--fork',
      '--nopidfile',
    ]).catch((err: Error) => {
      throw new Error(
        `dbus-daemon could not start a session bus (${err.message}); install: apt-get install -y dbus gnome-keyring libsecret-tools`,
      );
    });
    const [address, pid] = printed.stdout.trim().split('\n');
    if (!address || !pid) throw new Error(`dbus-daemon printed no address and pid: ${printed.stdout}`);
    busPid = Number(pid);
    const env = {
      ...process.env,
      DBUS_SESSION_BUS_ADDRESS: address,
      XDG_DATA_HOME: path.join(dir, 'data'),
      XDG_RUNTIME_DIR: dir,
    };
    // The login keyring is created, and unlocked, with this password (tests only).
    await runWithInput(
      'gnome-keyring-daemon',
      ['--unlock', '--components=secrets', '--daemonize'],
      'authkeep-test-keyring',
      env,
    );
    await run('gdbus', ['wait', '--session', '--timeout', '30', 'org.freedesktop.secrets'], { env }).catch(
      (err: Error) => {
        throw new Error(`gnome-keyring-daemon did not claim org.freedesktop.secrets on the bus: ${err.message}`);
      },
    );
    return { env: { DBUS_SESSION_BUS_ADDRESS: address }, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
