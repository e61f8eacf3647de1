package access

import (
	"net/url"
	"testing"
)

func TestParseScope(t *testing.T) {
	for _, tc := range []struct {
		in         string
		ok         bool
		ctx        Context
		res        string
		c, r, u, d bool
		s          bool
	}{
		{in: "patient/ImagingStudy.rs", ok: true, ctx: PatientContext, res: "ImagingStudy", r: true, s: true},
		{in: "patient/ImagingStudy.read", ok: true, ctx: PatientContext, res: "ImagingStudy", r: true, s: true},
		{in: "user/*.cruds", ok: true, ctx: UserContext, res: "*", c: true, r: true, u: true, d: true, s: true},
		{in: "user/*.*", ok: true, ctx: UserContext, res: "*", c: true, r: true, u: true, d: true, s: true},
		{in: "system/ImagingStudy.write", ok: true, ctx: SystemContext, res: "ImagingStudy", c: true, u: true, d: true},
		{in: "patient/Observation.r", ok: true, ctx: PatientContext, res: "Observation", r: true},
		{in: "patient/ImagingStudy.sr"},                  // v2 letters out of order
		{in: "patient/ImagingStudy.rr"},                  // repeated
		{in: "patient/ImagingStudy.x"},                   // unknown permission
		{in: "patient/ImagingStudy.rs?category=imaging"}, // a query narrows: grants nothing here
		{in: "patient/imagingStudy.rs"},                  // not a resource type
		{in: "launch/patient"},
		{in: "openid"},
		{in: "practitioner/ImagingStudy.rs"},
		{in: "patient/.rs"},
		{in: "patient/ImagingStudy."},
	} {
		sc, ok := ParseScope(tc.in)
		if ok != tc.ok {
			t.Errorf("ParseScope(%q) ok = %v, want %v", tc.in, ok, tc.ok)
			continue
		}
		if !ok {
			continue
		}
		want := Scope{Context: tc.ctx, Resource: tc.res, Create: tc.c, Read: tc.r, Update: tc.u, Delete: tc.d, Search: tc.s}
		if sc != want {
			t.Errorf("ParseScope(%q) = %+v, want %+v", tc.in, sc, want)
		}
	}
}

func TestImagingRead(t *testing.T) {
	for _, tc := range []struct {
		name, scope, patient string
		active               bool
		grant                bool
		bound                string
	}{
		{"patient scope and patient", "launch/patient patient/ImagingStudy.rs", "p1", true, true, "p1"},
		{"v1 read", "patient/ImagingStudy.read", "p1", true, true, "p1"},
		{"wildcard", "patient/*.rs", "p1", true, true, "p1"},
		{"v2 cruds", "patient/*.cruds", "p1", true, true, "p1"},
		{"patient scope without patient", "patient/ImagingStudy.rs", "", true, false, ""},
		{"read without search", "patient/ImagingStudy.r", "p1", true, false, ""},
		{"another resource", "patient/Observation.rs", "p1", true, false, ""},
		{"user scope is unbound", "user/ImagingStudy.rs", "", true, true, ""},
		{"user scope wins over patient", "user/*.read patient/ImagingStudy.rs", "p1", true, true, ""},
		{"system scope grants nothing", "system/ImagingStudy.rs system/*.cruds", "", true, false, ""},
		{"inactive", "patient/ImagingStudy.rs", "p1", false, false, ""},
	} {
		tok := Token{Active: tc.active, Scopes: ParseScopes(tc.scope), Patient: tc.patient}
		g, ok := tok.ImagingRead()
		if ok != tc.grant || g.Patient != tc.bound {
			t.Errorf("%s: ImagingRead = %+v, %v; want patient %q, %v", tc.name, g, ok, tc.bound, tc.grant)
		}
	}
	store := Token{Active: true, Scopes: ParseScopes("patient/ImagingStudy.cruds")}
	if store.ImagingStore() {
		t.Error("a patient/ scope may store images")
	}
	store.Scopes = ParseScopes("system/ImagingStudy.c")
	if !store.ImagingStore() {
		t.Error("system/ImagingStudy.c may not store images")
	}
}

