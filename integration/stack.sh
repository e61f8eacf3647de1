#!/usr/bin/env bash
# Start/stop the integration stack inside a PRIVATE network namespace.
#
# Orthanc binds 0.0.0.0 whatever it is told, so everything here must run in a
# network namespace that has only loopback. Install packages first (install.sh),
# then enter one:
#     integration/stack.sh netns [CMD...]          # = unshare --net, lo up, run CMD (default: bash)
#
# Invoked (inside the namespace):
#     stack.sh up   [COMPONENT...]                 # start, print addresses, run until Ctrl-C / SIGTERM
#     stack.sh run  [COMPONENT...] -- CMD [ARG...] # start, run CMD, stop everything, exit with CMD's status
#     stack.sh data [MANIFEST_DIR]                 # make-studies.sh + upload.sh (Orthancs must be up)
#     stack.sh seed [FHIR_BASE]                    # data/seed-fhir.mjs (default FHIR_BASE: $GATEWAY_URL/fhir)
#     stack.sh env                                 # print the addresses as shell variables
# Sourced (inside the namespace):
#     source integration/stack.sh
#     stack_install_trap                           # stop everything on EXIT/INT/TERM
#     stack_start orthanc medplum                  # any COMPONENTs, in order
#     ...; stack_stop                              # everything (or stack_stop NAME...)
#
# COMPONENTs: orthanc-a orthanc-b orthanc (= both) hapi medplum gateway auth all
#             (all = orthanc hapi medplum gateway)
#
# Environment (defaults):
#   STACK_RUN_DIR     integration/tmp/run-<pid>   logs/, Orthanc storage, Caddy data
#   STACK_KEEP_RUN_DIR=1                          keep STACK_RUN_DIR after stop (default: removed if we created it)
#   ORTHANC_A_HTTP_PORT 18042  (DICOMweb /dicom-web,      WADO-URI /wado)
#   ORTHANC_B_HTTP_PORT 18043  (DICOMweb /pacs/dicom-web, WADO-URI /pacs/wado)
#   HAPI_PORT 8080    (passed to integration/hapi/run.sh; ready when /fhir/metadata is 200)
#   HAPI_FHIR_VERSION r4 (dstu3: HAPI serves FHIR STU3; run.sh reads it; pair it with
#                     GATEWAY_FHIR_VERSION=stu3, which stack.Caddyfile passes to fhir_version)
#   MEDPLUM_PORT 8090 (FHIR at /fhir/)
#   GATEWAY_PUBLIC_URL, VIEWER_PUBLIC_URL (GATEWAY_URL, VIEWER_URL): the origins the gateway writes
#                     its URLs on (public_base), whatever Host a client sends
#   GATEWAY_PORT 8000, CADDY_BIN <repo>/caddy, GATEWAY_CADDYFILE caddyfile/examples/stack.Caddyfile
#                     (its FHIR upstream: FHIR_UPSTREAM_HOST, default 127.0.0.1:8080 = hapi)
#   VIEWER_PORT 3000  (the OHIF viewer, served by the gateway's Caddy: stack.Caddyfile)
#   AUTH_PORT 9000    (auth/server.mjs, OAuth 2.0/SMART authorization server; ready when
#                     /.well-known/openid-configuration is 200; AUTH_* env passes through)
#   STACK_ALLOW_HOST_NETWORK=1   skip the private-namespace check (don't)
#   *_START_TIMEOUT   seconds to wait for readiness (orthanc 30, hapi 300, medplum 90, gateway 30, auth 30)

_STACK_HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
_STACK_REPO="$(cd "$_STACK_HERE/.." && pwd)"

