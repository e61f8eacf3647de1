package dicom

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

const (
	archive = "http://archive:8042/dicom-web"
	gateway = "https://gw.example/wado-rs"
)

var fwd = []Rebase{{From: archive, To: gateway}}

func TestRewriteURLs(t *testing.T) {
	tests := []struct {
		name  string
		rules []Rebase
		in    string
		want  string // "" means unchanged
	}{
		{
			name: "metadata",
			in: `[{"0020000D":{"vr":"UI","Value":["1.2"]},"00081190":{"vr":"UR","Value":["http://archive:8042/dicom-web/studies/1.2"]},` +
				`"7FE00010":{"vr":"OB","BulkDataURI":"http://archive:8042/dicom-web/studies/1.2/series/3/instances/4/bulk/7fe00010"}}]`,
			want: `[{"0020000D":{"vr":"UI","Value":["1.2"]},"00081190":{"vr":"UR","Value":["https://gw.example/wado-rs/studies/1.2"]},` +
				`"7FE00010":{"vr":"OB","BulkDataURI":"https://gw.example/wado-rs/studies/1.2/series/3/instances/4/bulk/7fe00010"}}]`,
		},
		{
			name: "whitespace and numbers kept",
			in:   "[ {\n  \"00200013\" : { \"vr\" : \"IS\", \"Value\" : [ 1.50E+3, -0, 2 ] },\n\t\"00081190\":{\"Value\":[ \"http://archive:8042/dicom-web\" ,\"x\"]} } ]\r\n",
			want: "[ {\n  \"00200013\" : { \"vr\" : \"IS\", \"Value\" : [ 1.50E+3, -0, 2 ] },\n\t\"00081190\":{\"Value\":[ \"https://gw.example/wado-rs\" ,\"x\"]} } ]\r\n",
		},
		{
			name: "nested sequences",
			in:   `[{"00081115":{"vr":"SQ","Value":[{"00081199":{"vr":"SQ","Value":[{"00081190":{"vr":"UR","Value":["http://archive:8042/dicom-web/a","http://archive:8042/dicom-web/b"]}}]},"00420011":{"vr":"OB","BulkDataURI":"http://archive:8042/dicom-web/c"}}]}}]`,
			want: `[{"00081115":{"vr":"SQ","Value":[{"00081199":{"vr":"SQ","Value":[{"00081190":{"vr":"UR","Value":["https://gw.example/wado-rs/a","https://gw.example/wado-rs/b"]}}]},"00420011":{"vr":"OB","BulkDataURI":"https://gw.example/wado-rs/c"}}]}}]`,
		},
		{
			name: "single dataset object",
			in:   `{"00081190":{"vr":"UR","Value":["http://archive:8042/dicom-web/studies/1"]}}`,
			want: `{"00081190":{"vr":"UR","Value":["https://gw.example/wado-rs/studies/1"]}}`,
		},
		{
			name: "query boundary",
			in:   `[{"7FE00010":{"vr":"OB","BulkDataURI":"http://archive:8042/dicom-web?offset=1&length=2"}}]`,
			want: `[{"7FE00010":{"vr":"OB","BulkDataURI":"https://gw.example/wado-rs?offset=1&length=2"}}]`,
		},
		{
			name: "other base with the same prefix is not matched",
			in:   `[{"00081190":{"vr":"UR","Value":["http://archive:8042/dicom-web2/studies/1","http://archive:8042/dicom-webx","http://archive:8042/dicom-web#x"]}}]`,
		},
		{
			name: "other host, port, scheme or userinfo is not matched",
			in: `[{"00081190":{"vr":"UR","Value":["http://archive:8043/dicom-web/s","https://archive:8042/dicom-web/s","http://archive2:8042/dicom-web/s",` +
				`"http://u@archive:8042/dicom-web/s","http://archive:8042:80/dicom-web/s","http://archive/dicom-web/s","ftp://archive:8042/dicom-web"]}}]`,
		},
		{
			name: "path is case-sensitive",
			in:   `[{"00081190":{"vr":"UR","Value":["http://archive:8042/DICOM-WEB/studies/1"]}}]`,
		},
		{
			name: "scheme and host case-insensitive",
			in:   `[{"00081190":{"vr":"UR","Value":["HTTP://ARCHIVE:8042/dicom-web/studies/1"]}}]`,
			want: `[{"00081190":{"vr":"UR","Value":["https://gw.example/wado-rs/studies/1"]}}]`,
		},
		{
			name: "escaped slashes and unicode escapes in the source",
			in:   `[{"00081190":{"vr":"UR","Value":["http:\/\/archive:8042\/dicom-web\/studies\/1.2\u002fx\u00e9\ud83d\ude00\ud800"]}}]`,
			want: `[{"00081190":{"vr":"UR","Value":["https://gw.example/wado-rs\/studies\/1.2\u002fx\u00e9\ud83d\ude00\ud800"]}}]`,
		},
		{
			name: "escaped boundary character",
			in:   `[{"00081190":{"vr":"UR","Value":["http://archive:8042/dicom-web\u003fa=1"]}}]`,
			want: `[{"00081190":{"vr":"UR","Value":["https://gw.example/wado-rs\u003fa=1"]}}]`,
		},
		{
			name: "escaped letters in the host",
			in:   `[{"00081190":{"vr":"UR","Value":["http://\u0061rchive:8042/dicom-web"]}}]`,
			want: `[{"00081190":{"vr":"UR","Value":["https://gw.example/wado-rs"]}}]`,
		},
		{
			name: "escaped keys",
			in:   `[{"0008\u0031190":{"vr":"UR","\u0056alue":["http://archive:8042/dicom-web/a"]},"x":{"BulkData\u0055RI":"http://archive:8042/dicom-web/b"}}]`,
			want: `[{"0008\u0031190":{"vr":"UR","\u0056alue":["https://gw.example/wado-rs/a"]},"x":{"BulkData\u0055RI":"https://gw.example/wado-rs/b"}}]`,
		},
		{
			name: "only RetrieveURL values and BulkDataURI strings",
			in: `[{"00081191":{"vr":"UR","Value":["http://archive:8042/dicom-web/a"]},"00081190":{"vr":"UR","Value":[["http://archive:8042/dicom-web/n"],null,1,{"x":"http://archive:8042/dicom-web/o"}],` +
				`"x":"http://archive:8042/dicom-web/b"},"Value":["http://archive:8042/dicom-web/c"],"BulkDataURI":["http://archive:8042/dicom-web/d"],"bulkDataURI":"http://archive:8042/dicom-web/e",` +
				`"http://archive:8042/dicom-web/f":"00081190","00081190x":{"Value":["http://archive:8042/dicom-web/g"]},"y":{"00081190":"http://archive:8042/dicom-web/h"}}]`,
		},
		{
			name: "BulkDataURI at any depth",
			in:   `{"a":[{"b":{"BulkDataURI":"http://archive:8042/dicom-web/x"}}],"00081190":{"Value":[{"BulkDataURI":"http://archive:8042/dicom-web/y"}]}}`,
			want: `{"a":[{"b":{"BulkDataURI":"https://gw.example/wado-rs/x"}}],"00081190":{"Value":[{"BulkDataURI":"https://gw.example/wado-rs/y"}]}}`,
		},
		{
			name: "duplicate keys are all rewritten",
			in:   `{"BulkDataURI":"http://archive:8042/dicom-web/1","BulkDataURI":"http://archive:8042/dicom-web/2"}`,
			want: `{"BulkDataURI":"https://gw.example/wado-rs/1","BulkDataURI":"https://gw.example/wado-rs/2"}`,
		},
		{
			name:  "default port and trailing slashes in rules",
			rules: []Rebase{{From: "HTTP://Archive:80/dicom-web/", To: "/wado-rs/"}},
			in:    `[{"00081190":{"Value":["http://archive/dicom-web/s/1","http://ARCHIVE:80/dicom-web","http://archive:8080/dicom-web/s"]}}]`,
			want:  `[{"00081190":{"Value":["/wado-rs/s/1","/wado-rs","http://archive:8080/dicom-web/s"]}}]`,
		},
		{
			name:  "https default port and IPv6",
			rules: []Rebase{{From: "https://[::1]/dicom-web", To: "http://gw"}, {From: "https://pacs:443", To: "http://gw2"}},
			in:    `[{"00081190":{"Value":["https://[::1]:443/dicom-web/s","https://pacs/dicom-web/s","https://[::1]:444/dicom-web/s"]}}]`,
			want:  `[{"00081190":{"Value":["http://gw/s","http://gw2/dicom-web/s","https://[::1]:444/dicom-web/s"]}}]`,
		},
		{
			name:  "first matching rule wins",
			rules: []Rebase{{From: "http://h/a", To: "http://g1"}, {From: "http://h", To: "http://g2"}},
			in:    `{"BulkDataURI":"http://h/a/x","x":{"BulkDataURI":"http://h/b/x"}}`,
			want:  `{"BulkDataURI":"http://g1/x","x":{"BulkDataURI":"http://g2/b/x"}}`,
		},
		{
			name:  "To is JSON-escaped",
			rules: []Rebase{{From: archive, To: "http://gw/a\"b\\c\n\x01é"}},
			in:    `{"BulkDataURI":"http://archive:8042/dicom-web/x"}`,
			want:  `{"BulkDataURI":"http://gw/a\"b\\c\n\u0001é/x"}`,
		},
		{
			name:  "value already in target form",
			rules: []Rebase{{From: "http://h/x", To: "http://h/x"}},
			in:    `{"BulkDataURI":"http://h/x/1"}`,
		},
		{
			name:  "no rules",
			rules: []Rebase{},
			in:    `{"BulkDataURI":"http://archive:8042/dicom-web/1"}`,
		},
		{
			name: "empty array",
			in:   ` [] `,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rules := tt.rules
			if rules == nil {
				rules = fwd
			}
			in := []byte(tt.in)
			got, changed, err := RewriteURLs(in, rules)
			if err != nil {
				t.Fatalf("error: %v", err)
			}
			if tt.want == "" {
				if changed || !sameSlice(got, in) {
					t.Fatalf("changed = %v, got %s; want the input slice unchanged", changed, got)
				}
				return
			}
			if !changed || string(got) != tt.want {
				t.Fatalf("changed = %v\n got %s\nwant %s", changed, got, tt.want)
			}
			if !json.Valid(got) {
				t.Fatalf("output is not valid JSON: %s", got)
			}
			if string(in) != tt.in {
				t.Fatalf("input was modified")
			}
		})
	}
}

