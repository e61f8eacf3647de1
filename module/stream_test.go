package module_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// slowFHIR is a FHIR server whose searches send the first half of their
// Bundle, then wait to be released before sending the rest.
type slowFHIR struct {
	*httptest.Server
	bodies    map[string]string // path → Bundle
	release   chan struct{}
	endpoints atomic.Int32 // Endpoint searches
	// Set while no request runs; atomic because a handler may still be
	// ending when the next setting is made.
	gzip    atomic.Bool // answer gzip to a client that accepts it
	corrupt atomic.Bool // and spoil the second half of it
	cut     atomic.Bool // break the connection instead of the second half
}

func newSlowFHIR(t *testing.T) *slowFHIR {
	f := &slowFHIR{bodies: map[string]string{}, release: make(chan struct{})}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fhir/Endpoint" {
			f.endpoints.Add(1)
			w.Header().Set("Content-Type", "application/fhir+json")
			fmt.Fprintf(w, `{"resourceType":"Bundle","type":"searchset","entry":[{"resource":%s}]}`,
				endpointJSON("a-rs", "active", "dicom-wado-rs", "http://127.0.0.1:18042/dicom-web"))
			return
		}
		body, ok := f.bodies[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		body = strings.ReplaceAll(body, "UPSTREAM", "http://"+r.Host)
		w.Header().Set("Content-Type", "application/fhir+json;charset=UTF-8")
		if strings.HasPrefix(body, "<") {
			w.Header().Set("Content-Type", "application/fhir+xml;charset=UTF-8")
		}
		w.Header().Set("ETag", `"7"`)
		if f.gzip.Load() && strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			var zb bytes.Buffer
			zw := gzip.NewWriter(&zb)
			zw.Write([]byte(body))
			zw.Close()
			body = zb.String()
			if f.corrupt.Load() {
				b := []byte(body)
				for i := len(b) / 2; i < len(b)-8; i += 7 {
					b[i] ^= 0x5a
				}
				body = string(b)
			}
			w.Header().Set("Content-Encoding", "gzip")
		}
		half := len(body) / 2
		io.WriteString(w, body[:half])
		w.(http.Flusher).Flush()
		select {
		case <-f.release:
		case <-r.Context().Done():
			return
		case <-time.After(10 * time.Second):
		}
		if f.cut.Load() {
			panic(http.ErrAbortHandler)
		}
		io.WriteString(w, body[half:])
	}))
	t.Cleanup(func() {
		select {
		case <-f.release:
		default:
			close(f.release)
		}
		f.Close()
	})
	return f
}

func observationBundle(n int) string {
	var b strings.Builder
	b.WriteString(`{"resourceType":"Bundle","type":"searchset","link":[{"relation":"self","url":"UPSTREAM/fhir/Observation"}],"entry":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"fullUrl":"UPSTREAM/fhir/Observation/o%d","resource":{"resourceType":"Observation","id":"o%d","status":"final","subject":{"reference":"Patient/p"},"valueQuantity":{"value":%d}}}`, i, i, i)
	}
	b.WriteString(`]}`)
	return b.String()
}

