package fhirxml

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

const (
	upstream = "http://127.0.0.1:8080/fhir"
	public   = "https://gw.example.org/api/fhir"
)

func mustRebaser(tb testing.TB, rules ...Rebase) *Rebaser {
	tb.Helper()
	if len(rules) == 0 {
		rules = []Rebase{{From: upstream, To: public}}
	}
	rb, err := NewRebaser(rules)
	if err != nil {
		tb.Fatal(err)
	}
	return rb
}

// hapiPage is a searchset page as HAPI writes it in XML: paging links
// with &amp; in their queries, fullUrls, a reference, a narrative.
const hapiPage = `<?xml version="1.0" encoding="UTF-8"?>
<Bundle xmlns="http://hl7.org/fhir">
   <id value="8c1a"/>
   <meta>
      <lastUpdated value="2026-12-02T02:00:00.000+00:00"/>
   </meta>
   <type value="searchset"/>
   <link>
      <relation value="self"/>
      <url value="http://127.0.0.1:8080/fhir/Patient?_count=2&amp;_format=xml"/>
   </link>
   <link>
      <relation value="next"/>
      <url value="http://127.0.0.1:8080/fhir?_getpages=8c1a&amp;_getpagesoffset=2&amp;_count=2&amp;_format=xml&amp;_bundletype=searchset"/>
   </link>
   <entry>
      <fullUrl value="http://127.0.0.1:8080/fhir/Patient/p1"/>
      <resource>
         <Patient xmlns="http://hl7.org/fhir">
            <id value="p1"/>
            <text>
               <status value="generated"/>
               <div xmlns="http://www.w3.org/1999/xhtml"><a href="http://127.0.0.1:8080/fhir/Patient/p1">p1</a><input value="http://127.0.0.1:8080/fhir/x"/></div>
            </text>
            <extension url="http://127.0.0.1:8080/fhir/StructureDefinition/x">
               <valueReference>
                  <reference value="http://127.0.0.1:8080/fhir/Organization/o1"/>
               </valueReference>
            </extension>
            <!-- http://127.0.0.1:8080/fhir/Patient/p1 -->
            <managingOrganization>
               <reference value="Organization/o1"/>
            </managingOrganization>
         </Patient>
      </resource>
      <search>
         <mode value="match"/>
      </search>
      <response>
         <location value="http://127.0.0.1:8080/fhir/Patient/p1/_history/1"/>
      </response>
   </entry>
</Bundle>
`

func TestRebaseHAPIPage(t *testing.T) {
	rb := mustRebaser(t)
	out, changed := rb.Apply([]byte(hapiPage))
	if !changed {
		t.Fatal("nothing rebased")
	}
	want := hapiPage
	for _, v := range []string{
		`<url value="http://127.0.0.1:8080/fhir/Patient?_count=2&amp;_format=xml"/>`,
		`<url value="http://127.0.0.1:8080/fhir?_getpages=8c1a&amp;_getpagesoffset=2&amp;_count=2&amp;_format=xml&amp;_bundletype=searchset"/>`,
		`<fullUrl value="http://127.0.0.1:8080/fhir/Patient/p1"/>`,
		`<extension url="http://127.0.0.1:8080/fhir/StructureDefinition/x">`,
		`<reference value="http://127.0.0.1:8080/fhir/Organization/o1"/>`,
		`<location value="http://127.0.0.1:8080/fhir/Patient/p1/_history/1"/>`,
	} {
		if !strings.Contains(want, v) {
			t.Fatalf("fixture lacks %s", v)
		}
		want = strings.Replace(want, v, strings.Replace(v, upstream, public, 1), 1)
	}
	if string(out) != want {
		t.Errorf("got\n%s\nwant\n%s", out, want)
	}
	// What stays: the narrative, the comment.
	for _, keep := range []string{`<a href="http://127.0.0.1:8080/fhir/Patient/p1">`, `<input value="http://127.0.0.1:8080/fhir/x"/>`, `<!-- http://127.0.0.1:8080/fhir/Patient/p1 -->`} {
		if !bytes.Contains(out, []byte(keep)) {
			t.Errorf("%s changed", keep)
		}
	}
	again, changed := rb.Apply(out)
	if changed || !bytes.Equal(again, out) {
		t.Errorf("a second pass changed the document")
	}
}

