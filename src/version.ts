/**
 * version: the package version, the one string authkeep prints (`--version`) and sends (the
 * User-Agent of every OAuth request, the probe's MCP `clientInfo`). It comes from package.json:
 * compiled in by the CLI bundle's build, else read once from the package.json one directory above
 * this module, which is where it is both in the source (src/version.ts) and in the built library
 * (dist/version.js).
 *
 * Not for: the record schema's `version` (store/record.ts) or the MCP protocol version.
 */
import { readFileSync } from 'node:fs';

/** Defined by scripts/build-cli.ts (esbuild `define`): the bundle does not sit at a fixed depth. */
declare const AUTHKEEP_BUNDLED_VERSION: string | undefined;

/** Used only when package.json cannot be found (authkeep re-bundled into another program). */
const UNKNOWN_VERSION = '0.0.0-unknown';

function readPackageVersion(): string {
  try {
    const pkg: unknown = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
    if (typeof pkg === 'object' && pkg !== null && 'name' in pkg && 'version' in pkg) {
      if (pkg.name === 'authkeep' && typeof pkg.version === 'string') return pkg.version;
    }
  } catch {
    // not in our own layout
  }
  return UNKNOWN_VERSION;
}

/** authkeep's version, e.g. `0.1.0`. */
export const VERSION: string =
  typeof AUTHKEEP_BUNDLED_VERSION === 'string' ? AUTHKEEP_BUNDLED_VERSION : readPackageVersion();

/** The User-Agent of authkeep's own HTTP requests. */
export const USER_AGENT = `authkeep/${VERSION}`;
