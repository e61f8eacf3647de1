#!/usr/bin/env bash
# make bench: the gateway's FHIR rewrite and DICOMweb streaming against plain
# reverse_proxy and nginx, side by side in one run, plus the in-process Go
# benchmarks; writes the results into docs/PERFORMANCE.md (between the
# "bench:begin" and "bench:end" markers) and its plots into docs/.
#
#   BENCH_RUNS=3          load runs per body and server (medians are reported)
#   BENCH_SECONDS=8       length of one wrk run
#   BENCH_CONNECTIONS=8   wrk connections for the main table (1 thread)
#   BENCH_SWEEP="1 2 4 8 16 32 64 128 256"  connections of the throughput sweep
#   BENCH_SWEEP_SECONDS=4 length of one sweep run
#   BENCH_OUT=docs        where PERFORMANCE.md and the plots go; the raw
#                         results go to $BENCH_OUT/bench/ (report.py redraws
#                         from them: python3 integration/bench/report.py
#                         docs/bench docs)
#
# Servers, all on loopback, each its own process:
#   :19001        a static Caddy file_server playing the FHIR server (the
#                 bodies of integration/bench/fixtures.go); :19011 and :19012
#                 play two archives, answering every WADO-RS retrieve with a
#                 1 GiB body
#   :19002        the same Caddy binary as plain reverse_proxy
#   :19003        the gateway: fhir_rewrite + reverse_proxy, and dicomweb
#   :19004        Debian's nginx, proxy_pass with sub_filter swapping the base
# and wrk (1 thread) as the client. On a 2-core machine they all share the
# cores, so only ratios measured in the same run mean anything; servers take
# turns within each round so that drift hits them alike.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
RUNS="${BENCH_RUNS:-3}"
SECS="${BENCH_SECONDS:-8}"
CONNS="${BENCH_CONNECTIONS:-8}"
SWEEP="${BENCH_SWEEP:-1 2 4 8 16 32 64 128 256}"
SWEEP_SECS="${BENCH_SWEEP_SECONDS:-4}"
OUT="${BENCH_OUT:-$REPO/docs}"
log() { echo "[bench] $*" >&2; }

# --- what the run needs -------------------------------------------------
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v gnuplot >/dev/null || need+=(gnuplot-nox)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]} (Debian)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get install -y -q "${need[@]}" >/dev/null 2>&1 || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q "${need[@]}" >/dev/null; }
fi
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/bench.XXXXXX")"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo "[bench] stopping on request" >&2; exit 130' INT TERM

