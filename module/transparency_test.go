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
	"testing"
)

// selfFHIR is an upstream FHIR server that, like HAPI behind
// "header_up Host {upstream_hostport}", writes its own address into links,
// fullUrls and URL headers, and records the requests it gets.
type selfFHIR struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []recorded
}

type recorded struct {
	method, path, ctype, contentLength string
	hdr                                http.Header
	body                               []byte
}

func newSelfFHIR(t testing.TB) *selfFHIR {
	s := &selfFHIR{}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *selfFHIR) last() recorded {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reqs[len(s.reqs)-1]
}

func (s *selfFHIR) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.reqs = append(s.reqs, recorded{r.Method, r.URL.RequestURI(), r.Header.Get("Content-Type"), fmt.Sprint(r.ContentLength), r.Header.Clone(), body})
	s.mu.Unlock()
	base := s.URL + "/fhir"
	h := w.Header()
	switch {
	case r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch:
		h.Set("Location", base+"/Patient/new/_history/1")
		h.Set("Content-Location", base+"/Patient/new/_history/1")
		if r.Header.Get("Prefer") == "return=minimal" {
			w.WriteHeader(http.StatusCreated)
			return
		}
		h.Set("Content-Type", "application/fhir+json;charset=UTF-8")
		w.WriteHeader(http.StatusCreated)
		w.Write(body)
	case strings.HasPrefix(r.URL.Path, "/fhir/Patient/gone"):
		h.Set("Content-Type", "application/fhir+json;charset=UTF-8")
		w.WriteHeader(http.StatusGone)
		fmt.Fprintf(w, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"deleted","diagnostics":"%s/Patient/gone was deleted"}]}`, base)
	case strings.HasPrefix(r.URL.Path, "/fhir/Patient/p1"):
		h.Set("Content-Location", base+"/Patient/p1/_history/2")
		h.Set("ETag", `W/"2"`)
		if r.Header.Get("If-None-Match") == `W/"2"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		if r.URL.Query().Get("_format") == "xml" {
			// a page as HAPI writes it in XML, in parts, gzipped when asked
			h.Set("Content-Type", "application/fhir+xml;charset=UTF-8")
			page := fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?><Bundle xmlns="http://hl7.org/fhir"><link><relation value="next"/><url value="%[1]s?_getpages=x&amp;_getpagesoffset=1&amp;_count=1&amp;_format=xml"/></link>`+
				`<entry><fullUrl value="%[1]s/Patient/p1"/><resource><Patient xmlns="http://hl7.org/fhir"><text><div xmlns="http://www.w3.org/1999/xhtml"><a href="%[1]s/Patient/p1">p1</a></div></text><link><other><reference value="%[1]s/Patient/p0"/></other></link></Patient></resource></entry></Bundle>`, base)
			writeParts(w, r, []byte(page))
			return
		}
		h.Set("Content-Type", "application/fhir+json;charset=UTF-8")
		if r.Method != http.MethodHead {
			fmt.Fprintf(w, `{"resourceType":"Patient","id":"p1","link":[{"other":{"reference":"%s/Patient/p0"}}]}`, base)
		}
	default: // a searchset page, gzipped when asked, chunked
		h.Set("Content-Type", "application/fhir+json;charset=UTF-8")
		h.Set("Link", fmt.Sprintf(`<%s?_getpages=x&_getpagesoffset=2>; rel="next"`, base))
		page := fmt.Sprintf(`{"resourceType":"Bundle","type":"searchset","link":[{"relation":"self","url":"%[1]s/Patient?_count=1"},{"relation":"next","url":"%[1]s?_getpages=x&_getpagesoffset=1&_count=1"}],"entry":[{"fullUrl":"%[1]s/Patient/p1","resource":{"resourceType":"Patient","id":"p1","managingOrganization":{"reference":"%[1]s/Organization/o"}}}]}`, base)
		writeParts(w, r, []byte(page))
	}
}

// writeParts writes out in parts of 50 bytes, each flushed (so chunked),
// gzipped when the request accepts gzip.
func writeParts(w http.ResponseWriter, r *http.Request, out []byte) {
	if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		var zb bytes.Buffer
		zw := gzip.NewWriter(&zb)
		zw.Write(out)
		zw.Close()
		out = zb.Bytes()
		w.Header().Set("Content-Encoding", "gzip")
	}
	for len(out) > 0 {
		n := min(50, len(out))
		w.Write(out[:n])
		w.(http.Flusher).Flush()
		out = out[n:]
	}
}

// selfGateway runs a gateway in front of a selfFHIR; site is the FHIR route.
func selfGateway(t testing.TB, globals, site string) (*selfFHIR, string) {
	s := newSelfFHIR(t)
	g := fmt.Sprintf("\tfhir_imaging {\n\t\tfhir %s/fhir\n\t}\n%s", s.URL, globals)
	site = strings.ReplaceAll(site, "UPSTREAM", hostPort(s.URL))
	return s, startGateway(t, g, site)
}

const plainRoute = "\t@fhir path /fhir /fhir/*\n\thandle @fhir {\n\t\tfhir_rewrite\n\t\treverse_proxy UPSTREAM\n\t}"

func noUpstream(t *testing.T, what string, s *selfFHIR, resp *http.Response, body []byte) {
	t.Helper()
	host := hostPort(s.URL)
	if bytes.Contains(body, []byte(host)) {
		t.Errorf("%s: body names the upstream %s:\n%s", what, host, body)
	}
	for k, vs := range resp.Header {
		for _, v := range vs {
			if strings.Contains(v, host) {
				t.Errorf("%s: header %s names the upstream: %s", what, k, v)
			}
		}
	}
}

// noUpstreamXML is noUpstream for an XML body, whose narrative may name the
// upstream: only attribute values of FHIR elements are rebased.
func noUpstreamXML(t *testing.T, what string, s *selfFHIR, resp *http.Response, body []byte) {
	t.Helper()
	noUpstream(t, what, s, resp, bytes.ReplaceAll(body, []byte(`<a href="`+s.URL+`/fhir/Patient/p1">`), nil))
}

// TestRebaseAnswerShapes: the upstream's own base never reaches the client,
// whatever the shape of the answer; the public base takes its place.
func TestRebaseAnswerShapes(t *testing.T) {
	s, gw := selfGateway(t, "", plainRoute)
	pub := gw + "/fhir"
	t.Run("chunked searchset page", func(t *testing.T) {
		resp, body := get(t, gw+"/fhir/Patient?_count=1")
		noUpstream(t, "search", s, resp, body)
		for _, want := range []string{`"url":"` + pub + `?_getpages=x&_getpagesoffset=1&_count=1"`, `"fullUrl":"` + pub + `/Patient/p1"`, `"reference":"` + pub + `/Organization/o"`} {
			if !bytes.Contains(body, []byte(want)) {
				t.Errorf("missing %s in %s", want, body)
			}
		}
		if got, want := resp.Header.Get("Link"), `<`+pub+`?_getpages=x&_getpagesoffset=2>; rel="next"`; got != want {
			t.Errorf("Link %q, want %q", got, want)
		}
		// A Bundle is rewritten as it streams: no length, or the right one.
		if cl := resp.Header.Get("Content-Length"); cl != "" && cl != fmt.Sprint(len(body)) {
			t.Errorf("Content-Length %s for %d bytes", cl, len(body))
		}
	})
	t.Run("gzip from upstream", func(t *testing.T) {
		resp, body := get(t, gw+"/fhir/Patient?_count=1", "Accept-Encoding", "gzip, br")
		if s.last().hdr.Get("Accept-Encoding") != "gzip" {
			t.Errorf("upstream asked with Accept-Encoding %q", s.last().hdr.Get("Accept-Encoding"))
		}
		noUpstream(t, "gzip search", s, resp, body)
		if !bytes.Contains(body, []byte(pub+"/Patient/p1")) || resp.Header.Get("Content-Encoding") != "" {
			t.Errorf("not decompressed and rebased: %s %s", resp.Header.Get("Content-Encoding"), body)
		}
	})
	t.Run("read", func(t *testing.T) {
		resp, body := get(t, gw+"/fhir/Patient/p1")
		noUpstream(t, "read", s, resp, body)
		if resp.Header.Get("Content-Location") != pub+"/Patient/p1/_history/2" || resp.Header.Get("ETag") != `W/"2"` {
			t.Errorf("headers %v", resp.Header)
		}
	})
	t.Run("HEAD", func(t *testing.T) {
		resp, body := do(t, http.MethodHead, gw+"/fhir/Patient/p1", nil)
		noUpstream(t, "HEAD", s, resp, body)
		if resp.Header.Get("Content-Location") != pub+"/Patient/p1/_history/2" {
			t.Errorf("HEAD Content-Location %q", resp.Header.Get("Content-Location"))
		}
	})
	t.Run("304", func(t *testing.T) {
		resp, body := get(t, gw+"/fhir/Patient/p1", "If-None-Match", `W/"2"`)
		if resp.StatusCode != http.StatusNotModified || len(body) != 0 {
			t.Fatalf("status %d, %d bytes", resp.StatusCode, len(body))
		}
		if s.last().hdr.Get("If-None-Match") != `W/"2"` {
			t.Errorf("If-None-Match not passed on")
		}
		noUpstream(t, "304", s, resp, body)
	})
	t.Run("OperationOutcome error", func(t *testing.T) {
		resp, body := get(t, gw+"/fhir/Patient/gone")
		if resp.StatusCode != http.StatusGone {
			t.Fatalf("status %d", resp.StatusCode)
		}
		noUpstream(t, "410", s, resp, body)
		if !bytes.Contains(body, []byte(pub+"/Patient/gone was deleted")) {
			t.Errorf("body %s", body)
		}
	})
	t.Run("XML body rebased as it streams, headers rebased", func(t *testing.T) {
		for _, enc := range []string{"identity", "gzip"} {
			resp, body := do(t, http.MethodGet, gw+"/fhir/Patient/p1?_format=xml", nil, "Accept-Encoding", enc)
			if sent := s.last().hdr.Get("Accept-Encoding"); enc == "gzip" && sent != "gzip" {
				t.Errorf("%s: the FHIR server was sent Accept-Encoding %q: its gzip is not undone by the gateway", enc, sent)
			}
			noUpstreamXML(t, "XML "+enc, s, resp, body)
			for _, want := range []string{
				`<url value="` + pub + `?_getpages=x&amp;_getpagesoffset=1&amp;_count=1&amp;_format=xml"/>`,
				`<fullUrl value="` + pub + `/Patient/p1"/>`,
				`<reference value="` + pub + `/Patient/p0"/>`,
				`<a href="` + s.URL + `/fhir/Patient/p1">`, // the narrative is the server's own words
			} {
				if !bytes.Contains(body, []byte(want)) {
					t.Errorf("%s: missing %s in %s", enc, want, body)
				}
			}
			if ce := resp.Header.Get("Content-Encoding"); ce != "" {
				t.Errorf("%s: Content-Encoding %q of a body sent plain", enc, ce)
			}
			if resp.Header.Get("Content-Location") != pub+"/Patient/p1/_history/2" {
				t.Errorf("Content-Location %q", resp.Header.Get("Content-Location"))
			}
			if resp.Header.Get("ETag") != `W/"2"` {
				t.Errorf("ETag %q", resp.Header.Get("ETag"))
			}
		}
	})
	t.Run("create, Prefer return=minimal", func(t *testing.T) {
		resp, body := do(t, http.MethodPost, gw+"/fhir/Patient", strings.NewReader(`{"resourceType":"Patient"}`), "Content-Type", "application/fhir+json", "Prefer", "return=minimal")
		if resp.StatusCode != http.StatusCreated || len(body) != 0 {
			t.Fatalf("status %d body %s", resp.StatusCode, body)
		}
		noUpstream(t, "create", s, resp, body)
		if resp.Header.Get("Location") != pub+"/Patient/new/_history/1" {
			t.Errorf("Location %q", resp.Header.Get("Location"))
		}
	})
}

// TestPublicBaseDerivation: the public base follows the path prefix the
// client used, X-Forwarded-* from trusted proxies only, and public_base.
func TestPublicBaseDerivation(t *testing.T) {
	t.Run("prefix removed by handle_path", func(t *testing.T) {
		s, gw := selfGateway(t, "", "\thandle_path /api/fhir/* {\n\t\trewrite * /fhir{path}\n\t\tfhir_rewrite\n\t\treverse_proxy UPSTREAM\n\t}")
		resp, body := get(t, gw+"/api/fhir/Patient/p1")
		noUpstream(t, "prefix", s, resp, body)
		if !bytes.Contains(body, []byte(`"`+gw+`/api/fhir/Patient/p0"`)) {
			t.Errorf("body %s", body)
		}
	})
	t.Run("untrusted X-Forwarded-* ignored", func(t *testing.T) {
		_, gw := selfGateway(t, "", plainRoute)
		_, body := get(t, gw+"/fhir/Patient/p1", "X-Forwarded-Host", "evil.example", "X-Forwarded-Proto", "https")
		if !bytes.Contains(body, []byte(`"`+gw+`/fhir/Patient/p0"`)) {
			t.Errorf("body %s", body)
		}
	})
	t.Run("trusted X-Forwarded-* honoured", func(t *testing.T) {
		_, gw := selfGateway(t, "\tservers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t}", plainRoute)
		resp, body := get(t, gw+"/fhir/Patient/p1", "X-Forwarded-Host", "gw.example.org", "X-Forwarded-Proto", "https", "X-Forwarded-Prefix", "/api")
		if !bytes.Contains(body, []byte(`"https://gw.example.org/api/fhir/Patient/p0"`)) {
			t.Errorf("body %s", body)
		}
		if got := resp.Header.Get("Content-Location"); got != "https://gw.example.org/api/fhir/Patient/p1/_history/2" {
			t.Errorf("Content-Location %q", got)
		}
	})
	t.Run("public_base", func(t *testing.T) {
		_, gw := selfGateway(t, "", "\thandle /fhir/* {\n\t\tfhir_rewrite {\n\t\t\tpublic_base https://fhir.example.org/r4/\n\t\t}\n\t\treverse_proxy UPSTREAM\n\t}")
		_, body := get(t, gw+"/fhir/Patient/p1")
		if !bytes.Contains(body, []byte(`"https://fhir.example.org/r4/Patient/p0"`)) {
			t.Errorf("body %s", body)
		}
	})
	t.Run("rebase off", func(t *testing.T) {
		s, gw := selfGateway(t, "", "\thandle /fhir/* {\n\t\tfhir_rewrite {\n\t\t\trebase off\n\t\t}\n\t\treverse_proxy UPSTREAM\n\t}")
		resp, body := get(t, gw+"/fhir/Patient/p1")
		if !bytes.Contains(body, []byte(s.URL+"/fhir/Patient/p0")) || !strings.HasPrefix(resp.Header.Get("Content-Location"), s.URL) {
			t.Errorf("rebased although off: %s", body)
		}
	})
}

// TestWriteBack: what a client writes loses the injected extensions and has
// the public base swapped for the upstream one, with a correct length;
// everything else reaches the FHIR server as it was sent.
func TestWriteBack(t *testing.T) {
	s, gw := selfGateway(t, "", "\t@fhir path /fhir /fhir/*\n\thandle @fhir {\n\t\tfhir_rewrite {\n\t\t\tmax_body_size 2KiB\n\t\t}\n\t\treverse_proxy UPSTREAM\n\t}")
	pub, up := gw+"/fhir", s.URL+"/fhir"
	ours := `{"url":"` + extRS + `","valueUrl":"` + gw + `/wado-rs/studies/1.2.3/series/1.2.3.1"}`
	mine := `{"url":"http://example.org/mine","valueString":"kept"}`
	study := func(base, ext string) string {
		return `{"resourceType":"ImagingStudy","id":"s1","subject":{"reference":"` + base + `/Patient/p1"},"series":[{` + ext + `"uid":"1.2.3.1","instance":[{"uid":"1.2.3.1.1"}]}]}`
	}
	cases := []struct {
		name, method, ctype, in, want string
	}{
		{"PUT resource", "PUT", "application/fhir+json", study(pub, `"extension":[`+ours+`],`), study(up, ``)},
		{"PUT keeps the client's own extension", "PUT", "application/json", study(pub, `"extension":[`+mine+`,`+ours+`],`), study(up, `"extension":[`+mine+`],`)},
		{"transaction Bundle", "POST", "application/fhir+json; charset=utf-8",
			`{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"` + pub + `/ImagingStudy/s1","resource":` + study(pub, `"extension":[`+ours+`],`) + `,"request":{"method":"PUT","url":"ImagingStudy/s1"}}]}`,
			`{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"` + up + `/ImagingStudy/s1","resource":` + study(up, ``) + `,"request":{"method":"PUT","url":"ImagingStudy/s1"}}]}`},
		{"JSON Patch", "PATCH", "application/json-patch+json",
			`[{"op":"add","path":"/series/0/extension","value":[` + ours + `]},{"op":"replace","path":"/description","value":"x"}]`,
			`[{"op":"replace","path":"/description","value":"x"}]`},
		{"FHIRPath Patch", "PATCH", "application/fhir+json",
			`{"resourceType":"Parameters","parameter":[{"name":"operation","part":[{"name":"type","valueCode":"delete"},{"name":"path","valueString":"ImagingStudy.series[0].extension.where(url='` + extRS + `')"}]}]}`,
			`{"resourceType":"Parameters","parameter":[]}`},
		{"XML: nothing on the public base", "PUT", "application/fhir+xml", `<ImagingStudy xmlns="http://hl7.org/fhir"><extension url="` + extRS + `"/></ImagingStudy>`, ""},
		{"XML: the public base swapped back", "PUT", "application/fhir+xml; charset=utf-8",
			`<ImagingStudy xmlns="http://hl7.org/fhir"><subject><reference value="` + pub + `/Patient/p1"/></subject><!-- ` + pub + ` --></ImagingStudy>`,
			`<ImagingStudy xmlns="http://hl7.org/fhir"><subject><reference value="` + up + `/Patient/p1"/></subject><!-- ` + pub + ` --></ImagingStudy>`},
		{"XML over max_body_size", "PUT", "application/fhir+xml", `<ImagingStudy xmlns="http://hl7.org/fhir"><subject><reference value="` + pub + `/Patient/p1"/></subject><description value="` + strings.Repeat("x", 2100) + `"/></ImagingStudy>`, ""},
		{"not JSON or XML", "PUT", "text/plain", `{"subject":{"reference":"` + pub + `/Patient/p1"}}`, ""},
		{"over max_body_size", "PUT", "application/fhir+json", study(pub, `"extension":[`+ours+`],"description":"`+strings.Repeat("x", 2100)+`",`), ""},
		{"malformed", "PUT", "application/fhir+json", `{"extension":[` + ours + `]`, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := c.want
			if want == "" {
				want = c.in
			}
			resp, _ := do(t, c.method, gw+"/fhir/ImagingStudy/s1", strings.NewReader(c.in), "Content-Type", c.ctype, "If-Match", `W/"3"`, "Prefer", "return=minimal")
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("status %d", resp.StatusCode)
			}
			got := s.last()
			if string(got.body) != want {
				t.Errorf("upstream got\n%s\nwant\n%s", got.body, want)
			}
			if got.contentLength != fmt.Sprint(len(got.body)) {
				t.Errorf("Content-Length %s for %d bytes", got.contentLength, len(got.body))
			}
			if got.hdr.Get("If-Match") != `W/"3"` || got.ctype != c.ctype {
				t.Errorf("headers changed: If-Match %q, Content-Type %q", got.hdr.Get("If-Match"), got.ctype)
			}
		})
	}
	t.Run("chunked request body", func(t *testing.T) {
		in := study(pub, `"extension":[`+ours+`],`)
		req, _ := http.NewRequest(http.MethodPut, gw+"/fhir/ImagingStudy/s1", io.MultiReader(strings.NewReader(in[:10]), strings.NewReader(in[10:])))
		req.Header.Set("Content-Type", "application/fhir+json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := s.last(); string(got.body) != study(up, ``) || got.contentLength != fmt.Sprint(len(got.body)) {
			t.Errorf("upstream got %s (Content-Length %s)", got.body, got.contentLength)
		}
	})
}
