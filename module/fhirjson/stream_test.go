package fhirjson

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/fhirimaging/caddy-fhir-imaging/module/internal/testbodies"
)

// streamOpts are the options of a Stream that rewrites as newRewrite
// (differential_test.go) does, with every look-up made at the end.
func streamOpts(rebase *Transformer, lookups *int) StreamOptions {
	return StreamOptions{
		Scan:    ScanOptions{LocalBases: diffOpts.LocalBases, Rebase: rebase},
		Rewrite: Options{Ext: ext},
		Plan: func(fetched map[string]Endpoint) Planner {
			bases := diffBases(rebase)
			return func(st *Study, se *Series) Bases {
				return Bases{WADORS: bases(st.Effective(se, WADORS, fetched)), WADOURI: bases(st.Effective(se, WADOURI, fetched))}
			}
		},
		Readdress: func(s *EndpointSite) (string, bool) { return diffReaddress(s.Endpoint) },
		Lookup: func(ids []string) map[string]Endpoint {
			if lookups != nil {
				*lookups++
			}
			return diffFetched(ids)
		},
	}
}

// streamed runs in through a Stream in parts of chunk bytes.
func streamed(t testing.TB, in []byte, chunk int, opts StreamOptions) ([]byte, *Stream) {
	t.Helper()
	var out bytes.Buffer
	s := NewStream(&out, opts)
	for i := 0; i < len(in); i += chunk {
		j := min(i+chunk, len(in))
		if n, err := s.Write(in[i:j]); err != nil || n != j-i {
			t.Fatalf("Write: %d, %v", n, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return out.Bytes(), s
}

// checkStreamSame holds a Stream to the whole-body rewrite: for any body the
// latter accepts, any split into parts gives the same bytes.
func checkStreamSame(t *testing.T, in []byte, chunks ...int) {
	t.Helper()
	if root := gjson.ParseBytes(in); root.Get("resourceType").String() == "Bundle" && (root.Get("resource").Exists() || root.Get("contained").Exists()) {
		// A Bundle has neither (FHIR forbids them); the Stream reads the
		// objects in it as units, without the Bundle's fullUrl or scope.
		return
	}
	for _, rebase := range []*Transformer{nil, diffRebase(t)} {
		want, _, ok := newRewrite(t, in, rebase)
		if !ok {
			continue
		}
		for _, c := range chunks {
			got, _ := streamed(t, in, c, streamOpts(rebase, nil))
			if !bytes.Equal(got, want) {
				t.Fatalf("rebase %v, parts of %d bytes: streamed\n%s\nwhole\n%s", rebase != nil, c, got, want)
			}
		}
	}
}

func TestStreamMatchesWhole(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.json")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(filepath.Base(name), func(t *testing.T) { checkStreamSame(t, b, 1, 3, 64, 1<<20) })
	}
	for i, in := range diffCases {
		t.Run(fmt.Sprint("case", i), func(t *testing.T) { checkStreamSame(t, []byte(in), 1, 5, 1<<20) })
	}
	checkStreamSame(t, searchset(20, 3, 5), 1, 100, 4096, 1<<22)
}

// TestStreamWritesAsItReads: an answer with nothing to look up goes out as
// it comes in, an entry at a time, not at the end.
func TestStreamWritesAsItReads(t *testing.T) {
	in := testbodies.Observations(200)
	var out bytes.Buffer
	s := NewStream(&out, streamOpts(diffRebase(t), nil))
	half := len(in) / 2
	if _, err := s.Write(in[:half]); err != nil {
		t.Fatal(err)
	}
	if out.Len() < half*9/10 {
		t.Errorf("after half the body (%d bytes), %d bytes were written out", half, out.Len())
	}
	if _, err := s.Write(in[half:]); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s.Held() {
		t.Error("something was held")
	}
	if strings.Contains(out.String(), diffUpstream) || !strings.Contains(out.String(), diffPublic+"/Observation/o199") {
		t.Errorf("bases not swapped")
	}
}

// TestStreamHoldsOnlyWhatWaits: with the Endpoints already known, an
// imaging search streams; with one unknown, the entries from the first
// that needs it wait for the end, where one look-up is made for all.
func TestStreamHoldsOnlyWhatWaits(t *testing.T) {
	in := searchset(10, 1, 2)
	lookups := 0
	opts := streamOpts(nil, &lookups)
	opts.Cached = func(id string) (Endpoint, bool, bool) {
		e, ok := server[id]
		return e, ok, ok
	}
	_, s := streamed(t, in, 512, opts)
	if s.Held() || lookups != 0 {
		t.Errorf("held %v, %d look-ups, with every Endpoint cached", s.Held(), lookups)
	}
	if st := s.Stats(); st.Series != 10 || st.Instances != 20 {
		t.Errorf("stats %+v", st)
	}

	// Nothing cached: the included Endpoints at the end resolve every
	// study, and nothing is looked up.
	_, s = streamed(t, in, 512, streamOpts(nil, &lookups))
	if !s.Held() || lookups != 0 {
		t.Errorf("held %v, %d look-ups, with the Endpoints included at the end", s.Held(), lookups)
	}
	if st := s.Stats(); st.Series != 10 {
		t.Errorf("stats %+v", st)
	}

	// An Endpoint neither cached nor included: looked up once, at the end.
	noInclude := bytes.Replace(in, []byte(`"resourceType":"Endpoint"`), []byte(`"resourceType":"Basic"`), -1)
	lookups = 0
	_, s = streamed(t, noInclude, 512, streamOpts(nil, &lookups))
	if lookups != 1 || !s.Held() {
		t.Errorf("%d look-ups, held %v; want 1 and held", lookups, s.Held())
	}
}

func FuzzStreamMatchesWhole(f *testing.F) {
	for _, b := range testdataBodies(f) {
		f.Add(b, uint16(7))
	}
	for _, in := range diffCases {
		f.Add([]byte(in), uint16(3))
	}
	f.Add(searchset(2, 2, 2), uint16(50))
	f.Add(testbodies.Observations(3), uint16(1))
	f.Fuzz(func(t *testing.T, in []byte, chunk uint16) {
		checkStreamSame(t, in, int(chunk%512)+1)
	})
}

// TestStreamLearnsOnlyCurrentLocalEndpoints: the Endpoints of a searchset
// on the FHIR server's own base are given to Learn; a history Bundle's
// (old versions), another server's and contained ones are not.
func TestStreamLearnsOnlyCurrentLocalEndpoints(t *testing.T) {
	ep := func(id string) string {
		return `{"resourceType":"Endpoint","id":"` + id + `","status":"active","connectionType":{"code":"dicom-wado-rs"},"address":"http://a.example/rs"}`
	}
	body := func(typ string) []byte {
		return []byte(`{"resourceType":"Bundle","type":"` + typ + `","entry":[` +
			`{"fullUrl":"http://127.0.0.1:8080/fhir/Endpoint/mine","resource":` + ep("mine") + `},` +
			`{"fullUrl":"http://other.example/fhir/Endpoint/theirs","resource":` + ep("theirs") + `},` +
			`{"fullUrl":"http://127.0.0.1:8080/fhir/Patient/p","resource":{"resourceType":"Patient","id":"p","contained":[` + ep("inner") + `]}}]}`)
	}
	for typ, want := range map[string]string{"searchset": "mine", "history": ""} {
		var learned []string
		opts := streamOpts(nil, nil)
		opts.Learn = func(e Endpoint) { learned = append(learned, e.ID) }
		streamed(t, body(typ), 100, opts)
		if strings.Join(learned, ",") != want {
			t.Errorf("%s: learned %v, want %q", typ, learned, want)
		}
	}
}

// TestStreamBoundsOneEntry: an entry larger than MaxHold is not held whole:
// it goes out as it comes, and so does the rest.
func TestStreamBoundsOneEntry(t *testing.T) {
	big := `{"resourceType":"Bundle","type":"searchset","link":[{"url":"http://127.0.0.1:8080/fhir/x"}],"entry":[{"resource":{"resourceType":"Binary","data":"` + strings.Repeat("A", 64<<10) + `"}}]}`
	var out bytes.Buffer
	opts := streamOpts(diffRebase(t), nil)
	opts.MaxHold = 16 << 10
	s := NewStream(&out, opts)
	for i := 0; i < len(big); i += 4096 {
		s.Write([]byte(big[i:min(i+4096, len(big))]))
		if s.buf != nil && len(s.buf) > 2*opts.MaxHold {
			t.Fatalf("%d bytes held with MaxHold %d", len(s.buf), opts.MaxHold)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(big, diffUpstream, diffPublic, 1) // the link went out before
	if out.String() != want {
		t.Errorf("output differs:\n%.200s", out.String())
	}
}