func TestRebaseCases(t *testing.T) {
	fhir := func(inner string) string { return `<Bundle xmlns="http://hl7.org/fhir">` + inner + `</Bundle>` }
	cases := []struct {
		name, in, want string
	}{
		{"single quotes", fhir(`<fullUrl value='http://127.0.0.1:8080/fhir/Patient/1'/>`), fhir(`<fullUrl value='https://gw.example.org/api/fhir/Patient/1'/>`)},
		{"the base alone", fhir(`<url value="http://127.0.0.1:8080/fhir"/>`), fhir(`<url value="https://gw.example.org/api/fhir"/>`)},
		{"trailing slash", fhir(`<url value="http://127.0.0.1:8080/fhir/"/>`), fhir(`<url value="https://gw.example.org/api/fhir/"/>`)},
		{"query", fhir(`<url value="http://127.0.0.1:8080/fhir?_getpages=a&amp;b=c"/>`), fhir(`<url value="https://gw.example.org/api/fhir?_getpages=a&amp;b=c"/>`)},
		{"case and default port", fhir(`<url value="HTTP://127.0.0.1:8080/fhir/x"/>`), fhir(`<url value="https://gw.example.org/api/fhir/x"/>`)},
		{"another path", fhir(`<url value="http://127.0.0.1:8080/fhir2/x"/>`), fhir(`<url value="http://127.0.0.1:8080/fhir2/x"/>`)},
		{"another host", fhir(`<url value="http://127.0.0.2:8080/fhir/x"/>`), fhir(`<url value="http://127.0.0.2:8080/fhir/x"/>`)},
		{"character references in the base", fhir(`<url value="http&#58;//127.0.0.1:8080/fhi&#x72;/x"/>`), fhir(`<url value="https://gw.example.org/api/fhir/x"/>`)},
		{"a reference after the base stays", fhir(`<url value="http://127.0.0.1:8080/fhir&#47;x"/>`), fhir(`<url value="https://gw.example.org/api/fhir&#47;x"/>`)},
		{"an unknown entity", fhir(`<url value="http://127.0.0.1:8080/fhir/&foo;"/>`), fhir(`<url value="http://127.0.0.1:8080/fhir/&foo;"/>`)},
		{"white space in the value", fhir(`<url value=" http://127.0.0.1:8080/fhir/x"/>`), fhir(`<url value=" http://127.0.0.1:8080/fhir/x"/>`)},
		{"id and other attributes", fhir(`<url id="a" value="http://127.0.0.1:8080/fhir/x"  />`), fhir(`<url id="a" value="https://gw.example.org/api/fhir/x"  />`)},
		{"space around =", fhir(`<url value = "http://127.0.0.1:8080/fhir/x"/>`), fhir(`<url value = "https://gw.example.org/api/fhir/x"/>`)},
		{"prefixed attribute", fhir(`<url xsi:schemaLocation="http://127.0.0.1:8080/fhir x.xsd" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"/>`), fhir(`<url xsi:schemaLocation="http://127.0.0.1:8080/fhir x.xsd" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"/>`)},
		{"namespace declaration", `<Bundle xmlns="http://hl7.org/fhir" xmlns:u="http://127.0.0.1:8080/fhir"><u:x value="http://127.0.0.1:8080/fhir"/></Bundle>`, `<Bundle xmlns="http://hl7.org/fhir" xmlns:u="http://127.0.0.1:8080/fhir"><u:x value="http://127.0.0.1:8080/fhir"/></Bundle>`},
		{"a FHIR prefix", `<f:Bundle xmlns:f="http://hl7.org/fhir"><f:url value="http://127.0.0.1:8080/fhir/x"/></f:Bundle>`, `<f:Bundle xmlns:f="http://hl7.org/fhir"><f:url value="https://gw.example.org/api/fhir/x"/></f:Bundle>`},
		{"declared after the value", `<url value="http://127.0.0.1:8080/fhir/x" xmlns="http://hl7.org/fhir"/>`, `<url value="https://gw.example.org/api/fhir/x" xmlns="http://hl7.org/fhir"/>`},
		{"no namespace", `<Bundle><url value="http://127.0.0.1:8080/fhir/x"/></Bundle>`, `<Bundle><url value="http://127.0.0.1:8080/fhir/x"/></Bundle>`},
		{"namespace ends with the element", fhir(`<div xmlns="http://www.w3.org/1999/xhtml"><p/></div><url value="http://127.0.0.1:8080/fhir/x"/>`), fhir(`<div xmlns="http://www.w3.org/1999/xhtml"><p/></div><url value="https://gw.example.org/api/fhir/x"/>`)},
		{"CDATA", fhir(`<x><![CDATA[<url value="http://127.0.0.1:8080/fhir/x"/>]]></x>`), fhir(`<x><![CDATA[<url value="http://127.0.0.1:8080/fhir/x"/>]]></x>`)},
		{"processing instruction", fhir(`<?pi <url value="http://127.0.0.1:8080/fhir/x"/> ?>`), fhir(`<?pi <url value="http://127.0.0.1:8080/fhir/x"/> ?>`)},
		{"DOCTYPE: passed on as it is", `<!DOCTYPE Bundle><Bundle xmlns="http://hl7.org/fhir"><url value="http://127.0.0.1:8080/fhir/x"/></Bundle>`, `<!DOCTYPE Bundle><Bundle xmlns="http://hl7.org/fhir"><url value="http://127.0.0.1:8080/fhir/x"/></Bundle>`},
		{"JSON: passed on as it is", `{"url":"http://127.0.0.1:8080/fhir/x"}`, `{"url":"http://127.0.0.1:8080/fhir/x"}`},
		{"a stray <", fhir(`<url value="http://127.0.0.1:8080/fhir/x"/>< <url value="http://127.0.0.1:8080/fhir/x"/>`), fhir(`<url value="https://gw.example.org/api/fhir/x"/>< <url value="http://127.0.0.1:8080/fhir/x"/>`)},
		{"an unfinished tag", fhir(`<url value="http://127.0.0.1:8080/fhir/x"`)[:60], fhir(`<url value="http://127.0.0.1:8080/fhir/x"`)[:60]},
		{"already public", fhir(`<url value="https://gw.example.org/api/fhir/x"/>`), fhir(`<url value="https://gw.example.org/api/fhir/x"/>`)},
	}
	rb := mustRebaser(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, _ := rb.Apply([]byte(c.in))
			if string(out) != c.want {
				t.Errorf("got\n%s\nwant\n%s", out, c.want)
			}
			for n := 1; n <= len(c.in); n++ {
				if got := chunked(t, rb, []byte(c.in), n, 0); got != string(out) {
					t.Fatalf("in parts of %d bytes:\n%s", n, got)
				}
			}
		})
	}
}

