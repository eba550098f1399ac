#!/usr/bin/env bash
# pack-check: the package as a user gets it. `npm pack` (whose prepack builds dist/ from scratch),
# the tarball's file list checked against what must and must not ship, an install into an empty
# prefix with only the runtime dependencies, and then, from that install: `authkeep --version`
# (the package.json version), `authkeep status --json` on an empty home, `import('authkeep')`
# without the optional peer @modelcontextprotocol/client, the keychain binding @napi-rs/keyring
# loading from its installed platform package, then `import('authkeep/sdk-v2')` once the
# tested 2.x client is installed beside it, the separately bundled commands' help, and the
# end-to-end CLI tests (login, token, status, doctor, proxy, logout; the real authorization server)
# run against the installed command.
# Every failure stops with "pack-check: FAILED: <what>".
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

fail() {
  echo "pack-check: FAILED: $*" >&2
  exit 1
}
step() { echo "pack-check: $*"; }

work=$(mktemp -d "${TMPDIR:-/tmp}/authkeep-pack-check.XXXXXX")
trap 'rm -rf "$work"' EXIT
version=$(node -p "require('./package.json').version")

step "npm pack (prepack builds dist/ from scratch)"
rm -rf dist
npm pack --pack-destination "$work" >"$work/pack.log" 2>&1 || { cat "$work/pack.log" >&2; fail "npm pack"; }
tarball="$work/authkeep-$version.tgz"
[ -f "$tarball" ] || { cat "$work/pack.log" >&2; fail "npm pack made no $tarball"; }

step "tarball contents"
tar -tzf "$tarball" | sort >"$work/files"
for required in package/package.json package/README.md package/bin/authkeep.cjs package/dist/index.js \
  package/dist/index.d.ts package/dist/version.js package/dist/cli/authkeep.cjs package/dist/cli/proxy.cjs \
  package/dist/cli/setup.cjs package/dist/sdk-v2.js package/dist/sdk-v2.d.ts; do
  grep -qx "$required" "$work/files" || fail "the tarball lacks $required"
done
unexpected=$(grep -Ev '^package/(package\.json|README\.md|LICENSE|bin/authkeep\.cjs|dist/.+\.(js|d\.ts|cjs))$' "$work/files" || true)
[ -z "$unexpected" ] || fail "the tarball holds files it should not ship:
$unexpected"
echo "  $(wc -l <"$work/files") files, $(du -k "$tarball" | cut -f1) kB"

step "npm install --omit=dev into an empty prefix"
prefix="$work/prefix"
mkdir "$prefix"
npm install --prefix "$prefix" --omit=dev --no-audit --no-fund "$tarball" >"$work/install.log" 2>&1 ||
  { cat "$work/install.log" >&2; fail "npm install of the tarball"; }
bin="$prefix/node_modules/.bin/authkeep"
[ -x "$bin" ] || fail "the install has no executable $bin"
for dev in tsx typescript esbuild oidc-provider @biomejs/biome @modelcontextprotocol/client; do
  [ ! -e "$prefix/node_modules/$dev" ] || fail "the install holds the devDependency $dev"
done

# Run the installed command outside the checkout, with an empty home, and no source to fall back to.
cd "$work"
export AUTHKEEP_HOME="$work/home"
unset AUTHKEEP_FROM_SOURCE

step "authkeep --version"
printed=$("$bin" --version) || fail "authkeep --version exited $?"
[ "$printed" = "$version" ] || fail "authkeep --version printed '$printed', package.json says '$version'"

step "authkeep status --json"
status=$("$bin" status --json) || fail "authkeep status --json exited $?"
[ "$(node -e 'process.stdout.write(JSON.stringify(JSON.parse(process.argv[1])))' "$status")" = "[]" ] ||
  fail "authkeep status --json on an empty home printed: $status"

step "authkeep proxy --help, authkeep setup --help (their own bundles)"
"$bin" proxy --help >/dev/null || fail "authkeep proxy --help exited $?"
"$bin" setup --help >/dev/null || fail "authkeep setup --help exited $?"