: "${ORTHANC_A_HTTP_PORT:=18042}"
: "${ORTHANC_B_HTTP_PORT:=18043}"
: "${HAPI_PORT:=8080}"
: "${MEDPLUM_PORT:=8090}"
: "${GATEWAY_PORT:=8000}"
: "${AUTH_PORT:=9000}"
: "${VIEWER_PORT:=3000}"
: "${CADDY_BIN:=$_STACK_REPO/caddy}"
: "${GATEWAY_CADDYFILE:=$_STACK_REPO/caddyfile/examples/stack.Caddyfile}"
export ORTHANC_A_HTTP_PORT ORTHANC_B_HTTP_PORT HAPI_PORT MEDPLUM_PORT GATEWAY_PORT AUTH_PORT VIEWER_PORT
export ORTHANC_A_URL="http://127.0.0.1:$ORTHANC_A_HTTP_PORT"
export ORTHANC_B_URL="http://127.0.0.1:$ORTHANC_B_HTTP_PORT"
export ORTHANC_A_DICOMWEB="$ORTHANC_A_URL/dicom-web"
export ORTHANC_B_DICOMWEB="$ORTHANC_B_URL/pacs/dicom-web"
export ORTHANC_A_WADO_URI="$ORTHANC_A_URL/wado"
export ORTHANC_B_WADO_URI="$ORTHANC_B_URL/pacs/wado"
export HAPI_FHIR_BASE="http://127.0.0.1:$HAPI_PORT/fhir"
export MEDPLUM_FHIR_BASE="http://127.0.0.1:$MEDPLUM_PORT/fhir"
export GATEWAY_URL="http://127.0.0.1:$GATEWAY_PORT"
export AUTH_URL="http://127.0.0.1:$AUTH_PORT"
export VIEWER_URL="http://127.0.0.1:$VIEWER_PORT"
# The origins the gateway writes its URLs on (public_base in the example Caddyfiles).
: "${GATEWAY_PUBLIC_URL:=$GATEWAY_URL}" "${VIEWER_PUBLIC_URL:=$VIEWER_URL}"
export GATEWAY_PUBLIC_URL VIEWER_PUBLIC_URL
# What the gateway's Caddyfile serves besides the gateway: the landing page and the viewer.
export SITE_ROOT="$_STACK_HERE/site" VIEWER_CONFIG="$_STACK_HERE/viewer" \
  VIEWER_DIST="$_STACK_HERE/node_modules/@ohif/app/dist"

declare -gA STACK_PIDS=()
declare -ga STACK_ORDER=()
STACK_HAPI_SKIPPED=0

_stack_log() { echo "[stack] $*" >&2; }
_stack_now() { date +%s.%N; }
_stack_since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1fs", b-a}'; }

stack_check_netns() {
  [ "${STACK_ALLOW_HOST_NETWORK:-0}" = 1 ] && return 0
  local ifs; ifs="$(ip -o link show 2>/dev/null | awk -F': ' '{sub(/@.*/,"",$2); printf "%s ", $2}')"
  if [ "$ifs" != "lo " ]; then
    _stack_log "REFUSING: network interfaces besides loopback exist ($ifs)."
    _stack_log "Orthanc listens on 0.0.0.0; run inside a private namespace: $0 netns"
    return 1
  fi
  if ! ip -o link show lo 2>/dev/null | grep -q 'UP'; then
    ip link set lo up 2>/dev/null || { _stack_log "cannot bring lo up"; return 1; }
  fi
}

stack_run_dir() {
  if [ -z "${STACK_RUN_DIR:-}" ]; then
    STACK_RUN_DIR="$_STACK_HERE/tmp/run-$$"
    _STACK_OWN_RUN_DIR=1
  fi
  mkdir -p "$STACK_RUN_DIR/logs"
  export STACK_RUN_DIR
}

