package fhirjson

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzRewrite checks, for any input, that the rewrite never panics, that its
// output is valid JSON made of the input plus whole injected extensions, and
// that a second rewrite changes nothing.
func FuzzRewrite(f *testing.F) {
	for _, b := range testdataBodies(f) {
		f.Add(b)
	}
	f.Add(searchset(2, 2, 2))
	f.Fuzz(func(t *testing.T, in []byte) {
		d, err := Scan(in, opts)
		if err != nil {
			return
		}
		_ = d.MissingEndpoints()
		out, _ := rewrite(t, in)
		if !strings.Contains(string(in), DefaultExtensionBase) {
			checkPreserved(t, in, out)
		}
		again, _ := rewrite(t, out)
		if string(again) != string(out) {
			t.Fatalf("not idempotent:\n%s\n%s", out, again)
		}
	})
}

// testdataBodies returns the bodies in testdata/*.json, the seeds of the
// fuzz targets.
func testdataBodies(tb testing.TB) [][]byte {
	files, _ := filepath.Glob("testdata/*.json")
	var bodies [][]byte
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			tb.Fatal(err)
		}
		bodies = append(bodies, b)
	}
	return bodies
}
