#!/usr/bin/env bash
# End-to-end tests of the gateway against the real stack, once per FHIR server.
#
#   integration/run-e2e.sh [hapi] [hapi-smart] [hapi-stu3] [medplum]   (default: all four)
#
#   hapi        HAPI FHIR JPA, open, with caddyfile/examples/stack.Caddyfile: integration/e2e/*.test.mjs
#   hapi-smart  the same HAPI enforcing SMART tokens (its own interceptors, fed by introspection at
#               the stack's authorization server, integration/auth), the gateway with
#               caddyfile/examples/smart.Caddyfile (authorize): integration/e2e/smart/*.test.mjs
#   hapi-stu3   the same HAPI serving FHIR STU3 (HAPI_FHIR_VERSION=dstu3), the gateway with
#               stack.Caddyfile and fhir_version stu3 (GATEWAY_FHIR_VERSION), STU3-shaped data
#               (seed-fhir.mjs --fhir-version stu3): integration/e2e/stu3/*.test.mjs
#   medplum     the Medplum fhir-router, open: integration/e2e/*.test.mjs
#
# Run from OUTSIDE the private network namespace, after integration/install.sh and
# `go build -o caddy ./cmd/caddy` (it builds the binary if missing). It enters a
# namespace with only loopback (stack.sh netns) and, for each FHIR server:
#   starts both Orthancs + the FHIR server + the gateway (caddyfile/examples/stack.Caddyfile
#   on 127.0.0.1:8000, FHIR_UPSTREAM_HOST pointing at that server), makes the synthetic
#   studies and uploads them, seeds FHIR THROUGH THE GATEWAY, runs
#   `node --test integration/e2e/*.test.mjs` with FHIR_SERVER=<server>, and stops everything.
# Prints "[e2e] ..." progress and node's own TAP output and summary per server, then one
# line "e2e: N passed, N failed, N skipped" over all servers. Exits non-zero on any failure.
#
# HAPI is the product's first FHIR server: when its build fails, the run fails under CI=true and
# is skipped with a loud line otherwise.
# Environment: E2E_SERVERS ("hapi hapi-smart hapi-stu3 medplum"), E2E_TESTS (test files; default per server),
#   E2E_KEEP=1 keep integration/tmp/e2e/<server>/ (logs, Orthanc storage) even on success,
#   CADDY_BIN (default <repo>/caddy), HAPI_START_TIMEOUT (300).
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
log() { echo "[e2e] $*"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1fs", b-a}'; }

if [ "${_E2E_INSIDE:-0}" != 1 ]; then
  # ---------------- outside the namespace: check what is needed, then enter one
  t0=$(now)
  servers=("$@")
  [ ${#servers[@]} -gt 0 ] || read -r -a servers <<<"${E2E_SERVERS:-}"
  [ ${#servers[@]} -gt 0 ] || servers=(hapi hapi-smart hapi-stu3 medplum)
  [ -d "$HERE/node_modules/dicomweb-client" ] || { log "node_modules missing: run integration/install.sh first"; exit 1; }
  command -v unshare >/dev/null && command -v ip >/dev/null || { log "unshare/ip missing: run integration/install.sh first"; exit 1; }
  CADDY_BIN="${CADDY_BIN:-$REPO/caddy}"
  mkdir -p "$HERE/tmp"
  if [ ! -x "$CADDY_BIN" ]; then
    log "building $CADDY_BIN"
    (cd "$REPO" && go build -o "$CADDY_BIN" ./cmd/caddy) || { log "go build failed"; exit 1; }
  fi
  for f in "$REPO"/caddyfile/examples/*.Caddyfile; do
    GATEWAY_SOCKET=/tmp/validate.sock "$CADDY_BIN" validate --adapter caddyfile --config "$f" >/dev/null 2>"$HERE/tmp/validate.log" \
      || { log "$f does not validate:"; tail -n 3 "$HERE/tmp/validate.log"; exit 1; }
  done
  log "caddyfile/examples/*.Caddyfile validate"
  run=()
  hapi_built=""
  for s in "${servers[@]}"; do
    case "$s" in
      hapi|hapi-smart|hapi-stu3)
        if [ -z "$hapi_built" ]; then
          # build.sh is a no-op when the jar is up to date; it needs Maven Central, so it runs here, outside.
          hapi_built=yes
          bash "$HERE/hapi/build.sh" >"$HERE/tmp/hapi-build.log" 2>&1 || hapi_built=no
        fi
        if [ "$hapi_built" = no ]; then
          log "!!! $s: integration/hapi/build.sh FAILED (see integration/tmp/hapi-build.log):"
          tail -n 5 "$HERE/tmp/hapi-build.log" | sed 's/^/[e2e]   /'
          if [ "${CI:-}" = true ]; then
            log "!!! CI=true: the gateway is never passed without the HAPI server it is built for"; exit 1
          fi
          log "!!! $s SKIPPED (outside CI only)"; continue
        fi
        run+=("$s") ;;
      medplum) run+=(medplum) ;;
      *) log "unknown FHIR server '$s' (hapi|hapi-smart|hapi-stu3|medplum)"; exit 2 ;;
    esac
  done
  [ ${#run[@]} -gt 0 ] || { log "no FHIR server to test against"; exit 1; }
  log "FHIR servers: ${run[*]}; entering a private network namespace (loopback only)"
  export _E2E_INSIDE=1 _E2E_T0="$t0" CADDY_BIN
  exec "$HERE/stack.sh" netns bash "${BASH_SOURCE[0]}" "${run[@]}"
fi

# ---------------- inside the namespace
# shellcheck source=stack.sh
source "$HERE/stack.sh"
stack_check_netns || exit 1
mkdir -p "$HERE/tmp/e2e"
stack_install_trap

total_pass=0 total_fail=0 total_skip=0 rc=0
declare -a summary=()

# a stack that did not come up counts as one failed test
setup_failed() { # server, what
  log "$1: $2"; stack_stop
  total_fail=$((total_fail + 1)); summary+=("$1: $2")
  return 1
}

run_server() { # hapi|hapi-smart|hapi-stu3|medplum
  local server="$1" t0 tp fhir_port rcs=0 tap
  local -a comps tests
  t0=$(now)
  # What differs between the runs: the FHIR server, the gateway's Caddyfile, the tests, and for
  # hapi-smart the authorization server, HAPI enforcing its tokens, and a fifth (restricted) study.
  export GATEWAY_CADDYFILE="$REPO/caddyfile/examples/stack.Caddyfile" STUDIES_SCENARIOS="S1 S2 S3 S4"
  unset HAPI_AUTH_INTROSPECT FHIR_TOKEN HAPI_FHIR_VERSION GATEWAY_FHIR_VERSION SEED_FHIR_VERSION
  comps=(orthanc "$server" gateway)
  tests=("$HERE"/e2e/*.test.mjs)
  case "$server" in
    hapi) fhir_port=$HAPI_PORT; export FHIR_DIRECT_BASE="$HAPI_FHIR_BASE" ;;
    hapi-smart)
      fhir_port=$HAPI_PORT; export FHIR_DIRECT_BASE="$HAPI_FHIR_BASE"
      export GATEWAY_CADDYFILE="$REPO/caddyfile/examples/smart.Caddyfile" STUDIES_SCENARIOS="S1 S2 S3 S4 S5"
      export HAPI_AUTH_INTROSPECT="$AUTH_URL/token/introspection" HAPI_AUTH_CLIENT_ID=hapi-fhir HAPI_AUTH_CLIENT_SECRET=hapi-secret
      export AUTH_GATEWAY_SECRET="${AUTH_GATEWAY_SECRET:-gateway-secret}"
      comps=(orthanc auth hapi gateway)
      tests=("$HERE"/e2e/smart/*.test.mjs) ;;
    hapi-stu3)
      # HAPI serving STU3, the gateway told so (fhir_version stu3: study look-ups by study=),
      # the data written as STU3 has it (urn:oid: uids at every level, no identifier).
      fhir_port=$HAPI_PORT; export FHIR_DIRECT_BASE="$HAPI_FHIR_BASE"
      export HAPI_FHIR_VERSION=dstu3 GATEWAY_FHIR_VERSION=stu3 SEED_FHIR_VERSION=stu3
      comps=(orthanc hapi gateway)
      tests=("$HERE"/e2e/stu3/*.test.mjs) ;;
    medplum) fhir_port=$MEDPLUM_PORT; export FHIR_DIRECT_BASE="$MEDPLUM_FHIR_BASE" ;;
  esac
  [ -n "${E2E_TESTS:-}" ] && read -r -a tests <<<"$E2E_TESTS"
  export FHIR_SERVER="$server" FHIR_UPSTREAM_HOST="127.0.0.1:$fhir_port"
  export STACK_RUN_DIR="$HERE/tmp/e2e/$server"
  rm -rf "$STACK_RUN_DIR"; mkdir -p "$STACK_RUN_DIR/logs"
  export STUDIES_MANIFEST="$STACK_RUN_DIR/studies/studies.json" MEDPLUM_QUIET=1
  log "== $server: starting ${comps[*]} (FHIR upstream $FHIR_UPSTREAM_HOST, gateway ${GATEWAY_CADDYFILE##*/})"
  tp=$(now)
  if ! stack_start "${comps[@]}"; then
    setup_failed "$server" "the stack did not start (logs: $STACK_RUN_DIR/logs)"; return 1
  fi
  if [ "${STACK_HAPI_SKIPPED:-0}" = 1 ]; then
    setup_failed "$server" "HAPI was skipped by stack.sh"; return 1
  fi
  log "$server: stack up in $(since "$tp")"
  tp=$(now)
  if ! stack_data "$STACK_RUN_DIR/studies" >"$STACK_RUN_DIR/logs/data.log" 2>&1; then
    tail -n 20 "$STACK_RUN_DIR/logs/data.log"; setup_failed "$server" "making/uploading the studies failed"; return 1
  fi
  log "$server: $(jq '[.studies[].series[].instances[]] | length' "$STUDIES_MANIFEST") DICOM files made and uploaded to the Orthancs in $(since "$tp")"
  tp=$(now)
  if [ "$server" = hapi-smart ]; then
    # HAPI takes writes only with a token: the seeder's, from the client_credentials grant.
    if ! FHIR_TOKEN=$(cd "$HERE" && node -e 'import("./e2e/lib/smart.mjs").then(async (s) => {
        const t = await s.clientCredentials({ clientId: "seeder", secret: "seeder-secret", scope: "system/*.cruds" });
        process.stdout.write(t.access_token); })' 2>"$STACK_RUN_DIR/logs/seed.log"); then
      cat "$STACK_RUN_DIR/logs/seed.log"; setup_failed "$server" "no seeder token from the authorization server"; return 1
    fi
    export FHIR_TOKEN
  fi
  if ! stack_seed "$GATEWAY_URL/fhir" >"$STACK_RUN_DIR/logs/seed.json" 2>"$STACK_RUN_DIR/logs/seed.log"; then
    cat "$STACK_RUN_DIR/logs/seed.log"; setup_failed "$server" "seeding through the gateway failed"; return 1
  fi
  log "$server: FHIR seeded through the gateway ($GATEWAY_URL/fhir) in $(since "$tp")"
  tp=$(now)
  tap="$STACK_RUN_DIR/logs/node-test.tap"
  log "$server: node --test ${tests[*]##*/}"
  (cd "$HERE" && node --test --test-reporter=tap --test-concurrency=1 "${tests[@]}") 2>&1 | tee "$tap"
  rcs=${PIPESTATUS[0]}
  local p f s
  p=$(awk '/^# pass /{print $3}' "$tap" | tail -n 1); f=$(awk '/^# fail /{print $3}' "$tap" | tail -n 1)
  s=$(awk '/^# skipped /{print $3}' "$tap" | tail -n 1)
  p=${p:-0}; f=${f:-0}; s=${s:-0}
  [ "$rcs" != 0 ] && [ "$f" = 0 ] && f=1   # the runner failed without counting a failure
  total_pass=$((total_pass + p)); total_fail=$((total_fail + f)); total_skip=$((total_skip + s))
  log "$server: tests done in $(since "$tp"): $p passed, $f failed, $s skipped"
  if [ "$rcs" != 0 ]; then
    log "$server: last gateway log lines:"; tail -n 15 "$STACK_RUN_DIR/logs/gateway.log" | cut -c1-400
  fi
  tp=$(now)
  stack_stop
  log "$server: stack stopped in $(since "$tp"); $server total $(since "$t0")"
  summary+=("$server: $p passed, $f failed, $s skipped ($(since "$t0"))")
  if [ "$rcs" = 0 ] && [ "${E2E_KEEP:-0}" != 1 ]; then rm -rf "$STACK_RUN_DIR"; else log "$server: logs kept in $STACK_RUN_DIR/logs"; fi
  return "$rcs"
}

for server in "$@"; do
  run_server "$server" || { rc=1; log "$server: FAILED"; }
done
log "summary (total $(since "${_E2E_T0:-$(now)}")):"
for l in "${summary[@]}"; do log "  $l"; done
echo "e2e: $total_pass passed, $total_fail failed, $total_skip skipped"
exit $rc