func TestRebaseEscapesTheNewBase(t *testing.T) {
	rb := mustRebaser(t, Rebase{From: upstream, To: `https://gw.example.org/a&b"c'd`})
	in := `<Bundle xmlns="http://hl7.org/fhir"><url value="http://127.0.0.1:8080/fhir/x"/><url value='http://127.0.0.1:8080/fhir/y'/></Bundle>`
	want := `<Bundle xmlns="http://hl7.org/fhir"><url value="https://gw.example.org/a&amp;b&quot;c'd/x"/><url value='https://gw.example.org/a&amp;b"c&apos;d/y'/></Bundle>`
	if out, _ := rb.Apply([]byte(in)); string(out) != want {
		t.Errorf("got\n%s\nwant\n%s", out, want)
	}
}

func TestRebaseRules(t *testing.T) {
	if _, err := NewRebaser([]Rebase{{From: "/fhir", To: public}}); err == nil {
		t.Error("a relative From was taken")
	}
	if _, err := NewRebaser([]Rebase{{From: upstream + "?x=1", To: public}}); err == nil {
		t.Error("a From with a query was taken")
	}
	// The first rule that matches wins; the second catches the base a
	// server writes on the client's Host.
	rb := mustRebaser(t, Rebase{From: upstream, To: public}, Rebase{From: "http://gw.example.org:8000/fhir", To: public})
	in := `<Bundle xmlns="http://hl7.org/fhir"><url value="http://gw.example.org:8000/fhir/x"/><url value="http://127.0.0.1:8080/fhir/y"/></Bundle>`
	want := `<Bundle xmlns="http://hl7.org/fhir"><url value="https://gw.example.org/api/fhir/x"/><url value="https://gw.example.org/api/fhir/y"/></Bundle>`
	if out, _ := rb.Apply([]byte(in)); string(out) != want {
		t.Errorf("got\n%s", out)
	}
}