// sameSlice reports whether a and b are the same slice, not just equal.
func sameSlice(a, b []byte) bool {
	return len(a) == len(b) && cap(a) == cap(b) && (len(a) == 0 || &a[0] == &b[0])
}

func TestRewriteURLsRuleErrors(t *testing.T) {
	for _, from := range []string{"", "archive:8042/dicom-web", "/dicom-web", "://h/x", "http://", "http:///x", "1http://h", "http://h/x?y", "http://h/x#y", "ht tp://h"} {
		in := []byte(`{}`)
		got, changed, err := RewriteURLs(in, []Rebase{{From: from, To: gateway}})
		if err == nil || changed || !sameSlice(got, in) {
			t.Errorf("From %q: got %s, %v, %v; want an error and the input", from, got, changed, err)
		}
		var se *SyntaxError
		if errors.As(err, &se) {
			t.Errorf("From %q: a rule error is a *SyntaxError", from)
		}
	}
}

func TestRewriteURLsValidation(t *testing.T) {
	tests := []string{
		``, ` `, `{`, `}`, `[`, `]`, `[1,]`, `[,1]`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{a:1}`, `{"a" 1}`, `{"a":1 "b":2}`,
		`[1 2]`, `"abc`, `"a\x"`, `"a\u12"`, `"a\u12g4"`, "\"a\tb\"", "\"a\x00\"", `01`, `-`, `1.`, `.1`, `1e`, `1e+`, `+1`,
		`-01`, `1.5e+10`, `-0.0E-0`, `tru`, `true`, `truex`, `nul`, `null`, `false`, `[]`, `{}`, `[[]]`, `{"a":[{"b":null}]}`,
		`[] []`, `[]x`, "\ufeff[]", `"\ud800"`, `"\/"`, "\"\xff\xfe\"", `[1,2,3]`, ` "x" `, `[-]`, `{"a":-}`,
		`{"BulkDataURI":"http://archive:8042/dicom-web/x"`, `[{"BulkDataURI":"http://archive:8042/dicom-web/x"},]`,
		`{"BulkDataURI":"http://archive:8042/dicom-web/x" "y"}`, "\t\n\r[]\t\n\r", "\v[]", `{"":""}`, `[1E400]`,
	}
	for _, s := range tests {
		in := []byte(s)
		got, changed, err := RewriteURLs(in, fwd)
		if valid := json.Valid(in); valid != (err == nil) {
			t.Errorf("RewriteURLs(%q) error %v, but json.Valid = %v", s, err, valid)
		}
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) || se.Offset < 0 || se.Offset > len(in) {
				t.Errorf("RewriteURLs(%q) error %#v is not a *SyntaxError with a valid offset", s, err)
			}
			if changed || !sameSlice(got, in) {
				t.Errorf("RewriteURLs(%q) returned a changed body with an error", s)
			}
		}
	}
}

