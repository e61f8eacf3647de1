package fhirjson

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	upstream = "http://127.0.0.1:8080/fhir"
	public   = "https://gw.example.org/api/fhir"
)

func mustTransformer(t testing.TB, rules []Rebase, drop []string, patch PatchKind) *Transformer {
	t.Helper()
	tr, err := NewTransformer(rules, drop, patch)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

var (
	toPublic   = []Rebase{{From: upstream, To: public}}
	toUpstream = []Rebase{{From: public, To: upstream}}
	dropOurs   = []string{ext.WADORS, ext.WADOURI}
)

func TestRebaseBodies(t *testing.T) {
	tr := mustTransformer(t, toPublic, nil, NotPatch)
	cases := []struct{ in, want string }{
		// HAPI paging links, fullUrl, absolute references
		{`{"link":[{"relation":"next","url":"http://127.0.0.1:8080/fhir?_getpages=abc&_getpagesoffset=2"}]}`,
			`{"link":[{"relation":"next","url":"https://gw.example.org/api/fhir?_getpages=abc&_getpagesoffset=2"}]}`},
		{`{"fullUrl":"http://127.0.0.1:8080/fhir/Patient/1","resource":{"subject":{"reference":"http://127.0.0.1:8080/fhir/Patient/1/_history/2"}}}`,
			`{"fullUrl":"https://gw.example.org/api/fhir/Patient/1","resource":{"subject":{"reference":"https://gw.example.org/api/fhir/Patient/1/_history/2"}}}`},
		// the base itself, case-insensitive scheme and host, explicit default port
		{`["http://127.0.0.1:8080/fhir","HTTP://127.0.0.1:8080/fhir/","http://127.0.0.1:8080/fhir#x"]`,
			`["https://gw.example.org/api/fhir","https://gw.example.org/api/fhir/","https://gw.example.org/api/fhir#x"]`},
		// escapes: the prefix is replaced, the rest is kept as written
		{`{"url":"http:\/\/127.0.0.1:8080\/fhir\/Patient\/1"}`, `{"url":"https://gw.example.org/api/fhir\/Patient\/1"}`},
		// not the base: another path, another port, a key, text that merely contains it
		{`{"a":"http://127.0.0.1:8080/fhir2/x","b":"http://127.0.0.1:8081/fhir/x","http://127.0.0.1:8080/fhir/k":1,"c":"see http://127.0.0.1:8080/fhir/x","d":"urn:uuid:1"}`, ""},
	}
	for _, c := range cases {
		out, changed, err := tr.Apply([]byte(c.in))
		if err != nil {
			t.Fatalf("%s: %v", c.in, err)
		}
		want := c.want
		if want == "" {
			want = c.in
		}
		if string(out) != want || changed != (want != c.in) {
			t.Errorf("Apply(%s)\n got %s (changed %v)\nwant %s", c.in, out, changed, want)
		}
	}
}

func TestRebaseHeaders(t *testing.T) {
	tr := mustTransformer(t, toPublic, nil, NotPatch)
	if got, ok := tr.URL("http://127.0.0.1:8080/fhir/Patient/1/_history/1"); !ok || got != public+"/Patient/1/_history/1" {
		t.Errorf("URL: %q %v", got, ok)
	}
	if got, ok := tr.URL("http://127.0.0.1:8080/fhirx"); ok {
		t.Errorf("URL matched another path: %q", got)
	}
	in := `<http://127.0.0.1:8080/fhir?_getpages=a>; rel="next", <http://other/x>; rel="prev"`
	want := `<https://gw.example.org/api/fhir?_getpages=a>; rel="next", <http://other/x>; rel="prev"`
	if got, ok := tr.LinkHeader(in); !ok || got != want {
		t.Errorf("LinkHeader:\n got %s\nwant %s", got, want)
	}
}

// TestStripUndoesInject: stripping the injected extensions from the
// rewritten form of every test document gives the document back, byte for
// byte, whatever extensions it had of its own.
func TestStripUndoesInject(t *testing.T) {
	tr := mustTransformer(t, nil, dropOurs, NotPatch)
	files, _ := filepath.Glob("testdata/*.json")
	docs := map[string][]byte{"searchset": searchset(3, 2, 3)}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		docs[f] = b
	}
	for name, in := range docs {
		injected, _ := rewrite(t, in)
		if string(injected) == string(in) {
			continue
		}
		out, changed, err := tr.Apply(injected)
		if err != nil || !changed {
			t.Fatalf("%s: changed %v, %v", name, changed, err)
		}
		if string(out) != string(in) {
			t.Errorf("%s: strip(inject(x)) != x\n got %s\nwant %s", name, out, in)
		}
	}
}

