package module_test

import (
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidwall/gjson"
)

// fakeArchive records what reaches it and answers like a DICOMweb server.
type fakeArchive struct {
	*httptest.Server
	prefix string
	mu     sync.Mutex
	seen   []*http.Request
	quiet  atomic.Bool // do not record (benchmarks)
	serve  func(w http.ResponseWriter, r *http.Request)
}

func newFakeArchive(t testing.TB, prefix string) *fakeArchive {
	a := &fakeArchive{prefix: prefix}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.quiet.Load() {
			a.mu.Lock()
			a.seen = append(a.seen, r.Clone(r.Context()))
			a.mu.Unlock()
		}
		if a.serve != nil {
			a.serve(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "%s %s", r.Host, r.URL.RequestURI())
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *fakeArchive) base() string { return a.URL + a.prefix }

// getRoutedTo gets url from the gateway (with the header pairs hdr) and
// checks that it is answered 200 after exactly one request to archive,
// which it returns.
func getRoutedTo(t *testing.T, archive *fakeArchive, url string, hdr ...string) *http.Request {
	t.Helper()
	before := len(archive.requests())
	resp, body := get(t, url, hdr...)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	reqs := archive.requests()
	if len(reqs) != before+1 {
		t.Fatalf("archive got %d requests, want 1", len(reqs)-before)
	}
	return reqs[len(reqs)-1]
}

func (a *fakeArchive) requests() []*http.Request {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]*http.Request(nil), a.seen...)
}

// routingFHIR answers ImagingStudy searches by identifier from a fixed set
// of ImagingStudies and Endpoints, counting the searches.
type routingFHIR struct {
	*httptest.Server
	mu       sync.Mutex
	studies  map[string]string // study UID → ImagingStudy JSON
	included []string          // Endpoint JSON included in every answer
	searches atomic.Int32
	delay    time.Duration
	fail     bool
}

func newRoutingFHIR(t testing.TB) *routingFHIR {
	f := &routingFHIR{studies: map[string]string{}}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/fhir/ImagingStudy" {
			http.NotFound(w, r)
			return
		}
		f.searches.Add(1)
		time.Sleep(f.delay)
		if f.fail {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		if r.URL.Query().Get("_include") != "ImagingStudy:endpoint" {
			http.Error(w, "expected _include", http.StatusBadRequest)
			return
		}
		var entries []string
		for _, tok := range strings.Split(r.URL.Query().Get("identifier"), ",") {
			sys, val, _ := strings.Cut(tok, "|")
			if sys != "urn:dicom:uid" {
				continue
			}
			f.mu.Lock()
			s, ok := f.studies[val]
			f.mu.Unlock()
			if ok {
				entries = append(entries, `{"resource":`+s+`,"search":{"mode":"match"}}`)
			}
		}
		if len(entries) > 0 {
			for _, e := range f.included {
				entries = append(entries, `{"resource":`+e+`,"search":{"mode":"include"}}`)
			}
		}
		w.Header().Set("Content-Type", "application/fhir+json")
		fmt.Fprintf(w, `{"resourceType":"Bundle","type":"searchset","entry":[%s]}`, strings.Join(entries, ","))
	}))
	t.Cleanup(f.Close)
	return f
}

// routingSetup is a FHIR server, three archives with different path
// prefixes (Orthanc, dcm4chee, Google Healthcare style) and a gateway.
type routingSetup struct {
	fhir    *routingFHIR
	a, b, c *fakeArchive
	evil    *fakeArchive
	gw      string
}

