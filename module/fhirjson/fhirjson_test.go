package fhirjson

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

const (
	archiveA    = "http://127.0.0.1:8042/dicom-web"
	archiveAURI = "http://127.0.0.1:8042/wado"
	archiveB    = "http://127.0.0.1:8043/pacs/dicom-web"
	gwRS        = "http://gw.example/wado-rs"
	gwURI       = "http://gw.example/wado"
)

var ext = ExtensionsFor(DefaultExtensionBase)

func ep(id, status string, t ConnectionType, addr string) Endpoint {
	return Endpoint{ID: id, Status: status, Address: addr, Types: []ConnectionType{t}}
}

// server plays the FHIR server's Endpoints.
var server = map[string]Endpoint{
	"example-wadors": ep("example-wadors", "active", WADORS, archiveA),
	"stu3-wado":      ep("stu3-wado", "active", WADORS, archiveA),
	"a-rs":           ep("a-rs", "active", WADORS, archiveA),
	"a-uri":          ep("a-uri", "active", WADOURI, archiveAURI),
	"b-rs":           ep("b-rs", "active", WADORS, archiveB),
	"off-rs":         ep("off-rs", "off", WADORS, archiveB),
}

// gateway maps the archives' addresses to the gateway's bases, as the
// proxy mode does.
var gateway = map[string]string{
	NormalizeBase(archiveA):                               gwRS,
	NormalizeBase(archiveB):                               gwRS,
	NormalizeBase(archiveAURI):                            gwURI,
	NormalizeBase("https://pacs-a.example.org/dicom-web"): gwRS,
}

func planner(fetched map[string]Endpoint) Planner {
	return func(st *Study, se *Series) Bases {
		return Bases{WADORS: gatewayBase(st.Effective(se, WADORS, fetched)), WADOURI: gatewayBase(st.Effective(se, WADOURI, fetched))}
	}
}

// gatewayBase is the gateway's base for an effective Endpoint, "" for none.
func gatewayBase(e Endpoint, ok bool) string {
	if !ok {
		return ""
	}
	return gateway[NormalizeBase(e.Address)]
}

var opts = ScanOptions{LocalBases: []string{NormalizeBase("http://127.0.0.1:8080/fhir")}}

// rewrite runs the whole pipeline as the handler does: scan, look up the
// missing Endpoints in server, inject.
func rewrite(t testing.TB, body []byte) ([]byte, []string) {
	t.Helper()
	d, err := Scan(body, opts)
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	missing := d.MissingEndpoints()
	fetched := map[string]Endpoint{}
	for _, id := range missing {
		if e, ok := server[id]; ok {
			fetched[id] = e
		}
	}
	out, _, _ := d.Inject(planner(fetched), ext)
	return out, missing
}

// links lists, for every series and instance of every ImagingStudy in doc,
// the injected extension values, as "uid=url" lines.
func links(t *testing.T, doc []byte) []string {
	t.Helper()
	var out []string
	var visit func(v gjson.Result)
	collect := func(uid string, obj gjson.Result) {
		obj.Get("extension").ForEach(func(_, x gjson.Result) bool {
			u := x.Get("url").String()
			if u == ext.WADORS || u == ext.WADOURI {
				out = append(out, uid+"="+x.Get("valueUrl").String())
			}
			return true
		})
	}
	visit = func(v gjson.Result) {
		if v.IsArray() {
			v.ForEach(func(_, e gjson.Result) bool { visit(e); return true })
			return
		}
		if !v.IsObject() {
			return
		}
		if v.Get("resourceType").String() == "ImagingStudy" {
			v.Get("series").ForEach(func(_, se gjson.Result) bool {
				collect(se.Get("uid").String(), se)
				se.Get("instance").ForEach(func(_, in gjson.Result) bool {
					collect(in.Get("uid").String(), in)
					return true
				})
				return true
			})
		}
		v.ForEach(func(_, e gjson.Result) bool { visit(e); return true })
	}
	visit(gjson.ParseBytes(doc))
	sort.Strings(out)
	return out
}

func rs(study, series string, sop ...string) string {
	u := gwRS + "/studies/" + study + "/series/" + series
	if len(sop) > 0 {
		u += "/instances/" + sop[0]
	}
	return u
}

func uri(study, series, sop string) string {
	return gwURI + "?requestType=WADO&studyUID=" + study + "&seriesUID=" + series + "&objectUID=" + sop + "&contentType=application/dicom"
}

