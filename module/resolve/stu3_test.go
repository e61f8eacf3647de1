package resolve

import (
	"context"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// stu3Server plays an STU3 FHIR server: ImagingStudy.uid is an oid
// (urn:oid:<uid>) searched with the uri parameter "study", exact match;
// identifier searches match identifier values only. studies maps each
// ImagingStudy's JSON to its uid and identifier values.
func stu3Server(t *testing.T, studies map[string][2]string) *server {
	s := newServer(t)
	s.endpoints["a"] = ep("a", "dicom-wado-rs", "http://a/dw")
	s.endpoints["b"] = ep("b", "dicom-wado-rs", "http://b/dw")
	s.search = func(q url.Values) string {
		var entries []string
		for body, ids := range studies {
			uid, identifier := ids[0], ids[1]
			match := false
			if v := q.Get("study"); v != "" && uid != "" {
				match = slices.Contains(strings.Split(v, ","), uid)
			}
			if v := q.Get("identifier"); v != "" && identifier != "" {
				match = match || slices.Contains(strings.Split(v, ","), "urn:dicom:uid|"+identifier)
			}
			if match {
				entries = append(entries, `{"resource":`+body+`}`)
			}
		}
		return strings.Join(entries, ",")
	}
	return s
}

func stu3Resolver(s *server, stu3 bool) *Resolver {
	r := newResolver(s, &clock{t: time.Unix(0, 0)})
	r.cfg.STU3 = stu3
	return r
}

// searchedBy lists, per search sent, the parameter that named the study.
func searchedBy(s *server) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, q := range s.searches {
		switch {
		case q.Has("study"):
			out = append(out, "study="+q.Get("study"))
		case q.Has("identifier"):
			out = append(out, "identifier="+q.Get("identifier"))
		default:
			out = append(out, "?")
		}
	}
	return out
}

// An STU3-shaped study: uid, series.uid and instance.uid are oids; the
// study's Endpoint is a, the first series overrides it with b.
const stu3Study = `{"resourceType":"ImagingStudy","id":"s","uid":"urn:oid:1.2.3","patient":{"reference":"Patient/p"},` +
	`"endpoint":[{"reference":"Endpoint/a"}],"series":[` +
	`{"uid":"urn:oid:1.2.3.1","endpoint":[{"reference":"Endpoint/b"}],"instance":[{"uid":"urn:oid:1.2.3.1.1"}]},` +
	`{"uid":"urn:oid:1.2.3.2","instance":[{"uid":"urn:oid:1.2.3.2.1"}]}]}`

func TestStudySTU3SearchesByStudyUID(t *testing.T) {
	s := stu3Server(t, map[string][2]string{stu3Study: {"urn:oid:1.2.3", ""}})
	got, err := stu3Resolver(s, true).Study(context.Background(), "1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	if !got.Known || got.Default.WADORS != "a" || got.Series["1.2.3.1"].WADORS != "b" || got.Series["1.2.3.2"].WADORS != "a" {
		t.Fatalf("got %+v, want known, default a, series 1.2.3.1 on b and 1.2.3.2 on a", got)
	}
	if by := searchedBy(s); len(by) != 1 || by[0] != "study=urn:oid:1.2.3,1.2.3" {
		t.Errorf("searches %q, want one study=urn:oid:1.2.3,1.2.3", by)
	}
}

func TestStudySTU3FallsBackToIdentifier(t *testing.T) {
	// STU3 data that carries the UID in identifier and not in uid.
	withIdentifier := `{"resourceType":"ImagingStudy","id":"t","identifier":[{"system":"urn:dicom:uid","value":"urn:oid:1.2.4"}],` +
		`"endpoint":[{"reference":"Endpoint/b"}],"series":[{"uid":"urn:oid:1.2.4.1"}]}`
	s := stu3Server(t, map[string][2]string{withIdentifier: {"", "urn:oid:1.2.4"}})
	got, err := stu3Resolver(s, true).Study(context.Background(), "1.2.4")
	if err != nil {
		t.Fatal(err)
	}
	if !got.Known || got.Series["1.2.4.1"].WADORS != "b" {
		t.Fatalf("got %+v, want known with series 1.2.4.1 on b", got)
	}
	want := []string{"study=urn:oid:1.2.4,1.2.4", "identifier=urn:dicom:uid|urn:oid:1.2.4,urn:dicom:uid|1.2.4"}
	if by := searchedBy(s); !slices.Equal(by, want) {
		t.Errorf("searches %q, want %q", by, want)
	}
}

func TestStudySTU3Unknown(t *testing.T) {
	s := stu3Server(t, map[string][2]string{stu3Study: {"urn:oid:1.2.3", ""}})
	got, err := stu3Resolver(s, true).Study(context.Background(), "1.2.9")
	if err != nil || got.Known {
		t.Fatalf("got %+v, %v; want unknown", got, err)
	}
	if by := searchedBy(s); len(by) != 2 {
		t.Errorf("searches %q, want study= then identifier=", by)
	}
}

func TestStudyR4NeverSendsStudyParameter(t *testing.T) {
	// Without STU3 only identifier is asked (an R4 server refuses the
	// unknown parameter "study"), so uid-only STU3 data is not found.
	s := stu3Server(t, map[string][2]string{stu3Study: {"urn:oid:1.2.3", ""}})
	got, err := stu3Resolver(s, false).Study(context.Background(), "1.2.3")
	if err != nil || got.Known {
		t.Fatalf("got %+v, %v; want unknown", got, err)
	}
	if by := searchedBy(s); len(by) != 1 || !strings.HasPrefix(by[0], "identifier=") {
		t.Errorf("searches %q, want one identifier search", by)
	}
}
