#!/usr/bin/env bash
# Idempotent installer for the integration stack (Orthanc x2, dcmtk, Node deps,
# Debian's Chromium for the viewer test (driven by playwright-core; no browser is
# ever downloaded), and — if present — the HAPI FHIR server built by
# integration/hapi/build.sh).
# Run as root on Debian 12, with package registries reachable (i.e. OUTSIDE the
# private network namespace used by stack.sh).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log() { echo "[install] $*"; }
t0=$(date +%s.%N)
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1fs", b-a}'; }

# ---- apt ---------------------------------------------------------------
# chromium: e2e/viewer.test.mjs (/usr/bin/chromium). No font package: OHIF ships its
# font (Inter, woff2) and libfontconfig1 pulls in fonts-dejavu-core for the rest.
# python3-venv: integration/.venv for the Python dicomweb-client (requirements.txt).
APT_PKGS=(orthanc orthanc-dicomweb dcmtk iproute2 curl jq util-linux procps ca-certificates chromium python3 python3-venv)
missing=()
for p in "${APT_PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  log "apt: all present (${APT_PKGS[*]})"
else
  log "apt: installing ${missing[*]}"
  ts=$(date +%s.%N)
  export DEBIAN_FRONTEND=noninteractive
  # Do not let the package start an orthanc service on install.
  policy_created=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    policy_created=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ "$policy_created" = 1 ] && rm -f /usr/sbin/policy-rc.d
  log "apt: done in $(elapsed "$ts")"
fi

# ---- no system orthanc -------------------------------------------------
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  if systemctl is-active --quiet orthanc 2>/dev/null || systemctl is-enabled --quiet orthanc 2>/dev/null; then
    log "systemd: stopping and disabling orthanc.service"
    systemctl disable --now orthanc >/dev/null 2>&1 || true
  fi
fi
if [ -x /etc/init.d/orthanc ] && /etc/init.d/orthanc status >/dev/null 2>&1; then
  log "init.d: stopping orthanc"
  /etc/init.d/orthanc stop >/dev/null 2>&1 || true
fi
for pf in /run/orthanc.pid /run/orthanc/orthanc.pid; do  # the Debian init script's pid file
  if [ -f "$pf" ] && kill -0 "$(cat "$pf")" 2>/dev/null; then
    log "stopping system orthanc (pid $(cat "$pf"))"
    kill "$(cat "$pf")" || true
  fi
done
[ -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || { log "ERROR: DICOMweb plugin missing"; exit 1; }

# ---- npm ---------------------------------------------------------------
cd "$HERE"
node_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
if [ "$node_major" -lt 20 ]; then
  log "ERROR: Node.js >= 20 is needed (found: $(node -v 2>/dev/null || echo none))"; exit 1
fi
lock_sum="$(sha256sum package-lock.json | cut -d' ' -f1)"
deps_ok=1
for d in $(jq -r '.dependencies | keys[]' package.json); do
  [ -f "node_modules/$d/package.json" ] || deps_ok=0
done
if [ "$deps_ok" = 1 ] && [ "$(cat node_modules/.install-stamp 2>/dev/null)" = "$lock_sum" ]; then
  log "npm: node_modules up to date (package-lock.json unchanged)"
else
  log "npm: npm ci in $HERE"
  ts=$(date +%s.%N)
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lock_sum" > node_modules/.install-stamp
  log "npm: done in $(elapsed "$ts")"
fi

# ---- Python ------------------------------------------------------------
# Debian's python3 (not whatever else is first on PATH), so the venv is the same on every machine.
req_sum="$(sha256sum requirements.txt | cut -d' ' -f1)"
if [ -x .venv/bin/python ] && [ "$(cat .venv/.install-stamp 2>/dev/null)" = "$req_sum" ]; then
  log "python: .venv up to date (requirements.txt unchanged)"
else
  log "python: venv + pip install -r requirements.txt in $HERE/.venv"
  ts=$(date +%s.%N)
  rm -rf .venv
  /usr/bin/python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check --no-input -r requirements.txt
  echo "$req_sum" > .venv/.install-stamp
  log "python: done in $(elapsed "$ts")"
fi

# ---- HAPI --------------------------------------------------------------
if [ -f "$HERE/hapi/build.sh" ]; then
  log "hapi: running hapi/build.sh"
  ts=$(date +%s.%N)
  bash "$HERE/hapi/build.sh"
  log "hapi: done in $(elapsed "$ts")"
else
  log "hapi: integration/hapi/build.sh not present yet, skipping"
fi

log "all done in $(elapsed "$t0")"