func newRoutingSetup(t testing.TB, appExtra string) *routingSetup {
	s := &routingSetup{
		fhir: newRoutingFHIR(t),
		a:    newFakeArchive(t, "/dicom-web"),
		b:    newFakeArchive(t, "/dcm4chee-arc/aets/DCM4CHEE/rs"),
		c:    newFakeArchive(t, "/v1/projects/p/locations/l/datasets/d/dicomStores/s/dicomWeb"),
		evil: newFakeArchive(t, "/dicom-web"),
	}
	s.fhir.included = []string{
		endpointJSON("a", "active", "dicom-wado-rs", s.a.base()),
		endpointJSON("a-uri", "active", "dicom-wado-uri", s.a.URL+"/wado"),
		endpointJSON("b", "active", "dicom-wado-rs", s.b.base()),
		endpointJSON("c", "active", "dicom-wado-rs", s.c.base()),
		endpointJSON("evil", "active", "dicom-wado-rs", s.evil.base()),
		endpointJSON("metadata", "active", "dicom-wado-rs", "http://169.254.169.254/latest/meta-data"),
	}
	// 1.2.1: wholly in A, study endpoint. 1.2.2: split, series endpoints
	// (series 1 in B, series 2 in C). 1.2.3: points only at addresses
	// that are not configured archives.
	s.fhir.studies["urn:oid:1.2.1"] = `{"resourceType":"ImagingStudy","id":"s1","identifier":[{"system":"urn:dicom:uid","value":"urn:oid:1.2.1"}],"endpoint":[{"reference":"Endpoint/a"},{"reference":"Endpoint/a-uri"}],"series":[{"uid":"1.2.1.1","instance":[{"uid":"1.2.1.1.1"}]}]}`
	s.fhir.studies["1.2.2"] = `{"resourceType":"ImagingStudy","id":"s2","identifier":[{"system":"urn:dicom:uid","value":"1.2.2"}],"series":[{"uid":"1.2.2.1","endpoint":[{"reference":"Endpoint/b"}]},{"uid":"1.2.2.2","endpoint":[{"reference":"Endpoint/c"}]}]}`
	s.fhir.studies["urn:oid:1.2.3"] = `{"resourceType":"ImagingStudy","id":"s3","identifier":[{"system":"urn:dicom:uid","value":"urn:oid:1.2.3"}],"endpoint":[{"reference":"Endpoint/evil"},{"reference":"Endpoint/metadata"}],"series":[{"uid":"1.2.3.1"}]}`
	globals := fmt.Sprintf(`	fhir_imaging {
		fhir %s/fhir
		archive a %s {
			wado_uri %s/wado
		}
		archive b %s
		archive c %s
		lookup_timeout 500ms
%s
	}`, s.fhir.URL, s.a.base(), s.a.URL, s.b.base(), s.c.base(), appExtra)
	site := "\thandle_path /wado-rs/* {\n\t\tdicomweb\n\t}\n\thandle /wado {\n\t\twado_uri\n\t}"
	s.gw = startGateway(t, globals, site)
	return s
}

func TestDICOMwebRoutesEverySubResource(t *testing.T) {
	s := newRoutingSetup(t, "")
	tests := []struct {
		path    string // below /wado-rs, with query
		archive *fakeArchive
	}{
		{"/studies/1.2.1", s.a},
		{"/studies/1.2.1/metadata", s.a},
		{"/studies/1.2.1/rendered?viewport=64,64", s.a},
		{"/studies/1.2.1/thumbnail", s.a},
		{"/studies/1.2.1/series", s.a},
		{"/studies/1.2.1/series/1.2.1.1", s.a},
		{"/studies/1.2.1/series/1.2.1.1/metadata", s.a},
		{"/studies/1.2.1/series/1.2.1.1/instances?includefield=all", s.a},
		{"/studies/1.2.1/series/1.2.1.1/instances/1.2.1.1.1", s.a},
		{"/studies/1.2.1/series/1.2.1.1/instances/1.2.1.1.1/frames/1,2,3", s.a},
		{"/studies/1.2.1/series/1.2.1.1/instances/1.2.1.1.1/rendered?quality=90&window=40,400,linear", s.a},
		{"/studies/1.2.1/series/1.2.1.1/instances/1.2.1.1.1/pixeldata", s.a},
		{"/studies/1.2.1/series/1.2.1.1/instances/1.2.1.1.1/bulk/7fe00010", s.a},
		{"/studies/1.2.1/series/1.2.1.1/instances/1.2.1.1.1/bulkdata/x/y", s.a},
		{"/studies/1.2.2/series/1.2.2.1", s.b},
		{"/studies/1.2.2/series/1.2.2.1/instances/9.9/frames/1", s.b},
		{"/studies/1.2.2/series/1.2.2.2/metadata", s.c},
		{"/studies/1.2.2/series/1.2.2.2/instances/9.8", s.c},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			got := getRoutedTo(t, tt.archive, s.gw+"/wado-rs"+tt.path, "Accept", `multipart/related; type="application/dicom"`, "Authorization", "Bearer client-token")
			p, q, _ := strings.Cut(tt.path, "?")
			if got.URL.Path != tt.archive.prefix+p {
				t.Errorf("archive path %q, want %q", got.URL.Path, tt.archive.prefix+p)
			}
			if got.URL.RawQuery != q {
				t.Errorf("archive query %q, want %q", got.URL.RawQuery, q)
			}
			if a := got.Header.Get("Accept"); a != `multipart/related; type="application/dicom"` {
				t.Errorf("Accept %q not kept", a)
			}
			if a := got.Header.Get("Authorization"); a != "" {
				t.Errorf("client Authorization %q reached the archive", a)
			}
			if h := got.Host; h != hostPort(tt.archive.URL) {
				t.Errorf("Host %q, want the archive's own %q", h, hostPort(tt.archive.URL))
			}
		})
	}
	for _, other := range []*fakeArchive{s.evil} {
		if n := len(other.requests()); n != 0 {
			t.Errorf("an unconfigured address got %d requests", n)
		}
	}
	// Three studies were resolved, each with one search.
	if n := s.fhir.searches.Load(); n != 2 {
		t.Errorf("%d FHIR searches for 2 studies, want 2 (routes are cached)", n)
	}
}