# _stack_wait_http NAME URL TIMEOUT [accept: 200|any]
_stack_wait_http() {
  local name="$1" url="$2" timeout="$3" accept="${4:-200}" pid="${STACK_PIDS[$1]}" t0 code
  t0=$(_stack_now)
  while :; do
    if ! kill -0 "$pid" 2>/dev/null; then
      _stack_log "$name: process $pid exited before it was ready; last log lines:"
      tail -n 20 "$STACK_RUN_DIR/logs/$name.log" >&2 || true
      wait "$pid" 2>/dev/null; unset 'STACK_PIDS[$name]'
      return 1
    fi
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" 2>/dev/null)" || true
    if { [ "$accept" = any ] && [ "$code" != 000 ] && [ -n "$code" ]; } || [ "$code" = "$accept" ]; then
      _stack_log "$name ready in $(_stack_since "$t0") ($url -> $code)"
      return 0
    fi
    if awk -v a="$t0" -v b="$(date +%s.%N)" -v t="$timeout" 'BEGIN{exit !(b-a>t)}'; then
      _stack_log "$name: not ready after ${timeout}s ($url -> $code); log: $STACK_RUN_DIR/logs/$name.log"
      return 1
    fi
    sleep 0.1
  done
}

# _stack_spawn NAME CMD... : start in background, log to logs/NAME.log
_stack_spawn() {
  local name="$1"; shift
  if [ -n "${STACK_PIDS[$name]:-}" ] && kill -0 "${STACK_PIDS[$name]}" 2>/dev/null; then
    _stack_log "$name already running (pid ${STACK_PIDS[$name]})"; return 2
  fi
  "$@" >"$STACK_RUN_DIR/logs/$name.log" 2>&1 </dev/null &
  STACK_PIDS[$name]=$!
  STACK_ORDER+=("$name")
}

_stack_start_orthanc() { # a|b
  local n="$1" port cfg
  [ "$n" = a ] && port=$ORTHANC_A_HTTP_PORT || port=$ORTHANC_B_HTTP_PORT
  cfg="$("$_STACK_HERE/orthanc/make-config.sh" "$n" "$STACK_RUN_DIR")" || return 1
  _stack_log "starting orthanc-$n on :$port ..."
  _stack_spawn "orthanc-$n" /usr/sbin/Orthanc "$cfg" || return $(( $? == 2 ? 0 : 1 ))
  _stack_wait_http "orthanc-$n" "http://127.0.0.1:$port/system" "${ORTHANC_START_TIMEOUT:-30}"
}

_stack_start_hapi() {
  if [ ! -f "$_STACK_HERE/hapi/run.sh" ]; then
    _stack_log "hapi: integration/hapi/run.sh not present (HAPI not built yet) - SKIPPED"
    STACK_HAPI_SKIPPED=1; return 0
  fi
  _stack_log "starting hapi (FHIR ${HAPI_FHIR_VERSION:-r4}) on :$HAPI_PORT ..."
  _stack_spawn hapi env HAPI_PORT="$HAPI_PORT" STACK_RUN_DIR="$STACK_RUN_DIR" bash "$_STACK_HERE/hapi/run.sh" \
    || return $(( $? == 2 ? 0 : 1 ))
  _stack_wait_http hapi "$HAPI_FHIR_BASE/metadata" "${HAPI_START_TIMEOUT:-300}"
}

_stack_start_medplum() {
  [ -d "$_STACK_HERE/node_modules/@medplum/fhir-router" ] || { _stack_log "medplum: node_modules missing, run integration/install.sh"; return 1; }
  _stack_log "starting medplum on :$MEDPLUM_PORT ..."
  _stack_spawn medplum env MEDPLUM_PORT="$MEDPLUM_PORT" node --experimental-websocket --no-warnings \
    "$_STACK_HERE/medplum/server.mjs" || return $(( $? == 2 ? 0 : 1 ))
  _stack_wait_http medplum "http://127.0.0.1:$MEDPLUM_PORT/healthcheck" "${MEDPLUM_START_TIMEOUT:-90}"
}