func TestRewriteShapes(t *testing.T) {
	tests := []struct {
		file    string
		missing []string
		want    []string // "uid=url"
	}{
		{
			file:    "r4-spec-style-read.json",
			missing: []string{"example-wadors"},
			want: []string{
				"2.16.124.113543.6003.1154777499.30246.19789.3503430045.1=" + rs("2.16.124.113543.6003.1154777499.30246.19789.3503430046", "2.16.124.113543.6003.1154777499.30246.19789.3503430045.1"),
				"2.16.124.113543.6003.1154777499.30246.19789.3503430045.1.1=" + rs("2.16.124.113543.6003.1154777499.30246.19789.3503430046", "2.16.124.113543.6003.1154777499.30246.19789.3503430045.1", "2.16.124.113543.6003.1154777499.30246.19789.3503430045.1.1"),
				"2.16.124.113543.6003.1154777499.30246.19789.3503430045.2=" + rs("2.16.124.113543.6003.1154777499.30246.19789.3503430046", "2.16.124.113543.6003.1154777499.30246.19789.3503430045.2"),
				"2.16.124.113543.6003.1154777499.30246.19789.3503430045.2.1=" + rs("2.16.124.113543.6003.1154777499.30246.19789.3503430046", "2.16.124.113543.6003.1154777499.30246.19789.3503430045.2", "2.16.124.113543.6003.1154777499.30246.19789.3503430045.2.1"),
			},
		},
		{
			file:    "stu3-uid.json",
			missing: []string{"stu3-wado"},
			// STU3 as written: uid, series.uid and instance.uid are oids
			// (urn:oid:...); the URLs carry the bare UIDs.
			want: []string{"urn:oid:1.2.3.4.1=" + rs("1.2.3.4", "1.2.3.4.1"), "urn:oid:1.2.3.4.1.1=" + rs("1.2.3.4", "1.2.3.4.1", "1.2.3.4.1.1")},
		},
		{
			// The STU3 specification's own example (stu3-spec-SOURCES.md).
			file:    "stu3-spec-imagingstudy-example-xr.json",
			missing: []string{"example-wadors"},
			want: []string{
				"urn:oid:2.16.124.113543.6003.1154777499.30246.19789.3503430045.1=" + rs("2.16.124.113543.6003.1154777499.30246.19789.3503430046", "2.16.124.113543.6003.1154777499.30246.19789.3503430045.1"),
				"urn:oid:2.16.124.113543.6003.1154777499.30246.19789.3503430045.1.1=" + rs("2.16.124.113543.6003.1154777499.30246.19789.3503430046", "2.16.124.113543.6003.1154777499.30246.19789.3503430045.1", "2.16.124.113543.6003.1154777499.30246.19789.3503430045.1.1"),
				"urn:oid:2.16.124.113543.6003.1154777499.30246.19789.3503430045.1.2=" + rs("2.16.124.113543.6003.1154777499.30246.19789.3503430046", "2.16.124.113543.6003.1154777499.30246.19789.3503430045.1", "2.16.124.113543.6003.1154777499.30246.19789.3503430045.1.2"),
			},
		},
		{
			// The other STU3 example names no Endpoint: nothing to inject.
			file: "stu3-spec-imagingstudy-example.json",
		},
		{
			// R5 connectionType list, contained Endpoint, an address given by
			// endpoint_address with a trailing slash and upper-case-free host.
			file: "contained-r5.json",
			want: []string{"1.2.5.1=" + rs("1.2.5", "1.2.5.1"), "1.2.5.1.1=" + rs("1.2.5", "1.2.5.1", "1.2.5.1.1"), "1.2.5.1.2=" + rs("1.2.5", "1.2.5.1", "1.2.5.1.2")},
		},
		{
			// DICOMcast-style (study endpoint, absolute versioned reference,
			// Endpoint _included) and MADO-style (series endpoints, UID
			// without urn:oid:, one Endpoint looked up).
			file:    "searchset-include.json",
			missing: []string{"b-rs"},
			want: []string{
				"1.2.10.1=" + rs("1.2.10", "1.2.10.1"), "1.2.10.1.1=" + rs("1.2.10", "1.2.10.1", "1.2.10.1.1"),
				"1.2.11.1=" + rs("1.2.11", "1.2.11.1"), "1.2.11.1.1=" + rs("1.2.11", "1.2.11.1", "1.2.11.1.1"),
				"1.2.11.2=" + rs("1.2.11", "1.2.11.2"), "1.2.11.2.1=" + rs("1.2.11", "1.2.11.2", "1.2.11.2.1"),
			},
		},
		{
			// Mixed WADO-RS and WADO-URI, a series endpoint overriding the
			// study's WADO-RS only, an "off" series endpoint (skipped: the
			// study's applies), an unknown Endpoint (skipped likewise), an
			// invalid series UID (nothing injected).
			file:    "mixed-off-unknown.json",
			missing: []string{"a-rs", "a-uri", "b-rs", "off-rs", "unknown"},
			want: []string{
				"1.2.20.1=" + rs("1.2.20", "1.2.20.1"),
				"1.2.20.1.1=" + rs("1.2.20", "1.2.20.1", "1.2.20.1.1"), "1.2.20.1.1=" + uri("1.2.20", "1.2.20.1", "1.2.20.1.1"),
				"1.2.20.2=" + rs("1.2.20", "1.2.20.2"),
				"1.2.20.2.1=" + rs("1.2.20", "1.2.20.2", "1.2.20.2.1"), "1.2.20.2.1=" + uri("1.2.20", "1.2.20.2", "1.2.20.2.1"),
				"1.2.20.3=" + rs("1.2.20", "1.2.20.3"),
				"1.2.20.3.1=" + rs("1.2.20", "1.2.20.3", "1.2.20.3.1"), "1.2.20.3.1=" + uri("1.2.20", "1.2.20.3", "1.2.20.3.1"),
				"1.2.20.4=" + rs("1.2.20", "1.2.20.4"),
				"1.2.20.4.1=" + rs("1.2.20", "1.2.20.4", "1.2.20.4.1"), "1.2.20.4.1=" + uri("1.2.20", "1.2.20.4", "1.2.20.4.1"),
			},
		},
		{
			// A reference to another FHIR server is never looked up.
			file: "other-server.json",
		},
		{
			// Prefer: return=representation in a transaction: the
			// Endpoint created in the same Bundle is used.
			file: "transaction-response.json",
			want: []string{"1.2.50.1=" + rs("1.2.50", "1.2.50.1"), "1.2.50.1.1=" + rs("1.2.50", "1.2.50.1", "1.2.50.1.1")},
		},
		{
			// An operation's Parameters holding a history Bundle, and an
			// ImagingStudy contained in a DiagnosticReport whose contained
			// Endpoint (upper-case scheme, trailing slash) it references.
			file:    "history-and-nested.json",
			missing: []string{"b-rs"},
			want:    []string{"1.2.60.1=" + rs("1.2.60", "1.2.60.1"), "1.2.61.1=" + rs("1.2.61", "1.2.61.1")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			in, err := os.ReadFile("testdata/" + tt.file)
			if err != nil {
				t.Fatal(err)
			}
			out, missing := rewrite(t, in)
			if fmt.Sprint(missing) != fmt.Sprint(tt.missing) && !(len(missing) == 0 && len(tt.missing) == 0) {
				t.Errorf("looked up %v, want %v", missing, tt.missing)
			}
			got := links(t, out)
			want := append([]string(nil), tt.want...)
			sort.Strings(want)
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("links:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(want, "\n     "))
			}
			checkPreserved(t, in, out)
			again, _ := rewrite(t, out)
			if string(again) != string(out) {
				t.Errorf("second rewrite changed the body:\n%s\n%s", out, again)
			}
		})
	}
}