func TestRewriteURLsDepth(t *testing.T) {
	for _, depth := range []int{maxJSONDepth, maxJSONDepth + 1} {
		for _, open := range []string{"[", `{"a":`} {
			closer := map[string]string{"[": "]", `{"a":`: "}"}[open]
			in := []byte(strings.Repeat(open, depth) + "1" + strings.Repeat(closer, depth))
			_, _, err := RewriteURLs(in, fwd)
			if (depth <= maxJSONDepth) != (err == nil) {
				t.Errorf("depth %d %q: error %v", depth, open, err)
			}
			if valid := json.Valid(in); valid != (err == nil) {
				t.Errorf("depth %d %q: error %v, but json.Valid = %v", depth, open, err, valid)
			}
		}
	}
}

// refRewrite is an independent statement of what RewriteURLs does with the
// fwd rule, on values decoded by encoding/json.
func refRewrite(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			switch {
			case k == "BulkDataURI":
				if s, ok := e.(string); ok {
					out[k] = refURL(s)
					continue
				}
			case k == "00081190":
				if m, ok := e.(map[string]any); ok {
					m2 := refRewrite(m).(map[string]any)
					if arr, ok := m["Value"].([]any); ok {
						arr2 := make([]any, len(arr))
						for i, x := range arr {
							if s, ok := x.(string); ok {
								arr2[i] = refURL(s)
							} else {
								arr2[i] = refRewrite(x)
							}
						}
						m2["Value"] = arr2
					}
					out[k] = m2
					continue
				}
			}
			out[k] = refRewrite(e)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = refRewrite(e)
		}
		return out
	}
	return v
}

