package jsontext

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// observationBundle is a searchset of n Observations as HAPI writes them,
// the body of make bench's base-swap run.
func observationBundle(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"resourceType":"Bundle","type":"searchset","total":` + fmt.Sprint(n) + `,"entry":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"fullUrl":"http://127.0.0.1:8080/fhir/Observation/o%d","resource":{"resourceType":"Observation","id":"o%d","meta":{"versionId":"1","lastUpdated":"2026-11-26T10:00:00.000+00:00"},"status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4","display":"Heart rate"}]},"subject":{"reference":"Patient/p%d"},"effectiveDateTime":"2026-11-26T10:00:00+00:00","valueQuantity":{"value":%d,"unit":"beats/minute","system":"http://unitsofmeasure.org","code":"/min"}},"search":{"mode":"match"}}`, i, i, i%50, 60+i%40)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

// BenchmarkSkim: validating a 2.3 MB searchset with Skim, against the
// token-by-token walk of the same Scanner and encoding/json's Valid, in
// the same run.
func BenchmarkSkim(b *testing.B) {
	in := observationBundle(3000)
	b.Run("impl=skim", func(b *testing.B) {
		b.SetBytes(int64(len(in)))
		strs := 0
		for i := 0; i < b.N; i++ {
			s := Scanner{In: in}
			if !s.Skim(func(Str) { strs++ }) {
				b.Fatal("not valid")
			}
		}
	})
	b.Run("impl=tokens", func(b *testing.B) {
		b.SetBytes(int64(len(in)))
		for i := 0; i < b.N; i++ {
			s := Scanner{In: in}
			if err := s.skip(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=encoding-json-Valid", func(b *testing.B) {
		b.SetBytes(int64(len(in)))
		for i := 0; i < b.N; i++ {
			if !json.Valid(in) {
				b.Fatal("not valid")
			}
		}
	})
}
