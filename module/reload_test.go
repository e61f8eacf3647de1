package module_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestReloadKeepsState: a config reload that changes something else keeps
// the routing caches (no new FHIR search for a known study) and the FHIR
// Subscriptions (none deleted, none made again); a reload that changes
// what the caches depend on starts afresh; the last config's stop deletes
// the Subscriptions.
func TestReloadKeepsState(t *testing.T) {
	f := newRoutingFHIR(t)
	a := newFakeArchive(t, "/dicom-web")
	f.included = []string{endpointJSON("a", "active", "dicom-wado-rs", a.base())}
	f.studies["urn:oid:1.2.1"] = `{"resourceType":"ImagingStudy","identifier":[{"system":"urn:dicom:uid","value":"urn:oid:1.2.1"}],"endpoint":[{"reference":"Endpoint/a"}],"series":[{"uid":"1.2.1.1"}]}`
	var mu sync.Mutex
	var created, deleted int
	inner := f.Server.Config.Handler
	f.Server.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/fhir/Subscription" && r.Method == http.MethodPost:
			mu.Lock()
			created++
			n := created
			mu.Unlock()
			w.Header().Set("Content-Type", "application/fhir+json")
			w.WriteHeader(http.StatusCreated)
			fmt.Fprintf(w, `{"resourceType":"Subscription","id":"sub%d"}`, n)
		case strings.HasPrefix(r.URL.Path, "/fhir/Subscription/") && r.Method == http.MethodDelete:
			mu.Lock()
			deleted++
			mu.Unlock()
		default:
			inner.ServeHTTP(w, r)
		}
	})
	counts := func() (int, int) {
		mu.Lock()
		defer mu.Unlock()
		return created, deleted
	}
	port := freePort(t)
	config := func(ttl, extra string) string {
		return fmt.Sprintf("{\n\tadmin off\n\tpersist_config off\n\tfhir_imaging {\n\t\tfhir %s/fhir\n\t\tarchive a %s\n\t\tcache_ttl %s\n\t\tsubscribe http://127.0.0.1:%d/notify\n\t}\n}\nhttp://127.0.0.1:%d {\n\thandle /metrics {\n\t\tmetrics\n\t}\n\thandle_path /wado-rs/* {\n\t\tdicomweb\n\t}\n%s\n}\n",
			f.URL, a.base(), ttl, port, port, extra)
	}
	gw := fmt.Sprintf("http://127.0.0.1:%d", port)
	loadCaddyfile(t, config("5m", ""))
	waitFor(t, gw+"/wado-rs/studies/1.2.1/series/1.2.1.1")
	for deadline := time.Now().Add(5 * time.Second); ; {
		if c, _ := counts(); c == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the Subscriptions were not registered")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := f.searches.Load(); n != 1 {
		t.Fatalf("%d searches before the reload", n)
	}

	// A reload that changes another part of the config.
	loadCaddyfile(t, config("5m", "\trespond /hello \"hello\""))
	// While the old servers shut down, Caddy may drop a connection that
	// one of them had just accepted: wait until a request goes through.
	waitFor(t, gw+"/metrics")
	if resp, body := get(t, gw+"/hello"); resp.StatusCode != 200 || string(body) != "hello" {
		t.Fatalf("the reloaded config is not in effect: %d %s", resp.StatusCode, body)
	}
	get(t, gw+"/wado-rs/studies/1.2.1/series/1.2.1.1")
	if n := f.searches.Load(); n != 1 {
		t.Errorf("%d FHIR searches after a reload, want 1: the study route was forgotten", n)
	}
	time.Sleep(100 * time.Millisecond)
	if c, d := counts(); c != 2 || d != 0 {
		t.Errorf("after a reload: %d Subscriptions made, %d deleted; want 2 and 0", c, d)
	}
	// The kept cache counts into the new config's metrics.
	if text := scrape(t, gw+"/metrics"); !strings.Contains(text, `caddy_fhir_imaging_cache_lookups_total{cache="study",result="hit"} 1`) {
		t.Errorf("the cache hit after the reload is not in the new config's metrics")
	}

	// A reload that changes the cache's own settings starts afresh.
	loadCaddyfile(t, config("10m", ""))
	waitFor(t, gw+"/metrics")
	get(t, gw+"/wado-rs/studies/1.2.1/series/1.2.1.1")
	if n := f.searches.Load(); n != 2 {
		t.Errorf("%d FHIR searches after cache_ttl changed, want 2", n)
	}
	if c, d := counts(); c != 2 || d != 0 {
		t.Errorf("after a cache_ttl change: %d Subscriptions made, %d deleted; want 2 and 0 (they depend on fhir and subscribe only)", c, d)
	}

	if err := caddyStop(); err != nil {
		t.Fatal(err)
	}
	if _, d := counts(); d != 2 {
		t.Errorf("%d Subscriptions deleted at stop, want 2", d)
	}
}
