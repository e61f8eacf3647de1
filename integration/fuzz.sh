#!/usr/bin/env bash
# Runs every Go fuzz target of the repository, one after the other (`make fuzz`).
#
#   integration/fuzz.sh [REGEXP]      only the targets whose name matches REGEXP (grep -E)
#   FUZZTIME=30s integration/fuzz.sh  time per target (go test -fuzztime; default 10m)
#   integration/fuzz.sh --list        list the targets and their packages, run nothing
#
# A fuzz target is `func FuzzXxx(f *testing.F)` in a *_test.go file (node_modules,
# vendor, testdata and hidden directories are skipped). Each runs as
#   go test -run '^$' -fuzz '^FuzzXxx$' -fuzztime $FUZZTIME ./<package dir>/
# with as many workers as GOMAXPROCS (go test's default). Printed per target: name,
# package, wall time (compilation included), executions and new interesting inputs
# (go test's last "fuzz: elapsed: ..." line), and the corpus size afterwards: the
# files of the seed corpus <package dir>/testdata/fuzz/<Name>/ plus those go test
# keeps in its cache, $(go env GOCACHE)/fuzz/<package import path>/<Name>/ (seeds
# added in code with f.Add are not files and not counted).
# Then a summary table. go test's whole output per target goes to
# $FUZZ_LOG_DIR/<Name>.log (default a fresh directory under ${TMPDIR:-/tmp});
# FUZZ_VERBOSE=1 shows all of it, by default progress is shown once a minute.
#
# Exits 1 if any target found a failure: go test leaves the failing input in
# <package dir>/testdata/fuzz/<Name>/<hash> (kept; commit it as a regression seed once
# fixed) and its path is printed with the command to re-run it; an entry of the
# existing corpus that fails is reported the same way. Exits 2 when a target could not
# run at all (build error, ...), and when no target was found.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
GO="${GO:-go}"
FUZZTIME="${FUZZTIME:-10m}"
cd "$REPO" || exit 2

log() { echo "[fuzz] $*"; }

list_only=0 filter=""
for a in "$@"; do
  case "$a" in
    --list) list_only=1 ;;
    -h|--help) sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) filter="$a" ;;
  esac
done

# ---- the targets: "<package dir>\t<Name>", sorted by package then name
mapfile -t targets < <(
  find . \( -name node_modules -o -name vendor -o -name testdata -o -name '.?*' \) -prune -o \
       -type f -name '*_test.go' -print0 |
  xargs -0 -r grep -HoE '^func[[:space:]]+Fuzz[A-Za-z0-9_]*[[:space:]]*\([[:space:]]*[A-Za-z_][A-Za-z0-9_]*[[:space:]]+\*testing\.F[[:space:]]*\)' |
  sed -E 's#^\./##; s#^(.*)/[^/]*_test\.go:func[[:space:]]+(Fuzz[A-Za-z0-9_]*).*#\1\t\2#; s#^[^/\t]*_test\.go:func[[:space:]]+(Fuzz[A-Za-z0-9_]*).*#.\t\1#' |
  sort -u)
if [ -n "$filter" ]; then
  mapfile -t targets < <(printf '%s\n' "${targets[@]}" | awk -F'\t' -v re="$filter" '$2 ~ re')
fi
[ ${#targets[@]} -gt 0 ] && [ -n "${targets[0]}" ] || { log "no fuzz targets found${filter:+ matching '$filter'}"; exit 2; }

if [ $list_only = 1 ]; then
  printf '%s\n' "${targets[@]}" | awk -F'\t' '{printf "%-24s ./%s/\n", $2, $1}'
  exit 0
fi

GOCACHE_DIR="$("$GO" env GOCACHE)" || { log "go env GOCACHE failed"; exit 2; }
FUZZ_LOG_DIR="${FUZZ_LOG_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/fuzz.XXXXXX")}"
mkdir -p "$FUZZ_LOG_DIR"
log "${#targets[@]} fuzz targets, ${FUZZTIME} each, ${GOMAXPROCS:-$(nproc)} workers; logs in $FUZZ_LOG_DIR"

count_files() { [ -d "$1" ] && find "$1" -type f | wc -l || echo 0; }