func refURL(s string) string {
	const hostPart = "http://archive:8042"
	const path = "/dicom-web"
	if len(s) < len(hostPart) || !asciiLowerEqual(s[:len(hostPart)], hostPart) {
		return s
	}
	rest := s[len(hostPart):]
	if !strings.HasPrefix(rest, path) || len(rest) > len(path) && rest[len(path)] != '/' && rest[len(path)] != '?' {
		return s
	}
	return gateway + rest[len(path):]
}

func asciiLowerEqual(a, lower string) bool {
	for i := 0; i < len(a); i++ {
		c := a[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

func decodeAny(t *testing.T, b []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("decode %q: %v", b, err)
	}
	return v
}

var fuzzSeeds = []string{
	`[{"00081190":{"vr":"UR","Value":["http://archive:8042/dicom-web/studies/1.2"]},"7FE00010":{"vr":"OB","BulkDataURI":"http://archive:8042/dicom-web/studies/1.2/bulk/7fe00010"}}]`,
	`[{"00081190":{"vr":"UR","Value":["http:\/\/archive:8042\/dicom-web\/x","HTTP://Archive:8042/dicom-web?x",null]}}]`,
	`{"00081115":{"vr":"SQ","Value":[{"00081190":{"vr":"UR","Value":["http://archive:8042/dicom-web"]}}]}}`,
	`{"BulkDataURI":"http://archive:8042/dicom-web2/x","a":[1,-2.5e3,true,false,null,"\u00e9"]}`,
	`[{"00081190":{"vr":"UR","Value":["http://archive:8042/dicom-web\ud800/x"]}}]`,
	`[{"00081190":{"vr":"UR","Value":["https://gw.example/wado-rs/x"]}}]`,
	`{"BulkDataURI":"http://archive:8042/dicom-web\u002fa\u0022"}`,
	`[1,2`,
}

func FuzzRewriteURLs(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	rev := []Rebase{{From: gateway, To: archive}}
	none := []Rebase{{From: "http://nowhere.invalid/x", To: "http://elsewhere.invalid"}}
	froms, err := ParseFroms(archive, "http://other:80/pacs/")
	if err != nil {
		f.Fatal(err)
	}
	prepared := froms.To(gateway + "/")
	twoRules := []Rebase{{From: archive, To: gateway}, {From: "http://other:80/pacs/", To: gateway}}
	f.Fuzz(func(t *testing.T, in []byte) {
		// Rules prepared once (Froms.To) rebase as the rules given whole.
		pout, pchanged, perr := prepared.RewriteURLs(in)
		wout, wchanged, werr := RewriteURLs(in, twoRules)
		if !bytes.Equal(pout, wout) || pchanged != wchanged || (perr == nil) != (werr == nil) {
			t.Fatalf("Froms.To gives %q %v %v, the rules given whole %q %v %v", pout, pchanged, perr, wout, wchanged, werr)
		}
		orig := bytes.Clone(in)
		out, changed, err := RewriteURLs(in, fwd)
		if !bytes.Equal(in, orig) {
			t.Fatalf("input modified")
		}
		if valid := json.Valid(in); valid != (err == nil) {
			t.Fatalf("error %v, but json.Valid = %v", err, valid)
		}
		if err != nil {
			if changed || !sameSlice(out, in) {
				t.Fatalf("changed body returned with an error")
			}
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("error %#v is not a *SyntaxError", err)
			}
			return
		}
		if !changed {
			if !sameSlice(out, in) {
				t.Fatalf("unchanged, but not the input slice")
			}
		} else {
			if bytes.Equal(out, in) {
				t.Fatalf("reported a change, but the output equals the input")
			}
			if !json.Valid(out) {
				t.Fatalf("output is not valid JSON: %q", out)
			}
		}
		// The output means what the reference rewrite of the input means.
		if want, got := refRewrite(decodeAny(t, in)), decodeAny(t, out); !reflect.DeepEqual(want, got) {
			t.Fatalf("semantic mismatch\n in %q\nout %q\nwant %#v\n got %#v", in, out, want, got)
		}
		// A rule that matches nothing leaves the body byte-identical.
		if o, c, err := RewriteURLs(in, none); err != nil || c || !sameSlice(o, in) {
			t.Fatalf("non-matching rule changed the body: %v %v", c, err)
		}
		// Rewriting is idempotent (To does not match From).
		if o, c, err := RewriteURLs(out, fwd); err != nil || c || !bytes.Equal(o, out) {
			t.Fatalf("second rewrite changed the body: %v %v\n%q\n%q", c, err, out, o)
		}
		// When no value already pointed at the gateway, going back and
		// forth again gives the same bytes.
		if _, c, _ := RewriteURLs(in, rev); !c {
			back, _, err := RewriteURLs(out, rev)
			if err != nil {
				t.Fatal(err)
			}
			again, _, err := RewriteURLs(back, fwd)
			if err != nil || !bytes.Equal(again, out) {
				t.Fatalf("forward(reverse(out)) != out\n out %q\nback %q\n got %q", out, back, again)
			}
		}
	})
}

// FuzzRewriteURLsValue builds DICOM JSON around a fuzzed URL, written with
// several escaping styles, and checks the rewritten value and that a value
// written plainly with the From prefix is restored byte for byte by the
// reversed rule.
func FuzzRewriteURLsValue(f *testing.F) {
	for _, s := range []string{"/studies/1.2", "", "?a=b", "2/x", "/a\"b\\c\u2028\x00é", "#x"} {
		f.Add(archive+s, false)
		f.Add("HTTP://Archive:8042/dicom-web"+s, true)
	}
	rev := []Rebase{{From: gateway, To: archive}}
	f.Fuzz(func(t *testing.T, s string, escapeSlashes bool) {
		enc, _ := json.Marshal(s) // escapes <, > and &, and invalid UTF-8 as U+FFFD
		if escapeSlashes {
			enc = bytes.ReplaceAll(enc, []byte("/"), []byte(`\/`))
		}
		in := []byte(`[{"00080018":{"vr":"UI","Value":["1.2"]},"00081190":{"vr":"UR","Value":[` + string(enc) +
			`]},"7FE00010":{"vr":"OB","BulkDataURI":` + string(enc) + `}}]`)
		out, changed, err := RewriteURLs(in, fwd)
		if err != nil {
			t.Fatalf("error on valid input %q: %v", in, err)
		}
		var decIn, decOut []map[string]map[string]any
		if err := json.Unmarshal(in, &decIn); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(out, &decOut); err != nil {
			t.Fatalf("output %q: %v", out, err)
		}
		v := decIn[0]["7FE00010"]["BulkDataURI"].(string)
		want := refURL(v)
		if got := decOut[0]["00081190"]["Value"].([]any)[0]; got != want {
			t.Fatalf("RetrieveURL %q became %q, want %q", v, got, want)
		}
		if got := decOut[0]["7FE00010"]["BulkDataURI"]; got != want {
			t.Fatalf("BulkDataURI %q became %q, want %q", v, got, want)
		}
		if changed != (want != v) {
			t.Fatalf("changed = %v for %q -> %q", changed, v, want)
		}
		if changed && strings.HasPrefix(v, archive) && !escapeSlashes && !strings.HasPrefix(v, gateway) {
			back, _, err := RewriteURLs(out, rev)
			if err != nil || !bytes.Equal(back, in) {
				t.Fatalf("reverse did not restore the input\n  in %q\n out %q\nback %q", in, out, back)
			}
		}
	})
}

// metadataBody builds a WADO-RS metadata answer of n instances.
func metadataBody(n int, base string) []byte {
	var b bytes.Buffer
	b.WriteString("[")
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		uid := fmt.Sprintf("1.2.826.0.1.3680043.8.498.%d", 1000000+i)
		fmt.Fprintf(&b, `{"00080016":{"vr":"UI","Value":["1.2.840.10008.5.1.4.1.1.2"]},"00080018":{"vr":"UI","Value":["%s"]},`+
			`"00080060":{"vr":"CS","Value":["CT"]},"00100010":{"vr":"PN","Value":[{"Alphabetic":"Doe^Jane"}]},`+
			`"0020000D":{"vr":"UI","Value":["1.2.826.0.1.3680043.8.498.1"]},"0020000E":{"vr":"UI","Value":["1.2.826.0.1.3680043.8.498.2"]},`+
			`"00200013":{"vr":"IS","Value":[%d]},"00280010":{"vr":"US","Value":[512]},"00280011":{"vr":"US","Value":[512]},`+
			`"00281050":{"vr":"DS","Value":[40.0]},"00281051":{"vr":"DS","Value":[400.0]},`+
			`"00081190":{"vr":"UR","Value":["%s/studies/1.2.826.0.1.3680043.8.498.1/series/1.2.826.0.1.3680043.8.498.2/instances/%s"]},`+
			`"7FE00010":{"vr":"OW","BulkDataURI":"%s/studies/1.2.826.0.1.3680043.8.498.1/series/1.2.826.0.1.3680043.8.498.2/instances/%s/bulk/7fe00010"}}`,
			uid, i+1, base, uid, base, uid)
	}
	b.WriteString("]")
	return b.Bytes()
}