func TestDICOMwebErrors(t *testing.T) {
	s := newRoutingSetup(t, "")
	tests := []struct {
		path   string
		status int
		msg    string
	}{
		{"/studies/1.2.x", 400, "UID"},
		{"/studies/" + strings.Repeat("1", 65), 400, "64"},
		{"/studies/1.2.1/series/abc", 400, "UID"},
		// Caddy removes dot-segments before routing, so these arrive as
		// unknown paths; either way nothing is proxied.
		{"/studies/1.2.1/../../etc/passwd", 0, ""},
		{"/studies/1.2.1/%2e%2e/%2e%2e/x", 0, ""},
		{"/studies/1.2.1%2fseries%2f1", 400, ""},
		{"/studies/1.2.1/series/1.2.1.1/instances/1.2.1.1.1/frames/0", 0, ""},
		{"/studies/1.2.1/unknown", 404, ""},
		{"/studies/9.9.9", 404, "ImagingStudy"},
		{"/studies/1.2.3/metadata", 404, "archive"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, body := get(t, s.gw+"/wado-rs"+tt.path)
			if tt.status != 0 && resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			if resp.StatusCode < 400 {
				t.Fatalf("status %d for a bad request", resp.StatusCode)
			}
			if msg := jsonMessage(t, body); !strings.Contains(msg, tt.msg) {
				t.Errorf("message %q does not mention %q", msg, tt.msg)
			}
		})
	}
	for _, ar := range []*fakeArchive{s.a, s.b, s.c, s.evil} {
		if n := len(ar.requests()); n != 0 {
			t.Errorf("archive %s got %d requests from refused requests", ar.prefix, n)
		}
	}
}

func TestDICOMwebUpstreamFailures(t *testing.T) {
	t.Run("FHIR server down", func(t *testing.T) {
		s := newRoutingSetup(t, "")
		s.fhir.fail = true
		resp, body := get(t, s.gw+"/wado-rs/studies/1.2.1")
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("status %d, want 502: %s", resp.StatusCode, body)
		}
		jsonMessage(t, body)
		_ = caddyStop()
	})
	t.Run("FHIR server slow", func(t *testing.T) {
		s := newRoutingSetup(t, "")
		s.fhir.delay = 2 * time.Second
		resp, body := get(t, s.gw+"/wado-rs/studies/1.2.1")
		if resp.StatusCode != http.StatusGatewayTimeout {
			t.Fatalf("status %d, want 504: %s", resp.StatusCode, body)
		}
		jsonMessage(t, body)
		_ = caddyStop()
	})
	t.Run("archive down", func(t *testing.T) {
		s := newRoutingSetup(t, "")
		s.a.Close()
		resp, body := get(t, s.gw+"/wado-rs/studies/1.2.1/metadata")
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("status %d, want 502: %s", resp.StatusCode, body)
		}
		if msg := jsonMessage(t, body); !strings.Contains(msg, "archive a") {
			t.Errorf("message %q does not name the archive", msg)
		}
		_ = caddyStop()
	})
}

