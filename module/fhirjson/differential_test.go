package fhirjson

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// The one-pass scanner is held to the gjson-based one it replaced
// (reference_test.go): for any input, both accept or refuse it alike, find
// the same studies, series, instances and missing Endpoints, and rewrite it
// to the same bytes, with the FHIR base swapped in the same pass or before.

const (
	diffUpstream = "http://127.0.0.1:8080/fhir"
	diffPublic   = "https://gw.example.org/api/fhir"
)

var diffOpts = ScanOptions{LocalBases: []string{NormalizeBase(diffUpstream), NormalizeBase(diffPublic)}}

// diffFetched plays the FHIR server: every id names an Endpoint, so that
// look-ups change the answer too.
func diffFetched(ids []string) map[string]Endpoint {
	m := map[string]Endpoint{}
	for i, id := range ids {
		t := WADORS
		if i%3 == 2 {
			t = WADOURI
		}
		m[id] = Endpoint{ID: id, Status: "active", Address: "http://archive.example/" + id, Types: []ConnectionType{t}}
	}
	return m
}

// diffBases gives the URL base for an Endpoint. The address is taken in
// its public form: the reference read it from the swapped body, the one pass
// reads it as the FHIR server stored it, which is what routing uses too.
func diffBases(rebase *Transformer) func(e Endpoint, ok bool) string {
	return func(e Endpoint, ok bool) string {
		if !ok {
			return ""
		}
		addr := e.Address
		if rebase != nil {
			addr, _ = rebase.URL(addr)
		}
		return "https://gw.example.org/wado-rs/" + e.ID + "?" + addr
	}
}

func diffReaddress(e Endpoint) (string, bool) {
	if e.Has(WADOURI) && !e.Has(WADORS) {
		return "", false
	}
	return "https://gw.example.org/wado-rs", true
}

// newRewrite is what the gateway does now: one scan with the rebase, one
// rewrite.
func newRewrite(t testing.TB, in []byte, rebase *Transformer) (out []byte, changed bool, ok bool) {
	d, err := Scan(in, ScanOptions{LocalBases: diffOpts.LocalBases, Rebase: rebase})
	if err != nil {
		return nil, false, false
	}
	fetched := diffFetched(d.MissingEndpoints())
	bases := diffBases(rebase)
	plan := func(st *Study, se *Series) Bases {
		return Bases{WADORS: bases(st.Effective(se, WADORS, fetched)), WADOURI: bases(st.Effective(se, WADOURI, fetched))}
	}
	out, changed, _ = d.Rewrite(plan, func(s *EndpointSite) (string, bool) { return diffReaddress(s.Endpoint) }, ext)
	return out, changed, true
}

// refRewriteAll is what the gateway did: the base swap over the whole body,
// then the gjson scan and the rewrite of the swapped body.
func refRewriteAll(t testing.TB, in []byte, rebase *Transformer) (out []byte, changed bool, ok bool) {
	body, rebased := in, false
	if rebase != nil {
		var err error
		if body, rebased, err = rebase.Apply(in); err != nil {
			return nil, false, false
		}
	}
	d, err := refScan(body, diffOpts)
	if err != nil {
		return nil, false, false
	}
	fetched := diffFetched(d.missingEndpoints())
	bases := diffBases(rebase)
	plan := func(st *refStudy, se *refSeries) Bases {
		return Bases{WADORS: bases(st.Effective(se, WADORS, fetched)), WADOURI: bases(st.Effective(se, WADOURI, fetched))}
	}
	out, changed, _ = d.rewrite(plan, func(s *refSite) (string, bool) { return diffReaddress(s.Endpoint) }, ext)
	return out, changed || rebased, true
}

