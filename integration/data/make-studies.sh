#!/usr/bin/env bash
# Make the synthetic DICOM studies used by the integration tests, plus a manifest.
#
#   make-studies.sh [OUT_DIR]   (default: $STACK_RUN_DIR/studies, else integration/tmp/studies)
#
# Writes OUT_DIR/<scenario>/<series>/<n>.dcm and OUT_DIR/studies.json.
# All UIDs are fixed (under 1.2.826.0.1.3680043.10.1234) so the output is the same
# on every run: <root>.<scenario>[.<series>[.<instance>]].
#
# Scenarios (see README.md):
#   S1  study wholly in archive a, 2 series (2 + 3 instances; the last one has
#       2 frames); FHIR: study-level WADO-RS endpoint only (DICOMcast style)
#   S2  series 1 in archive a, series 2 in archive b; FHIR: series-level endpoints
#   S3  IHE MADO style: 2 series in archive b; FHIR: series-level endpoints only,
#       identifier value WITHOUT urn:oid:
#   S4  study in archive a; FHIR: study-level WADO-RS and WADO-URI endpoints
#   S5  only when STUDIES_SCENARIOS names it (the access-control run): a second
#       study of S2's patient, in archive a, marked restricted in FHIR
#       (meta.security R) so that the patient's proxy may not see it
#   S6  only when STUDIES_SCENARIOS names it (e2e/replicas.test.mjs): a study held
#       whole by two archives, c and d (replicas); FHIR: study-level WADO-RS and
#       WADO-URI endpoints of both, c first; series 2 also lists both WADO-RS
#       endpoints itself. upload.sh puts it in both.
# STUDIES_SCENARIOS picks the scenarios (default "S1 S2 S3 S4").
# Needs dcmtk (dump2dcm), perl, jq, sha256sum.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${1:-${STACK_RUN_DIR:-$HERE/../tmp}/studies}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
ROOT="${UID_ROOT:-1.2.826.0.1.3680043.10.1234}"
CT=1.2.840.10008.5.1.4.1.1.2          # CT Image Storage
MFSC=1.2.840.10008.5.1.4.1.1.7.3      # Multi-frame Grayscale Word Secondary Capture
t0=$(date +%s.%N)
TSV="$(mktemp)"; WORK="$(mktemp -d)"
trap 'rm -rf "$TSV" "$WORK"' EXIT

# scenario metadata: id|patientId|family|given|birthDate|sex|studyDate|description
SCEN=(
  "S1|pat-s1|Synthetic|Alice|19700101|F|20240115|S1 study-level WADO-RS endpoint (DICOMcast style)"
  "S2|pat-s2|Synthetic|Bob|19650607|M|20240212|S2 series split over two archives"
  "S3|pat-s3|Synthetic|Carol|19801231|F|20240310|S3 IHE MADO style series endpoints"
  "S4|pat-s4|Synthetic|Dave|19551120|M|20240405|S4 WADO-RS and WADO-URI endpoints"
  "S5|pat-s2|Synthetic|Bob|19650607|M|20240520|S5 restricted study (hidden from the patient's proxy)"
  "S6|pat-s6|Synthetic|Erin|19900303|F|20240615|S6 study held by two archives (replicas)"
)
SCENARIOS=" ${STUDIES_SCENARIOS:-S1 S2 S3 S4} "
# series: scenario|seriesNo|archive|nInstances|multiframeLast(0/1)|description
SERIES=(
  "S1|1|a|2|0|Axial 5mm"
  "S1|2|a|3|1|Coronal reformat"
  "S2|1|a|2|0|Series in archive A"
  "S2|2|b|2|0|Series in archive B"
  "S3|1|b|2|0|MADO series 1"
  "S3|2|b|2|0|MADO series 2"
  "S4|1|a|2|0|WADO-URI series"
  "S5|1|a|2|0|Restricted series"
  "S6|1|c|2|0|Replicated series 1"
  "S6|2|c|2|1|Replicated series 2"
)

scen_field() { # scen_field S1 N
  local s; for s in "${SCEN[@]}"; do
    IFS='|' read -r -a f <<<"$s"; [ "${f[0]}" = "$1" ] && { echo "${f[$2]}"; return; }
  done
}