func TestDICOMwebDefaultArchive(t *testing.T) {
	s := newRoutingSetup(t, "\t\tdefault_archive b")
	resp, body := get(t, s.gw+"/wado-rs/studies/7.7.7/series/7.7.7.1")
	if resp.StatusCode != 200 || !strings.Contains(string(body), s.b.prefix+"/studies/7.7.7/series/7.7.7.1") {
		t.Fatalf("unknown study did not go to the default archive: %d %s", resp.StatusCode, body)
	}
}

func TestDICOMwebConcurrentFirstRequestsOneLookup(t *testing.T) {
	s := newRoutingSetup(t, "")
	s.fhir.delay = 200 * time.Millisecond
	var wg sync.WaitGroup
	var bad atomic.Int32
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := noCompression.Get(s.gw + "/wado-rs/studies/1.2.1/series/1.2.1.1/metadata")
			if err != nil {
				bad.Add(1)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				bad.Add(1)
			}
		}()
	}
	wg.Wait()
	if bad.Load() != 0 {
		t.Errorf("%d of 100 requests failed", bad.Load())
	}
	if n := s.fhir.searches.Load(); n != 1 {
		t.Errorf("100 concurrent first requests made %d FHIR searches, want 1", n)
	}
	if n := len(s.a.requests()); n != 100 {
		t.Errorf("archive got %d requests, want 100", n)
	}
}

func TestDICOMwebRebasesJSONURLs(t *testing.T) {
	s := newRoutingSetup(t, "")
	s.a.serve = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/dicom+json")
		base := "http://" + r.Host + "/dicom-web"
		fmt.Fprintf(w, `[{"00081190":{"vr":"UR","Value":["%s/studies/1.2.1/series/1.2.1.1"]},"7FE00010":{"vr":"OW","BulkDataURI":"%s/studies/1.2.1/series/1.2.1.1/instances/1.2.1.1.1/bulk/7fe00010"},"00100010":{"vr":"PN","Value":[{"Alphabetic":"Doe^Jane"}]}}]`, base, base)
	}
	resp, body := get(t, s.gw+"/wado-rs/studies/1.2.1/series/1.2.1.1/metadata", "Accept", "application/dicom+json")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	doc := gjson.ParseBytes(body)
	if got, want := doc.Get(`0.00081190.Value.0`).String(), s.gw+"/wado-rs/studies/1.2.1/series/1.2.1.1"; got != want {
		t.Errorf("RetrieveURL %q, want %q", got, want)
	}
	if got, want := doc.Get(`0.7FE00010.BulkDataURI`).String(), s.gw+"/wado-rs/studies/1.2.1/series/1.2.1.1/instances/1.2.1.1.1/bulk/7fe00010"; got != want {
		t.Errorf("BulkDataURI %q, want %q", got, want)
	}
	if strings.Contains(string(body), hostPort(s.a.URL)) {
		t.Errorf("the archive's address leaked: %s", body)
	}
	if cl := resp.Header.Get("Content-Length"); cl != fmt.Sprint(len(body)) {
		t.Errorf("Content-Length %s for %d bytes", cl, len(body))
	}
}