step "import('authkeep')"
(cd "$prefix" && node -e "
import('authkeep').then((m) => {
  if (typeof m.AuthKeeper !== 'function') throw new Error('no AuthKeeper export');
  if (m.VERSION !== '$version') throw new Error('VERSION is ' + m.VERSION + ', package.json says $version');
})") || fail "import('authkeep') from the install"

step "the keychain binding loads from the install (its prebuilt binary came in an npm platform package)"
(cd "$prefix" && node -e "
const keyring = require('@napi-rs/keyring');
if (typeof keyring.AsyncEntry !== 'function') throw new Error('@napi-rs/keyring has no AsyncEntry');
") || fail "require('@napi-rs/keyring') from the install (no prebuilt binary for $(node -p 'process.platform + \"-\" + process.arch')?)"

step "the fleet store's Redis client loads from the install (not bundled: required when AUTHKEEP_STORE is redis://)"
closed_port=$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
fleet=$(AUTHKEEP_STORE="redis://127.0.0.1:$closed_port" AUTHKEEP_STORE_KEY="$(node -p "require('crypto').randomBytes(32).toString('base64')")" \
  "$bin" status 2>&1) && fail "authkeep status with an unreachable fleet store exited 0"
case "$fleet" in
*store_unreachable*) ;;
*) fail "authkeep status with an unreachable fleet store printed: $fleet" ;;
esac

step "the compiled-code cache: a second run reuses it, in a directory only this user can write"
export XDG_CACHE_HOME="$work/cache"
"$bin" --version >/dev/null && printed=$("$bin" --version) || fail "authkeep --version with the code cache exited $?"
[ "$printed" = "$version" ] || fail "authkeep --version with the code cache printed '$printed'"
if node -e "process.exit(typeof require('node:module').enableCompileCache === 'function' ? 1 : 0)"; then
  ls "$XDG_CACHE_HOME/authkeep/compiled/"*.v8 >/dev/null 2>&1 || fail "no code cache in $XDG_CACHE_HOME/authkeep/compiled"
  [ "$(stat -c %a "$XDG_CACHE_HOME/authkeep/compiled")" = 700 ] || fail "the code cache directory is not 0700"
fi

sdk_v2=$(node -p "require('$root/package.json').devDependencies['@modelcontextprotocol/client']")
step "import('authkeep/sdk-v2') with @modelcontextprotocol/client $sdk_v2 installed beside it"
npm install --prefix "$prefix" --no-save --no-audit --no-fund "@modelcontextprotocol/client@$sdk_v2" >"$work/install-v2.log" 2>&1 ||
  { cat "$work/install-v2.log" >&2; fail "npm install of @modelcontextprotocol/client@$sdk_v2"; }
(cd "$prefix" && node -e "
Promise.all([import('authkeep'), import('authkeep/sdk-v2')]).then(([root, v2]) => {
  const provider = v2.authProviderV2(new root.AuthKeeper({ home: '$work/home' }), 'https://mcp.example.com/mcp');
  if (!(provider instanceof v2.KeeperAuthProviderV2)) throw new Error('authProviderV2 made no KeeperAuthProviderV2');
  if (typeof provider.tokens !== 'function' || typeof provider.clientInformation !== 'function')
    throw new Error('not an OAuthClientProvider');
})") || fail "import('authkeep/sdk-v2') from the install"

step "CLI end-to-end tests against the installed authkeep"
cd "$root"
AUTHKEEP_TEST_BIN="$bin" node --import tsx --test --test-concurrency=1 --test-name-pattern='^login' \
  test/cli/cli.test.ts >"$work/cli-tests.log" 2>&1 || { cat "$work/cli-tests.log" >&2; fail "CLI tests against the install"; }
grep -E '^# (pass|fail)' "$work/cli-tests.log" | sed 's/^#/ /'
grep -q '^# pass [1-9]' "$work/cli-tests.log" || fail "no CLI test ran against the install"

step "ok: authkeep $version packs, installs with its runtime dependencies only, and runs"