_stack_start_gateway() {
  [ -x "$CADDY_BIN" ] || { _stack_log "gateway: $CADDY_BIN not found (go build ./cmd/caddy in the repo root)"; return 1; }
  [ -f "$GATEWAY_CADDYFILE" ] || { _stack_log "gateway: Caddyfile $GATEWAY_CADDYFILE not found (set GATEWAY_CADDYFILE)"; return 1; }
  mkdir -p "$STACK_RUN_DIR/caddy"
  _stack_log "starting gateway on :$GATEWAY_PORT ($GATEWAY_CADDYFILE) ..."
  _stack_spawn gateway env XDG_DATA_HOME="$STACK_RUN_DIR/caddy" XDG_CONFIG_HOME="$STACK_RUN_DIR/caddy" \
    HOME="$STACK_RUN_DIR/caddy" "$CADDY_BIN" run --config "$GATEWAY_CADDYFILE" --adapter caddyfile \
    || return $(( $? == 2 ? 0 : 1 ))
  _stack_wait_http gateway "$GATEWAY_URL/" "${GATEWAY_START_TIMEOUT:-30}" any
}

_stack_start_auth() {
  [ -d "$_STACK_HERE/node_modules/oidc-provider" ] || { _stack_log "auth: node_modules missing, run integration/install.sh"; return 1; }
  _stack_log "starting auth on :$AUTH_PORT ..."
  _stack_spawn auth env AUTH_PORT="$AUTH_PORT" node --no-warnings "$_STACK_HERE/auth/server.mjs" \
    || return $(( $? == 2 ? 0 : 1 ))
  _stack_wait_http auth "$AUTH_URL/.well-known/openid-configuration" "${AUTH_START_TIMEOUT:-30}"
}

stack_start() {
  stack_check_netns || return 1
  stack_run_dir
  local c comps=()
  [ $# -eq 0 ] && set -- orthanc
  for c in "$@"; do
    case "$c" in
      all) comps+=(orthanc-a orthanc-b hapi medplum gateway) ;;
      orthanc) comps+=(orthanc-a orthanc-b) ;;
      orthanc-a|orthanc-b|hapi|medplum|gateway|auth) comps+=("$c") ;;
      *) _stack_log "unknown component '$c'"; return 1 ;;
    esac
  done
  for c in "${comps[@]}"; do
    case "$c" in
      orthanc-a) _stack_start_orthanc a ;;
      orthanc-b) _stack_start_orthanc b ;;
      hapi) _stack_start_hapi ;;
      medplum) _stack_start_medplum ;;
      gateway) _stack_start_gateway ;;
      auth) _stack_start_auth ;;
    esac || { _stack_log "failed to start $c"; return 1; }
  done
}

# all descendants of a PID (by PID, children first listed after parents)
_stack_tree() {
  local p="$1" c
  for c in $(pgrep -P "$p" 2>/dev/null); do echo "$c"; _stack_tree "$c"; done
}

