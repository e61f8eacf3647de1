//go:build ignore

// Writes the bodies that make bench serves from a static file server in
// place of a FHIR server (go run integration/bench/fixtures.go -out DIR):
//
//	one.json       one ImagingStudy, 3 series of 50 instances (about 22 KB)
//	search.json    a HAPI-shaped searchset of 100 such studies with both
//	               Endpoints _included at the end (about 2.2 MB)
//	obs.json       a searchset of 3,000 Observations (about 2.3 MB): only
//	               the base is swapped
//	endpoint.json  the answer to the gateway's Endpoint look-up
//
// Every URL carries the FHIR server's base, http://127.0.0.1:PORT/fhir.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

var base string

func main() {
	out := flag.String("out", ".", "directory to write to")
	port := flag.Int("port", 19001, "the FHIR server's port")
	flag.Parse()
	base = fmt.Sprintf("http://127.0.0.1:%d/fhir", *port)
	write(*out, "one.json", study(0, 3, 50))
	write(*out, "search.json", searchset(100, 3, 50, true))
	write(*out, "obs.json", observations(3000))
	write(*out, "endpoint.json", `{"resourceType":"Bundle","type":"searchset","entry":[{"resource":`+endpoint("a-rs", 0)+`},{"resource":`+endpoint("b-rs", 1)+`}]}`)
}

func write(dir, name, body string) {
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func endpoint(id string, archive int) string {
	return fmt.Sprintf(`{"resourceType":"Endpoint","id":%q,"status":"active","connectionType":{"system":"http://terminology.hl7.org/CodeSystem/endpoint-connection-type","code":"dicom-wado-rs"},"payloadType":[{"text":"DICOM"}],"address":"http://127.0.0.1:%d/dicom-web"}`,
		id, 19011+archive)
}

// study is one ImagingStudy, as HAPI writes it, whose Endpoint is a-rs or
// b-rs by the parity of s.
func study(s, series, instances int) string {
	var b strings.Builder
	uid := fmt.Sprintf("1.2.826.0.1.3680043.10.1.%d", s+1)
	ep := []string{"a-rs", "b-rs"}[s%2]
	fmt.Fprintf(&b, `{"resourceType":"ImagingStudy","id":"%d","meta":{"versionId":"1","lastUpdated":"2026-11-26T10:00:00.000+00:00"},"identifier":[{"system":"urn:dicom:uid","value":"urn:oid:%s"}],"status":"available","subject":{"reference":"Patient/p%d"},"started":"2026-11-26T09:00:00+00:00","endpoint":[{"reference":"Endpoint/%s"}],"numberOfSeries":%d,"numberOfInstances":%d,"series":[`,
		s, uid, s, ep, series, series*instances)
	for se := 0; se < series; se++ {
		if se > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"uid":"%s.%d","number":%d,"modality":{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"CT"},"numberOfInstances":%d,"instance":[`, uid, se+1, se+1, instances)
		for i := 0; i < instances; i++ {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"uid":"%s.%d.%d","sopClass":{"system":"urn:ietf:rfc:3986","code":"urn:oid:1.2.840.10008.5.1.4.1.1.2"},"number":%d}`, uid, se+1, i+1, i+1)
		}
		b.WriteString(`]}`)
	}
	b.WriteString(`]}`)
	return b.String()
}

func searchset(studies, series, instances int, include bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, `{"resourceType":"Bundle","id":"b","meta":{"lastUpdated":"2026-11-26T10:00:00.000+00:00"},"type":"searchset","total":%d,"link":[{"relation":"self","url":"%s/ImagingStudy?_include=ImagingStudy%%3Aendpoint"}],"entry":[`,
		studies, base)
	for s := 0; s < studies; s++ {
		if s > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"fullUrl":"%s/ImagingStudy/%d","resource":%s,"search":{"mode":"match"}}`, base, s, study(s, series, instances))
	}
	if include {
		for i, id := range []string{"a-rs", "b-rs"} {
			fmt.Fprintf(&b, `,{"fullUrl":"%s/Endpoint/%s","resource":%s,"search":{"mode":"include"}}`, base, id, endpoint(id, i))
		}
	}
	b.WriteString(`]}`)
	return b.String()
}

func observations(n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `{"resourceType":"Bundle","id":"o","meta":{"lastUpdated":"2026-11-26T10:00:00.000+00:00"},"type":"searchset","total":%d,"link":[{"relation":"self","url":"%s/Observation?_count=%d"}],"entry":[`, n, base, n)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"fullUrl":"%s/Observation/o%d","resource":{"resourceType":"Observation","id":"o%d","meta":{"versionId":"1","lastUpdated":"2026-11-26T10:00:00.000+00:00"},"status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"8867-4","display":"Heart rate"}]},"subject":{"reference":"%s/Patient/p%d"},"effectiveDateTime":"2026-11-26T10:00:00+00:00","issued":"2026-11-26T10:05:00.000+00:00","performer":[{"reference":"%s/Practitioner/pr%d"}],"valueQuantity":{"value":%d,"unit":"beats/minute","system":"http://unitsofmeasure.org","code":"/min"}},"search":{"mode":"match"}}`,
			base, i, i, base, i%50, base, i%7, 60+i%40)
	}
	b.WriteString(`]}`)
	return b.String()
}
