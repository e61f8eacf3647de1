#!/usr/bin/env bash
# The whole stack with sample data, reachable from this host at http://127.0.0.1:8000.
#
#   integration/demo.sh            (or: make demo)     Ctrl-C stops everything.
#
# 1. installs what is missing (integration/install.sh) and builds ./caddy;
# 2. in a private network namespace (loopback only: Orthanc listens on 0.0.0.0 whatever
#    it is told) starts two Orthancs, the FHIR server (HAPI if integration/hapi/ builds,
#    else Medplum's in-memory server) and the gateway (caddyfile/examples/stack.Caddyfile),
#    which also listens on a unix socket in a directory the host sees too;
# 3. makes the synthetic studies, uploads them, seeds FHIR through the gateway;
# 4. on the host, a plain Caddy (caddyfile/examples/host-proxy.Caddyfile) forwards
#    127.0.0.1:$DEMO_PORT to the gateway (its landing page at /), 127.0.0.1:3000 to the
#    OHIF viewer and 127.0.0.1:2019 to the gateway's admin API, all through unix sockets:
#    the archives and the FHIR server stay unreachable;
# 5. prints a short tour and waits; Ctrl-C or SIGTERM stops everything and exits 0.
#
# Environment: DEMO_FHIR=hapi|medplum (default: hapi when available), DEMO_PORT (8000),
#   DEMO_VIEWER_PORT (3000), DEMO_ADMIN_PORT (2019),
#   DEMO_SKIP_INSTALL=1 (do not run install.sh), DEMO_TOUR_ONLY=1 (print the tour and exit).
set -uo pipefail
# Ctrl-C reaches a pipe reader too (make demo | tee): never die of a closed
# pipe while stopping.
trap '' PIPE
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
say() { echo "[demo] $*" >&2; }
: "${DEMO_PORT:=8000}" "${DEMO_VIEWER_PORT:=3000}" "${DEMO_ADMIN_PORT:=2019}"
R=1.2.826.0.1.3680043.10.1234

tour() { # base
  local b="$1"
  cat <<EOF

================ caddy-fhir-imaging demo ($DEMO_FHIR_SERVER behind the gateway) ================
Gateway: $b        (FHIR at /fhir, DICOMweb at /wado-rs, WADO-URI at /wado)
Open in a browser:
  $b/                                        the studies found through FHIR, a picture of every series
  http://127.0.0.1:$DEMO_VIEWER_PORT/                      the OHIF viewer, with the gateway as its one DICOMweb server
  $b/fhir/ImagingStudy/study-s1              an ImagingStudy with the gateway's WADO-RS URLs
  $b/fhir/ImagingStudy?_count=2              a search (page through it)
  $b/wado-rs/studies                         QIDO-RS over both archives, merged
  $b/wado-rs/studies/$R.3/series/$R.3.1/instances/$R.3.1.1/rendered   a rendered image (JPEG)
Try:
  curl -s $b/fhir/ImagingStudy/study-s2 | jq '.series[] | {uid, url: .extension[0].valueUrl}'
  curl -s -o s1.multipart '$b/wado-rs/studies/$R.1/series/$R.1.1/instances/$R.1.1.1'    # WADO-RS instance (multipart/related)
  curl -s '$b/wado-rs/studies/$R.2/series/$R.2.2/metadata' | jq '.[0]["7FE00010"]'      # metadata: BulkDataURI on the gateway
  curl -s -o frame.png -H 'Accept: image/png' '$b/wado-rs/studies/$R.2/series/$R.2.2/instances/$R.2.2.1/rendered'
  curl -s -o s4.dcm '$b/wado?requestType=WADO&studyUID=$R.4&seriesUID=$R.4.1&objectUID=$R.4.1.1&contentType=application/dicom'
  curl -s $b/wado-rs/studies/abc/metadata                                           # 400, JSON message
The studies: S1 on archive a (study endpoint), S2 split over a and b (series endpoints),
S3 on b (MADO style), S4 on a with a WADO-URI endpoint.
Admin API (this host only): curl -s 127.0.0.1:$DEMO_ADMIN_PORT/fhir_imaging/cache
Ctrl-C stops everything.
===============================================================================================
EOF
}

if [ "${1:-}" = --inside ]; then
  # ---------------- inside the namespace: the stack, the data, then wait
  shift
  sock="$1" server="$2"
  # The gateway writes its URLs on the origins this host serves it on.
  export GATEWAY_PUBLIC_URL="http://127.0.0.1:$DEMO_PORT" VIEWER_PUBLIC_URL="http://127.0.0.1:$DEMO_VIEWER_PORT"
  source "$HERE/stack.sh"
  export STACK_RUN_DIR="$(dirname "$sock")/run" MEDPLUM_QUIET=1
  export GATEWAY_UNIX_BIND="unix/$sock" VIEWER_UNIX_BIND="unix/$(dirname "$sock")/viewer.sock" \
    GATEWAY_ADMIN="unix/$(dirname "$sock")/admin.sock"
  case "$server" in
    hapi) export FHIR_UPSTREAM_HOST="127.0.0.1:$HAPI_PORT" ;;
    *) export FHIR_UPSTREAM_HOST="127.0.0.1:$MEDPLUM_PORT" ;;
  esac
  stack_install_trap
  stack_start orthanc "$server" gateway || exit 1
  stack_data "$STACK_RUN_DIR/studies" >"$STACK_RUN_DIR/logs/data.log" 2>&1 || { say "making/uploading studies failed: $STACK_RUN_DIR/logs/data.log"; exit 1; }
  stack_seed "$GATEWAY_URL/fhir" >"$STACK_RUN_DIR/logs/seed.json" || { say "seeding failed"; exit 1; }
  touch "$(dirname "$sock")/ready"
  while :; do sleep 3600 & _STACK_SLEEP_PID=$!; wait "$_STACK_SLEEP_PID"; done