func TestMetadataBody(t *testing.T) {
	in := metadataBody(1000, archive)
	out, changed, err := RewriteURLs(in, fwd)
	if err != nil || !changed {
		t.Fatalf("changed %v, err %v", changed, err)
	}
	if got := bytes.Count(out, []byte(gateway)); got != 2000 {
		t.Fatalf("%d rewritten URLs, want 2000", got)
	}
	if want := metadataBody(1000, gateway); !bytes.Equal(out, want) {
		t.Fatalf("output differs from the body built with the gateway base")
	}
}

func BenchmarkRewriteURLs(b *testing.B) {
	in := metadataBody(1000, archive)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if _, changed, err := RewriteURLs(in, fwd); err != nil || !changed {
			b.Fatal(changed, err)
		}
	}
}

func BenchmarkRewriteURLsNoMatch(b *testing.B) {
	in := metadataBody(1000, "http://other:8042/dicom-web")
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if _, changed, err := RewriteURLs(in, fwd); err != nil || changed {
			b.Fatal(changed, err)
		}
	}
}

// BenchmarkJSONValid is a yardstick: encoding/json validating the same body.
func BenchmarkJSONValid(b *testing.B) {
	in := metadataBody(1000, archive)
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if !json.Valid(in) {
			b.Fatal("invalid")
		}
	}
}