// ours matches an extension the rewrite adds: a whole extension array of
// them (with the comma that joins it to the next member), one of them
// behind a comma, or one of them first in an array.
var (
	oursExt   = `\{"url":"` + regexp.QuoteMeta(DefaultExtensionBase) + `wado-(?:rs|uri)","valueUrl":"[^"]*"\}`
	oursArr   = regexp.MustCompile(`^"extension":\[` + oursExt + `(?:,` + oursExt + `)*\](,?)`)
	oursEl    = regexp.MustCompile(`^,` + oursExt)
	oursFirst = regexp.MustCompile(`^` + oursExt + `,?`)
)

// checkPreserved asserts that out is in with only whole extensions added
// (in must hold none of ours): walking both, every byte of out that is not
// one of ours matches the next byte of in, and out is valid JSON. An extension array the input had empty
// ("extension":[]) is filled in place; one it did not have is inserted.
func checkPreserved(t testing.TB, in, out []byte) {
	t.Helper()
	if !json.Valid(out) {
		t.Fatalf("output is not valid JSON:\n%s", out)
	}
	i, o := 0, 0
	for o < len(out) {
		rest := out[o:]
		if m := oursArr.FindSubmatchIndex(rest); m != nil {
			if empty := []byte(`"extension":[]`); bytes.HasPrefix(in[i:], empty) {
				// Filled in place: the input's own array, and what follows it.
				i += len(empty)
				o += m[2] // up to the end of the array, not its comma
				continue
			}
			o += m[1]
			continue
		}
		// The input holds no extension of ours (the callers see to it), so
		// any found in the output was added.
		if m := oursEl.FindIndex(rest); m != nil {
			o += m[1]
			continue
		}
		if o > 0 && out[o-1] == '[' {
			if m := oursFirst.FindIndex(rest); m != nil {
				o += m[1]
				continue
			}
		}
		if i >= len(in) || out[o] != in[i] {
			t.Fatalf("bytes other than the injected extensions changed at output offset %d:\n in: %s\nout: %s", o, in, out)
		}
		i, o = i+1, o+1
	}
	if i != len(in) {
		t.Fatalf("the output lacks the input's end from offset %d:\n in: %s\nout: %s", i, in, out)
	}
}

