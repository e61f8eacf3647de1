package module_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidwall/gjson"
)

const extRS = "https://fhirimaging.github.io/caddy-fhir-imaging/StructureDefinition/wado-rs"
const extURI = "https://fhirimaging.github.io/caddy-fhir-imaging/StructureDefinition/wado-uri"

// fakeFHIR is an upstream FHIR server for handler tests. It serves fixed
// bodies by path and answers Endpoint searches from its Endpoints, counting
// them.
type fakeFHIR struct {
	*httptest.Server
	mu          sync.Mutex
	bodies      map[string]fakeBody
	endpoints   map[string]string // id → JSON
	searches    atomic.Int32
	searchDelay time.Duration
	searchFail  bool
	lastSearch  atomic.Value
}

type fakeBody struct {
	status int
	ctype  string
	body   string
	hdr    map[string]string
}

func newFakeFHIR(t testing.TB) *fakeFHIR {
	f := &fakeFHIR{bodies: map[string]fakeBody{}, endpoints: map[string]string{}}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeFHIR) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/fhir/Endpoint" {
		f.searches.Add(1)
		f.lastSearch.Store(r.URL.RawQuery)
		time.Sleep(f.searchDelay)
		if f.searchFail {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		var entries []string
		for _, id := range strings.Split(r.URL.Query().Get("_id"), ",") {
			f.mu.Lock()
			e, ok := f.endpoints[id]
			f.mu.Unlock()
			if ok {
				entries = append(entries, `{"resource":`+e+`}`)
			}
		}
		w.Header().Set("Content-Type", "application/fhir+json;charset=UTF-8")
		fmt.Fprintf(w, `{"resourceType":"Bundle","type":"searchset","entry":[%s]}`, strings.Join(entries, ","))
		return
	}
	f.mu.Lock()
	b, ok := f.bodies[r.URL.Path]
	f.mu.Unlock()
	if !ok {
		w.Header().Set("Content-Type", "application/fhir+json")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-found","diagnostics":"ImagingStudy/x is not known"}]}`)
		return
	}
	for k, v := range b.hdr {
		w.Header().Set(k, v)
	}
	if inm := r.Header.Get("If-None-Match"); inm != "" && inm == b.hdr["ETag"] {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", b.ctype)
	body := []byte(b.body)
	if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		var zb bytes.Buffer
		zw := gzip.NewWriter(&zb)
		zw.Write(body)
		zw.Close()
		body = zb.Bytes()
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Add("Vary", "Accept-Encoding")
	}
	if r.URL.Query().Get("chunked") == "" {
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	}
	status := b.status
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		if r.URL.Query().Get("chunked") != "" {
			// Write in pieces with flushes, as a streaming server does.
			for len(body) > 0 {
				n := min(1000, len(body))
				w.Write(body[:n])
				w.(http.Flusher).Flush()
				body = body[n:]
			}
			return
		}
		w.Write(body)
	}
}

func (f *fakeFHIR) set(path string, b fakeBody) {
	f.mu.Lock()
	f.bodies[path] = b
	f.mu.Unlock()
}

func endpointJSON(id, status, code, address string) string {
	return fmt.Sprintf(`{"resourceType":"Endpoint","id":%q,"status":%q,"connectionType":{"system":"http://terminology.hl7.org/CodeSystem/endpoint-connection-type","code":%q},"address":%q}`, id, status, code, address)
}

const studyJSON = `{"resourceType":"ImagingStudy","id":"s1","meta":{"versionId":"3"},"identifier":[{"system":"urn:dicom:uid","value":"urn:oid:1.2.3"}],"endpoint":[{"reference":"Endpoint/a-rs"},{"reference":"Endpoint/a-uri"}],"series":[{"uid":"1.2.3.1","endpoint":[{"reference":"Endpoint/b-rs"}],"instance":[{"uid":"1.2.3.1.1"}]},{"uid":"1.2.3.2","instance":[{"uid":"1.2.3.2.1"}]}]}`

// rewriteGateway starts a fake FHIR server and a gateway in front of it.
func rewriteGateway(t testing.TB, rewriteOpts, siteExtra string) (*fakeFHIR, string) {
	return rewriteGatewayWith(t, "", rewriteOpts, siteExtra)
}

