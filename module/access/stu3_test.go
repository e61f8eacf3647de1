package access

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// stu3FHIR plays an STU3 FHIR server for visibility look-ups: studies are
// found by ImagingStudy.uid with study=urn:oid:<uid> (exact), and by
// identifier only where they carry one; the patient is ImagingStudy.patient.
type stu3FHIR struct {
	*httptest.Server
	mu       sync.Mutex
	searches []string // the parameter that named the studies, per search
}

func newSTU3FHIR(t *testing.T) *stu3FHIR {
	f := &stu3FHIR{}
	type study struct{ uid, identifier, patient string }
	studies := []study{
		{uid: "1.1", patient: "Patient/p1"},
		{uid: "2.1", patient: "Patient/p2"},
		{identifier: "3.1", patient: "Patient/p1"}, // STU3 data carrying the UID in identifier only
	}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if r.URL.Path != "/fhir/ImagingStudy" || q.Get("_elements") != "uid,identifier,patient" {
			http.Error(w, "unexpected request", http.StatusBadRequest)
			return
		}
		var entries []string
		f.mu.Lock()
		if q.Has("study") {
			f.searches = append(f.searches, "study")
		} else {
			f.searches = append(f.searches, "identifier")
		}
		f.mu.Unlock()
		for _, s := range studies {
			match := false
			for _, v := range strings.Split(q.Get("study"), ",") {
				match = match || (s.uid != "" && v == "urn:oid:"+s.uid)
			}
			for _, v := range strings.Split(q.Get("identifier"), ",") {
				match = match || (s.identifier != "" && v == "urn:dicom:uid|urn:oid:"+s.identifier)
			}
			if !match || (q.Get("patient") != "" && s.patient != "Patient/"+q.Get("patient")) {
				continue
			}
			res := `{"resourceType":"ImagingStudy","patient":{"reference":"` + s.patient + `"}`
			if s.uid != "" {
				res += `,"uid":"urn:oid:` + s.uid + `"`
			}
			if s.identifier != "" {
				res += `,"identifier":[{"system":"urn:dicom:uid","value":"urn:oid:` + s.identifier + `"}]`
			}
			entries = append(entries, `{"resource":`+res+`}}`)
		}
		w.Header().Set("Content-Type", "application/fhir+json")
		fmt.Fprintf(w, `{"resourceType":"Bundle","type":"searchset","entry":[%s]}`, strings.Join(entries, ","))
	}))
	t.Cleanup(f.Close)
	return f
}

func TestDecisionsSTU3(t *testing.T) {
	f := newFixture(t)
	stu3 := newSTU3FHIR(t)
	f.az = New(Config{
		Introspector: &Introspector{URL: f.auth.URL, ClientID: "gw", ClientSecret: "s:cret", Issuer: "http://as.example/"},
		FHIRBase:     stu3.URL + "/fhir",
		DecisionTTL:  30 * time.Second,
		Now:          f.clk.now,
		STU3:         true,
	})
	for _, tc := range []struct {
		token, uid string
		want       bool
		searches   string
	}{
		{"alice", "1.1", true, "study"},              // ImagingStudy.uid, ImagingStudy.patient
		{"alice", "2.1", false, "study identifier"},  // another patient's study
		{"alice", "3.1", true, "study identifier"},   // found by identifier second
		{"doctor", "2.1", true, "study"},             // user/ scope: no patient
		{"doctor", "9.9", false, "study identifier"}, // a study that does not exist
		{"bob", "1.1", false, "study identifier"},    // p2 may not read p1's
	} {
		stu3.mu.Lock()
		stu3.searches = nil
		stu3.mu.Unlock()
		got, err := f.may(t, tc.token, tc.uid)
		if err != nil || got != tc.want {
			t.Errorf("%s may read %s: %v, %v; want %v", tc.token, tc.uid, got, err, tc.want)
		}
		stu3.mu.Lock()
		if s := strings.Join(stu3.searches, " "); s != tc.searches {
			t.Errorf("%s, %s: searches %q, want %q", tc.token, tc.uid, s, tc.searches)
		}
		stu3.mu.Unlock()
	}
}