func TestStripShapes(t *testing.T) {
	tr := mustTransformer(t, nil, dropOurs, NotPatch)
	o := `{"url":"` + ext.WADORS + `","valueUrl":"http://gw/wado-rs/studies/1"}`
	u := `{"url":"` + ext.WADOURI + `","valueUrl":"http://gw/wado?x"}`
	m := `{"url":"http://example.org/mine","valueString":"keep"}`
	cases := []struct{ in, want string }{
		{`{"extension":[` + o + `],"uid":"1"}`, `{"uid":"1"}`},
		{`{"extension":[` + o + `,` + u + `],  "uid":"1"}`, `{  "uid":"1"}`},
		{`{"uid":"1","extension":[` + o + `]}`, `{"uid":"1"}`},
		{`{"uid":"1", "extension" : [ ` + o + ` ] , "number":2}`, `{"uid":"1" , "number":2}`},
		{`{"extension":[` + o + `]}`, `{}`},
		{`{"extension":[` + m + `,` + o + `]}`, `{"extension":[` + m + `]}`},
		{`{"extension":[` + o + `, ` + m + `]}`, `{"extension":[` + m + `]}`},
		{`{"extension":[` + o + `,` + m + `,` + u + `,` + m + `]}`, `{"extension":[` + m + `,` + m + `]}`},
		{"{\n  \"extension\": [\n    " + m + ",\n    " + o + "\n  ]\n}", "{\n  \"extension\": [\n    " + m + "\n  ]\n}"},
		// nested: an extension inside a dropped extension goes with it; an
		// extension of our URL elsewhere than an "extension" list stays
		{`{"a":[{"extension":[` + o + `]}],"b":` + o + `}`, `{"a":[{}],"b":` + o + `}`},
		// a modifierExtension is not ours to touch
		{`{"modifierExtension":[` + o + `]}`, ""},
	}
	for _, c := range cases {
		out, changed, err := tr.Apply([]byte(c.in))
		if err != nil {
			t.Fatalf("%s: %v", c.in, err)
		}
		want := c.want
		if want == "" {
			want = c.in
		}
		if string(out) != want || changed != (want != c.in) {
			t.Errorf("Apply(%s)\n got %s\nwant %s", c.in, out, want)
		}
		if !json.Valid(out) {
			t.Errorf("invalid JSON out: %s", out)
		}
	}
}

func TestStripAndRebaseRequest(t *testing.T) {
	tr := mustTransformer(t, toUpstream, dropOurs, NotPatch)
	in := `{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"https://gw.example.org/api/fhir/ImagingStudy/s1","resource":{"resourceType":"ImagingStudy","id":"s1","subject":{"reference":"https://gw.example.org/api/fhir/Patient/p1"},"series":[{"extension":[{"url":"` + ext.WADORS + `","valueUrl":"https://gw.example.org/wado-rs/studies/1/series/2"}],"uid":"2"}]},"request":{"method":"PUT","url":"ImagingStudy/s1"}}]}`
	want := `{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"http://127.0.0.1:8080/fhir/ImagingStudy/s1","resource":{"resourceType":"ImagingStudy","id":"s1","subject":{"reference":"http://127.0.0.1:8080/fhir/Patient/p1"},"series":[{"uid":"2"}]},"request":{"method":"PUT","url":"ImagingStudy/s1"}}]}`
	out, changed, err := tr.Apply([]byte(in))
	if err != nil || !changed || string(out) != want {
		t.Fatalf("got %s (%v, %v)\nwant %s", out, changed, err, want)
	}
}

