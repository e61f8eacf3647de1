package module_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

// replicaSetup is a study held by two archives, p and q, which FHIR lists
// in that order (replicas): 1.9.1 has study-level WADO-RS and WADO-URI
// Endpoints of both; its series 1.9.1.1 has none of its own, series 1.9.1.2
// lists both archives itself. p may be a dead address.
type replicaSetup struct {
	fhir *routingFHIR
	p, q *fakeArchive
	pURL string // p's DICOMweb base (a dead address when p is nil)
	gw   string
}

// newReplicaSetup starts the gateway; with dead, p is an address where
// nothing listens.
func newReplicaSetup(t *testing.T, dead bool, siteExtra string) *replicaSetup {
	return newReplicaSetupWith(t, dead, "", siteExtra)
}

// newReplicaSetupWith is newReplicaSetup with more subdirectives in p's
// archive block.
func newReplicaSetupWith(t *testing.T, dead bool, pExtra, siteExtra string) *replicaSetup {
	s := &replicaSetup{fhir: newRoutingFHIR(t), q: newFakeArchive(t, "/q/dicom-web")}
	pOrigin := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	if !dead {
		s.p = newFakeArchive(t, "/dicom-web")
		pOrigin = s.p.URL
	}
	s.pURL = pOrigin + "/dicom-web"
	s.q.serve = func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/metadata") {
			w.Header().Set("Content-Type", "application/dicom+json")
			fmt.Fprintf(w, `[{"00081190":{"vr":"UR","Value":[%q]}}]`, s.q.base()+strings.TrimPrefix(r.URL.Path, "/q/dicom-web"))
			return
		}
		w.Header().Set("Content-Type", "application/dicom")
		w.Header().Set("X-Archive", "q")
		fmt.Fprintf(w, "q %s?%s", r.URL.Path, r.URL.RawQuery)
	}
	s.fhir.included = []string{
		endpointJSON("p", "active", "dicom-wado-rs", s.pURL),
		endpointJSON("q", "active", "dicom-wado-rs", s.q.base()),
		endpointJSON("p-uri", "active", "dicom-wado-uri", pOrigin+"/wado"),
		endpointJSON("q-uri", "active", "dicom-wado-uri", s.q.URL+"/q/wado"),
	}
	s.fhir.studies["urn:oid:1.9.1"] = `{"resourceType":"ImagingStudy","identifier":[{"system":"urn:dicom:uid","value":"urn:oid:1.9.1"}],` +
		`"endpoint":[{"reference":"Endpoint/p"},{"reference":"Endpoint/q"},{"reference":"Endpoint/p-uri"},{"reference":"Endpoint/q-uri"}],` +
		`"series":[{"uid":"1.9.1.1"},{"uid":"1.9.1.2","endpoint":[{"reference":"Endpoint/p"},{"reference":"Endpoint/q"}]}]}`
	globals := fmt.Sprintf(`	fhir_imaging {
		fhir %s/fhir
		archive p %s {
			wado_uri %s/wado
			%s
		}
		archive q %s {
			wado_uri %s/q/wado
		}
	}`, s.fhir.URL, s.pURL, pOrigin, pExtra, s.q.base(), s.q.URL)
	site := "\thandle /metrics {\n\t\tmetrics\n\t}\n\thandle_path /wado-rs/* {\n\t\tdicomweb\n\t}\n\thandle /wado {\n\t\twado_uri\n\t}" + siteExtra
	s.gw = startGateway(t, globals, site)
	return s
}

const replicaWADOURI = "/wado?requestType=WADO&studyUID=1.9.1&seriesUID=1.9.1.1&objectUID=1.9.1.1.1&contentType=application/dicom"

