package dicom

import (
	"errors"
	"strings"
	"testing"
)

const (
	st = "1.2.840.113619.2.55.3"
	se = "1.2.840.113619.2.55.3.4"
	in = "1.2.840.113619.2.55.3.4.5"
)

func TestParsePathAccepts(t *testing.T) {
	tests := []struct {
		path string
		want Request
	}{
		{"/studies", Request{Level: LevelRoot, Sub: "studies"}},
		{"/series", Request{Level: LevelRoot, Sub: "series"}},
		{"/instances", Request{Level: LevelRoot, Sub: "instances"}},
		{"/studies/" + st, Request{Level: LevelStudy, Study: st}},
		{"/studies/" + st + "/series", Request{Level: LevelStudy, Study: st, Sub: "series"}},
		{"/studies/" + st + "/instances", Request{Level: LevelStudy, Study: st, Sub: "instances"}},
		{"/studies/" + st + "/metadata", Request{Level: LevelStudy, Study: st, Sub: "metadata"}},
		{"/studies/" + st + "/rendered", Request{Level: LevelStudy, Study: st, Sub: "rendered"}},
		{"/studies/" + st + "/thumbnail", Request{Level: LevelStudy, Study: st, Sub: "thumbnail"}},
		{"/studies/" + st + "/pixeldata", Request{Level: LevelStudy, Study: st, Sub: "pixeldata"}},
		{"/studies/" + st + "/bulk/x", Request{Level: LevelStudy, Study: st, Sub: "bulk/x"}},
		{"/studies/" + st + "/series/" + se, Request{Level: LevelSeries, Study: st, Series: se}},
		{"/studies/" + st + "/series/" + se + "/instances", Request{Level: LevelSeries, Study: st, Series: se, Sub: "instances"}},
		{"/studies/" + st + "/series/" + se + "/metadata", Request{Level: LevelSeries, Study: st, Series: se, Sub: "metadata"}},
		{"/studies/" + st + "/series/" + se + "/rendered", Request{Level: LevelSeries, Study: st, Series: se, Sub: "rendered"}},
		{"/studies/" + st + "/series/" + se + "/bulkdata/a/b", Request{Level: LevelSeries, Study: st, Series: se, Sub: "bulkdata/a/b"}},
		{"/studies/" + st + "/series/" + se + "/instances/" + in, Request{Level: LevelInstance, Study: st, Series: se, Instance: in}},
		{"/studies/" + st + "/series/" + se + "/instances/" + in + "/metadata", Request{LevelInstance, st, se, in, "metadata"}},
		{"/studies/" + st + "/series/" + se + "/instances/" + in + "/rendered", Request{LevelInstance, st, se, in, "rendered"}},
		{"/studies/" + st + "/series/" + se + "/instances/" + in + "/thumbnail", Request{LevelInstance, st, se, in, "thumbnail"}},
		{"/studies/" + st + "/series/" + se + "/instances/" + in + "/pixeldata", Request{LevelInstance, st, se, in, "pixeldata"}},
		{"/studies/" + st + "/series/" + se + "/instances/" + in + "/frames/1", Request{LevelInstance, st, se, in, "frames/1"}},
		{"/studies/" + st + "/series/" + se + "/instances/" + in + "/frames/1,2,3", Request{LevelInstance, st, se, in, "frames/1,2,3"}},
		{"/studies/" + st + "/series/" + se + "/instances/" + in + "/frames/2147483647", Request{LevelInstance, st, se, in, "frames/2147483647"}},
		{"/studies/" + st + "/series/" + se + "/instances/" + in + "/frames/3,1,3", Request{LevelInstance, st, se, in, "frames/3,1,3"}},
		{"/studies/" + st + "/series/" + se + "/instances/" + in + "/frames/1/rendered", Request{LevelInstance, st, se, in, "frames/1/rendered"}},
		{"/studies/" + st + "/series/" + se + "/instances/" + in + "/frames/1,2/thumbnail", Request{LevelInstance, st, se, in, "frames/1,2/thumbnail"}},
		{"/studies/" + st + "/series/" + se + "/instances/" + in + "/bulk/7fe00010", Request{LevelInstance, st, se, in, "bulk/7fe00010"}},
		{"/studies/" + st + "/series/" + se + "/instances/" + in + "/bulk/0040a730/0/0040a160", Request{LevelInstance, st, se, in, "bulk/0040a730/0/0040a160"}},
		{"/studies/" + st + "/series/" + se + "/instances/" + in + "/bulkdata/7FE00010", Request{LevelInstance, st, se, in, "bulkdata/7FE00010"}},
		{"/studies/" + st + "/series/" + se + "/instances/" + in + "/bulkdata/a%20b;v=1:x@y~_-!$&'()*+=", Request{LevelInstance, st, se, in, "bulkdata/a%20b;v=1:x@y~_-!$&'()*+="}},
		{"/studies/" + st + "/series/" + se + "/instances/" + in + "/bulkdata/%C3%A9", Request{LevelInstance, st, se, in, "bulkdata/%C3%A9"}},
		{"/studies/0/series/0/instances/0", Request{LevelInstance, "0", "0", "0", ""}},
	}
	for _, tt := range tests {
		got, err := ParsePath(tt.path)
		if err != nil {
			t.Errorf("ParsePath(%q) error: %v", tt.path, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParsePath(%q) = %+v, want %+v", tt.path, got, tt.want)
		}
		if p := got.Path(); p != tt.path {
			t.Errorf("ParsePath(%q).Path() = %q", tt.path, p)
		}
	}
}

func TestParsePathRefuses(t *testing.T) {
	inst := "/studies/" + st + "/series/" + se + "/instances/" + in
	tests := []struct {
		path string
		kind ErrorKind
		msg  string // a substring of the message
	}{
		// Malformed.
		{"", KindMalformed, "does not start with '/'"},
		{"studies", KindMalformed, "does not start with '/'"},
		{"/" + strings.Repeat("a", MaxPathLength), KindMalformed, "too long"},
		{"//studies", KindMalformed, "empty segment"},
		{"/studies/", KindMalformed, "empty segment"},
		{"/studies/" + st + "//series", KindMalformed, "empty segment"},
		{"/studies/" + st + "/", KindMalformed, "empty segment"},
		{"/studies/..", KindMalformed, `".."`},
		{"/studies/.", KindMalformed, `".."`},
		{"/studies/" + st + "/../" + st, KindMalformed, `".."`},
		{"/./studies", KindMalformed, `".."`},
		{inst + "/bulk/..", KindMalformed, `".."`},
		{inst + "/bulk/./x", KindMalformed, `".."`},
		{"/studies/1.2%2F..%2Fx", KindMalformed, "encoded"},
		{"/studies/1.2%2f", KindMalformed, "encoded"},
		{"/studies%2F1.2", KindMalformed, "encoded"},
		{"/studies/1%2E2", KindMalformed, "encoded"},
		{"/studies/1%2e2", KindMalformed, "encoded"},
		{inst + "/bulk/%2e%2e", KindMalformed, "encoded"},
		{inst + "/bulk/a%5cb", KindMalformed, "encoded"},
		{inst + "/bulk/a%5Cb", KindMalformed, "encoded"},
		{inst + "/bulk/a%00b", KindMalformed, "encoded"},
		{inst + "/bulk/a%0Ab", KindMalformed, "encoded"},
		{inst + "/bulk/a%7fb", KindMalformed, "encoded"},
		{inst + "/bulk/a%", KindMalformed, "malformed percent-escape"},
		{inst + "/bulk/a%4", KindMalformed, "malformed percent-escape"},
		{inst + "/bulk/a%zz", KindMalformed, "malformed percent-escape"},
		{"/studies/1.2\\..\\x", KindMalformed, "not allowed"},
		{"/studies/1.2\x00", KindMalformed, "control character"},
		{"/studies/1.2\n", KindMalformed, "control character"},
		{"/studies/1.2\x7f", KindMalformed, "control character"},
		{"/studies/1.2 ", KindMalformed, "not allowed"},
		{"/studies?x=1", KindMalformed, "not allowed"},
		{"/studies#x", KindMalformed, "not allowed"},
		{inst + "/bulk/é", KindMalformed, "byte 0xc3"},
		{inst + "/bulk/a\"b", KindMalformed, "not allowed"},
		// Bad UIDs.
		{"/studies/1.2a", KindBadUID, "study UID"},
		{"/studies/abc", KindBadUID, "study UID"},
		{"/studies/metadata", KindBadUID, "study UID"},
		{"/studies/urn:oid:1.2", KindBadUID, "study UID"},
		{"/studies/1.2%33", KindBadUID, "percent-encoded"},
		{"/studies/" + strings.Repeat("1", 65), KindBadUID, "longer than 64"},
		{"/studies/" + st + "/series/1..2", KindBadUID, "series UID"},
		{"/studies/" + st + "/series/" + se + "/instances/x", KindBadUID, "instance UID"},
		{"/studies/1.2.x/series/" + se, KindBadUID, "study UID"},
		// Unknown paths.
		{"/", KindUnknownPath, "names no DICOMweb resource"},
		{"/foo", KindUnknownPath, ""},
		{"/Studies", KindUnknownPath, ""},
		{"/series/" + se, KindUnknownPath, ""},
		{"/instances/" + in, KindUnknownPath, ""},
		{"/studies/" + st + "/foo", KindUnknownPath, ""},
		{"/studies/" + st + "/METADATA", KindUnknownPath, ""},
		{"/studies/" + st + "/metadata/x", KindUnknownPath, ""},
		{"/studies/" + st + "/instances/" + in, KindUnknownPath, ""},
		{"/studies/" + st + "/frames/1", KindUnknownPath, ""},
		{"/studies/" + st + "/series/" + se + "/frames/1", KindUnknownPath, ""},
		{"/studies/" + st + "/series/" + se + "/series", KindUnknownPath, ""},
		{"/studies/" + st + "/series/" + se + "/instances/" + in + "/instances", KindUnknownPath, ""},
		{"/studies/" + st + "/bulk", KindUnknownPath, ""},
		{inst + "/bulkdata", KindUnknownPath, ""},
		{inst + "/frames", KindUnknownPath, ""},
		{inst + "/frames/0", KindUnknownPath, ""},
		{inst + "/frames/01", KindUnknownPath, ""},
		{inst + "/frames/-1", KindUnknownPath, ""},
		{inst + "/frames/1,", KindUnknownPath, ""},
		{inst + "/frames/,1", KindUnknownPath, ""},
		{inst + "/frames/1,,2", KindUnknownPath, ""},
		{inst + "/frames/2147483648", KindUnknownPath, ""},
		{inst + "/frames/99999999999", KindUnknownPath, ""},
		{inst + "/frames/1+2", KindUnknownPath, ""},
		{inst + "/frames/1/metadata", KindUnknownPath, ""},
		{inst + "/frames/1/rendered/x", KindUnknownPath, ""},
		{inst + "/%6Detadata", KindUnknownPath, ""},
	}
	for _, tt := range tests {
		got, err := ParsePath(tt.path)
		var pe *PathError
		if !errors.As(err, &pe) {
			t.Errorf("ParsePath(%q) = %+v, %v; want a *PathError", tt.path, got, err)
			continue
		}
		if pe.Kind != tt.kind {
			t.Errorf("ParsePath(%q) kind = %v (%q), want %v", tt.path, pe.Kind, pe.Message, tt.kind)
		}
		if !strings.Contains(pe.Message, tt.msg) {
			t.Errorf("ParsePath(%q) message %q does not contain %q", tt.path, pe.Message, tt.msg)
		}
		if len(pe.Message) > 300 {
			t.Errorf("ParsePath(%q) message is %d bytes long", tt.path, len(pe.Message))
		}
		if strings.ContainsAny(pe.Message, "\x00\n\x7f") {
			t.Errorf("ParsePath(%q) message %q has a control character", tt.path, pe.Message)
		}
		wantStatus := 400
		if tt.kind == KindUnknownPath {
			wantStatus = 404
		}
		if pe.StatusCode() != wantStatus {
			t.Errorf("ParsePath(%q) status = %d, want %d", tt.path, pe.StatusCode(), wantStatus)
		}
	}
}

func TestParsePathLengthLimit(t *testing.T) {
	prefix := "/studies/" + st + "/series/" + se + "/instances/" + in + "/bulk/"
	ok := prefix + strings.Repeat("a", MaxPathLength-len(prefix))
	if _, err := ParsePath(ok); err != nil {
		t.Errorf("path of exactly %d bytes refused: %v", len(ok), err)
	}
	if _, err := ParsePath(ok + "a"); err == nil {
		t.Errorf("path of %d bytes accepted", len(ok)+1)
	}
}

func TestRequestPath(t *testing.T) {
	tests := []struct {
		r    Request
		want string
	}{
		{Request{Level: LevelRoot, Sub: "studies"}, "/studies"},
		{Request{Level: LevelStudy, Study: "1.2"}, "/studies/1.2"},
		{Request{Level: LevelStudy, Study: "1.2", Sub: "metadata"}, "/studies/1.2/metadata"},
		{Request{Level: LevelSeries, Study: "1.2", Series: "3.4", Sub: "instances"}, "/studies/1.2/series/3.4/instances"},
		{Request{Level: LevelInstance, Study: "1.2", Series: "3.4", Instance: "5.6", Sub: "frames/1,2"}, "/studies/1.2/series/3.4/instances/5.6/frames/1,2"},
	}
	for _, tt := range tests {
		if got := tt.r.Path(); got != tt.want {
			t.Errorf("%+v.Path() = %q, want %q", tt.r, got, tt.want)
		}
	}
	if got := StudyPath("1.2"); got != "/studies/1.2" {
		t.Errorf("StudyPath = %q", got)
	}
	if got := SeriesPath("1.2", "3.4"); got != "/studies/1.2/series/3.4" {
		t.Errorf("SeriesPath = %q", got)
	}
	if got := InstancePath("1.2", "3.4", "5.6"); got != "/studies/1.2/series/3.4/instances/5.6" {
		t.Errorf("InstancePath = %q", got)
	}
}

func TestIsSearch(t *testing.T) {
	tests := []struct {
		path string
		want bool
	}{
		{"/studies", true},
		{"/series", true},
		{"/instances", true},
		{"/studies/1.2", false},
		{"/studies/1.2/series", true},
		{"/studies/1.2/instances", true},
		{"/studies/1.2/metadata", false},
		{"/studies/1.2/series/3.4", false},
		{"/studies/1.2/series/3.4/instances", true},
		{"/studies/1.2/series/3.4/instances/5.6", false},
		{"/studies/1.2/series/3.4/instances/5.6/metadata", false},
	}
	for _, tt := range tests {
		r, err := ParsePath(tt.path)
		if err != nil {
			t.Fatalf("ParsePath(%q): %v", tt.path, err)
		}
		if got := r.IsSearch(); got != tt.want {
			t.Errorf("ParsePath(%q).IsSearch() = %v, want %v", tt.path, got, tt.want)
		}
	}
}

func TestLevelString(t *testing.T) {
	for l, want := range map[Level]string{LevelRoot: "root", LevelStudy: "study", LevelSeries: "series", LevelInstance: "instance", Level(9): "Level(9)"} {
		if got := l.String(); got != want {
			t.Errorf("Level(%d).String() = %q, want %q", int(l), got, want)
		}
	}
}

func FuzzParsePath(f *testing.F) {
	for _, s := range []string{
		"/studies", "/studies/1.2", "/studies/1.2/series/3.4/instances/5.6/frames/1,2/rendered",
		"/studies/1.2/series/3.4/instances/5.6/bulk/7fe00010", "/studies/1.2/../x", "/studies/1%2e2",
		"/studies/1.2/series", "/instances", "//", "/studies/1.2/series/3.4/instances/5.6/bulkdata/a%41",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		r, err := ParsePath(p)
		if err != nil {
			var pe *PathError
			if !errors.As(err, &pe) || pe.Kind < KindMalformed || pe.Kind > KindUnknownPath || pe.Message == "" {
				t.Fatalf("ParsePath(%q) error %#v is not a well-formed *PathError", p, err)
			}
			return
		}
		// An accepted path rebuilds to itself, so the upstream URL is
		// exactly what was checked.
		if got := r.Path(); got != p {
			t.Fatalf("ParsePath(%q).Path() = %q", p, got)
		}
		if len(p) > MaxPathLength {
			t.Fatalf("ParsePath accepted a %d-byte path", len(p))
		}
		for _, seg := range strings.Split(p[1:], "/") {
			if seg == "" || seg == "." || seg == ".." {
				t.Fatalf("ParsePath(%q) accepted the segment %q", p, seg)
			}
		}
		low := strings.ToLower(p)
		for _, bad := range []string{"%2f", "%5c", "%2e", "\\", "?", "#", "%00"} {
			if strings.Contains(low, bad) {
				t.Fatalf("ParsePath(%q) accepted %q", p, bad)
			}
		}
		for i := 0; i < len(p); i++ {
			if p[i] < 0x21 || p[i] >= 0x7f {
				t.Fatalf("ParsePath(%q) accepted byte %#x", p, p[i])
			}
		}
		uids := map[Level][]string{
			LevelRoot:     {},
			LevelStudy:    {r.Study},
			LevelSeries:   {r.Study, r.Series},
			LevelInstance: {r.Study, r.Series, r.Instance},
		}[r.Level]
		for _, u := range uids {
			if !ValidUID(u) {
				t.Fatalf("ParsePath(%q) returned the invalid UID %q", p, u)
			}
		}
		if r.Level == LevelRoot && r.Study+r.Series+r.Instance != "" ||
			r.Level == LevelStudy && r.Series+r.Instance != "" ||
			r.Level == LevelSeries && r.Instance != "" {
			t.Fatalf("ParsePath(%q) = %+v has UIDs below its level", p, r)
		}
	})
}

func BenchmarkParsePath(b *testing.B) {
	p := "/studies/" + st + "/series/" + se + "/instances/" + in + "/frames/1,2,3/rendered"
	for b.Loop() {
		if _, err := ParsePath(p); err != nil {
			b.Fatal(err)
		}
	}
}