func TestStripJSONPatch(t *testing.T) {
	tr := mustTransformer(t, toUpstream, dropOurs, JSONPatch)
	o := `{"url":"` + ext.WADORS + `","valueUrl":"http://gw/wado-rs/studies/1"}`
	m := `{"url":"http://example.org/mine","valueString":"keep"}`
	in := `[{"op":"replace","path":"/status","value":"available"},` +
		`{"op":"add","path":"/series/0/extension/-","value":` + o + `},` +
		`{"op":"replace","path":"/series/0/extension","value":[` + m + `,` + o + `]},` +
		`{"op":"add","path":"/series/1/extension","value":[` + o + `]},` +
		`{"op":"test","path":"/series/0/extension/0","value":` + o + `},` +
		`{"op":"add","path":"/series/2","value":{"extension":[` + o + `],"uid":"1.2"}},` +
		`{"op":"replace","path":"/subject","value":{"reference":"https://gw.example.org/api/fhir/Patient/p"}}]`
	want := `[{"op":"replace","path":"/status","value":"available"},` +
		`{"op":"replace","path":"/series/0/extension","value":[` + m + `]},` +
		`{"op":"add","path":"/series/2","value":{"uid":"1.2"}},` +
		`{"op":"replace","path":"/subject","value":{"reference":"http://127.0.0.1:8080/fhir/Patient/p"}}]`
	out, _, err := tr.Apply([]byte(in))
	if err != nil || string(out) != want {
		t.Fatalf("got  %s (%v)\nwant %s", out, err, want)
	}
	// the same document is not a patch for a resource body: nothing to drop
	// at the top, only the nested extension lists
	plain := mustTransformer(t, nil, dropOurs, NotPatch)
	if out, _, _ := plain.Apply([]byte(`[{"op":"add","value":` + o + `}]`)); string(out) != `[{"op":"add","value":`+o+`}]` {
		t.Errorf("non-patch: %s", out)
	}
}

func TestStripFHIRPathPatch(t *testing.T) {
	tr := mustTransformer(t, nil, dropOurs, NotPatch)
	keep := `{"name":"operation","part":[{"name":"type","valueCode":"replace"},{"name":"path","valueString":"ImagingStudy.status"},{"name":"value","valueCode":"available"}]}`
	add := `{"name":"operation","part":[{"name":"type","valueCode":"add"},{"name":"path","valueString":"ImagingStudy.series[0]"},{"name":"name","valueString":"extension"},{"name":"value","part":[{"name":"url","valueUri":"` + ext.WADORS + `"},{"name":"valueUrl","valueUrl":"http://gw/x"}]}]}`
	del := `{"name":"operation","part":[{"name":"type","valueCode":"delete"},{"name":"path","valueString":"ImagingStudy.series[0].extension.where(url='` + ext.WADOURI + `')"}]}`
	in := `{"resourceType":"Parameters","parameter":[` + add + `,` + keep + `,` + del + `]}`
	want := `{"resourceType":"Parameters","parameter":[` + keep + `]}`
	out, _, err := tr.Apply([]byte(in))
	if err != nil || string(out) != want {
		t.Fatalf("got  %s (%v)\nwant %s", out, err, want)
	}
	// a Parameters nested in a Bundle is not a patch
	nested := `{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Parameters","parameter":[` + add + `]}}]}`
	if out, _, _ := tr.Apply([]byte(nested)); string(out) != nested {
		t.Errorf("nested Parameters changed: %s", out)
	}
}