# raw 16-bit little-endian pixels, 12 bits stored; a distinct pattern per instance
make_pixels() { # file seed frames
  perl -e 'my ($seed,$nf)=@ARGV; binmode STDOUT;
    for my $f (0..$nf-1) { for my $y (0..63) { for my $x (0..63) {
      my $v = (($x*37 + $y*53 + $seed*97 + $f*1024) % 4096);
      $v = 4095 if ($x-32)**2 + ($y-32)**2 < (8+($seed%16))**2 && $f==0;
      print pack("v", $v);
    }}}' "$2" "$3" > "$1"
}

count=0
for s in "${SERIES[@]}"; do
  IFS='|' read -r sc sn arch ninst mf sdesc <<<"$s"
  [[ "$SCENARIOS" == *" $sc "* ]] || continue
  k="${sc#S}"
  study="$ROOT.$k"; series="$study.$sn"
  pid=$(scen_field "$sc" 1); fam=$(scen_field "$sc" 2); giv=$(scen_field "$sc" 3)
  bd=$(scen_field "$sc" 4); sex=$(scen_field "$sc" 5); sdate=$(scen_field "$sc" 6)
  desc=$(scen_field "$sc" 7)
  mkdir -p "$OUT/$sc/$sn"
  for i in $(seq 1 "$ninst"); do
    sop="$series.$i"; frames=1; cls=$CT
    if [ "$mf" = 1 ] && [ "$i" = "$ninst" ]; then frames=2; cls=$MFSC; fi
    raw="$WORK/$sc-$sn-$i.raw"; dump="$WORK/$sc-$sn-$i.dump"
    make_pixels "$raw" "$((k*100 + sn*10 + i))" "$frames"
    rel="$sc/$sn/$i.dcm"
    {
      echo "(0002,0010) UI =LittleEndianExplicit"
      echo "(0008,0005) CS [ISO_IR 100]"
      echo "(0008,0008) CS [ORIGINAL\\PRIMARY\\AXIAL]"
      echo "(0008,0016) UI $cls"
      echo "(0008,0018) UI $sop"
      echo "(0008,0020) DA [$sdate]"
      echo "(0008,0021) DA [$sdate]"
      echo "(0008,0023) DA [$sdate]"
      echo "(0008,0030) TM [101500]"
      echo "(0008,0031) TM [1016$(printf %02d "$sn")]"
      echo "(0008,0033) TM [1016$(printf %02d "$sn").$i]"
      echo "(0008,0050) SH [ACC-$sc]"
      echo "(0008,0060) CS [CT]"
      echo "(0008,0064) CS [WSD]"
      echo "(0008,0070) LO [caddy-fhir-imaging synthetic]"
      echo "(0008,0090) PN []"
      echo "(0008,1030) LO [$desc]"
      echo "(0008,103e) LO [$sdesc]"
      echo "(0010,0010) PN [$fam^$giv]"
      echo "(0010,0020) LO [$pid]"
      echo "(0010,0030) DA [$bd]"
      echo "(0010,0040) CS [$sex]"
      echo "(0018,0050) DS [5.0]"
      [ "$frames" -gt 1 ] && echo "(0018,1063) DS [40]"
      echo "(0020,000d) UI $study"
      echo "(0020,000e) UI $series"
      echo "(0020,0010) SH [$sc]"
      echo "(0020,0011) IS [$sn]"
      echo "(0020,0013) IS [$i]"
      echo "(0020,0032) DS [-16\\-16\\$((i*5))]"
      echo "(0020,0037) DS [1\\0\\0\\0\\1\\0]"
      echo "(0020,0052) UI $study.0"
      echo "(0028,0002) US 1"
      echo "(0028,0004) CS [MONOCHROME2]"
      if [ "$frames" -gt 1 ]; then
        echo "(0028,0008) IS [$frames]"
        echo "(0028,0009) AT (0018,1063)"
      fi
      echo "(0028,0010) US 64"
      echo "(0028,0011) US 64"
      echo "(0028,0030) DS [0.5\\0.5]"
      echo "(0028,0100) US 16"
      echo "(0028,0101) US 12"
      echo "(0028,0102) US 11"
      echo "(0028,0103) US 0"
      echo "(0028,1050) DS [2048]"
      echo "(0028,1051) DS [4096]"
      echo "(0028,1052) DS [0]"
      echo "(0028,1053) DS [1]"
      echo "(7fe0,0010) OW =$raw"
    } > "$dump"
    dump2dcm -q +te "$dump" "$OUT/$rel"
    sha=$(sha256sum "$OUT/$rel" | cut -d' ' -f1)
    size=$(stat -c %s "$OUT/$rel")
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
      "$sc" "$study" "$sn" "$series" "$arch" "$sdesc" "$i" "$sop" "$cls" "$frames" "$rel" "$sha:$size" >> "$TSV"
    count=$((count+1))
  done
