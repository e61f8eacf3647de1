#!/usr/bin/env bash
# Waits until the HAPI server answers GET /fhir/metadata with 200.
# Usage: integration/hapi/wait-ready.sh [timeout-seconds (default 180)] [pid-to-watch]
set -uo pipefail
timeout=${1:-180}
pid=${2:-}
url="http://127.0.0.1:${HAPI_PORT:-8080}/fhir/metadata"
deadline=$(( $(date +%s) + timeout ))
while [ "$(date +%s)" -lt "$deadline" ]; do
	code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$url" || true)
	if [ "$code" = 200 ]; then
		echo "[hapi] ready: $url"
		exit 0
	fi
	if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
		echo "[hapi] process $pid exited before becoming ready" >&2
		exit 1
	fi
	sleep 0.5
done
echo "[hapi] not ready after ${timeout}s: $url" >&2
exit 1
