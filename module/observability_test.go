package module_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"
	"go.opentelemetry.io/contrib/exporters/autoexport"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// spans is the in-memory exporter that Caddy's own tracing module is given
// through autoexport (OTEL_TRACES_EXPORTER=fhirimaging-test).
var (
	spans     = tracetest.NewInMemoryExporter()
	spansOnce sync.Once
)

// keepSpans hands spans to the in-memory exporter but ignores Shutdown,
// which would clear them when Caddy stops.
type keepSpans struct{ *tracetest.InMemoryExporter }

func (keepSpans) Shutdown(context.Context) error { return nil }

func useTestExporter(t *testing.T) {
	spansOnce.Do(func() {
		autoexport.RegisterSpanExporter("fhirimaging-test", func(context.Context) (sdktrace.SpanExporter, error) {
			return keepSpans{spans}, nil
		})
	})
	t.Setenv("OTEL_TRACES_EXPORTER", "fhirimaging-test")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "10")
	spans.Reset()
}

func TestTracingSpans(t *testing.T) {
	useTestExporter(t)
	f := newRoutingFHIR(t)
	a := newFakeArchive(t, "/dicom-web")
	var fhirTraceparent, archiveTraceparent string
	var mu sync.Mutex
	inner := f.Server.Config.Handler
	f.Server.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		fhirTraceparent = r.Header.Get("Traceparent")
		mu.Unlock()
		inner.ServeHTTP(w, r)
	})
	a.serve = func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		archiveTraceparent = r.Header.Get("Traceparent")
		mu.Unlock()
		io.WriteString(w, "ok")
	}
	f.included = []string{endpointJSON("a", "active", "dicom-wado-rs", a.base())}
	f.studies["urn:oid:1.2.1"] = `{"resourceType":"ImagingStudy","identifier":[{"system":"urn:dicom:uid","value":"urn:oid:1.2.1"}],"endpoint":[{"reference":"Endpoint/a"}],"series":[{"uid":"1.2.1.1"}]}`
	gw := startGateway(t, fmt.Sprintf("\tfhir_imaging {\n\t\tfhir %s/fhir\n\t\tarchive a %s\n\t}", f.URL, a.base()),
		"\ttracing {\n\t\tspan gateway\n\t}\n\thandle_path /wado-rs/* {\n\t\tdicomweb\n\t}")
	resp, _ := get(t, gw+"/wado-rs/studies/1.2.1/series/1.2.1.1")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	get(t, gw+"/wado-rs/studies/1.2.1/series/1.2.1.1") // a cache hit
	if err := caddyStop(); err != nil {                // flushes the batch span processor
		t.Fatal(err)
	}
	got := spans.GetSpans()
	byName := map[string][]tracetest.SpanStub{}
	for _, s := range got {
		byName[s.Name] = append(byName[s.Name], s)
	}
	for _, name := range []string{"gateway", "fhir_imaging.route", "fhir_imaging.study_lookup", "fhir_imaging.archive"} {
		if len(byName[name]) != 2 {
			t.Errorf("%d %q spans, want 2 (one per request); all: %v", len(byName[name]), name, names(got))
		}
	}
	if len(byName["gateway"]) == 0 || len(byName["fhir_imaging.archive"]) == 0 {
		t.FailNow()
	}
	root := byName["gateway"][0]
	for _, name := range []string{"fhir_imaging.route", "fhir_imaging.archive"} {
		s := byName[name][0]
		if s.SpanContext.TraceID() != root.SpanContext.TraceID() {
			t.Errorf("%s is not in Caddy's trace", name)
		}
	}
	// The route and archive spans are children of their request's own
	// span, not of each other.
	for _, name := range []string{"fhir_imaging.route", "fhir_imaging.archive"} {
		for _, sp := range byName[name] {
			var parent tracetest.SpanStub
			for _, g := range byName["gateway"] {
				if g.SpanContext.TraceID() == sp.SpanContext.TraceID() {
					parent = g
				}
			}
			if sp.Parent.SpanID() != parent.SpanContext.SpanID() {
				t.Errorf("%s span's parent is %s, not the request span %s", name, sp.Parent.SpanID(), parent.SpanContext.SpanID())
			}
		}
	}
	lookup := byName["fhir_imaging.study_lookup"]
	caches := map[string]bool{}
	for _, s := range lookup {
		for _, kv := range s.Attributes {
			if kv.Key == "fhir_imaging.cache" {
				caches[kv.Value.AsString()] = true
			}
		}
	}
	if !caches["hit"] || !caches["miss"] {
		t.Errorf("study look-up spans do not show one miss and one hit: %v", caches)
	}
	archiveSpan := byName["fhir_imaging.archive"][0]
	attrs := map[string]string{}
	for _, kv := range archiveSpan.Attributes {
		attrs[string(kv.Key)] = kv.Value.String()
	}
	if attrs["fhir_imaging.archive"] != "a" || attrs["http.response.status_code"] != "200" {
		t.Errorf("archive span attributes %v", attrs)
	}
	for _, s := range got {
		if !strings.HasPrefix(s.Name, "fhir_imaging.") {
			continue // Caddy's own server span records the URL path
		}
		for _, kv := range s.Attributes {
			if strings.Contains(kv.Value.String(), "1.2.1") {
				t.Errorf("span %s carries a UID in %s=%s without trace_uids", s.Name, kv.Key, kv.Value.String())
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	last := byName["fhir_imaging.archive"][len(byName["fhir_imaging.archive"])-1]
	found := false
	for _, a := range byName["fhir_imaging.archive"] {
		found = found || strings.Contains(archiveTraceparent, a.SpanContext.SpanID().String())
	}
	if !found {
		t.Errorf("the archive got traceparent %q, not from an archive span (last %s)", archiveTraceparent, last.SpanContext.SpanID())
	}
	if !strings.Contains(fhirTraceparent, root.SpanContext.TraceID().String()) {
		t.Errorf("the FHIR server got traceparent %q, not in trace %s", fhirTraceparent, root.SpanContext.TraceID())
	}
}

func names(ss tracetest.SpanStubs) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.Name)
	}
	return out
}