// TestFromsTo: bases parsed once and rebased onto a base per answer rebase
// JSON strings and header values as rules given whole do, the base
// escaped for JSON in the one and as it is in the other.
func TestFromsTo(t *testing.T) {
	froms, err := ParseFroms(archive, "http://other/pacs")
	if err != nil {
		t.Fatal(err)
	}
	to := `https://gw.example/a"b/`
	rules := froms.To(to)
	if rules.Empty() || !(Froms{}).To(to).Empty() {
		t.Fatalf("Empty: %v for two bases, %v for none", rules.Empty(), (Froms{}).To(to).Empty())
	}
	body := []byte(`[{"00081190":{"vr":"UR","Value":["http://archive:8042/dicom-web/studies/1","http://OTHER:80/pacs/studies/2","http://third/x"]}}]`)
	whole := []Rebase{{From: archive, To: to}, {From: "http://other/pacs", To: to}}
	got, changed, err := rules.RewriteURLs(body)
	want, wantChanged, wantErr := RewriteURLs(body, whole)
	if err != nil || wantErr != nil || !changed || !wantChanged || !bytes.Equal(got, want) {
		t.Fatalf("Froms.To: %s %v %v; whole rules: %s %v %v", got, changed, err, want, wantChanged, wantErr)
	}
	if !bytes.Contains(got, []byte(`https://gw.example/a\"b/studies/1`)) {
		t.Errorf("the base is not escaped for JSON: %s", got)
	}
	u, err := NewURLRebaser(whole)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"http://other/pacs/studies/2/series/3", "http://archive:8042/dicom-web", "http://third/x"} {
		g, gok := rules.URLRebaser().Rebase([]byte(v))
		w, wok := u.Rebase([]byte(v))
		if gok != wok || !bytes.Equal(g, w) {
			t.Errorf("header %s: Froms.To gives %q %v, whole rules %q %v", v, g, gok, w, wok)
		}
	}
	if g, _ := rules.URLRebaser().Rebase([]byte("http://other/pacs/x")); string(g) != `https://gw.example/a"b/x` {
		t.Errorf("header rebased to %q: the base should be as it is", g)
	}
}