func TestReplacesExistingExtension(t *testing.T) {
	in := `{"resourceType":"ImagingStudy","identifier":[{"system":"urn:dicom:uid","value":"urn:oid:1.2.40"}],"endpoint":[{"reference":"Endpoint/a-rs"}],"series":[{"extension":[{"url":"` + ext.WADORS + `","valueUrl":"http://stale/1"},{"url":"x","valueBoolean":true},{"url":"` + ext.WADORS + `","valueUrl":"http://stale/2"}],"uid":"1.2.40.1"}]}`
	out, _ := rewrite(t, []byte(in))
	want := `{"resourceType":"ImagingStudy","identifier":[{"system":"urn:dicom:uid","value":"urn:oid:1.2.40"}],"endpoint":[{"reference":"Endpoint/a-rs"}],"series":[{"extension":[{"url":"` + ext.WADORS + `","valueUrl":"` + rs("1.2.40", "1.2.40.1") + `"},{"url":"x","valueBoolean":true}],"uid":"1.2.40.1"}]}`
	if string(out) != want {
		t.Fatalf("got\n%s\nwant\n%s", out, want)
	}
}

func TestEndpointParsing(t *testing.T) {
	tests := []struct {
		json string
		want Endpoint
		ok   bool
	}{
		{`{"resourceType":"Endpoint","id":"r4","status":"active","connectionType":{"system":"http://terminology.hl7.org/CodeSystem/endpoint-connection-type","code":"dicom-wado-rs"},"address":" http://h/dw/ "}`,
			Endpoint{ID: "r4", Status: "active", Address: "http://h/dw", Types: []ConnectionType{WADORS}}, true},
		{`{"resourceType":"Endpoint","id":"r5","status":"active","connectionType":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/endpoint-connection-type","code":"dicom-wado-uri"}]},{"coding":[{"code":"dicom-wado-rs"}]}],"address":"http://h/x"}`,
			Endpoint{ID: "r5", Status: "active", Address: "http://h/x", Types: []ConnectionType{WADOURI, WADORS}}, true},
		{`{"resourceType":"Endpoint","id":"stu3","status":"off","connectionType":{"system":"http://hl7.org/fhir/endpoint-connection-type","code":"dicom-wado-rs"},"address":"http://h"}`,
			Endpoint{ID: "stu3", Status: "off", Address: "http://h", Types: []ConnectionType{WADORS}}, true},
		{`{"resourceType":"Endpoint","id":"foreign","status":"active","connectionType":{"system":"http://example.org/cs","code":"dicom-wado-rs"},"address":"http://h"}`,
			Endpoint{ID: "foreign", Status: "active", Address: "http://h"}, true},
		{`{"resourceType":"Patient","id":"p"}`, Endpoint{}, false},
		// Payload MIME types name a DICOMweb Endpoint when no standard
		// connection type does.
		{`{"resourceType":"Endpoint","id":"r5-payload","status":"active","connectionType":[{"coding":[{"system":"urn:local","code":"pacs"}]}],"payload":[{"type":[{"text":"images"}]},{"mimeType":["text/plain","Application/DICOM; transfer-syntax=*"]}],"address":"http://h/dw"}`,
			Endpoint{ID: "r5-payload", Status: "active", Address: "http://h/dw", Types: []ConnectionType{WADORS}}, true},
		{`{"resourceType":"Endpoint","id":"r4-payload","status":"active","payloadMimeType":["multipart/related; type=\"application/dicom\""],"address":"http://h/dw"}`,
			Endpoint{ID: "r4-payload", Status: "active", Address: "http://h/dw", Types: []ConnectionType{WADORS}}, true},
		{`{"resourceType":"Endpoint","id":"dicom-json","status":"active","payloadMimeType":["application/dicom+json"],"address":"http://h/dw"}`,
			Endpoint{ID: "dicom-json", Status: "active", Address: "http://h/dw", Types: []ConnectionType{WADORS}}, true},
		{`{"resourceType":"Endpoint","id":"not-dicom","status":"active","payloadMimeType":["application/fhir+json","multipart/related; type=text/html"],"address":"http://h/dw"}`,
			Endpoint{ID: "not-dicom", Status: "active", Address: "http://h/dw"}, true},
		{`{"resourceType":"Endpoint","id":"xds","status":"active","connectionType":{"system":"http://terminology.hl7.org/CodeSystem/endpoint-connection-type","code":"ihe-xds"},"payloadMimeType":["application/dicom"],"address":"http://h/dw"}`,
			Endpoint{ID: "xds", Status: "active", Address: "http://h/dw"}, true},
		{`{"resourceType":"Endpoint","id":"uri","status":"active","connectionType":{"code":"dicom-wado-uri"},"payloadMimeType":["application/dicom"],"address":"http://h/wado"}`,
			Endpoint{ID: "uri", Status: "active", Address: "http://h/wado", Types: []ConnectionType{WADOURI}}, true},
	}
	for _, tt := range tests {
		got, ok := ParseEndpoint(tt.json)
		if ok != tt.ok || fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("ParseEndpoint(%s) = %+v, %v; want %+v, %v", tt.json, got, ok, tt.want, tt.ok)
		}
	}
}