// observationBundleXML is observationBundle in FHIR XML, its links with
// &amp; in them.
func observationBundleXML(n int) string {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?><Bundle xmlns="http://hl7.org/fhir"><type value="searchset"/><link><relation value="next"/><url value="UPSTREAM/fhir?_getpages=x&amp;_getpagesoffset=20&amp;_count=20"/></link>`)
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `<entry><fullUrl value="UPSTREAM/fhir/Observation/o%d"/><resource><Observation xmlns="http://hl7.org/fhir"><id value="o%d"/><status value="final"/><subject><reference value="UPSTREAM/fhir/Patient/p"/></subject><valueQuantity><value value="%d"/></valueQuantity></Observation></resource></entry>`, i, i, i)
	}
	b.WriteString(`</Bundle>`)
	return b.String()
}

func studyBundle(n int, include bool) string {
	var b strings.Builder
	b.WriteString(`{"resourceType":"Bundle","type":"searchset","entry":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"fullUrl":"UPSTREAM/fhir/ImagingStudy/s%d","resource":{"resourceType":"ImagingStudy","id":"s%d","identifier":[{"system":"urn:dicom:uid","value":"1.2.%d"}],"endpoint":[{"reference":"Endpoint/a-rs"}],"series":[{"uid":"1.2.%d.1","instance":[{"uid":"1.2.%d.1.1"}]}]}}`, i, i, i, i, i)
	}
	if include {
		b.WriteString(`,{"fullUrl":"UPSTREAM/fhir/Endpoint/a-rs","resource":` + endpointJSON("a-rs", "active", "dicom-wado-rs", "http://127.0.0.1:18042/dicom-web") + `,"search":{"mode":"include"}}`)
	}
	b.WriteString(`]}`)
	return b.String()
}

func slowGateway(t *testing.T, f *slowFHIR, rewriteOpts string) string {
	globals := fmt.Sprintf("\tfhir_imaging {\n\t\tfhir %s/fhir\n\t\tarchive a http://127.0.0.1:18042/dicom-web\n\t\tlookup_timeout 2s\n\t}\n", f.URL)
	site := fmt.Sprintf("\thandle /fhir/* {\n\t\tfhir_rewrite {\n%s\n\t\t}\n\t\treverse_proxy %s\n\t}", rewriteOpts, hostPort(f.URL))
	return startGateway(t, globals, site)
}

// collector reads a body in the background, so that a test can look at
// what has come so far at any time.
type collector struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	err  error // how the body ended: io.EOF when complete
	done chan struct{}
}

func collect(r io.Reader) *collector {
	c := &collector{done: make(chan struct{})}
	go func() {
		defer close(c.done)
		chunk := make([]byte, 4096)
		for {
			n, err := r.Read(chunk)
			c.mu.Lock()
			c.buf.Write(chunk[:n])
			if err != nil {
				c.err = err
			}
			c.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return c
}

// after returns what has come within d.
func (c *collector) after(d time.Duration) []byte {
	time.Sleep(d)
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.buf.Bytes())
}

// all waits for the end of the body and returns all of it.
func (c *collector) all(t *testing.T) []byte {
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the body did not end")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Bytes()
}

// TestRewriteStreamsBundles: a Bundle with nothing to look up reaches the
// client, rebased, while the FHIR server is still sending it; only its
// second half waits for the server.
func TestRewriteStreamsBundles(t *testing.T) {
	f := newSlowFHIR(t)
	f.bodies["/fhir/Observation"] = observationBundle(500)
	gw := slowGateway(t, f, "")
	resp, err := http.Get(gw + "/fhir/Observation")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Length") != "" || resp.Header.Get("ETag") != `W/"7"` {
		t.Errorf("Content-Length %q, ETag %q: want none and a weak one", resp.Header.Get("Content-Length"), resp.Header.Get("ETag"))
	}
	// The gateway's first reads of the first half come out before the
	// server sends the rest.
	var first bytes.Buffer
	chunk := make([]byte, 4096)
	deadline := time.Now().Add(3 * time.Second)
	half := len(f.bodies["/fhir/Observation"]) / 2
	for first.Len() < half*8/10 && time.Now().Before(deadline) {
		n, err := resp.Body.Read(chunk)
		first.Write(chunk[:n])
		if err != nil {
			break
		}
	}
	if first.Len() < half*8/10 {
		t.Fatalf("%d bytes out before the FHIR server sent its second half, want most of the first half (%d)", first.Len(), half)
	}
	close(f.release)
	rest, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	body := append(first.Bytes(), rest...)
	want := strings.ReplaceAll(f.bodies["/fhir/Observation"], "UPSTREAM", gw)
	if string(body) != want {
		t.Errorf("streamed body differs from the rebased one:\n%s\nwant\n%s", body, want)
	}
}

// TestRewriteStreamWaitsOnlyForLookups: a search whose Endpoint must be
// looked up waits for the end (where the Endpoint, included after the
// studies, makes the look-up unneeded); once the Endpoint is cached, the
// same search streams.
func TestRewriteStreamWaitsOnlyForLookups(t *testing.T) {
	f := newSlowFHIR(t)
	f.bodies["/fhir/ImagingStudy"] = studyBundle(200, false)
	gw := slowGateway(t, f, "")

	resp, err := http.Get(gw + "/fhir/ImagingStudy")
	if err != nil {
		t.Fatal(err)
	}
	c := collect(resp.Body)
	if early := c.after(400 * time.Millisecond); bytes.Contains(early, []byte(`"ImagingStudy"`)) {
		t.Errorf("entries went out before their Endpoint was known:\n%.300s", early)
	}
	f.release <- struct{}{}
	body := string(c.all(t))
	resp.Body.Close()
	if n := strings.Count(body, "/wado-rs/studies/"); n != 400 {
		t.Errorf("%d WADO-RS URLs, want 400 (200 series, 200 instances)", n)
	}
	if n := f.endpoints.Load(); n != 1 {
		t.Errorf("%d Endpoint searches, want 1", n)
	}

	// Now cached: the studies stream.
	resp, err = http.Get(gw + "/fhir/ImagingStudy")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	c = collect(resp.Body)
	if n := bytes.Count(c.after(400*time.Millisecond), []byte("/wado-rs/studies/")); n < 100 {
		t.Errorf("%d URLs out before the FHIR server sent its second half, want most of the first half's", n)
	}
	f.release <- struct{}{}
	if n := strings.Count(string(c.all(t)), "/wado-rs/studies/"); n != 400 {
		t.Errorf("%d WADO-RS URLs, want 400", n)
	}
	if n := f.endpoints.Load(); n != 1 {
		t.Errorf("%d Endpoint searches after the cached one, want 1", n)
	}
}

// TestRewriteStreamsPastMaxBodySize: a Bundle larger than max_body_size is
// still rebased, as it streams; before streaming it passed unchanged.
func TestRewriteStreamsPastMaxBodySize(t *testing.T) {
	f := newSlowFHIR(t)
	close(f.release)
	f.bodies["/fhir/Observation"] = observationBundle(200)
	gw := slowGateway(t, f, "\t\t\tmax_body_size 4KiB")
	_, body := get(t, gw+"/fhir/Observation")
	if want := strings.ReplaceAll(f.bodies["/fhir/Observation"], "UPSTREAM", gw); string(body) != want {
		t.Errorf("body not rebased past max_body_size:\n%.400s", body)
	}
}

// TestRewriteStreamLearnsIncludedEndpoints: the Endpoints a search
// _includes are kept like look-ups, so that the next search naming them
// streams at once, with no look-up at all.
func TestRewriteStreamLearnsIncludedEndpoints(t *testing.T) {
	f := newSlowFHIR(t)
	f.bodies["/fhir/ImagingStudy"] = studyBundle(200, true)
	f.bodies["/fhir/Other"] = studyBundle(200, false)
	gw := slowGateway(t, f, "")

	resp, err := http.Get(gw + "/fhir/ImagingStudy")
	if err != nil {
		t.Fatal(err)
	}
	c := collect(resp.Body)
	f.release <- struct{}{}
	if n := strings.Count(string(c.all(t)), "/wado-rs/studies/"); n != 400 {
		t.Errorf("%d WADO-RS URLs, want 400", n)
	}
	resp.Body.Close()

	resp, err = http.Get(gw + "/fhir/Other")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	c = collect(resp.Body)
	if n := bytes.Count(c.after(400*time.Millisecond), []byte("/wado-rs/studies/")); n < 100 {
		t.Errorf("%d URLs out before the FHIR server sent its second half: the included Endpoint was not kept", n)
	}
	f.release <- struct{}{}
	if n := strings.Count(string(c.all(t)), "/wado-rs/studies/"); n != 400 {
		t.Errorf("%d WADO-RS URLs, want 400", n)
	}
	if n := f.endpoints.Load(); n != 0 {
		t.Errorf("%d Endpoint look-ups, want none", n)
	}
}

// TestRewriteStreamsGzip: a gzip answer is decompressed as it comes and
// streams like an uncompressed one; a broken one is cut off, and logged.
func TestRewriteStreamsGzip(t *testing.T) {
	f := newSlowFHIR(t)
	f.gzip.Store(true)
	f.bodies["/fhir/Observation"] = observationBundle(2000)
	gw := slowGateway(t, f, "")
	req, _ := http.NewRequest("GET", gw+"/fhir/Observation", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := http.DefaultTransport.RoundTrip(req) // no transparent decompression
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ce, vary := resp.Header.Get("Content-Encoding"), resp.Header.Get("Vary"); ce != "" || !strings.Contains(vary, "Accept-Encoding") {
		t.Errorf("Content-Encoding %q, Vary %q: want none and Accept-Encoding", ce, vary)
	}
	c := collect(resp.Body)
	if n := len(c.after(400 * time.Millisecond)); n < len(f.bodies["/fhir/Observation"])/4 {
		t.Errorf("%d bytes out before the FHIR server sent its second half", n)
	}
	f.release <- struct{}{}
	want := strings.ReplaceAll(f.bodies["/fhir/Observation"], "UPSTREAM", gw)
	if got := string(c.all(t)); got != want {
		t.Errorf("decompressed stream differs (%d bytes, want %d)", len(got), len(want))
	}

	// Broken ones, spoilt or cut off by the server: cut off for the client
	// too, and nothing left behind (each would leave its decompressing
	// goroutine if it were not ended).
	idle := func() { http.DefaultTransport.(*http.Transport).CloseIdleConnections() }
	for i := 0; i < 6; i++ {
		f.corrupt.Store(i%2 == 0)
		f.cut.Store(i%2 == 1)
		req, _ = http.NewRequest("GET", gw+"/fhir/Observation", nil)
		req.Header.Set("Accept-Encoding", "gzip")
		resp2, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		c = collect(resp2.Body)
		f.release <- struct{}{}
		c.all(t)
		resp2.Body.Close()
		if c.err == io.EOF {
			t.Errorf("a broken gzip answer ended as if complete (%d bytes)", c.buf.Len())
		}
	}
	idle()
	left := 0
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		buf := make([]byte, 1<<20)
		if left = strings.Count(string(buf[:runtime.Stack(buf, true)]), "inflater).run"); left == 0 {
			break
		}
	}
	if left > 0 {
		t.Errorf("%d decompressing goroutines left after the broken answers", left)
	}
}

// TestRewriteStreamsXML: an XML Bundle reaches the client rebased while the
// FHIR server is still sending it, plain or gzip; a broken gzip answer is
// cut off for the client too.
func TestRewriteStreamsXML(t *testing.T) {
	f := newSlowFHIR(t)
	f.bodies["/fhir/Observation"] = observationBundleXML(2000)
	gw := slowGateway(t, f, "")
	want := strings.ReplaceAll(f.bodies["/fhir/Observation"], "UPSTREAM", gw)
	for _, gz := range []bool{false, true} {
		f.gzip.Store(gz)
		req, _ := http.NewRequest("GET", gw+"/fhir/Observation", nil)
		req.Header.Set("Accept-Encoding", map[bool]string{false: "identity", true: "gzip"}[gz])
		resp, err := http.DefaultTransport.RoundTrip(req) // no transparent decompression
		if err != nil {
			t.Fatal(err)
		}
		if cl, etag, ce := resp.Header.Get("Content-Length"), resp.Header.Get("ETag"), resp.Header.Get("Content-Encoding"); cl != "" || etag != `W/"7"` || ce != "" {
			t.Errorf("gzip %v: Content-Length %q, ETag %q, Content-Encoding %q: want none, a weak one, none", gz, cl, etag, ce)
		}
		c := collect(resp.Body)
		if n := len(c.after(400 * time.Millisecond)); n < len(want)/4 {
			t.Errorf("gzip %v: %d bytes out before the FHIR server sent its second half", gz, n)
		}
		f.release <- struct{}{}
		if got := string(c.all(t)); got != want {
			t.Errorf("gzip %v: streamed body differs from the rebased one (%d bytes, want %d)", gz, len(got), len(want))
		}
		resp.Body.Close()
	}
	f.corrupt.Store(true)
	req, _ := http.NewRequest("GET", gw+"/fhir/Observation", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	c := collect(resp.Body)
	f.release <- struct{}{}
	c.all(t)
	if c.err == io.EOF {
		t.Errorf("a broken gzip XML answer ended as if complete (%d bytes)", c.buf.Len())
	}
}