// rewriteGatewayWith is rewriteGateway with more global options.
func rewriteGatewayWith(t testing.TB, moreGlobals, rewriteOpts, siteExtra string) (*fakeFHIR, string) {
	f := newFakeFHIR(t)
	f.endpoints["a-rs"] = endpointJSON("a-rs", "active", "dicom-wado-rs", "http://127.0.0.1:18042/dicom-web")
	f.endpoints["a-uri"] = endpointJSON("a-uri", "active", "dicom-wado-uri", "http://127.0.0.1:18042/wado")
	f.endpoints["b-rs"] = endpointJSON("b-rs", "active", "dicom-wado-rs", "http://127.0.0.1:18043/pacs/dicom-web")
	f.set("/fhir/ImagingStudy/s1", fakeBody{ctype: "application/fhir+json;charset=UTF-8", body: studyJSON, hdr: map[string]string{"ETag": `W/"3"`, "Last-Modified": "Thu, 26 Nov 2026 10:00:00 GMT"}})
	globals := fmt.Sprintf(`	fhir_imaging {
		fhir %s/fhir
		archive a http://127.0.0.1:18042/dicom-web {
			wado_uri http://127.0.0.1:18042/wado
		}
		archive b http://127.0.0.1:18043/pacs/dicom-web
		lookup_timeout 1s
	}
%s`, f.URL, moreGlobals)
	site := fmt.Sprintf("%s\n\thandle /fhir/* {\n\t\tfhir_rewrite {\n%s\n\t\t}\n\t\treverse_proxy %s\n\t}", siteExtra, rewriteOpts, hostPort(f.URL))
	return f, startGateway(t, globals, site)
}

func TestRewriteReadInjectsURLs(t *testing.T) {
	f, gw := rewriteGateway(t, "", "")
	resp, body := get(t, gw+"/fhir/ImagingStudy/s1")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if cl := resp.Header.Get("Content-Length"); cl != fmt.Sprint(len(body)) {
		t.Errorf("Content-Length %s for a body of %d bytes", cl, len(body))
	}
	if et := resp.Header.Get("ETag"); et != `W/"3"` {
		t.Errorf("ETag %q, want the upstream's weak ETag unchanged", et)
	}
	if lm := resp.Header.Get("Last-Modified"); lm == "" {
		t.Errorf("Last-Modified lost")
	}
	doc := gjson.ParseBytes(body)
	checks := map[string]string{
		`series.0.extension.#(url=="` + extRS + `").valueUrl`:             gw + "/wado-rs/studies/1.2.3/series/1.2.3.1",
		`series.0.instance.0.extension.#(url=="` + extRS + `").valueUrl`:  gw + "/wado-rs/studies/1.2.3/series/1.2.3.1/instances/1.2.3.1.1",
		`series.0.instance.0.extension.#(url=="` + extURI + `").valueUrl`: gw + "/wado?requestType=WADO&studyUID=1.2.3&seriesUID=1.2.3.1&objectUID=1.2.3.1.1&contentType=application/dicom",
		`series.1.extension.#(url=="` + extRS + `").valueUrl`:             gw + "/wado-rs/studies/1.2.3/series/1.2.3.2",
	}
	for path, want := range checks {
		if got := doc.Get(path).String(); got != want {
			t.Errorf("%s = %q, want %q", path, got, want)
		}
	}
	if n := f.searches.Load(); n != 1 {
		t.Errorf("%d Endpoint searches, want exactly 1 for three missing Endpoints", n)
	}
	if q, _ := f.lastSearch.Load().(string); !strings.Contains(q, "_id=a-rs%2Ca-uri%2Cb-rs") {
		t.Errorf("Endpoint search %q does not ask for all three at once", q)
	}
	// A second read is answered from the cache.
	get(t, gw+"/fhir/ImagingStudy/s1")
	if n := f.searches.Load(); n != 1 {
		t.Errorf("%d Endpoint searches after a cached read, want 1", n)
	}
}

func TestRewriteDirectMode(t *testing.T) {
	_, gw := rewriteGateway(t, "\t\t\tmode direct", "")
	_, body := get(t, gw+"/fhir/ImagingStudy/s1")
	doc := gjson.ParseBytes(body)
	if got, want := doc.Get(`series.0.extension.#(url=="`+extRS+`").valueUrl`).String(), "http://127.0.0.1:18043/pacs/dicom-web/studies/1.2.3/series/1.2.3.1"; got != want {
		t.Errorf("direct WADO-RS URL %q, want %q", got, want)
	}
	if got, want := doc.Get(`series.1.instance.0.extension.#(url=="`+extURI+`").valueUrl`).String(), "http://127.0.0.1:18042/wado?requestType=WADO&studyUID=1.2.3&seriesUID=1.2.3.2&objectUID=1.2.3.2.1&contentType=application/dicom"; got != want {
		t.Errorf("direct WADO-URI URL %q, want %q", got, want)
	}
}