func TestTransformerErrors(t *testing.T) {
	if _, err := NewTransformer([]Rebase{{From: "/fhir", To: "x"}}, nil, NotPatch); err == nil {
		t.Error("relative From accepted")
	}
	tr := mustTransformer(t, toPublic, dropOurs, NotPatch)
	for _, in := range []string{``, `{`, `{"a":}`, `[1,]`, `"\x"`, `{"a":1} x`, "\"\x01\"", `01`, `[1.]`, `tru`} {
		out, changed, err := tr.Apply([]byte(in))
		if err == nil || changed || string(out) != in {
			t.Errorf("Apply(%q): %q %v %v", in, out, changed, err)
		}
	}
	deep := strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1)
	if _, _, err := tr.Apply([]byte(deep)); err == nil {
		t.Error("over-deep nesting accepted")
	}
}

func BenchmarkRebaseSearchset(b *testing.B) {
	body := searchset(100, 3, 50)
	tr := mustTransformer(b, toPublic, nil, NotPatch)
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, changed, err := tr.Apply(body); err != nil || !changed {
			b.Fatal(changed, err)
		}
	}
}

func BenchmarkStripSearchset(b *testing.B) {
	body, _ := rewrite(b, searchset(100, 3, 50))
	tr := mustTransformer(b, toUpstream, dropOurs, NotPatch)
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, changed, err := tr.Apply(body); err != nil || !changed {
			b.Fatal(changed, err)
		}
	}
}

// FuzzTransform: never panics; accepts exactly what encoding/json accepts;
// the output is valid JSON; a second run changes nothing; swapping the base
// back restores a document that never named the public base; and stripping
// undoes an injection.
func FuzzTransform(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.json")
	for _, name := range files {
		b, _ := os.ReadFile(name)
		f.Add(b)
	}
	f.Add(searchset(2, 2, 2))
	f.Add([]byte(`{"a":"http:\/\/127.0.0.1:8080\/fhir?x","extension":[{"url":"` + ext.WADORS + `"},1]}`))
	f.Add([]byte(`[{"op":"add","value":[{"url":"` + ext.WADOURI + `"}]}]`))
	there := mustTransformer(f, toPublic, dropOurs, NotPatch)
	back := mustTransformer(f, toUpstream, nil, NotPatch)
	patch := mustTransformer(f, toPublic, dropOurs, JSONPatch)
	strip := mustTransformer(f, nil, dropOurs, NotPatch)
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, tr := range []*Transformer{there, patch} {
			out, changed, err := tr.Apply(in)
			if (err == nil) != json.Valid(in) {
				t.Fatalf("Apply error %v, json.Valid %v", err, json.Valid(in))
			}
			if err != nil {
				return
			}
			if !json.Valid(out) {
				t.Fatalf("invalid output %s from %s", out, in)
			}
			if changed == (string(out) == string(in)) {
				t.Fatalf("changed=%v but out==in is %v", changed, string(out) == string(in))
			}
			again, changed2, _ := tr.Apply(out)
			if changed2 || string(again) != string(out) {
				t.Fatalf("not idempotent:\n%s\n%s", out, again)
			}
		}
		if lower := strings.ToLower(string(in)); !strings.Contains(lower, "gw.example.org") {
			// Going to the public base and back keeps the public view, and a
			// document that names neither base comes back unchanged.
			pub, _, _ := there.Apply(in)
			up, _, _ := back.Apply(pub)
			pub2, _, _ := there.Apply(up)
			if string(pub2) != string(pub) {
				t.Fatalf("round trip changed the public view:\n%s\n%s", pub, pub2)
			}
			if !strings.Contains(lower, "127.0.0.1:8080") && !strings.Contains(lower, "\\") && string(up) != string(pub) {
				t.Fatalf("a document without the bases changed:\n%s\n%s", pub, up)
			}
		}
		if _, err := Scan(in, opts); err == nil && !strings.Contains(string(in), DefaultExtensionBase) {
			injected, _ := rewrite(t, in)
			out, _, err := strip.Apply(injected)
			if err != nil || string(out) != string(in) {
				t.Fatalf("strip(inject(x)) != x:\n in %s\nout %s", in, out)
			}
		}
	})
}
