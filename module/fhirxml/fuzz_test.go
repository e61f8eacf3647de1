package fhirxml

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"testing"
)

// FuzzStream checks, for any input cut into any two parts of any sizes,
// that the Stream never panics; that the output is the input with some of
// its attribute values' beginnings swapped and every other byte as it was;
// that each swapped part stands for the upstream base; that cutting the
// input into parts changes nothing; and, for input that encoding/xml reads
// as a whole, that the output reads as the same tokens, except exactly the
// FHIR elements' unprefixed attribute values that start with the upstream
// base, which start with the public one.
func FuzzStream(f *testing.F) {
	f.Add([]byte(hapiPage), uint16(7), uint8(3), uint16(0))
	f.Add([]byte(`<f:Bundle xmlns:f="http://hl7.org/fhir"><f:url value='http&#58;//127.0.0.1:8080/fhir?a=1&amp;b'/></f:Bundle>`), uint16(30), uint8(1), uint16(40))
	f.Add([]byte(`<Bundle xmlns="http://hl7.org/fhir"><!-- x --><![CDATA[ <url value="http://127.0.0.1:8080/fhir"/> ]]><?p ?><div xmlns="http://www.w3.org/1999/xhtml"><p value="http://127.0.0.1:8080/fhir"/></div><url value="HTTP://127.0.0.1:8080/fhir#x"/></Bundle>`), uint16(50), uint8(2), uint16(0))
	f.Fuzz(func(t *testing.T, in []byte, cut uint16, part uint8, maxHold uint16) {
		rb := mustRebaser(t)
		var out bytes.Buffer
		s := rb.NewStream(&out, int(maxHold))
		var edits [][2]int64
		s.onEdit = func(start, end int64) { edits = append(edits, [2]int64{start, end}) }
		c := min(int(cut), len(in))
		n := int(part) + 1
		for _, seg := range [][]byte{in[:c], in[c:]} {
			for i := 0; i < len(seg); i += n {
				if _, err := s.Write(seg[i:min(i+n, len(seg))]); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if s.Rebased() != len(edits) {
			t.Fatalf("%d values rebased, %d swaps seen", s.Rebased(), len(edits))
		}
		// The output is the input with the swaps made, nothing else.
		var want []byte
		at := int64(0)
		for _, e := range edits {
			if e[0] < at || e[1] < e[0] || e[1] > int64(len(in)) {
				t.Fatalf("swaps out of order: %v", edits)
			}
			want = append(want, in[at:e[0]]...)
			raw := in[e[0]:e[1]]
			q := in[e[0]-1]
			if q != '"' && q != '\'' {
				t.Fatalf("a swap not at the start of an attribute value: %q", in[:e[1]])
			}
			v, ok := decodeAttr(nil, raw)
			b := rb.rules[0].base
			if k, m := b.Match(v); !ok || !m || k != len(v) {
				t.Fatalf("swapped %q, which is not the upstream base", raw)
			}
			want = append(want, rb.rules[0].to[map[byte]int{'"': 0, '\'': 1}[q]]...)
			at = e[1]
		}
		want = append(want, in[at:]...)
		if !bytes.Equal(out.Bytes(), want) {
			t.Fatalf("output is not the input with its swaps:\n%q\n%q", out.Bytes(), want)
		}
		// Parts change nothing (with room to hold whole tags).
		whole, _ := rb.Apply(in)
		if int(maxHold) == 0 || int(maxHold) >= len(in) {
			if !bytes.Equal(whole, out.Bytes()) {
				t.Fatalf("in parts:\n%q\nwhole:\n%q", out.Bytes(), whole)
			}
		}
		differential(t, rb, in, whole)
	})
}

// differential compares what encoding/xml reads in the input and in the
// output of a whole rebase.
func differential(t *testing.T, rb *Rebaser, in, out []byte) {
	want, err := tokens(in)
	if err != nil || bytes.Contains(in, []byte("<!")) && !bytes.Contains(in, []byte("<!--")) && !bytes.Contains(in, []byte("<![CDATA[")) {
		return // not XML encoding/xml reads, or a declaration (passed on unread)
	}
	got, err := tokens(out)
	if err != nil {
		t.Fatalf("encoding/xml reads the input but not the output: %v\n%q\n%q", err, in, out)
	}
	if len(got) != len(want) {
		t.Fatalf("%d tokens in, %d out", len(want), len(got))
	}
	b := rb.rules[0].base
	for i := range want {
		w, g := want[i], got[i]
		ws, ok := w.(xml.StartElement)
		if !ok {
			if _, ok := w.(xml.Directive); ok {
				return // passed on unread from here
			}
			if !tokenEqual(w, g) {
				t.Fatalf("token %d: %#v became %#v", i, w, g)
			}
			continue
		}
		gs, ok := g.(xml.StartElement)
		if !ok || gs.Name != ws.Name || len(gs.Attr) != len(ws.Attr) {
			t.Fatalf("token %d: %#v became %#v", i, w, g)
		}
		for j, a := range ws.Attr {
			exp := a.Value
			if ws.Name.Space == Namespace && a.Name.Space == "" && a.Name.Local != "xmlns" {
				if k, ok := b.Match([]byte(a.Value)); ok {
					exp = "https://gw.example.org/api/fhir" + a.Value[k:]
				}
			}
			if gs.Attr[j].Name != a.Name || gs.Attr[j].Value != exp {
				t.Fatalf("attribute %v of %v: %q became %q, want %q", a.Name, ws.Name, a.Value, gs.Attr[j].Value, exp)
			}
		}
	}
}

func tokens(doc []byte) ([]xml.Token, error) {
	d := xml.NewDecoder(bytes.NewReader(doc))
	var toks []xml.Token
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			return toks, nil
		}
		if err != nil {
			return nil, err
		}
		toks = append(toks, xml.CopyToken(tok))
	}
}

func tokenEqual(a, b xml.Token) bool {
	switch a := a.(type) {
	case xml.EndElement:
		b, ok := b.(xml.EndElement)
		return ok && a == b
	case xml.CharData:
		b, ok := b.(xml.CharData)
		return ok && bytes.Equal(a, b)
	case xml.Comment:
		b, ok := b.(xml.Comment)
		return ok && bytes.Equal(a, b)
	case xml.ProcInst:
		b, ok := b.(xml.ProcInst)
		return ok && a.Target == b.Target && bytes.Equal(a.Inst, b.Inst)
	}
	return false
}