// TestRewriteLevels: "levels study series" gives the ImagingStudy the URL of
// the whole study and each series its URL, and instances none.
func TestRewriteLevels(t *testing.T) {
	_, gw := rewriteGateway(t, "\t\t\tlevels study series", "")
	resp, body := get(t, gw+"/fhir/ImagingStudy/s1")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	doc := gjson.ParseBytes(body)
	if got, want := doc.Get(`extension.#(url=="`+extRS+`").valueUrl`).String(), gw+"/wado-rs/studies/1.2.3"; got != want {
		t.Errorf("study URL %q, want %q", got, want)
	}
	if got, want := doc.Get(`series.1.extension.#(url=="`+extRS+`").valueUrl`).String(), gw+"/wado-rs/studies/1.2.3/series/1.2.3.2"; got != want {
		t.Errorf("series URL %q, want %q", got, want)
	}
	if n := strings.Count(string(body), "/instances/") + strings.Count(string(body), "objectUID="); n != 0 {
		t.Errorf("%d instance URLs with levels study series:\n%s", n, body)
	}
}

func TestRewriteGzip(t *testing.T) {
	// Without encode: the client asked for gzip, upstream gzipped; the
	// gateway must still rewrite, and answers uncompressed (valid HTTP).
	_, gw := rewriteGateway(t, "", "")
	resp, body := get(t, gw+"/fhir/ImagingStudy/s1", "Accept-Encoding", "gzip")
	if resp.Header.Get("Content-Encoding") != "" {
		t.Fatalf("Content-Encoding %q without encode", resp.Header.Get("Content-Encoding"))
	}
	if !strings.Contains(string(body), extRS) {
		t.Fatalf("gzip answer was not rewritten: %s", body)
	}
	if cl := resp.Header.Get("Content-Length"); cl != fmt.Sprint(len(body)) {
		t.Errorf("Content-Length %s for %d bytes", cl, len(body))
	}
	if !strings.Contains(strings.Join(resp.Header.Values("Vary"), ","), "Accept-Encoding") {
		t.Errorf("Vary %q lacks Accept-Encoding", resp.Header.Values("Vary"))
	}
	_ = caddyStop()
	first := gw

	// With encode in the route: the rewritten body reaches the client
	// compressed. Caddy's default encode list lacks application/fhir+json,
	// so the FHIR types are matched explicitly, as the README shows.
	_, gw = rewriteGateway(t, "", "\tencode gzip {\n\t\tmatch {\n\t\t\theader Content-Type application/fhir+json*\n\t\t}\n\t}")
	resp, zbody := get(t, gw+"/fhir/ImagingStudy/s1", "Accept-Encoding", "gzip")
	if resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("Content-Encoding %q with encode gzip, want gzip", resp.Header.Get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(bytes.NewReader(zbody))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.ReplaceAll(string(body), first, gw); string(plain) != want {
		t.Errorf("compressed answer differs from the uncompressed one:\n%s\n%s", plain, body)
	}
}

func TestRewritePassThrough(t *testing.T) {
	f, gw := rewriteGateway(t, "\t\t\tmax_body_size 2KiB", "")
	big := `{"resourceType":"ImagingStudy","id":"big","identifier":[{"system":"urn:dicom:uid","value":"1.2.9"}],"endpoint":[{"reference":"Endpoint/a-rs"}],"note":[{"text":"` + strings.Repeat("x", 4000) + `"}],"series":[{"uid":"1.2.9.1"}]}`
	f.set("/fhir/ImagingStudy/big", fakeBody{ctype: "application/fhir+json", body: big})
	f.set("/fhir/ImagingStudy/xml", fakeBody{ctype: "application/fhir+xml;charset=UTF-8", body: `<ImagingStudy xmlns="http://hl7.org/fhir"><id value="xml"/></ImagingStudy>`})
	f.set("/fhir/Patient/p", fakeBody{ctype: "application/fhir+json", body: `{"resourceType":"Patient","id":"p",  "name":[{"family":"Keep   Spacing"}]}`})
	f.set("/fhir/ImagingStudy/bad", fakeBody{ctype: "application/fhir+json", body: `{"resourceType":"ImagingStudy","series":[`})
	f.set("/fhir/ImagingStudy/text", fakeBody{ctype: "text/plain", body: `{"resourceType":"ImagingStudy"}`})
	tests := []struct {
		name, method, path string
		hdr                []string
	}{
		{"over the size limit", "GET", "/fhir/ImagingStudy/big", nil},
		{"over the size limit, chunked", "GET", "/fhir/ImagingStudy/big?chunked=1", nil},
		{"XML", "GET", "/fhir/ImagingStudy/xml", nil},
		{"no ImagingStudy", "GET", "/fhir/Patient/p", nil},
		{"malformed JSON", "GET", "/fhir/ImagingStudy/bad", nil},
		{"not JSON", "GET", "/fhir/ImagingStudy/text", nil},
		{"error status", "GET", "/fhir/ImagingStudy/missing", nil},
		{"HEAD", "HEAD", "/fhir/ImagingStudy/s1", nil},
		{"304", "GET", "/fhir/ImagingStudy/s1", []string{"If-None-Match", `W/"3"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gwResp, gwBody := do(t, tt.method, gw+tt.path, nil, tt.hdr...)
			upResp, upBody := do(t, tt.method, f.URL+tt.path, nil, tt.hdr...)
			if gwResp.StatusCode != upResp.StatusCode {
				t.Errorf("status %d, upstream %d", gwResp.StatusCode, upResp.StatusCode)
			}
			if !bytes.Equal(gwBody, upBody) {
				t.Errorf("body changed:\n gateway %q\nupstream %q", gwBody, upBody)
			}
			// Content-Length may be dropped by reverse_proxy itself when it
			// streams; when present it must be right.
			if cl := gwResp.Header.Get("Content-Length"); cl != "" && tt.method != "HEAD" && cl != fmt.Sprint(len(gwBody)) {
				t.Errorf("Content-Length %s for %d bytes", cl, len(gwBody))
			}
			for _, h := range []string{"Content-Type", "ETag", "Content-Encoding", "Last-Modified"} {
				if gwResp.Header.Get(h) != upResp.Header.Get(h) {
					t.Errorf("%s: gateway %q, upstream %q", h, gwResp.Header.Get(h), upResp.Header.Get(h))
				}
			}
		})
	}
}

func TestRewriteContentTypes(t *testing.T) {
	f, gw := rewriteGateway(t, "", "")
	for i, ct := range []string{"application/json", "APPLICATION/FHIR+JSON; Charset=utf-8", "application/json+fhir;charset=UTF-8", "application/fhir+json; fhirVersion=4.0"} {
		path := fmt.Sprintf("/fhir/ImagingStudy/ct%d", i)
		f.set(path, fakeBody{ctype: ct, body: studyJSON})
		_, body := get(t, gw+path+"?_format=json&_pretty=true")
		if !strings.Contains(string(body), extRS) {
			t.Errorf("Content-Type %q: not rewritten", ct)
		}
	}
}

func TestRewriteLookupFailureNeverFailsResponse(t *testing.T) {
	for _, mode := range []string{"error", "timeout"} {
		t.Run(mode, func(t *testing.T) {
			f, gw := rewriteGateway(t, "", "")
			if mode == "error" {
				f.searchFail = true
			} else {
				f.searchDelay = 4 * time.Second // lookup_timeout is 1s
			}
			start := time.Now()
			resp, body := get(t, gw+"/fhir/ImagingStudy/s1")
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if string(body) != studyJSON {
				t.Errorf("body changed although no Endpoint could be resolved:\n%s", body)
			}
			if mode == "timeout" && time.Since(start) > 3*time.Second {
				t.Errorf("response waited %v for a look-up bounded at 1s", time.Since(start))
			}
			_ = caddyStop()
		})
	}
}

func TestRewriteConcurrentMissesCollapse(t *testing.T) {
	f, gw := rewriteGateway(t, "", "")
	f.searchDelay = 150 * time.Millisecond
	var wg sync.WaitGroup
	var bad atomic.Int32
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := noCompression.Get(gw + "/fhir/ImagingStudy/s1")
			if err != nil {
				bad.Add(1)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.Contains(string(b), extRS) {
				bad.Add(1)
			}
		}()
	}
	wg.Wait()
	if bad.Load() != 0 {
		t.Errorf("%d of 50 concurrent reads were not rewritten", bad.Load())
	}
	if n := f.searches.Load(); n != 1 {
		t.Errorf("%d Endpoint searches for 50 concurrent first reads, want 1", n)
	}
}

func TestRewriteURLsBehindTrustedProxy(t *testing.T) {
	// Injected URLs must carry what a trusted proxy in front says the
	// client called, prefix included, as the rebased FHIR links do.
	_, gw := rewriteGatewayWith(t, "\tservers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t}", "", "")
	_, body := get(t, gw+"/fhir/ImagingStudy/s1", "X-Forwarded-Proto", "https", "X-Forwarded-Host", "gw.example.org", "X-Forwarded-Prefix", "/api")
	got := gjson.GetBytes(body, `series.1.extension.#(url=="`+extRS+`").valueUrl`).String()
	if want := "https://gw.example.org/api/wado-rs/studies/1.2.3/series/1.2.3.2"; got != want {
		t.Errorf("injected %q, want %q", got, want)
	}
}