// scrape returns the value of one metric line, e.g.
// caddy_fhir_imaging_routed_requests_total{archive="a",code="200",handler="dicomweb"}.
func scrape(t *testing.T, url string) string {
	t.Helper()
	_, body := get(t, url)
	return string(body)
}

func TestMetricsSurviveReload(t *testing.T) {
	for round := 0; round < 2; round++ { // the second round is a config reload
		s := newRoutingSetup(t, "")
		get(t, s.gw+"/wado-rs/studies/1.2.1/metadata")
		get(t, s.gw+"/wado-rs/studies/1.2.1/metadata")
		get(t, s.gw+"/wado-rs/studies/9.9.9")
		// The metrics handler shares the registry of this config load.
		// It is added by a second, identical load with a /metrics route.
		_ = caddyStop()
		m := metricsGateway(t, s)
		get(t, m+"/wado-rs/studies/1.2.1/metadata")
		get(t, m+"/wado-rs/studies/1.2.1/metadata")
		text := scrape(t, m+"/metrics")
		for _, want := range []string{
			`caddy_fhir_imaging_routed_requests_total{archive="a",code="200",handler="dicomweb"} 2`,
			`caddy_fhir_imaging_cache_lookups_total{cache="study",result="hit"} 1`,
			`caddy_fhir_imaging_cache_lookups_total{cache="study",result="miss"} 1`,
			`caddy_fhir_imaging_fhir_lookups_total{kind="study",result="found"} 1`,
			`caddy_fhir_imaging_cache_entries{cache="study"} 1`,
			`caddy_fhir_imaging_cache_hit_ratio{cache="study"} 0.5`,
			`caddy_fhir_imaging_fhir_lookup_duration_seconds_count{kind="study"} 1`,
		} {
			if !strings.Contains(text, want) {
				t.Errorf("round %d: metrics lack %s", round, want)
			}
		}
		_ = caddyStop()
	}
}

