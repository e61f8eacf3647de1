#!/usr/bin/env bash
# Builds the HAPI FHIR JPA test server from Maven Central:
#   integration/hapi/target/hapi-server.jar  (+ the jars it needs in target/lib/)
# Idempotent: does nothing when the jar is newer than pom.xml and src/.
# Usage: integration/hapi/build.sh [--force] [--cds] [extra mvn args, e.g. -Dmaven.repo.local=/tmp/m2]
#   --force  rebuild even if up to date
#   --cds    also write target/hapi-cds.jsa, a class-data-sharing archive that run.sh then uses:
#            start-up drops from ~17 s to ~10 s, at the cost of one training start here (~30-60 s)
#            and 160 MB on disk. Pays off only if the server is started several times.
set -euo pipefail
cd "$(dirname "$0")"

JAR=target/hapi-server.jar
CDS_ARCHIVE=target/hapi-cds.jsa
FORCE=0
CDS=0
while [ $# -gt 0 ]; do
	case "$1" in
		--force) FORCE=1; shift ;;
		--cds) CDS=1; shift ;;
		*) break ;;
	esac
done

make_cds_archive() {
	if [ -f "$CDS_ARCHIVE" ] && [ "$CDS_ARCHIVE" -nt "$JAR" ]; then
		echo "[hapi] CDS archive up to date: integration/hapi/$CDS_ARCHIVE"
		return 0
	fi
	echo "[hapi] training start for the CDS archive (one start of the server on port ${HAPI_CDS_PORT:-18089})..."
	rm -f "$CDS_ARCHIVE"
	# The JVM flags must match run.sh's default ones for the archive to be accepted.
	HAPI_PORT=${HAPI_CDS_PORT:-18089} HAPI_DB_DIR="" HAPI_AUTH_INTROSPECT="" "${JAVA:-java}" \
		-Xms256m -Xmx1g -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.net.preferIPv4Stack=true \
		-XX:ArchiveClassesAtExit="$CDS_ARCHIVE" -Xlog:cds=off -Xlog:cds+dynamic=off \
		-Dhapi.cds.training=true -jar "$JAR" >target/cds-training.log 2>&1 \
		|| { echo "[hapi] CDS training run failed, see integration/hapi/target/cds-training.log" >&2; rm -f "$CDS_ARCHIVE"; return 1; }
	echo "[hapi] wrote integration/hapi/$CDS_ARCHIVE ($(du -sh "$CDS_ARCHIVE" | cut -f1))"
}

if [ "$FORCE" = 0 ] && [ -f "$JAR" ] && [ -d target/lib ] \
	&& [ -z "$(find pom.xml src -newer "$JAR" -print -quit)" ]; then
	echo "[hapi] up to date: integration/hapi/$JAR"
	if [ "$CDS" = 1 ]; then make_cds_archive; fi
	exit 0
fi

for tool in java mvn; do
	command -v "$tool" >/dev/null || { echo "[hapi] '$tool' not found (needs JDK 17+ and Maven 3.8+)" >&2; exit 1; }
done

# Maven's output goes to target/build.log and is shown only when a step fails.
mkdir -p target
LOG=target/build.log
: >"$LOG"
mvn_step() {
	if ! mvn -B -q "$@" >>"$LOG" 2>&1; then
		sed 's/\x1b\[[0-9;]*m//g' "$LOG" | tail -60 >&2
		echo "[hapi] build failed (full log: integration/hapi/$LOG)" >&2
		exit 1
	fi
}

start=$(date +%s)
echo "[hapi] resolving dependencies from Maven Central (first run downloads ~330 MB)..."
mvn_step "$@" org.apache.maven.plugins:maven-dependency-plugin:3.8.1:resolve
echo "[hapi] compiling and packaging..."
rm -rf target/lib
mvn_step "$@" package
touch "$JAR"
echo "[hapi] built integration/hapi/$JAR ($(du -sh target/lib | cut -f1) of jars in target/lib) in $(( $(date +%s) - start ))s"
if [ "$CDS" = 1 ]; then make_cds_archive; fi
