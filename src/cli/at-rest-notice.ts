/**
 * at-rest-notice: the one-time notice on stderr when the store mode `auto` found no persistent OS
 * keychain and keeps credentials in plaintext files: shown after the first sign-in that writes
 * such a file, then never again for that home (a marker file `plaintext-notice-shown` in it).
 * `--store file` / `AUTHKEEP_STORE=file` (plaintext on purpose) never shows it; doctor keeps
 * warning either way.
 *
 * Not for: choosing the mode (store/store-mode.ts) or doctor's at-rest checks (commands/doctor.ts).
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { displayText } from '../display-text.js';
import type { CliDeps, Keeper } from './deps.js';

const MARKER = 'plaintext-notice-shown';

export async function atRestNotice(
  deps: Pick<CliDeps, 'stderr'>,
  keeper: Pick<Keeper, 'home' | 'store'>,
): Promise<void> {
  if (typeof keeper.store.inspect !== 'function') return;
  try {
    const sealing = (await keeper.store.inspect('https://notice.invalid/')).sealing;
    if (sealing?.mode !== 'file' || sealing.requested !== 'auto') return;
    // 'wx': only the first process to get here says it.
    await writeFile(path.join(keeper.home, MARKER), `${new Date().toISOString()}\n`, { flag: 'wx', mode: 0o600 });
    deps.stderr.write(
      `authkeep: note: ${displayText(`no persistent OS keychain here (${sealing.fallbackReason ?? 'none found'}); credentials are kept in plaintext files (0600) under ${keeper.home}. Use --store keychain (AUTHKEEP_STORE=keychain) to require the keychain, or --store file to keep files on purpose. This note is shown once; authkeep doctor keeps a warning.`, 2000)}\n`,
    );
  } catch {
    // Shown already (the marker exists), or the home cannot take the marker: nothing to say.
  }
}
