package caddyfile_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/fhirimaging/caddy-fhir-imaging/caddyfile"
)

var update = flag.Bool("update", false, "rewrite the expected JSON of the golden files")

const separator = "\n----------\n"

// TestAdapt runs every testdata/*.caddyfiletest: a Caddyfile, a separator
// line, then either the JSON it must adapt to or "error: <text>" naming an
// error the adapter must report.
func TestAdapt(t *testing.T) {
	files, err := filepath.Glob("testdata/*.caddyfiletest")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			input, want, ok := strings.Cut(string(raw), separator)
			if !ok {
				t.Fatalf("no separator line in %s", file)
			}
			want = strings.TrimSpace(want)
			got, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input), map[string]any{"filename": file})
			for _, w := range warnings {
				if !strings.Contains(w.Message, "not formatted") {
					t.Logf("warning: %s", w.Message)
				}
			}
			if wantErr, isErr := strings.CutPrefix(want, "error: "); isErr {
				if err == nil {
					t.Fatalf("adapted without error, want one containing %q:\n%s", wantErr, got)
				}
				if !strings.Contains(err.Error(), wantErr) {
					t.Fatalf("error %q does not contain %q", err, wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("adapt: %v", err)
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, got, "", "\t"); err != nil {
				t.Fatal(err)
			}
			if *update {
				if err := os.WriteFile(file, []byte(input+separator+pretty.String()+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if pretty.String() != want {
				t.Errorf("adapted JSON differs from %s:\n got %s", file, pretty.String())
			}
		})
	}
}
