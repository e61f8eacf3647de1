#!/usr/bin/env bash
# Generate the Orthanc configuration of one archive into a run directory.
#   make-config.sh a|b|c|d RUN_DIR  -> RUN_DIR/orthanc-<name>/orthanc.json (+ storage/)
# Archive a: HTTP 18042, DICOMweb root /dicom-web/,         WADO-URI /wado
# Archive b: HTTP 18043, DICOMweb root /pacs/dicom-web/,    WADO-URI /pacs/wado
# Archives c and d hold the replicated study only (integration/e2e/replicas.test.mjs starts them):
# Archive c: HTTP 18046, DICOMweb root /dicom-web/,         WADO-URI /wado
# Archive d: HTTP 18047, DICOMweb root /replica/dicom-web/, WADO-URI /replica/wado
# Ports and roots can be overridden with ORTHANC_<A|B|C|D>_{HTTP_PORT,DICOM_PORT,ROOT,WADO_ROOT}.
set -euo pipefail
name="${1:?usage: make-config.sh a|b|c|d RUN_DIR}"
run="${2:?usage: make-config.sh a|b|c|d RUN_DIR}"
case "$name" in
  a) port="${ORTHANC_A_HTTP_PORT:-18042}"; dport="${ORTHANC_A_DICOM_PORT:-14242}"
     root="${ORTHANC_A_ROOT:-/dicom-web/}"; wado="${ORTHANC_A_WADO_ROOT:-/wado}" ;;
  b) port="${ORTHANC_B_HTTP_PORT:-18043}"; dport="${ORTHANC_B_DICOM_PORT:-14243}"
     root="${ORTHANC_B_ROOT:-/pacs/dicom-web/}"; wado="${ORTHANC_B_WADO_ROOT:-/pacs/wado}" ;;
  c) port="${ORTHANC_C_HTTP_PORT:-18046}"; dport="${ORTHANC_C_DICOM_PORT:-14246}"
     root="${ORTHANC_C_ROOT:-/dicom-web/}"; wado="${ORTHANC_C_WADO_ROOT:-/wado}" ;;
  d) port="${ORTHANC_D_HTTP_PORT:-18047}"; dport="${ORTHANC_D_DICOM_PORT:-14247}"
     root="${ORTHANC_D_ROOT:-/replica/dicom-web/}"; wado="${ORTHANC_D_WADO_ROOT:-/replica/wado}" ;;
  *) echo "unknown archive '$name' (a, b, c or d)" >&2; exit 2 ;;
esac
dir="$run/orthanc-$name"
mkdir -p "$dir/storage"
dir="$(cd "$dir" && pwd)"
# HttpThreadsCount: Orthanc's HTTP server gives each connection a thread, and a
# kept-alive connection keeps it for its Keep-Alive timeout (1 s). The gateway
# pools connections to each archive, so with fewer threads than pooled
# connections new requests wait for a thread: with 8, 20 concurrent requests
# from a Go client took up to 2 s each (curl, one connection per request, did
# not). 50 is Orthanc's own default.
jq -n --arg name "orthanc-$name" --arg st "$dir/storage" --argjson port "$port" \
      --argjson dport "$dport" --arg root "$root" --arg wado "$wado" '{
  Name: $name,
  StorageDirectory: $st,
  IndexDirectory: $st,
  HttpPort: $port,
  DicomPort: $dport,
  DicomServerEnabled: false,
  RemoteAccessAllowed: false,
  AuthenticationEnabled: false,
  HttpCompressionEnabled: false,
  StorageCompression: false,
  ConcurrentJobs: 1,
  HttpThreadsCount: 50,
  StableAge: 1,
  SaveJobs: false,
  Plugins: ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"],
  DicomWeb: {
    Enable: true,
    Root: $root,
    EnableWado: true,
    WadoRoot: $wado,
    Ssl: false,
    StudiesMetadata: "Full",
    SeriesMetadata: "Full"
  }
}' > "$dir/orthanc.json"
echo "$dir/orthanc.json"