func TestReplicaServesWhenTheFirstRefusesConnections(t *testing.T) {
	s := newReplicaSetup(t, true, "")
	for _, path := range []string{
		"/wado-rs/studies/1.9.1",
		"/wado-rs/studies/1.9.1/series/1.9.1.1",
		"/wado-rs/studies/1.9.1/series/1.9.1.2/instances/1.9.1.2.1/frames/1",
		replicaWADOURI,
	} {
		resp, body := get(t, s.gw+path)
		if resp.StatusCode != 200 || !strings.HasPrefix(string(body), "q /q/") || resp.Header.Get("X-Archive") != "q" {
			t.Errorf("%s: %d %q, want the replica's answer", path, resp.StatusCode, body)
		}
	}
	// A study held twice is one archive's answer, not a merge of both.
	if body := string(mustGet(t, s.gw+"/wado-rs/studies/1.9.1")); strings.Count(body, "q /q/dicom-web/studies/1.9.1") != 1 {
		t.Errorf("study retrieve %q: the replica's answer once", body)
	}
	// Metadata goes through the JSON rewrite: the replica's URLs become
	// the gateway's.
	resp, body := get(t, s.gw+"/wado-rs/studies/1.9.1/series/1.9.1.1/metadata")
	if resp.StatusCode != 200 || strings.Contains(string(body), s.q.URL) || !strings.Contains(string(body), s.gw+"/wado-rs/studies/1.9.1/series/1.9.1.1") {
		t.Errorf("metadata from the replica: %d %s", resp.StatusCode, body)
	}
	metrics := string(mustGet(t, s.gw+"/metrics"))
	for _, want := range []string{
		`caddy_fhir_imaging_archive_failovers_total{from="p",handler="dicomweb",to="q"} 5`,
		`caddy_fhir_imaging_archive_failovers_total{from="p",handler="wado_uri",to="q"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestReplicaServesWhenTheFirstAnswers5xx(t *testing.T) {
	s := newReplicaSetup(t, false, "")
	s.p.serve = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("X-Archive", "p")
		w.Header().Set("Retry-After", "120")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, "p is down: /var/lib/orthanc/internal")
	}
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		for _, path := range []string{"/wado-rs/studies/1.9.1/series/1.9.1.2/instances/1.9.1.2.1", replicaWADOURI} {
			resp, body := do(t, method, s.gw+path, nil)
			if resp.StatusCode != 200 || resp.Header.Get("X-Archive") != "q" || resp.Header.Get("Retry-After") != "" {
				t.Errorf("%s %s: %d %v, want the replica's answer and none of the first's headers", method, path, resp.StatusCode, resp.Header)
			}
			if strings.Contains(string(body), "p is down") || strings.Contains(string(body), "503") {
				t.Errorf("%s %s: the first archive's failure shows: %q", method, path, body)
			}
			if method == http.MethodGet && !strings.HasPrefix(string(body), "q /q/") {
				t.Errorf("%s %s: body %q", method, path, body)
			}
		}
	}
	if n := len(s.p.requests()); n != 4 {
		t.Errorf("the first archive got %d requests, want 4 (it is always asked first)", n)
	}
}

func TestReplicaNotAskedFor4xxOrWhenAllFail(t *testing.T) {
	s := newReplicaSetup(t, false, "")
	status := http.StatusNotFound
	s.p.serve = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(status)
		fmt.Fprint(w, "nope")
	}
	// 404 is an answer (the archive does not hold it), not a failure.
	resp, body := get(t, s.gw+"/wado-rs/studies/1.9.1/series/1.9.1.1")
	if resp.StatusCode != 404 || len(s.q.requests()) != 0 {
		t.Errorf("a 404 of the first archive: %d %s, replica asked %d times; want 404 and no failover", resp.StatusCode, body, len(s.q.requests()))
	}
	// Every replica failing: the last one's failure is the answer, in the
	// gateway's words.
	status = http.StatusInternalServerError
	s.q.serve = func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "q broke at /internal/q", http.StatusBadGateway)
	}
	resp, body = get(t, s.gw+"/wado-rs/studies/1.9.1/series/1.9.1.1")
	if resp.StatusCode != http.StatusBadGateway || strings.Contains(string(body), "internal") || !strings.Contains(string(body), "archive q answered 502") {
		t.Errorf("every replica failing: %d %s", resp.StatusCode, body)
	}
	if len(s.p.requests()) != 2 || len(s.q.requests()) != 1 {
		t.Errorf("requests p=%d q=%d, want 2 and 1", len(s.p.requests()), len(s.q.requests()))
	}
}

func TestReplicaNotAskedAfterTheFirstByte(t *testing.T) {
	s := newReplicaSetup(t, false, "")
	s.p.serve = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/dicom")
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(http.StatusOK)
		fmt.Fprint(w, "the first bytes")
		w.(http.Flusher).Flush()
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}
	resp, err := noCompression.Get(s.gw + "/wado-rs/studies/1.9.1/series/1.9.1.1")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil || resp.StatusCode != 200 || strings.Contains(string(body), "q /q/") {
		t.Errorf("a failure after the first byte: %d %q err=%v; want the answer broken off", resp.StatusCode, body, err)
	}
	if n := len(s.q.requests()); n != 0 {
		t.Errorf("replica asked %d times after the answer had started", n)
	}
}

func TestReplicaPOSTIsNotRetried(t *testing.T) {
	s := newReplicaSetup(t, true, "")
	resp, body := do(t, http.MethodPost, s.gw+"/wado-rs/studies/1.9.1/series/1.9.1.1", strings.NewReader("x"))
	if resp.StatusCode != http.StatusMethodNotAllowed || len(s.q.requests()) != 0 {
		t.Errorf("POST: %d %s; q asked %d times", resp.StatusCode, body, len(s.q.requests()))
	}
}

func TestExplainShowsReplicaOrder(t *testing.T) {
	s := newReplicaSetup(t, true, "")
	_ = caddyStop()
	admin := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	port := freePort(t)
	cf := fmt.Sprintf("{\n\tadmin %s\n\tpersist_config off\n\tauto_https off\n\tfhir_imaging {\n\t\tfhir %s/fhir\n\t\tarchive p %s\n\t\tarchive q %s {\n\t\t\twado_uri %s/q/wado\n\t\t}\n\t}\n}\nhttp://127.0.0.1:%d {\n\thandle_path /wado-rs/* {\n\t\tdicomweb\n\t}\n}\n",
		admin, s.fhir.URL, s.pURL, s.q.base(), s.q.URL, port)
	loadCaddyfile(t, cf)
	adminURL := "http://" + admin
	waitFor(t, adminURL+"/config/")
	for _, series := range []string{"", "1.9.1.1", "1.9.1.2"} {
		_, body := get(t, adminURL+"/fhir_imaging/explain/1.9.1?series="+series)
		var ex struct {
			RS     string   `json:"wado_rs_archive"`
			Order  []string `json:"wado_rs_order"`
			URI    []string `json:"wado_uri_order"`
			Merged []string `json:"merged_archives"`
			Why    string   `json:"why"`
		}
		if err := json.Unmarshal(body, &ex); err != nil {
			t.Fatal(err)
		}
		// p has no wado_uri base here: WADO-URI goes to q alone.
		if ex.RS != "p" || fmt.Sprint(ex.Order) != "[p q]" || fmt.Sprint(ex.URI) != "[q]" || ex.Merged != nil || !strings.Contains(ex.Why, "replicas are tried in this order") {
			t.Errorf("explain series %q: %s", series, body)
		}
	}
}

func mustGet(t *testing.T, url string) []byte {
	t.Helper()
	resp, body := get(t, url)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	return body
}

// TestRewriteInjectsURLsForAReplicaListedSecond: in proxy mode a series gets
// its URLs when any of its effective Endpoints is a configured archive, as
// routing then serves it, not only when the first one is.
func TestRewriteInjectsURLsForAReplicaListedSecond(t *testing.T) {
	f, gw := rewriteGateway(t, "", "")
	f.endpoints["elsewhere"] = endpointJSON("elsewhere", "active", "dicom-wado-rs", "http://pacs.invalid/dicom-web")
	f.set("/fhir/ImagingStudy/r", fakeBody{ctype: "application/fhir+json", body: `{"resourceType":"ImagingStudy","id":"r","identifier":[{"system":"urn:dicom:uid","value":"urn:oid:1.2.4"}],` +
		`"endpoint":[{"reference":"Endpoint/elsewhere"},{"reference":"Endpoint/b-rs"}],"series":[{"uid":"1.2.4.1","instance":[{"uid":"1.2.4.1.1"}]}]}`})
	_, body := get(t, gw+"/fhir/ImagingStudy/r")
	if got, want := gjson.GetBytes(body, `series.0.extension.#(url=="`+extRS+`").valueUrl`).String(), gw+"/wado-rs/studies/1.2.4/series/1.2.4.1"; got != want {
		t.Errorf("series URL %q, want %q: %s", got, want, body)
	}
}

// TestReplicaWithPassiveHealthChecks: with fail_duration in the first
// archive's block, reverse_proxy marks it down after a failure and refuses
// at once ("no upstreams available", nothing sent): that too goes to the
// replica.
func TestReplicaWithPassiveHealthChecks(t *testing.T) {
	s := newReplicaSetupWith(t, true, "fail_duration 30s", "")
	for i := 0; i < 3; i++ {
		resp, body := get(t, s.gw+"/wado-rs/studies/1.9.1/series/1.9.1.1")
		if resp.StatusCode != 200 || !strings.HasPrefix(string(body), "q /q/") {
			t.Fatalf("request %d: %d %q, want the replica's answer", i, resp.StatusCode, body)
		}
	}
	metrics := string(mustGet(t, s.gw+"/metrics"))
	if want := `caddy_fhir_imaging_archive_failovers_total{from="p",handler="dicomweb",to="q"} 3`; !strings.Contains(metrics, want) {
		t.Errorf("metrics lack %s", want)
	}
}