fi

DEMO_FHIR_SERVER="${DEMO_FHIR:-}"
if [ "${DEMO_TOUR_ONLY:-0}" = 1 ]; then DEMO_FHIR_SERVER=${DEMO_FHIR_SERVER:-hapi}; tour "http://127.0.0.1:$DEMO_PORT"; exit 0; fi

# ---------------- outside: install, build, choose the FHIR server
if [ "${DEMO_SKIP_INSTALL:-0}" != 1 ]; then
  say "installing what is missing (integration/install.sh) ..."
  "$HERE/install.sh" >&2 || { say "install.sh failed"; exit 1; }
fi
say "building ./caddy (the first build compiles Caddy: a few minutes on 2 cores) ..."
(cd "$REPO" && go build -o caddy ./cmd/caddy) || { say "go build failed"; exit 1; }
if [ -z "$DEMO_FHIR_SERVER" ]; then
  if [ -f "$HERE/hapi/run.sh" ] && bash "$HERE/hapi/build.sh" >/dev/null 2>&1; then DEMO_FHIR_SERVER=hapi; else DEMO_FHIR_SERVER=medplum; fi
fi
for p in "$DEMO_PORT" "$DEMO_VIEWER_PORT" "$DEMO_ADMIN_PORT"; do
  if curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$p/"; then
    say "something already answers on 127.0.0.1:$p; stop it or set DEMO_PORT, DEMO_VIEWER_PORT, DEMO_ADMIN_PORT"; exit 1
  fi
done

dir="$(mktemp -d /tmp/fhir-imaging-demo.XXXXXX)"
sock="$dir/gateway.sock"
inner="" outer=""
cleanup() {
  trap - INT TERM EXIT
  [ -n "${1:-}" ] && say "$1"
  say "stopping ..."
  [ -n "$outer" ] && kill -TERM "$outer" 2>/dev/null
  [ -n "$inner" ] && kill -TERM "$inner" 2>/dev/null
  [ -n "$outer" ] && wait "$outer" 2>/dev/null
  [ -n "$inner" ] && wait "$inner" 2>/dev/null
  rm -rf "$dir"
  say "stopped."
}
trap 'cleanup "stopping on request (Ctrl-C)"; exit 0' INT
trap 'cleanup "stopping on request (SIGTERM)"; exit 0' TERM
trap 'cleanup' EXIT

say "starting the stack with $DEMO_FHIR_SERVER in a private network namespace (logs: $dir/run/logs) ..."
"$HERE/stack.sh" netns bash "${BASH_SOURCE[0]}" --inside "$sock" "$DEMO_FHIR_SERVER" &
inner=$!
while [ ! -e "$dir/ready" ]; do
  kill -0 "$inner" 2>/dev/null || { say "the stack did not start"; exit 1; }
  sleep 0.3
done
GATEWAY_SOCKET="$sock" VIEWER_SOCKET="$dir/viewer.sock" ADMIN_SOCKET="$dir/admin.sock" \
  DEMO_PORT="$DEMO_PORT" DEMO_VIEWER_PORT="$DEMO_VIEWER_PORT" DEMO_ADMIN_PORT="$DEMO_ADMIN_PORT" \
  XDG_DATA_HOME="$dir/host-caddy" XDG_CONFIG_HOME="$dir/host-caddy" \
  "$REPO/caddy" run --adapter caddyfile --config "$REPO/caddyfile/examples/host-proxy.Caddyfile" >"$dir/host-proxy.log" 2>&1 &
outer=$!
for _ in $(seq 1 100); do
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$DEMO_PORT/fhir/ImagingStudy/study-s1") || true
  [ "$code" = 200 ] && break
  kill -0 "$outer" 2>/dev/null || { say "the host proxy did not start:"; cat "$dir/host-proxy.log" >&2; exit 1; }
  sleep 0.2
done
[ "$code" = 200 ] || { say "the gateway is not reachable through 127.0.0.1:$DEMO_PORT (last status $code)"; exit 1; }
tour "http://127.0.0.1:$DEMO_PORT"
while kill -0 "$inner" 2>/dev/null && kill -0 "$outer" 2>/dev/null; do sleep 1 & wait $!; done
say "a component exited on its own (logs: $dir/run/logs, $dir/host-proxy.log)"
exit 1
