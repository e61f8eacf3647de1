package dicom

import "testing"

func TestReplaceWildcardType(t *testing.T) {
	const oct = "application/octet-stream"
	tests := []struct{ in, want string }{
		// dicomweb-client's (Python) default for frames and bulk data.
		{`multipart/related; type="*/*"`, `multipart/related; type="application/octet-stream"`},
		{`multipart/related; type=*/*; transfer-syntax=*`, `multipart/related; type="application/octet-stream"; transfer-syntax=*`},
		{`Multipart/Related;TYPE="*/*"`, `Multipart/Related;TYPE="application/octet-stream"`},
		{`multipart/related; type="image/jpeg", multipart/related; type="*/*"; q=0.5`,
			`multipart/related; type="image/jpeg", multipart/related; type="application/octet-stream"; q=0.5`},
		// Left alone: a wildcard outside multipart, a concrete type, no type.
		{`*/*`, ""},
		{`multipart/related; type="application/octet-stream"; transfer-syntax=*`, ""},
		{`multipart/related`, ""},
		{`multipart/related; x="a,*/*;b"`, ""},
		{``, ""},
	}
	for _, tt := range tests {
		got, changed := ReplaceWildcardType(tt.in, oct)
		want := tt.want
		if want == "" {
			want = tt.in
		}
		if got != want || changed != (tt.want != "") {
			t.Errorf("ReplaceWildcardType(%q) = %q, %v; want %q", tt.in, got, changed, want)
		}
	}
}

func TestWantsOctets(t *testing.T) {
	tests := map[string]bool{
		"/studies/1.2/series/3/instances/4/frames/1":          true,
		"/studies/1.2/series/3/instances/4/frames/1,2":        true,
		"/studies/1.2/series/3/instances/4/bulk/7fe00010":     true,
		"/studies/1.2/series/3/instances/4/pixeldata":         true,
		"/studies/1.2/series/3/instances/4/frames/1/rendered": false,
		"/studies/1.2/series/3/instances/4":                   false,
		"/studies/1.2/series/3/instances/4/metadata":          false,
		"/studies": false,
	}
	for path, want := range tests {
		r, err := ParsePath(path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if got := r.WantsOctets(); got != want {
			t.Errorf("%s: WantsOctets = %v, want %v", path, got, want)
		}
	}
}