// TestStreamHoldsLittle feeds a large Bundle in small parts and checks that
// what the Stream holds back stays small, that output follows input, and
// that a start tag longer than the bound passes unchanged.
func TestStreamHoldsLittle(t *testing.T) {
	rb := mustRebaser(t)
	var in bytes.Buffer
	in.WriteString(`<Bundle xmlns="http://hl7.org/fhir">`)
	for i := 0; i < 20000; i++ {
		in.WriteString(`<entry><fullUrl value="http://127.0.0.1:8080/fhir/Patient/p1"/><resource><Binary><data value="` + strings.Repeat("QUFB", 16) + `"/></Binary></resource></entry>`)
	}
	big := `<entry><fullUrl value="http://127.0.0.1:8080/fhir/Binary/big" id="` + strings.Repeat("h", 9000) + `"/></entry>`
	in.WriteString(big + `</Bundle>`)
	var out bytes.Buffer
	s := rb.NewStream(&out, 4096)
	body := in.Bytes()
	maxHeld, lag := 0, 0
	for i := 0; i < len(body); i += 1000 {
		if _, err := s.Write(body[i:min(i+1000, len(body))]); err != nil {
			t.Fatal(err)
		}
		maxHeld = max(maxHeld, cap(s.hold), cap(s.value))
		lag = max(lag, min(i+1000, len(body))-out.Len())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if maxHeld > 4096+1000+1024 {
		t.Errorf("held up to %d bytes with a bound of 4096 and parts of 1000", maxHeld)
	}
	if lag > 4096+1000 {
		t.Errorf("output lagged %d bytes behind input", lag)
	}
	if s.Rebased() != 20000 {
		t.Errorf("rebased %d values, want 20000 (not the one in the over-long tag)", s.Rebased())
	}
	if !bytes.HasSuffix(out.Bytes(), []byte(big+`</Bundle>`)) {
		t.Error("the over-long tag did not pass unchanged")
	}
	want := strings.ReplaceAll(in.String()[:in.Len()-len(big)-len(`</Bundle>`)], upstream, public) + big + `</Bundle>`
	if out.String() != want {
		t.Error("output differs from the input with its bases swapped")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("client gone") }

func TestStreamWriteError(t *testing.T) {
	s := mustRebaser(t).NewStream(failWriter{}, 0)
	if _, err := s.Write([]byte(`<Bundle xmlns="http://hl7.org/fhir">`)); err == nil {
		t.Fatal("no error from a failing destination")
	}
	if _, err := s.Write([]byte(`</Bundle>`)); err == nil {
		t.Error("no error on the next Write")
	}
	if err := s.Close(); err == nil {
		t.Error("no error from Close")
	}
}

// chunked rebases in through a Stream in parts of n bytes and returns
// what came out.
func chunked(tb testing.TB, rb *Rebaser, in []byte, n, maxHold int) string {
	tb.Helper()
	var out bytes.Buffer
	s := rb.NewStream(&out, maxHold)
	for i := 0; i < len(in); i += n {
		if _, err := s.Write(in[i:min(i+n, len(in))]); err != nil {
			tb.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		tb.Fatal(err)
	}
	return out.String()
}

func BenchmarkStream(b *testing.B) {
	rb := mustRebaser(b)
	var in bytes.Buffer
	in.WriteString(`<Bundle xmlns="http://hl7.org/fhir">`)
	for in.Len() < 4<<20 {
		in.WriteString(hapiPage[strings.Index(hapiPage, "<entry>"):strings.Index(hapiPage, "</Bundle>")])
	}
	in.WriteString(`</Bundle>`)
	body := in.Bytes()
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for b.Loop() {
		s := rb.NewStream(discard{}, 0)
		for i := 0; i < len(body); i += 32 << 10 {
			_, _ = s.Write(body[i:min(i+32<<10, len(body))])
		}
		_ = s.Close()
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
