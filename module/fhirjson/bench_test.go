package fhirjson

import (
	"fmt"
	"io"
	"testing"

	"github.com/fhirimaging/caddy-fhir-imaging/module/internal/testbodies"
)

// The benchmarks of the whole gateway rewrite of a FHIR answer, each with
// its baseline in the same run: the pipeline this package had before the
// one pass (the base swap over the whole body, then the gjson scan and the
// rewrite, reference_test.go), on the same input.

// gatewayRebase is the swap the gateway makes: the FHIR server's base for
// the public one.
func gatewayRebase(b *testing.B) *Transformer {
	tr, err := NewTransformer([]Rebase{{From: "http://127.0.0.1:8080/fhir", To: "https://gw.example.org/api/fhir"}}, nil, NotPatch)
	if err != nil {
		b.Fatal(err)
	}
	return tr
}

// onePass runs what fhir_rewrite does with a body: one scan that also finds
// the base swaps, one rewrite into dst.
func onePass(b *testing.B, in []byte, tr *Transformer, dst []byte, levels Levels) []byte {
	d, err := Scan(in, ScanOptions{LocalBases: opts.LocalBases, Rebase: tr})
	if err != nil {
		b.Fatal(err)
	}
	out, changed, _ := d.AppendRewrite(dst[:0], planner(nil), nil, Options{Ext: ext, Levels: levels})
	if !changed {
		b.Fatal("nothing changed")
	}
	return out
}

// twoPasses runs what fhir_rewrite did before.
func twoPasses(b *testing.B, in []byte, tr *Transformer) []byte {
	body, _, err := tr.Apply(in)
	if err != nil {
		b.Fatal(err)
	}
	d, err := refScan(body, opts)
	if err != nil {
		b.Fatal(err)
	}
	fetched := map[string]Endpoint{}
	plan := func(st *refStudy, se *refSeries) Bases {
		return Bases{WADORS: gatewayBase(st.Effective(se, WADORS, fetched)), WADOURI: gatewayBase(st.Effective(se, WADOURI, fetched))}
	}
	out, changed, _ := d.rewrite(plan, nil, ext)
	if !changed {
		b.Fatal("nothing changed")
	}
	return out
}

// BenchmarkGatewayRewrite: the 100-study searchset (300 series, 15,000
// instances, both Endpoints _included, 2.2 MB), rebased and injected.
func BenchmarkGatewayRewrite(b *testing.B) {
	in := searchset(100, 3, 50)
	tr := gatewayRebase(b)
	b.Run("impl=one-pass", func(b *testing.B) {
		b.SetBytes(int64(len(in)))
		b.ReportAllocs()
		var dst []byte
		for i := 0; i < b.N; i++ {
			dst = onePass(b, in, tr, dst, 0)
		}
	})
	b.Run("impl=one-pass-series-only", func(b *testing.B) {
		b.SetBytes(int64(len(in)))
		b.ReportAllocs()
		var dst []byte
		for i := 0; i < b.N; i++ {
			dst = onePass(b, in, tr, dst, SeriesOnly)
		}
	})
	b.Run("impl=before", func(b *testing.B) {
		b.SetBytes(int64(len(in)))
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			twoPasses(b, in, tr)
		}
	})
}

// BenchmarkGatewayRewriteSize: rewrite time and allocations against the
// size of the Bundle, 10 to 10,000 entries (each a study of 1 series of 5
// instances), for the plot in docs/PERFORMANCE.md.
func BenchmarkGatewayRewriteSize(b *testing.B) {
	tr := gatewayRebase(b)
	for _, n := range []int{10, 100, 1000, 10000} {
		in := searchset(n, 1, 5)
		b.Run(fmt.Sprintf("entries=%d/impl=one-pass", n), func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			var dst []byte
			for i := 0; i < b.N; i++ {
				dst = onePass(b, in, tr, dst, 0)
			}
		})
		b.Run(fmt.Sprintf("entries=%d/impl=before", n), func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				twoPasses(b, in, tr)
			}
		})
	}
}

// BenchmarkStreamRebase: the base swap of a 3,000-Observation searchset
// (2.3 MB), streamed in 32 KiB parts as reverse_proxy hands them on,
// against the whole-body swap (Transformer.Apply) in the same run.
func BenchmarkStreamRebase(b *testing.B) {
	in := testbodies.Observations(3000)
	tr := gatewayRebase(b)
	b.Run("impl=stream", func(b *testing.B) {
		b.SetBytes(int64(len(in)))
		b.ReportAllocs()
		opts := StreamOptions{Scan: ScanOptions{Rebase: tr}, Rewrite: Options{Ext: ext}, Plan: func(map[string]Endpoint) Planner { return planner(nil) }}
		for i := 0; i < b.N; i++ {
			s := NewStream(io.Discard, opts)
			for j := 0; j < len(in); j += 32 << 10 {
				s.Write(in[j:min(j+32<<10, len(in))])
			}
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=whole", func(b *testing.B) {
		b.SetBytes(int64(len(in)))
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, _, err := tr.Apply(in); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkStreamSearchset: the 100-study searchset streamed in 32 KiB
// parts (every entry held until the Endpoints included at its end),
// against the whole-body rewrite in the same run.
func BenchmarkStreamSearchset(b *testing.B) {
	in := searchset(100, 3, 50)
	tr := gatewayRebase(b)
	b.Run("impl=stream", func(b *testing.B) {
		b.SetBytes(int64(len(in)))
		b.ReportAllocs()
		opts := StreamOptions{Scan: ScanOptions{LocalBases: opts.LocalBases, Rebase: tr}, Rewrite: Options{Ext: ext}, Plan: planner}
		for i := 0; i < b.N; i++ {
			s := NewStream(io.Discard, opts)
			for j := 0; j < len(in); j += 32 << 10 {
				s.Write(in[j:min(j+32<<10, len(in))])
			}
			if err := s.Close(); err != nil || s.Stats().Instances != 15000 {
				b.Fatal(err, s.Stats())
			}
		}
	})
	b.Run("impl=whole", func(b *testing.B) {
		b.SetBytes(int64(len(in)))
		b.ReportAllocs()
		var dst []byte
		for i := 0; i < b.N; i++ {
			dst = onePass(b, in, tr, dst, 0)
		}
	})
}