func TestDICOMwebQIDOFanOut(t *testing.T) {
	s := newRoutingSetup(t, "")
	study := func(uid string) string {
		return fmt.Sprintf(`{"0020000D":{"vr":"UI","Value":["%s"]}}`, uid)
	}
	answer := func(uids ...string) func(w http.ResponseWriter, r *http.Request) {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Query().Get("offset") != "" {
				http.Error(w, "offset must not reach the archives", 400)
				return
			}
			var ds []string
			for _, u := range uids {
				ds = append(ds, study(u))
			}
			w.Header().Set("Content-Type", "application/dicom+json")
			fmt.Fprintf(w, "[%s]", strings.Join(ds, ","))
		}
	}
	s.a.serve = answer("1.1", "1.2", "1.3")
	s.b.serve = answer("1.3", "2.1")
	s.c.serve = func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }
	_, body := get(t, s.gw+"/wado-rs/studies?PatientID=x")
	var uids []string
	gjson.ParseBytes(body).ForEach(func(_, v gjson.Result) bool {
		uids = append(uids, v.Get("0020000D.Value.0").String())
		return true
	})
	if got := strings.Join(uids, " "); got != "1.1 1.2 1.3 2.1" {
		t.Errorf("merged studies %q, want %q", got, "1.1 1.2 1.3 2.1")
	}
	_, body = get(t, s.gw+"/wado-rs/studies?limit=2&offset=1")
	uids = nil
	gjson.ParseBytes(body).ForEach(func(_, v gjson.Result) bool {
		uids = append(uids, v.Get("0020000D.Value.0").String())
		return true
	})
	if got := strings.Join(uids, " "); got != "1.2 1.3" {
		t.Errorf("limit=2&offset=1 gave %q, want %q", got, "1.2 1.3")
	}
	last := s.a.requests()[len(s.a.requests())-1]
	if q := last.URL.Query(); q.Get("limit") != "3" || q.Get("offset") != "" {
		t.Errorf("archive asked with %q, want limit=3 and no offset", last.URL.RawQuery)
	}
	// Everything but the window goes on as the client encoded it: Orthanc
	// reads includefield=a,b and not includefield=a%2Cb.
	get(t, s.gw+"/wado-rs/studies?includefield=00081030,00080060&PatientName=Doe%2C%20J*&offset=1&limit=1")
	last = s.a.requests()[len(s.a.requests())-1]
	if last.URL.RawQuery != "includefield=00081030,00080060&PatientName=Doe%2C%20J*&limit=2" {
		t.Errorf("archive asked with %q", last.URL.RawQuery)
	}
	s.b.Close()
	resp, body := get(t, s.gw+"/wado-rs/studies")
	if resp.StatusCode != 200 || len(resp.Header.Values("Warning")) != 1 {
		t.Errorf("a failed archive: status %d, Warning %q, body %s", resp.StatusCode, resp.Header.Values("Warning"), body)
	}
}

func TestDICOMwebSTOW(t *testing.T) {
	s := newRoutingSetup(t, "\t\tstore_archive c")
	resp, body := do(t, "POST", s.gw+"/wado-rs/studies", strings.NewReader("--B\r\n\r\nDICM\r\n--B--"), "Content-Type", `multipart/related; type="application/dicom"; boundary=B`)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	reqs := s.c.requests()
	if len(reqs) != 1 || reqs[0].Method != "POST" || reqs[0].URL.Path != s.c.prefix+"/studies" {
		t.Fatalf("STOW did not reach the store archive: %v", reqs)
	}
}

func TestWADOURI(t *testing.T) {
	s := newRoutingSetup(t, "")
	q := "requestType=WADO&studyUID=1.2.1&seriesUID=1.2.1.1&objectUID=1.2.1.1.1&contentType=application/dicom&frameNumber=1"
	resp, body := get(t, s.gw+"/wado?"+q)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	reqs := s.a.requests()
	if len(reqs) != 1 || reqs[0].URL.Path != "/wado" || reqs[0].URL.RawQuery != q {
		t.Fatalf("archive got %v", reqs)
	}
	for _, bad := range []string{
		"requestType=WADO&studyUID=1.2.x&seriesUID=1.2.1.1&objectUID=1.2.1.1.1",
		"requestType=WADO&studyUID=1.2.1&seriesUID=1.2.1.1",
		"requestType=XYZ&studyUID=1.2.1&seriesUID=1.2.1.1&objectUID=1.2.1.1.1",
		"requestType=WADO&studyUID=1.2.1&studyUID=1.2.2&seriesUID=1.2.1.1&objectUID=1.2.1.1.1",
		"requestType=WADO&studyUID=1.2.1&seriesUID=1.2.1.1&objectUID=1.2.1.1.1&x=%zz",
	} {
		resp, body := get(t, s.gw+"/wado?"+bad)
		if resp.StatusCode != 400 {
			t.Errorf("%s: status %d, want 400", bad, resp.StatusCode)
		}
		jsonMessage(t, body)
	}
	// Series 1.2.2.1 lives in b, which has no wado_uri base.
	resp, body = get(t, s.gw+"/wado?requestType=WADO&studyUID=1.2.2&seriesUID=1.2.2.1&objectUID=1.2.2.1.1")
	if resp.StatusCode != 404 || !strings.Contains(jsonMessage(t, body), "wado_uri") {
		t.Errorf("archive without wado_uri: %d %s", resp.StatusCode, body)
	}
	if n := len(s.a.requests()); n != 1 {
		t.Errorf("refused requests reached the archive: %d", n)
	}
}