# stop the named components: SIGTERM to all of them (and their descendants) at
# once, then wait for each; SIGKILL what is still alive after STACK_STOP_TIMEOUT (15 s)
_stack_stop_many() {
  local name pid t0 i alive
  local -A trees=() pids=()
  t0=$(_stack_now)
  for name in "$@"; do
    pid="${STACK_PIDS[$name]:-}"; [ -n "$pid" ] || continue
    unset 'STACK_PIDS[$name]'
    pids[$name]=$pid
    trees[$name]="$(_stack_tree "$pid")"
    # shellcheck disable=SC2086
    kill -TERM "$pid" ${trees[$name]} 2>/dev/null
  done
  [ ${#pids[@]} -gt 0 ] || return 0
  for i in $(seq 1 $(( ${STACK_STOP_TIMEOUT:-15} * 10 ))); do
    alive=0
    for name in "${!pids[@]}"; do kill -0 "${pids[$name]}" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
  done
  for name in "$@"; do
    pid="${pids[$name]:-}"; [ -n "$pid" ] || continue
    if kill -0 "$pid" 2>/dev/null; then
      _stack_log "$name (pid $pid) did not stop after SIGTERM, sending SIGKILL"
      # shellcheck disable=SC2086
      kill -KILL "$pid" ${trees[$name]} 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
    for i in ${trees[$name]}; do  # descendants are not our children: poll them
      while kill -0 "$i" 2>/dev/null; do sleep 0.1; done
    done
    _stack_log "stopped $name ($(_stack_since "$t0") after SIGTERM)"
  done
}

stack_stop() {
  local i names=("$@")
  if [ ${#names[@]} -eq 0 ]; then
    for (( i=${#STACK_ORDER[@]}-1; i>=0; i-- )); do names+=("${STACK_ORDER[$i]}"); done
  fi
  _stack_stop_many "${names[@]}"
  if [ $# -eq 0 ]; then
    STACK_ORDER=()
    if [ "${_STACK_OWN_RUN_DIR:-0}" = 1 ] && [ "${STACK_KEEP_RUN_DIR:-0}" != 1 ] && [ -n "${STACK_RUN_DIR:-}" ]; then
      rm -rf "$STACK_RUN_DIR"
    fi
  fi
}

stack_install_trap() {
  trap '[ -n "${_STACK_SLEEP_PID:-}" ] && kill "$_STACK_SLEEP_PID" 2>/dev/null; stack_stop' EXIT
  trap 'stack_stop; trap - INT; kill -INT $$' INT
  trap 'stack_stop; trap - TERM; kill -TERM $$' TERM
}

stack_env() {
  local v
  for v in STACK_RUN_DIR ORTHANC_A_URL ORTHANC_B_URL ORTHANC_A_DICOMWEB ORTHANC_B_DICOMWEB \
           ORTHANC_A_WADO_URI ORTHANC_B_WADO_URI HAPI_FHIR_BASE MEDPLUM_FHIR_BASE GATEWAY_URL AUTH_URL VIEWER_URL; do
    printf '%s=%q\n' "$v" "${!v:-}"
  done
}

stack_data() { # [OUT_DIR]
  local out="${1:-${STACK_RUN_DIR:-$_STACK_HERE/tmp}/studies}"
  "$_STACK_HERE/data/make-studies.sh" "$out" >&2 && "$_STACK_HERE/data/upload.sh" "$out/studies.json" >&2
}

stack_seed() { # [FHIR_BASE]
  local out="${STACK_RUN_DIR:-$_STACK_HERE/tmp}/studies"
  STUDIES_MANIFEST="${STUDIES_MANIFEST:-$out/studies.json}" \
    node "$_STACK_HERE/data/seed-fhir.mjs" --fhir "${1:-${FHIR_BASE:-$GATEWAY_URL/fhir}}"
}

_stack_main() {
  local cmd="${1:-}"; shift || true
  case "$cmd" in
    netns)
      [ $# -eq 0 ] && set -- bash
      exec unshare --net -- bash -c 'ip link set lo up && exec "$@"' stack-netns "$@" ;;
    up)
      stack_install_trap
      stack_start "$@" || exit 1
      stack_env
      _stack_log "up; Ctrl-C or SIGTERM to stop"
      while :; do
        sleep 3600 & _STACK_SLEEP_PID=$!
        wait "$_STACK_SLEEP_PID"
      done ;;
    run)
      local comps=()
      while [ $# -gt 0 ] && [ "$1" != -- ]; do comps+=("$1"); shift; done
      [ "${1:-}" = -- ] && shift
      [ $# -gt 0 ] || { echo "usage: stack.sh run [COMPONENT...] -- CMD [ARG...]" >&2; exit 2; }
      stack_install_trap
      stack_start "${comps[@]}" || exit 1
      local rc=0; "$@" || rc=$?
      exit $rc ;;
    data) stack_data "$@" ;;
    seed) stack_seed "$@" ;;
    env) stack_env ;;
    *) sed -n '2,/^$/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; [ -z "$cmd" ] || [ "$cmd" = help ] || exit 2 ;;
  esac
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -uo pipefail
  _stack_main "$@"
fi
