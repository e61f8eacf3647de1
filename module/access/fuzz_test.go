package access

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzTokenAndScopes: whatever a client sends as Authorization or an
// authorization server says as scope, nothing panics, a token accepted is
// a b64token, and a grant is only ever given by a scope that allows
// reading and searching ImagingStudy.
func FuzzTokenAndScopes(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer a.b-c_d~e+f/g==", "Basic x", "Bearer ", "patient/ImagingStudy.rs", "user/*.cruds launch/patient", "patient/ImagingStudy.rs?x=1", "system/*.*"} {
		f.Add(s, "p1")
	}
	f.Fuzz(func(t *testing.T, s, patient string) {
		if tok, present, ok := BearerToken(s); ok {
			if !present || tok == "" || strings.ContainsAny(tok, " \t\r\n\"") {
				t.Fatalf("BearerToken(%q) accepted %q", s, tok)
			}
		}
		scopes := ParseScopes(s)
		tk := Token{Active: true, Scopes: scopes, Patient: patient}
		if g, ok := tk.ImagingRead(); ok {
			found := false
			for _, sc := range scopes {
				if sc.Context != SystemContext && sc.covers("ImagingStudy") && sc.Read && sc.Search {
					found = true
				}
			}
			if !found || (g.Patient != "" && g.Patient != patient) {
				t.Fatalf("scopes %q gave grant %+v", s, g)
			}
		}
	})
}

// FuzzSearchRule: whatever the parameters of a search, nothing panics, and
// a search that PinsPatient lets through names the token's patient in every
// patient or subject parameter it has.
func FuzzSearchRule(f *testing.F) {
	for _, q := range []string{"patient=p1", "patient=Patient/p1,p2", "subject=Patient/p1&patient=p2", "_type=ImagingStudy", "_getpages=x", "subject:Patient=p1"} {
		f.Add("ImagingStudy", q)
	}
	f.Add("Patient/p1/ImagingStudy", "")
	f.Fuzz(func(t *testing.T, rel, query string) {
		params, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		ClassifySearch(rel, params)
		if !PinsPatient(params, "p1", []string{"http://gw/fhir"}) {
			return
		}
		for name, values := range params {
			if name != "patient" && name != "subject" && name != "patient:Patient" && name != "subject:Patient" {
				continue
			}
			for _, v := range values {
				for _, one := range strings.Split(v, ",") {
					one = strings.TrimSpace(one)
					if one != "p1" && !strings.HasSuffix(one, "Patient/p1") {
						t.Fatalf("%q let through with %s=%q", query, name, one)
					}
				}
			}
		}
	})
}