func TestDICOMwebRoot(t *testing.T) {
	for _, tt := range []struct {
		in, root string
		query    bool
		key      string
	}{
		{"http://h/dicom-web", "http://h/dicom-web", false, "http://h/dicom-web"},
		{" HTTP://H:80/dicom-web/studies/ ", "HTTP://H:80/dicom-web", false, "http://h/dicom-web"},
		{"http://h/dicom-web/studies", "http://h/dicom-web", false, "http://h/dicom-web"},
		{"http://h/dicom-web/Studies", "http://h/dicom-web/Studies", false, "http://h/dicom-web/Studies"},
		{"http://h/dicom-web/mystudies", "http://h/dicom-web/mystudies", false, "http://h/dicom-web/mystudies"},
		{"http://h/studies", "http://h", false, "http://h"},
		{"http://studies", "http://studies", false, "http://studies"},
		{"http://h/wado?requestType=WADO", "http://h/wado", true, "http://h/wado"},
		{"http://h/dicom-web/studies?x=1#f", "http://h/dicom-web", true, "http://h/dicom-web"},
		{"http://h/dcm4chee-arc/aets/DCM4CHEE/rs/", "http://h/dcm4chee-arc/aets/DCM4CHEE/rs", false, "http://h/dcm4chee-arc/aets/DCM4CHEE/rs"},
		{"https://healthcare.googleapis.com:443/v1/projects/p/locations/l/datasets/d/dicomStores/s/dicomWeb/studies",
			"https://healthcare.googleapis.com:443/v1/projects/p/locations/l/datasets/d/dicomStores/s/dicomWeb", false,
			"https://healthcare.googleapis.com/v1/projects/p/locations/l/datasets/d/dicomStores/s/dicomWeb"},
	} {
		root, query := DICOMwebRoot(tt.in)
		if root != tt.root || query != tt.query {
			t.Errorf("DICOMwebRoot(%q) = %q, %v; want %q, %v", tt.in, root, query, tt.root, tt.query)
		}
		if key := ArchiveKey(tt.in); key != tt.key {
			t.Errorf("ArchiveKey(%q) = %q, want %q", tt.in, key, tt.key)
		}
	}
}

