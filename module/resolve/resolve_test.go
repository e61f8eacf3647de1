package resolve

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhirimaging/caddy-fhir-imaging/module/fhirjson"
)

// clock is a fake time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type server struct {
	*httptest.Server
	hits      atomic.Int32
	endpoints map[string]string
	studies   string // Bundle entries answered to every ImagingStudy search
	refuseIDs bool   // answer 400 to Endpoint?_id searches
	// search, when set, answers ImagingStudy searches instead of studies:
	// the Bundle entries for the search's parameters. Each search's
	// parameters are kept in searches.
	search   func(q url.Values) string
	mu       sync.Mutex
	searches []url.Values
}

func newServer(t *testing.T) *server {
	s := &server{endpoints: map[string]string{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		w.Header().Set("Content-Type", "application/fhir+json")
		switch {
		case r.URL.Path == "/fhir/Endpoint":
			if s.refuseIDs {
				http.Error(w, `{"resourceType":"OperationOutcome"}`, http.StatusBadRequest)
				return
			}
			var entries []string
			for _, id := range strings.Split(r.URL.Query().Get("_id"), ",") {
				if e, ok := s.endpoints[id]; ok {
					entries = append(entries, `{"resource":`+e+`}`)
				}
			}
			fmt.Fprintf(w, `{"resourceType":"Bundle","type":"searchset","entry":[%s]}`, strings.Join(entries, ","))
		case strings.HasPrefix(r.URL.Path, "/fhir/Endpoint/"):
			if e, ok := s.endpoints[strings.TrimPrefix(r.URL.Path, "/fhir/Endpoint/")]; ok {
				fmt.Fprint(w, e)
				return
			}
			http.NotFound(w, r)
		case r.URL.Path == "/fhir/ImagingStudy" && s.search != nil:
			s.mu.Lock()
			s.searches = append(s.searches, r.URL.Query())
			s.mu.Unlock()
			fmt.Fprintf(w, `{"resourceType":"Bundle","type":"searchset","entry":[%s]}`, s.search(r.URL.Query()))
		case r.URL.Path == "/fhir/ImagingStudy":
			fmt.Fprintf(w, `{"resourceType":"Bundle","type":"searchset","entry":[%s]}`, s.studies)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func ep(id, code, addr string) string {
	return fmt.Sprintf(`{"resourceType":"Endpoint","id":%q,"status":"active","connectionType":{"code":%q},"address":%q}`, id, code, addr)
}

func newResolver(s *server, c *clock) *Resolver {
	return New(Config{
		FHIRBase:    s.URL + "/fhir",
		TTL:         time.Minute,
		NegativeTTL: 5 * time.Second,
		MaxEntries:  3,
		Now:         c.now,
		Archive: func(addr string) string {
			return map[string]string{"http://a/dw": "a", "http://b/dw": "b", "http://a/wado": "a"}[addr]
		},
	})
}

func TestEndpointsCacheAndNegativeTTL(t *testing.T) {
	s := newServer(t)
	s.endpoints["x"] = ep("x", "dicom-wado-rs", "http://a/dw")
	c := &clock{t: time.Unix(0, 0)}
	r := newResolver(s, c)
	got, err := r.Endpoints(context.Background(), []string{"x", "missing"})
	if err != nil || got["x"].Address != "http://a/dw" || len(got) != 1 {
		t.Fatalf("got %v, %v", got, err)
	}
	if s.hits.Load() != 1 {
		t.Fatalf("%d requests, want 1 search for both ids", s.hits.Load())
	}
	r.Endpoints(context.Background(), []string{"x", "missing"})
	if s.hits.Load() != 1 {
		t.Errorf("cached answers were fetched again")
	}
	c.advance(6 * time.Second) // past the negative TTL only
	r.Endpoints(context.Background(), []string{"x", "missing"})
	if s.hits.Load() != 2 {
		t.Errorf("%d requests: the negative answer should have expired, the positive not", s.hits.Load())
	}
	if q := s.hits.Load(); q != 2 {
		t.Errorf("requests %d", q)
	}
	c.advance(2 * time.Minute)
	r.Endpoints(context.Background(), []string{"x"})
	if s.hits.Load() != 3 {
		t.Errorf("the positive answer did not expire after its TTL")
	}
}

func TestEndpointsFallBackToReads(t *testing.T) {
	s := newServer(t)
	s.refuseIDs = true
	s.endpoints["x"] = ep("x", "dicom-wado-rs", "http://a/dw")
	s.endpoints["y"] = ep("y", "dicom-wado-uri", "http://a/wado")
	r := newResolver(s, &clock{t: time.Unix(0, 0)})
	got, err := r.Endpoints(context.Background(), []string{"x", "y", "z"})
	if err != nil || len(got) != 2 {
		t.Fatalf("got %v, %v", got, err)
	}
	if n := s.hits.Load(); n != 4 {
		t.Errorf("%d requests, want 1 refused search and 3 reads", n)
	}
}

func TestStudyCombinesImagingStudies(t *testing.T) {
	s := newServer(t)
	// Two ImagingStudies for one DICOM study (as two systems may create),
	// one with urn:oid:, one without; the second has series the first
	// lacks and a study endpoint in b.
	s.studies = `{"resource":{"resourceType":"ImagingStudy","id":"one","identifier":[{"system":"urn:dicom:uid","value":"urn:oid:1.2.7"}],"series":[{"uid":"1.2.7.1","endpoint":[{"reference":"Endpoint/a"}]}]}},` +
		`{"resource":{"resourceType":"ImagingStudy","id":"two","identifier":[{"system":"urn:dicom:uid","value":"1.2.7"}],"endpoint":[{"reference":"Endpoint/b"}],"series":[{"uid":"1.2.7.2"},{"uid":"1.2.7.1"}]}},` +
		`{"resource":{"resourceType":"ImagingStudy","id":"other","identifier":[{"system":"urn:dicom:uid","value":"1.2.8"}],"endpoint":[{"reference":"Endpoint/a"}],"series":[{"uid":"1.2.8.1"}]}},` +
		`{"resource":` + ep("a", "dicom-wado-rs", "http://a/dw") + `,"search":{"mode":"include"}}`
	s.endpoints["b"] = ep("b", "dicom-wado-rs", "http://b/dw")
	r := newResolver(s, &clock{t: time.Unix(0, 0)})
	st, err := r.Study(context.Background(), "1.2.7")
	if err != nil {
		t.Fatal(err)
	}
	if !st.Known || st.Default.WADORS != "b" || st.Series["1.2.7.1"].WADORS != "a" || st.Series["1.2.7.2"].WADORS != "b" {
		t.Fatalf("combined placement %+v", st)
	}
	if _, ok := st.Series["1.2.8.1"]; ok {
		t.Errorf("a series of another study was taken in")
	}
	if got := st.Archives(fhirjson.WADORS); fmt.Sprint(got) != "[a b]" {
		t.Errorf("archives %v", got)
	}
	if got := st.ArchiveFor(fhirjson.WADORS, "9.9"); got != "b" {
		t.Errorf("an unlisted series goes to %q, want the study default b", got)
	}
	hits := s.hits.Load()
	r.Study(context.Background(), "1.2.7")
	if s.hits.Load() != hits {
		t.Errorf("a cached study was looked up again")
	}
	if _, err := r.Explain(context.Background(), "1.2.7"); err != nil || s.hits.Load() == hits {
		t.Errorf("Explain must ask the server, not the cache")
	}
}

func TestStudyUnknownAndFailures(t *testing.T) {
	s := newServer(t)
	r := newResolver(s, &clock{t: time.Unix(0, 0)})
	st, err := r.Study(context.Background(), "1.2.9")
	if err != nil || st.Known {
		t.Fatalf("unknown study: %+v, %v", st, err)
	}
	s.Close()
	r2 := newResolver(s, &clock{t: time.Unix(0, 0)})
	_, err = r2.Study(context.Background(), "1.2.9")
	if err == nil {
		t.Fatal("no error from a FHIR server that is down")
	}
	if strings.Contains(err.Error(), "1.2.9") {
		t.Errorf("the error, which reaches logs, carries the study UID: %v", err)
	}
	none := New(Config{})
	if _, err := none.Study(context.Background(), "1.2"); err != ErrNoFHIR {
		t.Errorf("no FHIR base: %v", err)
	}
}

func TestNextLinkStaysOnTheServer(t *testing.T) {
	r := New(Config{FHIRBase: "http://fhir.local:8080/fhir"})
	for body, want := range map[string]string{
		`{"link":[{"relation":"next","url":"http://fhir.local:8080/fhir?_getpages=x"}]}`:  "http://fhir.local:8080/fhir?_getpages=x",
		`{"link":[{"relation":"next","url":"http://169.254.169.254/latest"}]}`:            "",
		`{"link":[{"relation":"next","url":"https://fhir.local:8080/fhir?_getpages=x"}]}`: "",
		`{"link":[{"relation":"self","url":"http://fhir.local:8080/fhir"}]}`:              "",
	} {
		if got := r.nextLink([]byte(body)); got != want {
			t.Errorf("nextLink(%s) = %q, want %q", body, got, want)
		}
	}
}

func TestStudyReplicasInListedOrder(t *testing.T) {
	s := newServer(t)
	// The study lists b, an address of no configured archive, a, and b
	// again; series 1.2.9.1 lists its own a then b; 1.2.9.2 lists only a
	// WADO-URI Endpoint of its own, so its WADO-RS archives are the
	// study's. An inactive Endpoint is no replica.
	s.studies = `{"resource":{"resourceType":"ImagingStudy","id":"r","identifier":[{"system":"urn:dicom:uid","value":"1.2.9"}],` +
		`"endpoint":[{"reference":"Endpoint/b"},{"reference":"Endpoint/elsewhere"},{"reference":"Endpoint/a"},{"reference":"Endpoint/b"},{"reference":"Endpoint/off"}],` +
		`"series":[{"uid":"1.2.9.1","endpoint":[{"reference":"Endpoint/a"},{"reference":"Endpoint/b"}]},{"uid":"1.2.9.2","endpoint":[{"reference":"Endpoint/a-uri"}]}]}},` +
		`{"resource":` + ep("a", "dicom-wado-rs", "http://a/dw") + `,"search":{"mode":"include"}},` +
		`{"resource":` + ep("b", "dicom-wado-rs", "http://b/dw") + `,"search":{"mode":"include"}},` +
		`{"resource":` + ep("a-uri", "dicom-wado-uri", "http://a/wado") + `,"search":{"mode":"include"}},` +
		`{"resource":` + ep("elsewhere", "dicom-wado-rs", "http://elsewhere/dw") + `,"search":{"mode":"include"}},` +
		`{"resource":{"resourceType":"Endpoint","id":"off","status":"off","connectionType":{"code":"dicom-wado-rs"},"address":"http://a/dw"},"search":{"mode":"include"}}`
	r := newResolver(s, &clock{t: time.Unix(0, 0)})
	st, err := r.Study(context.Background(), "1.2.9")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		series string
		t      fhirjson.ConnectionType
		want   string
	}{
		{"", fhirjson.WADORS, "[b a]"},
		{"1.2.9.1", fhirjson.WADORS, "[a b]"},
		{"1.2.9.2", fhirjson.WADORS, "[b a]"},
		{"1.2.9.2", fhirjson.WADOURI, "[a]"},
	} {
		if got := fmt.Sprint(st.Order(tc.t, tc.series)); got != tc.want {
			t.Errorf("series %q %s: order %s, want %s (%+v)", tc.series, tc.t, got, tc.want, st)
		}
	}
	if st.Spread(fhirjson.WADORS) != nil {
		t.Errorf("replicas taken for a split study: %v", st.Spread(fhirjson.WADORS))
	}
}
