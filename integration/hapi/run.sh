#!/usr/bin/env bash
# Runs the HAPI FHIR JPA test server in the foreground: http://127.0.0.1:${HAPI_PORT:-8080}/fhir
# Ready when GET /fhir/metadata answers 200 (see wait-ready.sh).
# Environment:
#   HAPI_PORT       listen port (default 8080)
#   HAPI_HOST       listen address (default 127.0.0.1)
#   HAPI_FHIR_VERSION  r4 (default) or dstu3: the FHIR version served (same build, HAPI's JpaDstu3Config)
#   HAPI_DB_DIR     keep the H2 database in this directory (default: in memory, lost on exit)
#   HAPI_SERVER_ADDRESS  fixed base URL for links in responses (default: taken from each request's Host header)
#   HAPI_LOG_LEVEL  root log level (default WARN)
#   HAPI_JAVA_OPTS  JVM flags (default below)
#   HAPI_AUTH_INTROSPECT  RFC 7662 token introspection URL, e.g. http://127.0.0.1:9000/token/introspection.
#                   Set: every request but GET /metadata needs a SMART bearer token, enforced by HAPI's
#                   authorization/search-narrowing/consent interceptors (README.md). Unset (default): open.
#   HAPI_AUTH_CLIENT_ID      client id HAPI introspects as, HTTP Basic (default hapi-fhir)
#   HAPI_AUTH_CLIENT_SECRET  its secret (default hapi-secret)
#   HAPI_AUTH_CACHE_SECONDS  how long an introspection answer is reused, never past the token's exp (default 5; 0: never)
set -euo pipefail
cd "$(dirname "$0")"
JAR=target/hapi-server.jar
if [ ! -f "$JAR" ]; then
	echo "[hapi] $JAR is missing: run integration/hapi/build.sh first" >&2
	exit 1
fi
# Serial GC and C1-only JIT: smaller footprint and faster start on 2 cores; fine for a test server.
DEFAULT_OPTS="-Xms256m -Xmx1g -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.net.preferIPv4Stack=true"
OPTS=${HAPI_JAVA_OPTS:-$DEFAULT_OPTS}
# Class-data-sharing archive from `build.sh --cds`, only when it was made from this very jar.
if [ -z "${HAPI_JAVA_OPTS:-}" ] && [ -f target/hapi-cds.jsa ] && [ target/hapi-cds.jsa -nt "$JAR" ]; then
	OPTS="$OPTS -XX:SharedArchiveFile=target/hapi-cds.jsa -Xlog:cds=off -Xlog:cds+dynamic=off"
fi
# shellcheck disable=SC2086
exec "${JAVA:-java}" $OPTS -jar "$JAR" "$@"