func TestNormalizeBase(t *testing.T) {
	for in, want := range map[string]string{
		"HTTP://Example.ORG:80/dicom-web/": "http://example.org/dicom-web",
		"https://h:443/x":                  "https://h/x",
		"https://h:8443/x":                 "https://h:8443/x",
		"http://h/CaseKept/":               "http://h/CaseKept",
	} {
		if got := NormalizeBase(in); got != want {
			t.Errorf("NormalizeBase(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMalformedAndNonObjects(t *testing.T) {
	for _, in := range []string{``, `[]`, `{"resourceType":`, `"x"`, `{"a":1}}`} {
		if _, err := Scan([]byte(in), opts); err == nil {
			t.Errorf("Scan(%q) accepted malformed input", in)
		}
	}
}

func TestPrettyPrintedBundleKeepsLayout(t *testing.T) {
	in, err := os.ReadFile("testdata/searchset-include.json")
	if err != nil {
		t.Fatal(err)
	}
	out, _ := rewrite(t, in)
	// The layout of everything else (newlines, indentation) is untouched.
	if strings.Count(string(out), "\n") != strings.Count(string(in), "\n") {
		t.Errorf("line structure changed")
	}
}

func TestSplitReference(t *testing.T) {
	for in, want := range map[string][3]string{
		"Endpoint/a-rs":                                 {"", "Endpoint", "a-rs"},
		"http://h/fhir/Endpoint/a-rs/_history/3":        {"http://h/fhir", "Endpoint", "a-rs"},
		"http://h/fhir/Endpoint/Abc":                    {"http://h/fhir", "Endpoint", "Abc"},
		"/fhir/ImagingStudy":                            {"/fhir", "ImagingStudy", ""},
		"/fhir/ImagingStudy/":                           {"/fhir", "ImagingStudy", ""},
		"ImagingStudy?identifier=urn:dicom:uid|1.2":     {"", "ImagingStudy", ""},
		"/fhir/ImagingStudy/s1?_format=json":            {"/fhir", "ImagingStudy", "s1"},
		"/fhir":                                         {"", "", ""},
		"urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0": {"", "", ""},
		"#contained":                                    {"", "", ""},
	} {
		b, rt, id := SplitReference(in)
		if got := [3]string{b, rt, id}; got != want {
			t.Errorf("SplitReference(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRewriteReaddressesEndpoints(t *testing.T) {
	body := `{"resourceType":"Bundle","type":"searchset","entry":[
 {"fullUrl":"http://fhir/Endpoint/a","resource":{"resourceType":"Endpoint","id":"a","status":"active","connectionType":{"system":"http://terminology.hl7.org/CodeSystem/endpoint-connection-type","code":"dicom-wado-rs"},"address":"http://pacs-a:8042/dicom-web"}},
 {"resource":{"resourceType":"ImagingStudy","id":"s","contained":[{"resourceType":"Endpoint","id":"c","status":"active","connectionType":{"system":"http://terminology.hl7.org/CodeSystem/endpoint-connection-type","code":"dicom-wado-uri"},"address":"http://pacs-b/wado"}],
  "identifier":[{"system":"urn:dicom:uid","value":"urn:oid:1.2"}],"endpoint":[{"reference":"#c"}],"series":[{"uid":"1.2.1","endpoint":[{"reference":"Endpoint/a"}]}]}},
 {"resource":{"resourceType":"Endpoint","id":"other","address":"http://elsewhere/dw"}}]}`
	doc, err := Scan([]byte(body), ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(doc.Endpoints) != 3 || doc.Endpoints[0].Container != "" || doc.Endpoints[1].Container != "ImagingStudy/s" {
		t.Fatalf("Endpoints %+v", doc.Endpoints)
	}
	out, changed, stats := doc.Rewrite(func(st *Study, se *Series) Bases {
		return Bases{WADORS: "https://gw/wado-rs"}
	}, func(site *EndpointSite) (string, bool) {
		switch site.Endpoint.Address {
		case "http://pacs-a:8042/dicom-web":
			return "https://gw/wado-rs", true
		case "http://pacs-b/wado":
			return `https://gw/wado?"q"`, true
		}
		return "", false
	}, ExtensionsFor(DefaultExtensionBase))
	if !changed || stats.Endpoints != 2 || stats.Series != 1 {
		t.Fatalf("changed %v, stats %+v", changed, stats)
	}
	if !gjson.ValidBytes(out) {
		t.Fatalf("invalid JSON: %s", out)
	}
	for path, want := range map[string]string{
		"entry.0.resource.address":                       "https://gw/wado-rs",
		"entry.1.resource.contained.0.address":           `https://gw/wado?"q"`,
		"entry.2.resource.address":                       "http://elsewhere/dw",
		"entry.1.resource.series.0.extension.0.valueUrl": "https://gw/wado-rs/studies/1.2/series/1.2.1",
	} {
		if got := gjson.GetBytes(out, path).String(); got != want {
			t.Errorf("%s = %q, want %q", path, got, want)
		}
	}
}