func metricsGateway(t *testing.T, s *routingSetup) string {
	globals := fmt.Sprintf(`	fhir_imaging {
		fhir %s/fhir
		archive a %s {
			wado_uri %s/wado
		}
		archive b %s
		archive c %s
	}`, s.fhir.URL, s.a.base(), s.a.URL, s.b.base(), s.c.base())
	return startGateway(t, globals, "\thandle /metrics {\n\t\tmetrics\n\t}\n\thandle_path /wado-rs/* {\n\t\tdicomweb\n\t}")
}

func TestAdminAPI(t *testing.T) {
	s := newRoutingSetup(t, "")
	_ = caddyStop()
	admin := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	globals := fmt.Sprintf(`	admin %s
	fhir_imaging {
		fhir %s/fhir
		archive a %s
		archive b %s
		archive c %s
	}`, admin, s.fhir.URL, s.a.base(), s.b.base(), s.c.base())
	port := freePort(t)
	cf := fmt.Sprintf("{\n%s\n\tpersist_config off\n\tauto_https off\n}\nhttp://127.0.0.1:%d {\n\thandle_path /wado-rs/* {\n\t\tdicomweb\n\t}\n\thandle_path /fhir_imaging/notify* {\n\t\tfhir_notify\n\t}\n}\n", globals, port)
	loadCaddyfile(t, cf)
	gw := fmt.Sprintf("http://127.0.0.1:%d", port)
	adminURL := "http://" + admin
	waitFor(t, adminURL+"/config/")

	get(t, gw+"/wado-rs/studies/1.2.2/series/1.2.2.1")
	searches := s.fhir.searches.Load()

	_, body := get(t, adminURL+"/fhir_imaging/cache")
	var cache struct {
		Endpoints []map[string]any `json:"endpoints"`
		Studies   []struct {
			UID      string `json:"uid"`
			Location struct {
				Series map[string]map[string]string `json:"series"`
			} `json:"location"`
		} `json:"studies"`
	}
	if err := json.Unmarshal(body, &cache); err != nil {
		t.Fatalf("cache listing: %v: %s", err, body)
	}
	if len(cache.Studies) != 1 || cache.Studies[0].UID != "1.2.2" || cache.Studies[0].Location.Series["1.2.2.2"]["wado_rs"] != "c" {
		t.Errorf("cache listing %s", body)
	}

	_, body = get(t, adminURL+"/fhir_imaging/explain/1.2.2?series=1.2.2.1")
	var ex map[string]any
	json.Unmarshal(body, &ex)
	if ex["wado_rs_archive"] != "b" || ex["why"] == "" {
		t.Errorf("explain: %s", body)
	}
	if s.fhir.searches.Load() != searches+1 {
		t.Errorf("explain did not ask the FHIR server afresh")
	}
	_, body = get(t, adminURL+"/fhir_imaging/explain/9.9")
	if json.Unmarshal(body, &ex); ex["wado_rs_archive"] != "" {
		t.Errorf("explain of an unknown study: %s", body)
	}
	// explain does not fill the cache.
	_, body = get(t, adminURL+"/fhir_imaging/cache")
	if strings.Contains(string(body), `"9.9"`) {
		t.Errorf("explain cached its answer: %s", body)
	}

	searches = s.fhir.searches.Load()
	resp, _ := do(t, "DELETE", adminURL+"/fhir_imaging/cache/studies/1.2.2", nil)
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("purge one: %d", resp.StatusCode)
	}
	get(t, gw+"/wado-rs/studies/1.2.2/series/1.2.2.1")
	if s.fhir.searches.Load() != searches+1 {
		t.Errorf("a purged study was not looked up again")
	}
	resp, _ = do(t, "DELETE", adminURL+"/fhir_imaging/cache", nil)
	_, body = get(t, adminURL+"/fhir_imaging/cache")
	if resp.StatusCode != http.StatusNoContent || !strings.Contains(string(body), `"studies": []`) {
		t.Errorf("purge all: %d %s", resp.StatusCode, body)
	}

	// A rest-hook notification for a changed ImagingStudy, to the site's
	// fhir_notify route (not the admin API), drops its route.
	get(t, gw+"/wado-rs/studies/1.2.2/series/1.2.2.1")
	before := s.fhir.searches.Load()
	resp, _ = do(t, "PUT", gw+"/fhir_imaging/notify/ImagingStudy/s2", strings.NewReader(s.fhir.studies["1.2.2"]), "Content-Type", "application/fhir+json")
	if resp.StatusCode != 200 {
		t.Errorf("notify: %d", resp.StatusCode)
	}
	get(t, gw+"/wado-rs/studies/1.2.2/series/1.2.2.1")
	if s.fhir.searches.Load() != before+1 {
		t.Errorf("a notified study change did not drop the cached route")
	}
	// A notification without a payload drops every route.
	resp, _ = do(t, "POST", gw+"/fhir_imaging/notify", nil)
	get(t, gw+"/wado-rs/studies/1.2.2/series/1.2.2.1")
	if resp.StatusCode != 200 || s.fhir.searches.Load() != before+2 {
		t.Errorf("an empty notification: %d, searches %d", resp.StatusCode, s.fhir.searches.Load()-before)
	}
	if resp, _ := get(t, gw+"/fhir_imaging/notify"); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET on the notify route: %d", resp.StatusCode)
	}
	if resp, _ := do(t, "PUT", adminURL+"/fhir_imaging/notify/ImagingStudy/s2", strings.NewReader("{}")); resp.StatusCode != http.StatusNotFound {
		t.Errorf("the admin API still takes notifications: %d", resp.StatusCode)
	}
	_ = caddyStop()
}