done

scen_json="$(for s in "${SCEN[@]}"; do
  IFS='|' read -r id pid fam giv bd sex sdate desc <<<"$s"
  jq -cn --arg id "$id" --arg pid "$pid" --arg fam "$fam" --arg giv "$giv" --arg bd "$bd" \
         --arg sex "$sex" --arg sdate "$sdate" --arg desc "$desc" \
    '{id:$id, patient:{id:$pid, family:$fam, given:$giv, birthDate:$bd, sex:$sex},
      studyDate:$sdate, description:$desc, accession:("ACC-"+$id)}'
done | jq -cs .)"

jq -Rn --arg out "$OUT" --arg root "$ROOT" --argjson scen "$scen_json" '
  def fhir(id):
    { S1: {identifierValuePrefix:"urn:oid:", studyEndpoints:["dicom-wado-rs"], seriesEndpoints:false},
      S2: {identifierValuePrefix:"urn:oid:", studyEndpoints:[], seriesEndpoints:true},
      S3: {identifierValuePrefix:"",         studyEndpoints:[], seriesEndpoints:true},
      S4: {identifierValuePrefix:"urn:oid:", studyEndpoints:["dicom-wado-rs","dicom-wado-uri"], seriesEndpoints:false},
      S5: {identifierValuePrefix:"urn:oid:", studyEndpoints:["dicom-wado-rs","dicom-wado-uri"], seriesEndpoints:false, restricted:true},
      S6: {identifierValuePrefix:"urn:oid:", studyEndpoints:["dicom-wado-rs","dicom-wado-uri"], seriesEndpoints:false,
           replicas:["c","d"], replicaSeries:[2]}
    }[id];
  [inputs | split("\t") | {sc:.[0], study:.[1], sn:(.[2]|tonumber), series:.[3], archive:.[4],
     sdesc:.[5], i:(.[6]|tonumber), sop:.[7], cls:.[8], frames:(.[9]|tonumber), file:.[10],
     sha:(.[11]|split(":")[0]), size:(.[11]|split(":")[1]|tonumber)}] as $rows
  | {
      uidRoot: $root,
      dir: $out,
      archives: ["a","b"],
      studies: [ $scen[] as $s
        | ($rows | map(select(.sc == $s.id))) as $r
        | select($r|length > 0)
        | $s + {
            scenario: $s.id,
            studyInstanceUID: $r[0].study,
            fhir: fhir($s.id),
            archives: ($r | map(.archive) | unique),
            series: [ $r | group_by(.sn)[] | {
                number: .[0].sn,
                seriesInstanceUID: .[0].series,
                modality: "CT",
                description: .[0].sdesc,
                archive: .[0].archive,
                instances: [ .[] | {
                  number: .i, sopInstanceUID: .sop, sopClassUID: .cls, frames: .frames,
                  archive: .archive, file: .file, path: ($out + "/" + .file),
                  sha256: .sha, size: .size } ]
              } ]
          } | del(.id)
      ]
    }' < "$TSV" > "$OUT/studies.json"

echo "[data] wrote $count instances in $(jq '.studies|length' "$OUT/studies.json") studies to $OUT (manifest studies.json) in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1fs", b-a}')"