func diffRebase(t testing.TB) *Transformer {
	tr, err := NewTransformer([]Rebase{{From: diffUpstream, To: diffPublic}}, nil, NotPatch)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func checkSame(t *testing.T, in []byte) {
	t.Helper()
	for _, rebase := range []*Transformer{nil, diffRebase(t)} {
		got, gotChanged, gotOK := newRewrite(t, in, rebase)
		want, wantChanged, wantOK := refRewriteAll(t, in, rebase)
		if gotOK != wantOK {
			t.Fatalf("rebase %v: accepted %v, the reference %v:\n%s", rebase != nil, gotOK, wantOK, in)
		}
		if !bytes.Equal(got, want) || gotChanged != wantChanged {
			t.Fatalf("rebase %v: changed %v, the reference %v; output:\n%s\nthe reference's:\n%s", rebase != nil, gotChanged, wantChanged, got, want)
		}
	}
	d, err := Scan(in, diffOpts)
	if err != nil {
		return
	}
	r, _ := refScan(in, diffOpts)
	if got, want := d.MissingEndpoints(), r.missingEndpoints(); !reflect.DeepEqual(got, want) {
		t.Fatalf("missing Endpoints %q, the reference %q", got, want)
	}
	if len(d.Studies) != len(r.Studies) || len(d.Endpoints) != len(r.Endpoints) {
		t.Fatalf("%d studies and %d Endpoints, the reference %d and %d", len(d.Studies), len(d.Endpoints), len(r.Studies), len(r.Endpoints))
	}
	for i, st := range d.Studies {
		rs := r.Studies[i]
		if st.UID != rs.UID || len(st.Series) != len(rs.Series) {
			t.Fatalf("study %d: %q with %d series, the reference %q with %d", i, st.UID, len(st.Series), rs.UID, len(rs.Series))
		}
		for j, se := range st.Series {
			if se.UID != rs.Series[j].UID || len(se.Instances) != len(rs.Series[j].Instances) {
				t.Fatalf("study %d series %d differs from the reference", i, j)
			}
		}
	}
	for i, s := range d.Endpoints {
		if s.Container != r.Endpoints[i].Container || !reflect.DeepEqual(s.Endpoint, r.Endpoints[i].Endpoint) || s.Address() != r.Endpoints[i].Address() {
			t.Fatalf("Endpoint %d: %+v in %q, the reference %+v in %q", i, s.Endpoint, s.Container, r.Endpoints[i].Endpoint, r.Endpoints[i].Container)
		}
	}
}

func TestScanMatchesReference(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.json")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(filepath.Base(name), func(t *testing.T) { checkSame(t, b) })
	}
	for _, in := range diffCases {
		checkSame(t, []byte(in))
	}
	checkSame(t, searchset(20, 3, 5))
}

// diffCases are shapes the one pass reads differently from a walk that
// can look ahead: keys repeated or out of the usual order.
var diffCases = []string{
	`{"id":"s","resourceType":"ImagingStudy","identifier":[{"system":"urn:dicom:uid","value":"urn:oid:1.2.3"}],"endpoint":[{"reference":"#e"}],"series":[{"uid":"1.2.3.4","instance":[{"uid":"1.2.3.4.5"}]}],"contained":[{"id":"e","status":"active","resourceType":"Endpoint","connectionType":{"code":"dicom-wado-rs"},"address":"http://a.example/rs"}]}`,
	`{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Endpoint","id":"x","status":"active","connectionType":{"code":"dicom-wado-rs"},"address":"http://127.0.0.1:8080/fhir/x"},"fullUrl":"http://127.0.0.1:8080/fhir/Endpoint/x"},{"fullUrl":"u","resource":{"resourceType":"ImagingStudy","uid":"urn:oid:1.2","endpoint":{"reference":"http://127.0.0.1:8080/fhir/Endpoint/x"},"series":{"a":{"uid":"1.2.1","instance":{"b":{"uid":"1.2.1.1"}}}}}}]}`,
	`{"resourceType":null,"resourceType":"ImagingStudy","contained":{"resourceType":"Endpoint","id":"e"}}`,
	`{"resourceType":"ImagingStudy","identifier":[{"value":"1.2","system":"urn:dicom:uid","system":"x"}],"series":[{"uid":"1.2.9","extension":[{"url":"` + DefaultExtensionBase + `wado-rs","valueUrl":"http://127.0.0.1:8080/fhir/old"},{"url":"` + DefaultExtensionBase + `wado-rs"}],"endpoint":[{"reference":"Endpoint/e1"}],"instance":[{"extension":{},"uid":"1.2.9.1"},{"uid":"1.2.9.2","extension":[]},{}]}]}`,
	`{"contained":[{"resourceType":"Endpoint","id":"c"}],"resourceType":"Patient","id":"p","link":"http://127.0.0.1:8080/fhir/Patient/1"}`,
	`{"a":[[{"resourceType":"ImagingStudy","uid":"1.3","endpoint":[{"reference":"Endpoint/e2"}],"series":[{"uid":"1.3.1"}]}]]}`,
}

func FuzzScanMatchesReference(f *testing.F) {
	for _, b := range testdataBodies(f) {
		f.Add(b)
	}
	for _, in := range diffCases {
		f.Add([]byte(in))
	}
	f.Add(searchset(2, 2, 2))
	f.Fuzz(func(t *testing.T, in []byte) { checkSame(t, in) })
}
