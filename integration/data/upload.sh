#!/usr/bin/env bash
# Upload every instance of a manifest (make-studies.sh) to the Orthanc it belongs in
# (to each of a replicated study's fhir.replicas), with Orthanc's REST API
# (POST <orthanc>/instances).
#
#   upload.sh [MANIFEST]   (default: $STUDIES_MANIFEST, else $STACK_RUN_DIR/studies/studies.json,
#                           else integration/tmp/studies/studies.json)
# Env: ORTHANC_A_URL (default http://127.0.0.1:18042), ORTHANC_B_URL (http://127.0.0.1:18043),
#      ORTHANC_C_URL (http://127.0.0.1:18046), ORTHANC_D_URL (http://127.0.0.1:18047)
# Fails if any upload is not Success/AlreadyStored. Prints one summary line.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MANIFEST="${1:-${STUDIES_MANIFEST:-${STACK_RUN_DIR:-$HERE/../tmp}/studies/studies.json}}"
A="${ORTHANC_A_URL:-http://127.0.0.1:18042}"
B="${ORTHANC_B_URL:-http://127.0.0.1:18043}"
C="${ORTHANC_C_URL:-http://127.0.0.1:18046}"
D="${ORTHANC_D_URL:-http://127.0.0.1:18047}"
t0=$(date +%s.%N)
n=0; declare -A per=([a]=0 [b]=0 [c]=0 [d]=0)
while IFS=$'\t' read -r arch path sop; do
  case "$arch" in a) base="$A" ;; b) base="$B" ;; c) base="$C" ;; d) base="$D" ;; *) echo "[upload] bad archive '$arch'" >&2; exit 1 ;; esac
  resp="$(curl -sS --fail-with-body -X POST -H 'Content-Type: application/dicom' \
          --data-binary "@$path" "$base/instances")" || { echo "[upload] FAILED $path -> $base: $resp" >&2; exit 1; }
  status="$(jq -r .Status <<<"$resp")"
  case "$status" in
    Success|AlreadyStored) ;;
    *) echo "[upload] unexpected status '$status' for $path -> $base: $resp" >&2; exit 1 ;;
  esac
  n=$((n+1)); per[$arch]=$((per[$arch]+1))
done < <(jq -r '.studies[] | (.fhir.replicas // null) as $r | .series[].instances[]
                | . as $i | ($r // [$i.archive])[] | [., $i.path, $i.sopInstanceUID] | @tsv' "$MANIFEST")
echo "[upload] $n uploads (a: ${per[a]} -> $A, b: ${per[b]} -> $B, c: ${per[c]}, d: ${per[d]}) in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2fs", b-a}')"
