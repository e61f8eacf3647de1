#!/usr/bin/env bash
# Builds Caddy with xcaddy and this checkout as a plugin, the way xcaddy.md
# tells users to, and checks that the four modules are in the binary.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "[xcaddy] installing xcaddy v0.4.5"
go install github.com/caddyserver/xcaddy/cmd/xcaddy@v0.4.5
echo "[xcaddy] building Caddy v2.11.9 with $repo"
( cd "$out" && GOPROXY="$(go env GOPROXY | cut -d, -f1)|off" \
    "$(go env GOPATH)/bin/xcaddy" build v2.11.9 --output "$out/caddy" \
    --with "github.com/fhirimaging/caddy-fhir-imaging=$repo" ) > "$out/build.log" 2>&1 \
  || { cat "$out/build.log"; echo "[xcaddy] build failed"; exit 1; }
missing=0
for id in fhir_imaging http.handlers.dicomweb http.handlers.fhir_rewrite http.handlers.wado_uri; do
  if "$out/caddy" list-modules | grep -qx "$id"; then echo "[xcaddy] has $id"; else echo "[xcaddy] MISSING $id"; missing=1; fi
done
exit $missing