declare -a rows=() fails=()
failed=0 broken=0
t_all=$SECONDS
for t in "${targets[@]}"; do
  dir="${t%%$'\t'*}" name="${t#*$'\t'}"
  pkg="$("$GO" list "./$dir" 2>/dev/null)" || pkg="./$dir"
  out="$FUZZ_LOG_DIR/$name.log"
  log "== $name ($pkg), -fuzztime $FUZZTIME"
  t0=$SECONDS last_shown=$SECONDS
  # go test's output: all of it to the log; on the terminal everything but the progress
  # lines, and a progress line at most once a minute (all with FUZZ_VERBOSE=1).
  "$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "./$dir/" 2>&1 | while IFS= read -r line; do
    printf '%s\n' "$line" >>"$out"
    if [[ "$line" == "fuzz: elapsed:"* ]] && [ "${FUZZ_VERBOSE:-0}" != 1 ]; then
      if (( SECONDS - last_shown >= 60 )); then echo "   $line"; last_shown=$SECONDS; fi
    else
      echo "   $line"
    fi
  done
  rc=${PIPESTATUS[0]}
  secs=$((SECONDS - t0))
  progress="$(grep -E '^fuzz: elapsed: .*execs: ' "$out" | tail -n 1)"
  execs="$(sed -nE 's/.*execs: ([0-9]+).*/\1/p' <<<"$progress")"
  newi="$(sed -nE 's/.*new interesting: ([0-9]+).*/\1/p' <<<"$progress")"
  seed_n=$(count_files "$dir/testdata/fuzz/$name")
  cache_n=$(count_files "$GOCACHE_DIR/fuzz/$pkg/$name")
  result=ok
  if [ "$rc" != 0 ]; then
    # A new failure: "Failing input written to testdata/fuzz/FuzzX/<hash>" (relative to the
    # package directory). A failing entry of the corpus go test already had (testdata or
    # cache): "failure while testing seed corpus entry: FuzzX/<entry>".
    fin="$(sed -nE 's/.*Failing input written to (.*)$/\1/p' "$out" | tail -n 1)"
    [ -n "$fin" ] && fin="$REPO/$dir/$fin"
    if [ -z "$fin" ]; then
      entry="$(sed -nE "s/.*failure while testing seed corpus entry: ${name}\/([^ ]+).*/\1/p" "$out" | head -n 1)"
      if [ -n "$entry" ]; then
        fin="$GOCACHE_DIR/fuzz/$pkg/$name/$entry"
        [ -f "$REPO/$dir/testdata/fuzz/$name/$entry" ] && fin="$REPO/$dir/testdata/fuzz/$name/$entry"
      fi
    fi
    if [ -n "$fin" ]; then
      result=FAIL failed=$((failed + 1))
      log "!!! $name FOUND A FAILURE (details above, and in $out); the input is kept in"
      log "!!!   $fin"
      if [[ "$fin" == "$REPO/"* ]]; then
        log "!!! re-run: go test -run '^${name}\$/^$(basename "$fin")\$' ./$dir/"
      else
        log "!!! (in go's fuzz cache: copy it to ./$dir/testdata/fuzz/$name/ to re-run it with go test -run)"
      fi
      fails+=("$name: $fin")
    else
      result=ERROR broken=$((broken + 1))
      log "!!! $name did not run to the end (go test exit $rc; see above, and $out)"
    fi
  fi
  log "$name: $result in ${secs}s, ${execs:-?} execs, ${newi:-?} new interesting, corpus $((seed_n + cache_n)) ($seed_n testdata + $cache_n cache)"
  rows+=("$name|$pkg|${secs}s|${execs:--}|${newi:--}|$((seed_n + cache_n)) ($seed_n+$cache_n)|$result")
done

echo
log "summary: ${#targets[@]} targets, FUZZTIME=$FUZZTIME, total $((SECONDS - t_all))s"
{
  echo "target|package|time|execs|new interesting|corpus (testdata+cache)|result"
  printf '%s\n' "${rows[@]}"
} | column -t -s '|' | sed 's/^/[fuzz]   /'
if [ $failed -gt 0 ]; then
  log "$failed target(s) found a failure; the failing inputs:"
  printf '[fuzz]   %s\n' "${fails[@]}"
fi
if [ $broken -gt 0 ]; then log "$broken target(s) did not run (see above)"; fi
[ $failed -gt 0 ] && exit 1
[ $broken -gt 0 ] && exit 2
exit 0
