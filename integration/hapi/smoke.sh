#!/usr/bin/env bash
# Checks a running HAPI server (run.sh) for the behaviours the gateway relies on.
# Usage: integration/hapi/smoke.sh   (uses http://127.0.0.1:${HAPI_PORT:-8080}/fhir)
# Prints one line per check and "N passed, N failed" at the end; exits non-zero on a failure.
set -uo pipefail
B="http://127.0.0.1:${HAPI_PORT:-8080}/fhir"
J='Content-Type: application/fhir+json'
pass=0 fail=0
check() { # name, condition-result (0 = ok)
	if [ "$2" = 0 ]; then pass=$((pass + 1)); echo "ok   $1"; else fail=$((fail + 1)); echo "FAIL $1"; fi
}
json() { python3 -c "import sys,json; b=json.load(sys.stdin); print($1)"; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

code=$(curl -s -o /dev/null -w '%{http_code}' "$B/metadata")
[ "$code" = 200 ]; check "GET /metadata -> 200" $?

pid=$(curl -s -X POST "$B/Patient" -H "$J" -d '{"resourceType":"Patient","name":[{"family":"Smoke"}]}' | json 'b["id"]')
[ -n "$pid" ]; check "POST Patient -> server id $pid" $?

code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT "$B/Endpoint/smoke-ep" -H "$J" -d '{"resourceType":"Endpoint","id":"smoke-ep","status":"active","connectionType":{"system":"http://terminology.hl7.org/CodeSystem/endpoint-connection-type","code":"dicom-wado-rs"},"payloadType":[{"text":"DICOM"}],"address":"http://127.0.0.1:8042/dicom-web"}')
[ "$code" = 201 ] || [ "$code" = 200 ]; check "PUT Endpoint/smoke-ep (client id) -> $code" $?
curl -s -o /dev/null -X PUT "$B/Endpoint/smoke-ep2" -H "$J" -d '{"resourceType":"Endpoint","id":"smoke-ep2","status":"active","connectionType":{"code":"dicom-wado-rs"},"payloadType":[{"text":"DICOM"}],"address":"http://127.0.0.1:8043/dicom-web"}'

code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT "$B/ImagingStudy/smoke-study" -H "$J" -d '{"resourceType":"ImagingStudy","id":"smoke-study","status":"available","identifier":[{"system":"urn:dicom:uid","value":"urn:oid:1.2.3"}],"subject":{"reference":"Patient/'"$pid"'"},"endpoint":[{"reference":"Endpoint/smoke-ep"}]}')
[ "$code" = 201 ] || [ "$code" = 200 ]; check "PUT ImagingStudy/smoke-study -> $code" $?

got=$(curl -s "$B/ImagingStudy?identifier=urn:dicom:uid|urn:oid:1.2.3&_include=ImagingStudy:endpoint" \
	| json '" ".join(sorted(e["resource"]["resourceType"]+"/"+e["resource"]["id"]+":"+e["search"]["mode"] for e in b.get("entry",[])))')
[ "$got" = "Endpoint/smoke-ep:include ImagingStudy/smoke-study:match" ]; check "search identifier + _include=ImagingStudy:endpoint -> $got" $?

got=$(curl -s "$B/Endpoint?_id=smoke-ep,smoke-ep2" | json '" ".join(sorted(e["resource"]["id"] for e in b.get("entry",[])))')
[ "$got" = "smoke-ep smoke-ep2" ]; check "Endpoint?_id=a,b -> $got" $?

next=$(curl -s "$B/Endpoint?_count=1" | json '[l["url"] for l in b["link"] if l["relation"]=="next"][0]')
case "$next" in *"_getpages="*) r=0 ;; *) r=1 ;; esac; check "_count=1 has a next link: $next" $r
n=$(curl -s "$next" | json 'len(b.get("entry",[]))')
[ "$n" = 1 ]; check "following the next link returns 1 entry" $?

enc=$(curl -s -o /dev/null -D - -H 'Accept-Encoding: gzip' "$B/Endpoint/smoke-ep" | tr -d '\r' | awk -F': ' 'tolower($1)=="content-encoding"{print $2}')
[ "$enc" = gzip ]; check "Accept-Encoding: gzip -> Content-Encoding: $enc" $?

etag=$(curl -s -o /dev/null -D - "$B/Endpoint/smoke-ep" | tr -d '\r' | awk -F': ' 'tolower($1)=="etag"{print $2}')
case "$etag" in 'W/"'*'"') r=0 ;; *) r=1 ;; esac; check "read has ETag: $etag" $r
code=$(curl -s -o /dev/null -w '%{http_code}' -H "If-None-Match: $etag" "$B/Endpoint/smoke-ep")
[ "$code" = 304 ]; check "If-None-Match: $etag -> $code" $?

ct=$(curl -s -o /dev/null -D - "$B/Endpoint/smoke-ep?_format=xml" | tr -d '\r' | awk -F': ' 'tolower($1)=="content-type"{print $2}')
case "$ct" in application/fhir+xml*) r=0 ;; *) r=1 ;; esac; check "_format=xml -> $ct" $r

curl -s -o /dev/null -X PUT "$B/Endpoint/smoke-ep" -H "$J" -d '{"resourceType":"Endpoint","id":"smoke-ep","status":"off","connectionType":{"code":"dicom-wado-rs"},"payloadType":[{"text":"DICOM"}],"address":"http://127.0.0.1:8042/dicom-web"}'
v=$(curl -s "$B/Endpoint/smoke-ep/_history/1" | json 'b["status"]')
[ "$v" = active ]; check "update then vread _history/1 -> status $v" $?
n=$(curl -s "$B/Endpoint/smoke-ep/_history" | json 'len(b["entry"])')
[ "$n" -ge 2 ]; check "instance _history has $n versions" $?

cat >"$tmp/tx.json" <<'TX'
{"resourceType":"Bundle","type":"transaction","entry":[
 {"fullUrl":"urn:uuid:0d9e3c32-0b44-4a0e-9d7a-3c1f0e6a1c01","resource":{"resourceType":"ImagingStudy","status":"available","identifier":[{"system":"urn:dicom:uid","value":"urn:oid:1.2.3.4"}],"subject":{"reference":"Patient/smoke-tx-pat"},"endpoint":[{"reference":"Endpoint/smoke-tx-ep"}]},"request":{"method":"POST","url":"ImagingStudy"}},
 {"resource":{"resourceType":"Patient","id":"smoke-tx-pat"},"request":{"method":"PUT","url":"Patient/smoke-tx-pat"}},
 {"resource":{"resourceType":"Endpoint","id":"smoke-tx-ep","status":"active","connectionType":{"code":"dicom-wado-rs"},"payloadType":[{"text":"DICOM"}],"address":"http://127.0.0.1:8042/dicom-web"},"request":{"method":"PUT","url":"Endpoint/smoke-tx-ep"}}
]}
TX
got=$(curl -s -X POST "$B" -H "$J" --data-binary @"$tmp/tx.json" | json 'b.get("type")')
[ "$got" = transaction-response ]; check "transaction Bundle (references to resources created in the same Bundle) -> $got" $?

code=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "$B/Endpoint/smoke-ep2")
code2=$(curl -s -o /dev/null -w '%{http_code}' "$B/Endpoint/smoke-ep2")
[ "$code" = 200 ] && [ "$code2" = 410 ]; check "DELETE -> $code, read afterwards -> $code2" $?

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