func TestDICOMwebStreamsLargeBodies(t *testing.T) {
	const size = 300 << 20
	s := newRoutingSetup(t, "")
	chunk := make([]byte, 1<<20)
	rand.Read(chunk)
	s.a.serve = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", `multipart/related; type="application/dicom"; boundary=x`)
		w.Header().Set("Content-Length", fmt.Sprint(size))
		for i := 0; i < size/len(chunk); i++ {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}
	// The archive writes from the test process too, so the heap measured
	// is both sides: with streaming it stays at a few buffers.
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var peak atomic.Uint64
	stop := make(chan struct{})
	go func() {
		var m runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				runtime.ReadMemStats(&m)
				if m.HeapInuse > peak.Load() {
					peak.Store(m.HeapInuse)
				}
			}
		}
	}()
	resp, err := noCompression.Get(s.gw + "/wado-rs/studies/1.2.1/series/1.2.1.1")
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	close(stop)
	if err != nil || n != size {
		t.Fatalf("read %d bytes (%v), want %d", n, err, size)
	}
	growth := int64(peak.Load()) - int64(before.HeapInuse)
	t.Logf("%d MiB passed; peak heap growth %.1f MiB", size>>20, float64(growth)/(1<<20))
	if growth > 32<<20 {
		t.Errorf("heap grew by %.1f MiB while streaming %d MiB: the body is being buffered", float64(growth)/(1<<20), size>>20)
	}
}

func TestDICOMwebPassAuthorization(t *testing.T) {
	f := newRoutingFHIR(t)
	a := newFakeArchive(t, "/dicom-web")
	f.included = []string{endpointJSON("a", "active", "dicom-wado-rs", a.base())}
	f.studies["urn:oid:1.2.1"] = `{"resourceType":"ImagingStudy","identifier":[{"system":"urn:dicom:uid","value":"urn:oid:1.2.1"}],"endpoint":[{"reference":"Endpoint/a"}],"series":[{"uid":"1.2.1.1"}]}`
	gw := startGateway(t, fmt.Sprintf("\tfhir_imaging {\n\t\tfhir %s/fhir\n\t\tarchive a %s {\n\t\t\tpass_authorization\n\t\t\theader_up X-Archive-Key k1\n\t\t}\n\t}", f.URL, a.base()), "\thandle_path /wado-rs/* {\n\t\tdicomweb\n\t}")
	get(t, gw+"/wado-rs/studies/1.2.1", "Authorization", "Bearer t")
	reqs := a.requests()
	if len(reqs) != 1 || reqs[0].Header.Get("Authorization") != "Bearer t" || reqs[0].Header.Get("X-Archive-Key") != "k1" {
		t.Fatalf("headers at the archive: %v", reqs[0].Header)
	}
}