log "building Caddy with the gateway's modules (minutes when cold)"
(cd "$REPO" && go build -o "$WORK/caddy" ./cmd/caddy)
CADDY="$WORK/caddy"
mkdir -p "$WORK/www" "$WORK/res"
(cd "$REPO" && go run integration/bench/fixtures.go -out "$WORK/www")
# The 1 GiB retrieve: one part, shaped as Orthanc's DICOMweb plugin writes
# an instance (its part headers announce the part's length), of zeros.
big_head=$'--bench\r\nContent-Type: application/dicom\r\nContent-Length: %d\r\nMIME-Version: 1.0\r\n\r\n'
big_tail=$'\r\n--bench--\r\n'
big_part=$(( 1073741824 - ${#big_tail} - $(printf -- "$big_head" 1073741824 | wc -c) ))
printf -- "$big_head" "$big_part" >"$WORK/www/big.bin"
truncate -s "+$big_part" "$WORK/www/big.bin"
printf '%s' "$big_tail" >>"$WORK/www/big.bin"
[ "$(stat -c %s "$WORK/www/big.bin")" = 1073741824 ] || { log "big.bin is not 1 GiB"; exit 1; }

sed "s#@WWW@#$WORK/www#g" "$HERE/upstream.Caddyfile" >"$WORK/upstream.Caddyfile"
cp "$HERE/plain.Caddyfile" "$HERE/gateway.Caddyfile" "$WORK/"
sed "s#@WORK@#$WORK#g" "$HERE/nginx.conf" >"$WORK/nginx.conf"

start_caddy() { # name config
  "$CADDY" run --adapter caddyfile --config "$WORK/$2" >"$WORK/$1.log" 2>&1 &
  PIDS+=($!)
  eval "PID_$1=$!"
}
start_caddy upstream upstream.Caddyfile
start_caddy plain plain.Caddyfile
start_caddy gateway gateway.Caddyfile
"$NGINX" -c "$WORK/nginx.conf" -p "$WORK" 2>"$WORK/nginx-start.log" || { cat "$WORK/nginx-start.log" >&2; exit 1; }
for port in 19001 19002 19003 19004 19011; do
  for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" && break
    sleep 0.1
  done
done

declare -A SERVER_PORT=([plain]=19002 [gateway]=19003 [nginx]=19004)
declare -A BODY_PATH=([one]=/fhir/ImagingStudy/one [search]=/fhir/ImagingStudy [obs]=/fhir/Observation)

# --- what each server answers, checked before any load ------------------
log "checking the answers"
for body in one search obs; do
  for srv in plain gateway nginx; do
    port=${SERVER_PORT[$srv]}
    f="$WORK/res/$body-$srv.json"
    curl -sf -o "$f" "http://127.0.0.1:$port${BODY_PATH[$body]}"
    in=$(stat -c %s "$WORK/www/$body.json")
    out=$(stat -c %s "$f")
    upstream=$(grep -c '127.0.0.1:19001' "$f" || true)
    urls=$( (grep -o '/wado-rs/studies/' "$f" || true) | wc -l)
    printf 'size\t%s\t%s\t%s\t%s\t%s\t%s\n' "$body" "$srv" "$in" "$out" "$upstream" "$urls" >>"$WORK/res/results.tsv"
    if [ "$srv" != plain ] && [ "$upstream" != 0 ]; then
      log "$srv left the upstream base in $body"; exit 1
    fi
  done
done
want_urls=$(( 100 * 3 * 51 ))
got_urls=$( (grep -o '/wado-rs/studies/' "$WORK/res/search-gateway.json" || true) | wc -l)
[ "$got_urls" = "$want_urls" ] || { log "the gateway injected $got_urls URLs into the searchset, want $want_urls"; exit 1; }

rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }

# --- a 1 GiB WADO-RS retrieve: plain reverse_proxy and the gateway -------
log "1 GiB WADO-RS retrieve"
STUDY=1.2.826.0.1.3680043.10.1.1
RETRIEVE="/wado-rs/studies/$STUDY/series/$STUDY.1/instances/$STUDY.1.1"
curl -sf -o /dev/null "http://127.0.0.1:19003/wado-rs/studies/$STUDY/series/$STUDY.1/instances/$STUDY.1.1" -r 0-0 || true # warms the route
for run in $(seq "$RUNS"); do
  for srv in plain gateway; do
    port=${SERVER_PORT[$srv]}
    pid_var="PID_$srv"; pid=${!pid_var}
    before=$(rss "$pid")
    read -r speed size < <(curl -sf -o /dev/null -w '%{speed_download} %{size_download}\n' "http://127.0.0.1:$port$RETRIEVE")
    printf 'stream\t%s\t%s\t%s\t%s\t%s\t%s\n' "$srv" "$run" "$speed" "$size" "$before" "$(hwm "$pid")" >>"$WORK/res/results.tsv"
  done
done

# --- load: each body through each server, wrk with 1 thread --------------
wrk_run() { # url connections seconds → "rps bytes/s p50ms p99ms errors"
  wrk -t1 -c"$2" -d"$3"s --latency "$1" 2>&1 | awk '
    function bytes(v,  n, u) { n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
      return n * (u == "KB" ? 1024 : u == "MB" ? 1048576 : u == "GB" ? 1073741824 : 1) }
    function ms(v,  n, u) { n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
      return n * (u == "us" ? 0.001 : u == "s" ? 1000 : u == "m" ? 60000 : 1) }
    /^Requests\/sec:/ { rps = $2 }
    /^Transfer\/sec:/ { bps = bytes($2) }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    /Non-2xx|Socket errors/ { err = err " " $0 }
    END { gsub(/[ \t]+/, "_", err); printf "%s %.0f %.3f %.3f %s\n", rps, bps, p50, p99, (err == "" ? "-" : err) }'
}
log "load: 3 bodies x 3 servers x $RUNS runs of ${SECS}s, $CONNS connections"
for run in $(seq "$RUNS"); do
  for body in one search obs; do
    for srv in plain gateway nginx; do
      url="http://127.0.0.1:${SERVER_PORT[$srv]}${BODY_PATH[$body]}"
      read -r rps bps p50 p99 err < <(wrk_run "$url" "$CONNS" "$SECS")
      printf 'load\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$body" "$srv" "$run" "$rps" "$bps" "$p50" "$p99" "$err" >>"$WORK/res/results.tsv"
      log "  $body $srv run $run: $rps req/s, p50 ${p50} ms, p99 ${p99} ms"
    done
  done
done

log "throughput against concurrency: the searchset, ${SWEEP_SECS}s per point"
for c in $SWEEP; do
  for srv in plain gateway nginx; do
    read -r rps bps p50 p99 err < <(wrk_run "http://127.0.0.1:${SERVER_PORT[$srv]}/fhir/ImagingStudy" "$c" "$SWEEP_SECS")
    printf 'sweep\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$c" "$srv" "$rps" "$bps" "$p50" "$p99" "$err" >>"$WORK/res/results.tsv"
  done
  log "  $c connections done"
done
printf 'rss\tgateway\t%s\t%s\n' "$(rss "$PID_gateway")" "$(hwm "$PID_gateway")" >>"$WORK/res/results.tsv"

# Stop the servers before the in-process benchmarks, which want the cores.
for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
wait 2>/dev/null || true
PIDS=()

log "in-process Go benchmarks (-count $((RUNS + 2)))"
(cd "$REPO" && go test -run '^$' -bench 'GatewayRewrite' -benchmem -count $((RUNS + 2)) ./module/fhirjson/) >"$WORK/res/gobench.txt"

{
  echo "machine	$(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
  echo "go	$(go version | awk '{print $3}')"
  echo "nginx	$("$NGINX" -v 2>&1 | sed 's/.*: //')"
  echo "wrk	$(wrk -v 2>&1 | head -1 | awk '{print $2}')"
  echo "caddy	$("$CADDY" version | awk '{print $1}')"
  echo "commit	$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "date	$(date -u +%Y-%m-%d)"
  echo "settings	runs $RUNS, ${SECS}s each, $CONNS connections; sweep ${SWEEP_SECS}s per point"
} >"$WORK/res/env.tsv"

log "writing $OUT/PERFORMANCE.md and the plots; the raw results go to $OUT/bench/"
mkdir -p "$OUT/bench"
cp "$WORK/res/results.tsv" "$WORK/res/gobench.txt" "$WORK/res/env.tsv" "$OUT/bench/"
python3 "$HERE/report.py" "$OUT/bench" "$OUT"
log "done"
