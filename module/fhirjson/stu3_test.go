package fhirjson

import (
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

// The STU3 specification's ImagingStudy examples (testdata/stu3-spec-*.json,
// sources in testdata/stu3-spec-SOURCES.md) carry urn:oid: on the study,
// series and instance UIDs, as STU3's oid type has it.

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSTU3SpecExamplesScan reads the UIDs of both examples without their
// urn:oid: prefix, at every level.
func TestSTU3SpecExamplesScan(t *testing.T) {
	tests := []struct {
		file      string
		study     string
		series    string
		instances []string
	}{
		{
			file:      "stu3-spec-imagingstudy-example.json",
			study:     "2.16.124.113543.6003.1154777499.30246.19789.3503430045",
			series:    "2.16.124.113543.6003.2588828330.45298.17418.2723805630",
			instances: []string{"2.16.124.113543.6003.189642796.63084.16748.2599092903"},
		},
		{
			file:   "stu3-spec-imagingstudy-example-xr.json",
			study:  "2.16.124.113543.6003.1154777499.30246.19789.3503430046",
			series: "2.16.124.113543.6003.1154777499.30246.19789.3503430045.1",
			instances: []string{
				"2.16.124.113543.6003.1154777499.30246.19789.3503430045.1.1",
				"2.16.124.113543.6003.1154777499.30246.19789.3503430045.1.2",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			d, err := Scan(readTestdata(t, tt.file), opts)
			if err != nil {
				t.Fatal(err)
			}
			if len(d.Studies) != 1 {
				t.Fatalf("%d studies, want 1", len(d.Studies))
			}
			st := d.Studies[0]
			if st.UID != tt.study {
				t.Errorf("study UID %q, want %q", st.UID, tt.study)
			}
			if len(st.Series) != 1 {
				t.Fatalf("%d series, want 1", len(st.Series))
			}
			se := st.Series[0]
			if se.UID != tt.series {
				t.Errorf("series UID %q, want %q", se.UID, tt.series)
			}
			var got []string
			for _, in := range se.Instances {
				got = append(got, in.UID)
			}
			if strings.Join(got, " ") != strings.Join(tt.instances, " ") {
				t.Errorf("instance UIDs %q, want %q", got, tt.instances)
			}
		})
	}
}

// TestSTU3SpecSearchset puts the XR example and the Endpoint it names (the
// specification's example-wadors, an STU3 connectionType Coding of
// http://hl7.org/fhir/endpoint-connection-type) in one searchset, as an
// STU3 server answers ImagingStudy?_include=ImagingStudy:endpoint: the
// Endpoint is found in the Bundle, and every series and instance gets a
// URL made of bare UIDs.
func TestSTU3SpecSearchset(t *testing.T) {
	study := readTestdata(t, "stu3-spec-imagingstudy-example-xr.json")
	endpoint := readTestdata(t, "stu3-spec-endpoint-example-wadors.json")
	body := []byte(`{"resourceType":"Bundle","type":"searchset","total":1,"entry":[` +
		`{"fullUrl":"http://127.0.0.1:8080/fhir/ImagingStudy/example-xr","resource":` + string(study) + `,"search":{"mode":"match"}},` +
		`{"fullUrl":"http://127.0.0.1:8080/fhir/Endpoint/example-wadors","resource":` + string(endpoint) + `,"search":{"mode":"include"}}]}`)
	d, err := Scan(body, opts)
	if err != nil {
		t.Fatal(err)
	}
	if m := d.MissingEndpoints(); len(m) != 0 {
		t.Fatalf("looked up %v, want nothing: the Endpoint is in the Bundle", m)
	}
	pacs := NormalizeBase("https://pacs.hospital.org/wado-rs")
	out, _, _ := d.Inject(func(st *Study, se *Series) Bases {
		e, ok := st.Effective(se, WADORS, nil)
		if !ok || NormalizeBase(e.Address) != pacs {
			return Bases{}
		}
		return Bases{WADORS: gwRS}
	}, ext)
	const (
		stu  = "2.16.124.113543.6003.1154777499.30246.19789.3503430046"
		ser  = "2.16.124.113543.6003.1154777499.30246.19789.3503430045.1"
		sop1 = ser + ".1"
		sop2 = ser + ".2"
	)
	got := links(t, out)
	want := []string{
		"urn:oid:" + ser + "=" + rs(stu, ser),
		"urn:oid:" + sop1 + "=" + rs(stu, ser, sop1),
		"urn:oid:" + sop2 + "=" + rs(stu, ser, sop2),
	}
	sort.Strings(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("links:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(want, "\n     "))
	}
	for _, l := range got {
		if strings.Contains(l[strings.Index(l, "=")+1:], "urn:oid") {
			t.Errorf("an injected URL carries urn:oid: %s", l)
		}
	}
	checkPreserved(t, body, out)
	// The UIDs in the body itself are left as the server wrote them.
	if v := gjson.GetBytes(out, "entry.0.resource.series.0.uid").String(); v != "urn:oid:"+ser {
		t.Errorf("series uid in the body became %q", v)
	}
}