func TestDICOMwebSplitStudyMerges(t *testing.T) {
	s := newRoutingSetup(t, "")
	part := func(w http.ResponseWriter, boundary, body string) {
		fmt.Fprintf(w, "--%s\r\nContent-Type: application/dicom\r\n\r\n%s\r\n", boundary, body)
	}
	archive := func(name string, series string) func(w http.ResponseWriter, r *http.Request) {
		return func(w http.ResponseWriter, r *http.Request) {
			switch {
			case strings.HasSuffix(r.URL.Path, "/metadata"):
				w.Header().Set("Content-Type", "application/dicom+json")
				fmt.Fprintf(w, `[{"0020000E":{"vr":"UI","Value":["%s"]},"00080018":{"vr":"UI","Value":["%s.1"]},"00081190":{"vr":"UR","Value":["http://%s%s"]}}]`, series, series, r.Host, r.URL.Path)
			case strings.HasSuffix(r.URL.Path, "/series"):
				w.Header().Set("Content-Type", "application/dicom+json")
				fmt.Fprintf(w, `[{"0020000E":{"vr":"UI","Value":["%s"]}}]`, series)
			default:
				b := "b-" + name
				w.Header().Set("Content-Type", `multipart/related; type="application/dicom"; boundary=`+b)
				part(w, b, name+"-1")
				part(w, b, name+"-2")
				fmt.Fprintf(w, "--%s--\r\n", b)
			}
		}
	}
	s.b.serve = archive("B", "1.2.2.1")
	s.c.serve = archive("C", "1.2.2.2")

	resp, body := get(t, s.gw+"/wado-rs/studies/1.2.2/metadata")
	var series []string
	gjson.ParseBytes(body).ForEach(func(_, v gjson.Result) bool {
		series = append(series, v.Get("0020000E.Value.0").String())
		if u := v.Get("00081190.Value.0").String(); !strings.HasPrefix(u, s.gw+"/wado-rs/studies/1.2.2/") {
			t.Errorf("RetrieveURL %q not on the gateway", u)
		}
		return true
	})
	if resp.StatusCode != 200 || strings.Join(series, " ") != "1.2.2.1 1.2.2.2" {
		t.Errorf("study metadata: %d, series %v: %s", resp.StatusCode, series, body)
	}

	_, body = get(t, s.gw+"/wado-rs/studies/1.2.2/series")
	if n := gjson.ParseBytes(body).Get("#").Int(); n != 2 {
		t.Errorf("study series list has %d series, want 2: %s", n, body)
	}

	resp, body = get(t, s.gw+"/wado-rs/studies/1.2.2", "Accept", `multipart/related; type="application/dicom"`)
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/related" || params["type"] != "application/dicom" {
		t.Fatalf("Content-Type %q", resp.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(strings.NewReader(string(body)), params["boundary"])
	var parts []string
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reading merged multipart: %v\n%q", err, body)
		}
		b, _ := io.ReadAll(p)
		if p.Header.Get("Content-Type") != "application/dicom" {
			t.Errorf("part header lost: %v", p.Header)
		}
		parts = append(parts, string(b))
	}
	if got := strings.Join(parts, " "); got != "B-1 B-2 C-1 C-2" {
		t.Errorf("merged parts %q, want %q", got, "B-1 B-2 C-1 C-2")
	}

	// Series-level requests still go to one archive each.
	_, body = get(t, s.gw+"/wado-rs/studies/1.2.2/series/1.2.2.2")
	if strings.Contains(string(body), "B-1") || !strings.Contains(string(body), "C-1") {
		t.Errorf("series retrieve not from its own archive: %q", body)
	}

	// An archive failing after another has streamed its part breaks the
	// answer off: the client must never see a complete-looking stream.
	s.c.Close()
	resp2, err := noCompression.Get(s.gw + "/wado-rs/studies/1.2.2")
	if err == nil {
		b, rerr := io.ReadAll(resp2.Body)
		resp2.Body.Close()
		if rerr == nil && strings.HasSuffix(string(b), "--\r\n") {
			t.Errorf("a broken merge was delivered as complete: %q", b)
		}
	}
}