func TestSubscriptionsRegisteredAndRemoved(t *testing.T) {
	var mu sync.Mutex
	var created []string
	var deleted []string
	fhir := newFakeFHIR(t)
	fhir.Server.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.Method == "POST" && r.URL.Path == "/fhir/Subscription":
			var sub map[string]any
			json.NewDecoder(r.Body).Decode(&sub)
			ch, _ := sub["channel"].(map[string]any)
			created = append(created, fmt.Sprint(sub["criteria"], " ", ch["type"], " ", ch["endpoint"]))
			w.Header().Set("Content-Type", "application/fhir+json")
			w.WriteHeader(201)
			fmt.Fprintf(w, `{"resourceType":"Subscription","id":"sub%d"}`, len(created))
		case r.Method == "DELETE":
			deleted = append(deleted, r.URL.Path)
		}
	})
	startGateway(t, fmt.Sprintf("\tfhir_imaging {\n\t\tfhir %s/fhir\n\t\tsubscribe http://127.0.0.1:2019/fhir_imaging/notify\n\t}", fhir.URL), "\trespond ok")
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(created)
		mu.Unlock()
		if n == 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = caddyStop()
	mu.Lock()
	defer mu.Unlock()
	want := []string{"ImagingStudy? rest-hook http://127.0.0.1:2019/fhir_imaging/notify", "Endpoint? rest-hook http://127.0.0.1:2019/fhir_imaging/notify"}
	if fmt.Sprint(created) != fmt.Sprint(want) {
		t.Errorf("created %q, want %q", created, want)
	}
	if fmt.Sprint(deleted) != "[/fhir/Subscription/sub1 /fhir/Subscription/sub2]" {
		t.Errorf("deleted %q on stop", deleted)
	}
}

func waitFor(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s did not come up", url)
}

