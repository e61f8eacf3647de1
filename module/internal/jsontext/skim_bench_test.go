package jsontext

import (
	"encoding/json"
	"testing"

	"github.com/fhirimaging/caddy-fhir-imaging/module/internal/testbodies"
)

// BenchmarkSkim: validating a 2.3 MB searchset with Skim, against the
// token-by-token walk of the same Scanner and encoding/json's Valid, in
// the same run.
func BenchmarkSkim(b *testing.B) {
	in := testbodies.Observations(3000)
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