func TestDICOMwebTLSArchive(t *testing.T) {
	f := newRoutingFHIR(t)
	var seen atomic.Int32
	tlsArchive := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Add(1)
		fmt.Fprintf(w, "tls %s %s", r.Host, r.URL.Path)
	}))
	t.Cleanup(tlsArchive.Close)
	certFile := t.TempDir() + "/ca.pem"
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsArchive.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	base := tlsArchive.URL + "/dicom-web"
	f.included = []string{endpointJSON("t", "active", "dicom-wado-rs", base)}
	f.studies["urn:oid:1.2.1"] = `{"resourceType":"ImagingStudy","identifier":[{"system":"urn:dicom:uid","value":"urn:oid:1.2.1"}],"endpoint":[{"reference":"Endpoint/t"}],"series":[{"uid":"1.2.1.1"}]}`
	globals := fmt.Sprintf("\tfhir_imaging {\n\t\tfhir %s/fhir\n\t\tarchive t %s {\n\t\t\ttransport http {\n\t\t\t\ttls_trust_pool file %s\n\t\t\t}\n\t\t}\n\t}", f.URL, base, certFile)
	gw := startGateway(t, globals, "\thandle_path /wado-rs/* {\n\t\tdicomweb\n\t}")
	resp, body := get(t, gw+"/wado-rs/studies/1.2.1/series/1.2.1.1")
	if resp.StatusCode != 200 || string(body) != "tls "+hostPort(strings.Replace(tlsArchive.URL, "https", "http", 1))+" /dicom-web/studies/1.2.1/series/1.2.1.1" {
		t.Fatalf("TLS archive: %d %q", resp.StatusCode, body)
	}
	if seen.Load() != 1 {
		t.Errorf("TLS archive saw %d requests", seen.Load())
	}
}

func TestDICOMwebPublicBaseFromTrustedProxy(t *testing.T) {
	s := newRoutingSetup(t, "")
	_ = caddyStop()
	s.a.serve = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/dicom+json")
		fmt.Fprintf(w, `[{"00081190":{"vr":"UR","Value":["http://%s/dicom-web/studies/1.2.1"]}}]`, r.Host)
	}
	for _, trusted := range []bool{false, true} {
		globals := fmt.Sprintf("\tfhir_imaging {\n\t\tfhir %s/fhir\n\t\tarchive a %s\n\t}", s.fhir.URL, s.a.base())
		if trusted {
			globals += "\n\tservers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t}"
		}
		gw := startGateway(t, globals, "\thandle_path /wado-rs/* {\n\t\tdicomweb\n\t}")
		_, body := get(t, gw+"/wado-rs/studies/1.2.1/metadata", "X-Forwarded-Proto", "https", "X-Forwarded-Host", "images.example.org", "X-Forwarded-Prefix", "/pacs")
		got := gjson.ParseBytes(body).Get("0.00081190.Value.0").String()
		want := gw + "/wado-rs/studies/1.2.1"
		if trusted {
			want = "https://images.example.org/pacs/wado-rs/studies/1.2.1"
		}
		if got != want {
			t.Errorf("trusted=%v: RetrieveURL %q, want %q", trusted, got, want)
		}
		_ = caddyStop()
	}
}

func TestDICOMwebArchiveWithSeveralUpstreams(t *testing.T) {
	f := newRoutingFHIR(t)
	one := newFakeArchive(t, "/dicom-web")
	two := newFakeArchive(t, "/dicom-web")
	// The Endpoint names the archive by its logical URL; "to" lists the
	// replicas that actually serve it.
	f.included = []string{endpointJSON("a", "active", "dicom-wado-rs", "http://pacs.invalid/dicom-web")}
	f.studies["urn:oid:1.2.1"] = `{"resourceType":"ImagingStudy","identifier":[{"system":"urn:dicom:uid","value":"urn:oid:1.2.1"}],"endpoint":[{"reference":"Endpoint/a"}],"series":[{"uid":"1.2.1.1"}]}`
	globals := fmt.Sprintf("\tfhir_imaging {\n\t\tfhir %s/fhir\n\t\tarchive a http://pacs.invalid/dicom-web {\n\t\t\tto %s %s\n\t\t\tlb_policy round_robin\n\t\t}\n\t}", f.URL, hostPort(one.URL), hostPort(two.URL))
	gw := startGateway(t, globals, "\thandle_path /wado-rs/* {\n\t\tdicomweb\n\t}")
	for i := 0; i < 4; i++ {
		if resp, body := get(t, gw+"/wado-rs/studies/1.2.1/series/1.2.1.1"); resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
	}
	if n1, n2 := len(one.requests()), len(two.requests()); n1 != 2 || n2 != 2 {
		t.Errorf("round robin over two upstreams gave %d and %d requests, want 2 and 2", n1, n2)
	}
	for _, r := range append(one.requests(), two.requests()...) {
		if r.URL.Path != "/dicom-web/studies/1.2.1/series/1.2.1.1" {
			t.Errorf("upstream path %q", r.URL.Path)
		}
	}
}