func TestUpdateThroughGatewayChangesRoutingAtOnce(t *testing.T) {
	s := newRoutingSetup(t, "")
	_ = caddyStop()
	// The FHIR server also takes PUTs of ImagingStudy s1, which replace
	// what its searches answer.
	inner := s.fhir.Server.Config.Handler
	s.fhir.Server.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && r.URL.Path == "/fhir/ImagingStudy/s1" {
			b, _ := io.ReadAll(r.Body)
			s.fhir.mu.Lock()
			s.fhir.studies["urn:oid:1.2.1"] = string(b)
			s.fhir.mu.Unlock()
			w.Header().Set("Content-Type", "application/fhir+json")
			w.Write(b)
			return
		}
		inner.ServeHTTP(w, r)
	})
	globals := fmt.Sprintf(`	fhir_imaging {
		fhir %s/fhir
		archive a %s
		archive b %s
		cache_ttl 1h
	}`, s.fhir.URL, s.a.base(), s.b.base())
	site := fmt.Sprintf("\thandle /fhir/* {\n\t\tfhir_rewrite\n\t\treverse_proxy %s\n\t}\n\thandle_path /wado-rs/* {\n\t\tdicomweb\n\t}", hostPort(s.fhir.URL))
	gw := startGateway(t, globals, site)

	get(t, gw+"/wado-rs/studies/1.2.1/series/1.2.1.1")
	if n := len(s.a.requests()); n != 1 {
		t.Fatalf("first request reached archive a %d times", n)
	}
	// Move the study to archive b through the gateway.
	moved := `{"resourceType":"ImagingStudy","id":"s1","identifier":[{"system":"urn:dicom:uid","value":"urn:oid:1.2.1"}],"endpoint":[{"reference":"Endpoint/b"}],"series":[{"uid":"1.2.1.1"}]}`
	resp, body := do(t, "PUT", gw+"/fhir/ImagingStudy/s1", strings.NewReader(moved), "Content-Type", "application/fhir+json")
	if resp.StatusCode != 200 {
		t.Fatalf("PUT through the gateway: %d %s", resp.StatusCode, body)
	}
	get(t, gw+"/wado-rs/studies/1.2.1/series/1.2.1.1")
	if n := len(s.b.requests()); n != 1 {
		t.Errorf("after the update, the next request reached archive b %d times (a: %d): the cached route was not dropped", n, len(s.a.requests()))
	}
}

