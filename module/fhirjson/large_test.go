package fhirjson

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// searchset builds a HAPI-shaped searchset of studies ImagingStudies, each
// with series series of instances instances, whose study endpoint is one of
// two Endpoints _included at the end of the Bundle.
func searchset(studies, series, instances int) []byte {
	var b strings.Builder
	b.WriteString(`{"resourceType":"Bundle","id":"s","meta":{"lastUpdated":"2026-11-26T10:00:00.000+00:00"},"type":"searchset","link":[{"relation":"self","url":"http://127.0.0.1:8080/fhir/ImagingStudy?_include=ImagingStudy%3Aendpoint"}],"entry":[`)
	for s := 0; s < studies; s++ {
		if s > 0 {
			b.WriteByte(',')
		}
		study := fmt.Sprintf("1.2.826.0.1.3680043.10.1.%d", s+1)
		epID := []string{"a-rs", "b-rs"}[s%2]
		fmt.Fprintf(&b, `{"fullUrl":"http://127.0.0.1:8080/fhir/ImagingStudy/%d","resource":{"resourceType":"ImagingStudy","id":"%d","meta":{"versionId":"1"},"identifier":[{"system":"urn:dicom:uid","value":"urn:oid:%s"}],"status":"available","subject":{"reference":"Patient/p%d"},"endpoint":[{"reference":"Endpoint/%s"}],"numberOfSeries":%d,"series":[`, s, s, study, s, epID, series)
		for se := 0; se < series; se++ {
			if se > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"uid":"%s.%d","number":%d,"modality":{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"CT"},"instance":[`, study, se+1, se+1)
			for i := 0; i < instances; i++ {
				if i > 0 {
					b.WriteByte(',')
				}
				fmt.Fprintf(&b, `{"uid":"%s.%d.%d","sopClass":{"system":"urn:ietf:rfc:3986","code":"urn:oid:1.2.840.10008.5.1.4.1.1.2"},"number":%d}`, study, se+1, i+1, i+1)
			}
			b.WriteString(`]}`)
		}
		b.WriteString(`]},"search":{"mode":"match"}}`)
	}
	b.WriteString(`,{"fullUrl":"http://127.0.0.1:8080/fhir/Endpoint/a-rs","resource":{"resourceType":"Endpoint","id":"a-rs","status":"active","connectionType":{"system":"http://terminology.hl7.org/CodeSystem/endpoint-connection-type","code":"dicom-wado-rs"},"address":"http://127.0.0.1:8042/dicom-web"},"search":{"mode":"include"}}`)
	b.WriteString(`,{"fullUrl":"http://127.0.0.1:8080/fhir/Endpoint/b-rs","resource":{"resourceType":"Endpoint","id":"b-rs","status":"active","connectionType":{"system":"http://terminology.hl7.org/CodeSystem/endpoint-connection-type","code":"dicom-wado-rs"},"address":"http://127.0.0.1:8043/pacs/dicom-web"},"search":{"mode":"include"}}`)
	b.WriteString(`]}`)
	return []byte(b.String())
}

func TestThousandEntrySearchset(t *testing.T) {
	in := searchset(1000, 1, 2)
	out, missing := rewrite(t, in)
	if len(missing) != 0 {
		t.Errorf("included Endpoints were looked up again: %v", missing)
	}
	got := links(t, out)
	if len(got) != 1000*3 {
		t.Fatalf("got %d links, want %d", len(got), 3000)
	}
	if want := "1.2.826.0.1.3680043.10.1.1000.1=" + rs("1.2.826.0.1.3680043.10.1.1000", "1.2.826.0.1.3680043.10.1.1000.1"); !contains(got, want) {
		t.Errorf("missing %s", want)
	}
	checkPreserved(t, in, out)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// BenchmarkRewriteSearchset measures scan + inject of a 100-study searchset
// with 300 series and 15,000 instances (the shape ARCHITECTURE.md measured).
func BenchmarkRewriteSearchset(b *testing.B) {
	in := searchset(100, 3, 50)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d, err := Scan(in, opts)
		if err != nil {
			b.Fatal(err)
		}
		out, changed, st := d.Inject(planner(nil), ext)
		if !changed || st.Instances != 15000 || len(out) <= len(in) {
			b.Fatalf("unexpected result: changed=%v stats=%+v", changed, st)
		}
	}
}

// BenchmarkScanOnly measures the read-only part, what a response that needs
// no change costs.
func BenchmarkScanOnly(b *testing.B) {
	in := searchset(100, 3, 50)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := Scan(in, opts); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBaselineEncodingJSON is the baseline for BenchmarkRewriteSearchset,
// measured in the same run: a plain encoding/json decode and re-encode of
// the same searchset, with no rewriting at all (and which would lose key
// order and formatting).
func BenchmarkBaselineEncodingJSON(b *testing.B) {
	in := searchset(100, 3, 50)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		var v any
		if err := json.Unmarshal(in, &v); err != nil {
			b.Fatal(err)
		}
		if _, err := json.Marshal(v); err != nil {
			b.Fatal(err)
		}
	}
}