func TestBearerToken(t *testing.T) {
	for _, tc := range []struct {
		in, tok        string
		present, valid bool
	}{
		{"", "", false, false},
		{"Bearer abc.DEF-123_~+/==", "abc.DEF-123_~+/==", true, true},
		{"bearer abc", "abc", true, true},
		{"Basic dXNlcjpwYXNz", "", true, false},
		{"Bearer", "", true, false},
		{"Bearer ", "", true, false},
		{"Bearer a b", "", true, false},
		{"Bearer a\"b", "", true, false},
		{"Bearer ==", "", true, false},
	} {
		tok, present, ok := BearerToken(tc.in)
		if tok != tc.tok || present != tc.present || ok != tc.valid {
			t.Errorf("BearerToken(%q) = %q, %v, %v", tc.in, tok, present, ok)
		}
	}
}

func TestClassifyAndPin(t *testing.T) {
	q := func(s string) url.Values { v, _ := url.ParseQuery(s); return v }
	bases := []string{"http://gw.example/fhir", "http://127.0.0.1:8080/fhir"}
	for _, tc := range []struct {
		rel, query string
		kind       SearchKind
		patient    string
		pinned     bool // PinsPatient(…, "p1") for ImagingSearch
	}{
		{"ImagingStudy", "patient=p1", ImagingSearch, "", true},
		{"ImagingStudy", "patient=Patient/p1&identifier=urn:oid:1.2", ImagingSearch, "", true},
		{"ImagingStudy", "patient=http://gw.example/fhir/Patient/p1", ImagingSearch, "", true},
		{"ImagingStudy", "patient=http://elsewhere/fhir/Patient/p1", ImagingSearch, "", false},
		{"ImagingStudy", "subject=Patient/p1", ImagingSearch, "", true},
		{"ImagingStudy", "subject=p1", ImagingSearch, "", false}, // could be Group/p1
		{"ImagingStudy", "subject:Patient=p1", ImagingSearch, "", true},
		{"ImagingStudy", "patient=p2", ImagingSearch, "", false},
		{"ImagingStudy", "patient=p1,p2", ImagingSearch, "", false},
		{"ImagingStudy", "patient=p1&subject=Patient/p2", ImagingSearch, "", false},
		{"ImagingStudy", "patient=Patient/p1/_history/2", ImagingSearch, "", false},
		{"ImagingStudy", "identifier=urn:oid:1.2", ImagingSearch, "", false},
		{"ImagingStudy", "", ImagingSearch, "", false},
		{"ImagingStudy", "patient.identifier=mrn|1", ImagingSearch, "", false},
		{"ImagingStudy/_search", "patient=p1", ImagingSearch, "", true},
		{"", "_type=ImagingStudy,Patient&patient=p1", ImagingSearch, "", true},
		{"", "_lastUpdated=gt2020", ImagingSearch, "", false},
		{"_search", "", ImagingSearch, "", false},
		{"", "_type=Observation", NotImagingSearch, "", false},
		{"", "_getpages=abc&_getpagesoffset=20", NotImagingSearch, "", false},
		{"", "", NotImagingSearch, "", false},
		{"Patient/p1/ImagingStudy", "", CompartmentSearch, "p1", false},
		{"Patient/p2/*", "", CompartmentSearch, "p2", false},
		{"ImagingStudy/abc", "", NotImagingSearch, "", false},
		{"ImagingStudy/abc/_history", "", NotImagingSearch, "", false},
		{"Observation", "patient=p2", NotImagingSearch, "", false},
	} {
		params := q(tc.query)
		kind, patient := ClassifySearch(tc.rel, params)
		if kind != tc.kind || patient != tc.patient {
			t.Errorf("ClassifySearch(%q, %q) = %v, %q; want %v, %q", tc.rel, tc.query, kind, patient, tc.kind, tc.patient)
			continue
		}
		if kind == ImagingSearch {
			if got := PinsPatient(params, "p1", bases); got != tc.pinned {
				t.Errorf("PinsPatient(%q) = %v, want %v", tc.query, got, tc.pinned)
			}
		}
	}
}