func TestRewriteMetricsAndSpans(t *testing.T) {
	useTestExporter(t)
	f, gw := rewriteGateway(t, "", "\ttracing\n\thandle /metrics {\n\t\tmetrics\n\t}")
	f.set("/fhir/Patient/p", fakeBody{ctype: "application/fhir+json", body: `{"resourceType":"Patient","id":"p"}`})
	f.set("/fhir/Binary/b", fakeBody{ctype: "application/octet-stream", body: "xx"})
	get(t, gw+"/fhir/ImagingStudy/s1")
	get(t, gw+"/fhir/Patient/p")
	get(t, gw+"/fhir/Binary/b")
	do(t, "HEAD", gw+"/fhir/ImagingStudy/s1", nil)
	text := scrape(t, gw+"/metrics")
	for _, want := range []string{
		`caddy_fhir_imaging_rewrites_total{outcome="rewritten"} 1`,
		`caddy_fhir_imaging_rewrites_total{outcome="unchanged"} 1`,
		`caddy_fhir_imaging_rewrites_total{outcome="passthrough_not_json"} 1`,
		`caddy_fhir_imaging_rewrites_total{outcome="passthrough_method"} 1`,
		`caddy_fhir_imaging_injected_urls_total{kind="series"} 2`,
		`caddy_fhir_imaging_injected_urls_total{kind="instance"} 4`,
		`caddy_fhir_imaging_fhir_lookups_total{kind="endpoint",result="found"} 1`,
		`caddy_fhir_imaging_cache_entries{cache="endpoint"} 3`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if err := caddyStop(); err != nil {
		t.Fatal(err)
	}
	var rewrite, lookup *tracetest.SpanStub
	for _, s := range spans.GetSpans() {
		s := s
		switch s.Name {
		case "fhir_imaging.rewrite":
			for _, kv := range s.Attributes {
				if kv.Key == "fhir_imaging.outcome" && kv.Value.AsString() == "rewritten" {
					rewrite = &s
				}
			}
		case "fhir_imaging.endpoint_lookup":
			lookup = &s
		}
	}
	if rewrite == nil || lookup == nil {
		t.Fatalf("no rewrite span with outcome rewritten, or no Endpoint look-up span: %v", names(spans.GetSpans()))
	}
	attrs := map[string]int64{}
	for _, kv := range rewrite.Attributes {
		if kv.Value.Type().String() == "INT64" {
			attrs[string(kv.Key)] = kv.Value.AsInt64()
		}
	}
	if attrs["fhir_imaging.studies"] != 1 || attrs["fhir_imaging.series_urls"] != 2 || attrs["fhir_imaging.instance_urls"] != 4 {
		t.Errorf("rewrite span attributes %v", attrs)
	}
	if lookup.Parent.SpanID() != rewrite.SpanContext.SpanID() {
		t.Errorf("the Endpoint look-up is not a child of the rewrite span")
	}
}

// TestFailuresLogged: a failed FHIR look-up and an unreachable archive are
// answered in the gateway's words, each leaves one error-level log line
// without UIDs, and each is counted.
func TestFailuresLogged(t *testing.T) {
	f := newRoutingFHIR(t)
	dead := newFakeArchive(t, "/dicom-web")
	deadBase := dead.base()
	dead.Close() // nothing listens there any more
	f.included = []string{endpointJSON("a", "active", "dicom-wado-rs", deadBase)}
	f.studies["urn:oid:1.2.1"] = `{"resourceType":"ImagingStudy","identifier":[{"system":"urn:dicom:uid","value":"urn:oid:1.2.1"}],"endpoint":[{"reference":"Endpoint/a"}],"series":[{"uid":"1.2.1.1"}]}`
	logFile := t.TempDir() + "/gateway.log"
	globals := fmt.Sprintf("\tlog {\n\t\toutput file %s\n\t\tformat json\n\t\tlevel DEBUG\n\t}\n\tfhir_imaging {\n\t\tfhir %s/fhir\n\t\tarchive a %s\n\t}", logFile, f.URL, deadBase)
	gw := startGateway(t, globals, "\thandle /metrics {\n\t\tmetrics\n\t}\n\thandle_path /wado-rs/* {\n\t\tdicomweb\n\t}")

	resp, body := get(t, gw+"/wado-rs/studies/1.2.1/series/1.2.1.1")
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(jsonMessage(t, body), "archive a could not be reached") ||
		strings.Contains(string(body), "127.0.0.1") || strings.Contains(string(body), "reverseproxy") {
		t.Errorf("unreachable archive: %d %s", resp.StatusCode, body)
	}
	f.fail = true
	resp, body = get(t, gw+"/wado-rs/studies/7.7.7")
	if resp.StatusCode != http.StatusBadGateway || strings.Contains(string(body), "127.0.0.1") {
		t.Errorf("FHIR server failing: %d %s", resp.StatusCode, body)
	}
	text := scrape(t, gw+"/metrics")
	for _, want := range []string{
		`caddy_fhir_imaging_routed_requests_total{archive="a",code="0",handler="dicomweb"} 1`,
		`caddy_fhir_imaging_fhir_lookups_total{kind="study",result="error"} 1`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	_ = caddyStop()
	raw, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatal(err)
	}
	var errorsLogged []string
	for _, line := range strings.Split(string(raw), "\n") {
		if gjson.Get(line, "level").String() == "error" && strings.HasPrefix(gjson.Get(line, "logger").String(), "http.handlers.dicomweb") ||
			gjson.Get(line, "level").String() == "error" && strings.HasPrefix(gjson.Get(line, "logger").String(), "fhir_imaging") {
			errorsLogged = append(errorsLogged, line)
		}
	}
	if len(errorsLogged) != 2 {
		t.Fatalf("%d error lines from the gateway, want 2 (archive, FHIR look-up):\n%s", len(errorsLogged), strings.Join(errorsLogged, "\n"))
	}
	if !strings.Contains(errorsLogged[0], "archive could not be reached") || !strings.Contains(errorsLogged[1], "FHIR server") {
		t.Errorf("error lines:\n%s", strings.Join(errorsLogged, "\n"))
	}
	for _, l := range errorsLogged {
		if strings.Contains(l, "1.2.1") || strings.Contains(l, "7.7.7") {
			t.Errorf("an error line carries a UID: %s", l)
		}
	}
}
