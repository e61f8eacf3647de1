package module_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"
)

// A corpus of hostile requests, sent byte for byte (net.Dial and a
// hand-written request, since http.Client cleans and re-encodes paths) to
// one gateway with every route: the FHIR route (fhir_rewrite and
// reverse_proxy), dicomweb, wado_uri and fhir_notify, in front of a FHIR
// server and two archives that record every request. Each case says the
// exact status, who answers it, and which upstreams may see a request.

// hostileUpstream is a set of the places a request through the gateway may reach.
type hostileUpstream uint8

const (
	// upFHIR is the FHIR server, sent a client request by the FHIR route.
	upFHIR hostileUpstream = 1 << iota
	// upLookup is the FHIR server, asked by the gateway for itself
	// (routing, Endpoints, access decisions).
	upLookup
	// upA and upB are the archives.
	upA
	upB
	// upAS is the authorization server (token introspection).
	upAS
)

// hostileOrigin says who answers a case.
type hostileOrigin uint8

const (
	// byGateway: one of the gateway's handlers; an error is JSON with a
	// message (or an OperationOutcome on the FHIR route).
	byGateway hostileOrigin = iota
	// byFHIR: the FHIR server's answer, passed through; an error is its
	// OperationOutcome.
	byFHIR
	// byArchive: an archive's answer (or a merge of archives' answers).
	byArchive
	// byCaddy: no route matched; Caddy answers an empty 200.
	byCaddy
	// byServer: net/http refused the request before Caddy saw it, with a
	// plain-text error.
	byServer
)

// hostileCase is one request of the corpus and what must come of it.
type hostileCase struct {
	name   string
	method string
	// target is the request target exactly as sent; {host} stands for
	// the gateway's host:port.
	target string
	// header lines, "Name: value" ({host} replaced); a Host line
	// replaces the default one.
	header []string
	body   []byte
	// chunked sends body with Transfer-Encoding: chunked.
	chunked bool
	// raw, when set, is the whole request head as sent ({host}
	// replaced), followed by body as it is.
	raw string
	// halfClose closes the sending side once the request is written, so
	// that a body shorter than its Content-Length ends.
	halfClose bool

	status int
	by     hostileOrigin
	// msg is part of the error message (JSON message, OperationOutcome
	// diagnostics, or net/http's text).
	msg string
	// up are the upstreams that may see a request; those that pass the
	// answer through (byFHIR, byArchive) must.
	up    hostileUpstream
	check func(t *testing.T, a *hostileAnswer)
}

// hostileAnswer is what came of one case.
type hostileAnswer struct {
	resp *http.Response
	body []byte
	host string        // the gateway's host:port
	fhir []hostileSeen // requests the FHIR route proxied
	a, b []*http.Request
}

// hostileSeen is one request the fake FHIR server got.
type hostileSeen struct {
	method, uri, host string
	header            http.Header
	size              int64
	sum               [32]byte
	head              []byte // the first MiB of the body
	err               error  // reading the body
}

// hostileStudy is one study the fake FHIR server knows.
type hostileStudy struct {
	uid, id, patient string
	endpoints        []string // Endpoint ids
	series           map[string][]string
}

// hostileFHIR is a FHIR server that records every request. Requests that
// carry X-Forwarded-For come through the FHIR route (reverse_proxy sets
// it); the others are the gateway's own look-ups, answered from studies
// and endpoints: routing searches, access searches made with the client's
// token, and Endpoint searches.
type hostileFHIR struct {
	*httptest.Server
	studies   []hostileStudy
	endpoints map[string]string // id → JSON
	study     string            // the ImagingStudy served at /fhir/ImagingStudy/s1; {base} is the FHIR base

	mu      sync.Mutex
	proxied []hostileSeen
	lookups []hostileSeen
}

func (f *hostileFHIR) serve(w http.ResponseWriter, r *http.Request) {
	sum := sha256.New()
	var head bytes.Buffer
	n, err := io.Copy(io.MultiWriter(sum, hostileCapWriter{&head, 1 << 20}), r.Body)
	seen := hostileSeen{method: r.Method, uri: r.RequestURI, host: r.Host, header: r.Header.Clone(), size: n, head: head.Bytes(), err: err}
	copy(seen.sum[:], sum.Sum(nil))
	proxied := r.Header.Get("X-Forwarded-For") != ""
	f.mu.Lock()
	if proxied {
		f.proxied = append(f.proxied, seen)
	} else {
		f.lookups = append(f.lookups, seen)
	}
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/fhir+json;charset=UTF-8")
	if !proxied {
		f.lookup(w, r)
		return
	}
	outcome := func(status int, severity, code, msg string) {
		b, _ := json.Marshal(map[string]any{"resourceType": "OperationOutcome",
			"issue": []map[string]string{{"severity": severity, "code": code, "diagnostics": msg}}})
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(status)
		_, _ = w.Write(b)
	}
	switch {
	case err != nil:
		outcome(http.StatusBadRequest, "error", "invalid", "the body could not be read: "+err.Error())
		return
	case strings.Contains(r.Header.Get("Content-Type"), "json") && r.Header.Get("Content-Encoding") == "" &&
		n > 0 && n <= 1<<20 && !json.Valid(head.Bytes()):
		outcome(http.StatusBadRequest, "error", "invalid", "the body is not valid JSON")
		return
	}
	base := "http://" + r.Host + "/fhir"
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		body := f.read(base, r.URL.Path)
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = w.Write(body)
		}
	case http.MethodPost:
		w.Header().Set("Location", base+"/Patient/new/_history/1")
		outcome(http.StatusCreated, "information", "informational", "created")
	case http.MethodPut, http.MethodPatch:
		outcome(http.StatusOK, "information", "informational", "updated")
	case http.MethodDelete:
		outcome(http.StatusOK, "information", "informational", "deleted")
	case http.MethodOptions:
		w.Header().Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
		body := `{"resourceType":"CapabilityStatement","status":"active","kind":"instance","fhirVersion":"4.0.1","format":["json"]}`
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = io.WriteString(w, body)
	default:
		w.Header().Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
		outcome(http.StatusMethodNotAllowed, "error", "not-supported", "the method "+r.Method+" is not supported")
	}
}

// read answers a GET on the FHIR route.
func (f *hostileFHIR) read(base, path string) []byte {
	study := strings.ReplaceAll(f.study, "{base}", base)
	switch path {
	case "/fhir/ImagingStudy/s1":
		return []byte(study)
	case "/fhir/ImagingStudy":
		return fmt.Appendf(nil, `{"resourceType":"Bundle","type":"searchset","total":1,"link":[{"relation":"self","url":%q}],"entry":[{"fullUrl":%q,"resource":%s,"search":{"mode":"match"}}]}`,
			base+"/ImagingStudy", base+"/ImagingStudy/s1", study)
	}
	self, _ := json.Marshal(base + strings.TrimPrefix(path, "/fhir"))
	return fmt.Appendf(nil, `{"resourceType":"Bundle","type":"searchset","total":0,"link":[{"relation":"self","url":%s}]}`, self)
}

// lookup answers the gateway's own requests.
func (f *hostileFHIR) lookup(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var entries []string
	switch r.URL.Path {
	case "/fhir/ImagingStudy":
		routing := q.Get("_include") == "ImagingStudy:endpoint"
		patient := strings.TrimPrefix(q.Get("patient"), "Patient/")
		uids := map[string]bool{}
		for _, tok := range strings.Split(q.Get("identifier"), ",") {
			if sys, val, ok := strings.Cut(tok, "|"); ok && sys == "urn:dicom:uid" {
				uids[strings.TrimPrefix(val, "urn:oid:")] = true
			}
		}
		included := map[string]bool{}
		for _, st := range f.studies {
			if !uids[st.uid] || !routing && patient != "" && patient != st.patient {
				continue
			}
			var refs, series []string
			for _, e := range st.endpoints {
				refs = append(refs, fmt.Sprintf(`{"reference":"Endpoint/%s"}`, e))
				included[e] = true
			}
			for se, insts := range st.series {
				var in []string
				for _, i := range insts {
					in = append(in, fmt.Sprintf(`{"uid":%q}`, i))
				}
				series = append(series, fmt.Sprintf(`{"uid":%q,"instance":[%s]}`, se, strings.Join(in, ",")))
			}
			entries = append(entries, fmt.Sprintf(`{"resource":{"resourceType":"ImagingStudy","id":%q,"identifier":[{"system":"urn:dicom:uid","value":"urn:oid:%s"}],"subject":{"reference":"Patient/%s"},"endpoint":[%s],"series":[%s]},"search":{"mode":"match"}}`,
				st.id, st.uid, st.patient, strings.Join(refs, ","), strings.Join(series, ",")))
		}
		if routing {
			for id := range included {
				entries = append(entries, `{"resource":`+f.endpoints[id]+`,"search":{"mode":"include"}}`)
			}
		}
	case "/fhir/Endpoint":
		for _, id := range strings.Split(q.Get("_id"), ",") {
			if e, ok := f.endpoints[id]; ok {
				entries = append(entries, `{"resource":`+e+`}`)
			}
		}
	default:
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-found"}]}`)
		return
	}
	fmt.Fprintf(w, `{"resourceType":"Bundle","type":"searchset","entry":[%s]}`, strings.Join(entries, ","))
}

// hostileCapWriter keeps the first limit bytes written to it and takes the rest
// without keeping it.
type hostileCapWriter struct {
	buf   *bytes.Buffer
	limit int
}

func (c hostileCapWriter) Write(p []byte) (int, error) {
	if room := c.limit - c.buf.Len(); room > 0 {
		c.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// hostileHoldings is what an archive holds: study → series → instances.
type hostileHoldings map[string]map[string][]string

// hostileArchive answers like a DICOMweb server: QIDO-RS searches and
// metadata from its holdings, as DICOM JSON whose RetrieveURLs are its own
// (limit must be a non-negative integer, as real archives require), and
// anything else with a line of text naming what it got.
func hostileArchive(name, prefix string, holds hostileHoldings) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		p := strings.TrimPrefix(r.URL.Path, prefix)
		segs := strings.Split(strings.Trim(p, "/"), "/")
		last := segs[len(segs)-1]
		isQIDO := last == "studies" || last == "series" || last == "instances"
		if r.Method != http.MethodGet && r.Method != http.MethodHead || !isQIDO && last != "metadata" {
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprintf(w, "archive %s: %s %s", name, r.Method, r.RequestURI)
			return
		}
		q := r.URL.Query()
		if v := q.Get("limit"); v != "" {
			if n, err := strconv.Atoi(v); err != nil || n < 0 {
				http.Error(w, "limit must be a non-negative integer", http.StatusBadRequest)
				return
			}
		}
		want := func(i int) string {
			if i < len(segs) && i > 0 && segs[i-1] == [...]string{"studies", "series", "instances"}[i/2] {
				return segs[i]
			}
			return ""
		}
		study, series, inst := want(1), want(3), want(5)
		if last == "metadata" {
			last = "instances"
		}
		self := "http://" + r.Host + prefix
		var out []string
		seen := map[string]bool{}
		for _, st := range slices.Sorted(maps.Keys(holds)) {
			if study != "" && st != study || q.Get("StudyInstanceUID") != "" && q.Get("StudyInstanceUID") != st {
				continue
			}
			for _, se := range slices.Sorted(maps.Keys(holds[st])) {
				if series != "" && se != series {
					continue
				}
				for _, in := range holds[st][se] {
					if inst != "" && in != inst || q.Get("SOPInstanceUID") != "" && q.Get("SOPInstanceUID") != in {
						continue
					}
					var ds string
					switch last {
					case "studies":
						ds = fmt.Sprintf(`{"0020000D":{"vr":"UI","Value":[%q]},"00081190":{"vr":"UR","Value":["%s/studies/%s"]}}`, st, self, st)
					case "series":
						ds = fmt.Sprintf(`{"0020000D":{"vr":"UI","Value":[%q]},"0020000E":{"vr":"UI","Value":[%q]},"00081190":{"vr":"UR","Value":["%s/studies/%s/series/%s"]}}`, st, se, self, st, se)
					default:
						ds = fmt.Sprintf(`{"0020000D":{"vr":"UI","Value":[%q]},"0020000E":{"vr":"UI","Value":[%q]},"00080018":{"vr":"UI","Value":[%q]},"00081190":{"vr":"UR","Value":["%s/studies/%s/series/%s/instances/%s"]}}`, st, se, in, self, st, se, in)
					}
					if !seen[ds] {
						seen[ds] = true
						out = append(out, ds)
					}
				}
			}
		}
		w.Header().Set("Content-Type", "application/dicom+json")
		fmt.Fprintf(w, "[%s]", strings.Join(out, ","))
	}
}

// hostileGateway is the gateway and its upstreams.
type hostileGateway struct {
	gw   string // base URL
	host string // host:port
	fhir *hostileFHIR
	a, b *fakeArchive
	as   *smartAS // with authorize only
}

// Studies: 1.2.3 in archive a (which has a WADO-URI base), 1.2.4 in
// archive b (which has none), and for access control 1.1 of patient p1 and
// 2.1 of patient p2, both in a.
var hostileStudies = []hostileStudy{
	{uid: "1.2.3", id: "s1", patient: "p3", endpoints: []string{"a", "a-uri"}, series: map[string][]string{"1.2.3.1": {"1.2.3.1.1"}}},
	{uid: "1.2.4", id: "s2", patient: "p3", endpoints: []string{"b"}, series: map[string][]string{"1.2.4.1": {"1.2.4.1.1"}}},
	{uid: "1.1", id: "s11", patient: "p1", endpoints: []string{"a", "a-uri"}, series: map[string][]string{"1.1.1": {"1.1.1.1"}}},
	{uid: "2.1", id: "s21", patient: "p2", endpoints: []string{"a", "a-uri"}, series: map[string][]string{"2.1.1": {"2.1.1.1"}}},
}

// newHostileGateway starts the upstreams and a gateway with every route;
// with authorize, DICOMweb and WADO-URI need a SMART token (alice: patient
// p1; bob: patient p2; doctor: user/*.rs; system: system/*.cruds).
func newHostileGateway(t testing.TB, authorize bool) *hostileGateway {
	g := &hostileGateway{
		a: newFakeArchive(t, "/dicom-web"),
		b: newFakeArchive(t, "/pacs/dicom-web"),
	}
	g.a.serve = hostileArchive("a", "/dicom-web", hostileHoldings{
		"1.2.3": {"1.2.3.1": {"1.2.3.1.1"}},
		"1.1":   {"1.1.1": {"1.1.1.1"}},
		"2.1":   {"2.1.1": {"2.1.1.1"}},
	})
	g.b.serve = hostileArchive("b", "/pacs/dicom-web", hostileHoldings{"1.2.4": {"1.2.4.1": {"1.2.4.1.1"}}})
	f := &hostileFHIR{
		studies: hostileStudies,
		endpoints: map[string]string{
			"a":     endpointJSON("a", "active", "dicom-wado-rs", g.a.base()),
			"a-uri": endpointJSON("a-uri", "active", "dicom-wado-uri", g.a.URL+"/wado"),
			"b":     endpointJSON("b", "active", "dicom-wado-rs", g.b.base()),
		},
		study: `{"resourceType":"ImagingStudy","id":"s1","contained":[` +
			endpointJSON("ep-rs", "active", "dicom-wado-rs", g.a.base()) + `,` +
			endpointJSON("ep-uri", "active", "dicom-wado-uri", g.a.URL+"/wado") +
			`],"identifier":[{"system":"urn:dicom:uid","value":"urn:oid:1.2.3"}],"subject":{"reference":"{base}/Patient/p3"},` +
			`"endpoint":[{"reference":"#ep-rs"},{"reference":"#ep-uri"}],"series":[{"uid":"1.2.3.1","instance":[{"uid":"1.2.3.1.1"}]}]}`,
	}
	f.Server = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.Start()
	t.Cleanup(f.Close)
	g.fhir = f
	auth := ""
	if authorize {
		g.as = newSmartAS(t)
		exp := time.Now().Add(time.Hour).Unix()
		g.as.mu.Lock()
		g.as.tokens["alice"] = map[string]any{"active": true, "scope": "launch/patient patient/ImagingStudy.rs", "patient": "p1", "exp": exp, "client_id": "app"}
		g.as.tokens["bob"] = map[string]any{"active": true, "scope": "patient/ImagingStudy.rs", "patient": "p2", "exp": exp}
		g.as.tokens["doctor"] = map[string]any{"active": true, "scope": "user/*.rs", "exp": exp}
		g.as.tokens["system"] = map[string]any{"active": true, "scope": "system/*.cruds", "exp": exp}
		g.as.mu.Unlock()
		auth = fmt.Sprintf("\t\tauthorize {\n\t\t\tintrospect %s/token/introspection {\n\t\t\t\tclient_id gw\n\t\t\t\tclient_secret gw-secret\n\t\t\t}\n\t\t}\n", g.as.URL)
	}
	globals := fmt.Sprintf(`	fhir_imaging {
		fhir %s/fhir
		archive a %s {
			wado_uri %s/wado
		}
		archive b %s
		lookup_timeout 2s
%s	}`, f.URL, g.a.base(), g.a.URL, g.b.base(), auth)
	site := fmt.Sprintf(`	@fhir path /fhir /fhir/*
	handle @fhir {
		fhir_rewrite
		reverse_proxy %s {
			header_up Host {upstream_hostport}
		}
	}
	handle_path /wado-rs/* {
		dicomweb
	}
	handle /wado {
		wado_uri
	}
	handle_path /fhir_imaging/notify* {
		fhir_notify
	}`, hostPort(f.URL))
	g.gw = startGateway(t, globals, site)
	g.host = hostPort(g.gw)
	return g
}

// hostileCounts is how many requests each upstream has had.
type hostileCounts [5]int

func (g *hostileGateway) counts() hostileCounts {
	g.fhir.mu.Lock()
	c := hostileCounts{len(g.fhir.proxied), len(g.fhir.lookups)}
	g.fhir.mu.Unlock()
	c[2], c[3] = len(g.a.requests()), len(g.b.requests())
	if g.as != nil {
		c[4] = int(g.as.calls.Load())
	}
	return c
}

var hostileUpstreamNames = [...]string{"the FHIR server (FHIR route)", "the FHIR server (gateway look-up)", "archive a", "archive b", "the authorization server"}

// request returns the bytes of c's request.
func (c *hostileCase) request(host string) net.Buffers {
	if c.raw != "" {
		return net.Buffers{[]byte(strings.ReplaceAll(c.raw, "{host}", host)), c.body}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\n", c.method, strings.ReplaceAll(c.target, "{host}", host))
	ownHost := false
	for _, h := range c.header {
		ownHost = ownHost || strings.HasPrefix(strings.ToLower(h), "host:")
	}
	if !ownHost {
		b.WriteString("Host: " + host + "\r\n")
	}
	for _, h := range c.header {
		b.WriteString(strings.ReplaceAll(h, "{host}", host) + "\r\n")
	}
	switch {
	case c.chunked:
		b.WriteString("Transfer-Encoding: chunked\r\n")
	case c.body != nil:
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(c.body))
	}
	b.WriteString("Connection: close\r\n\r\n")
	bufs := net.Buffers{[]byte(b.String())}
	switch {
	case c.chunked && len(c.body) > 0:
		bufs = append(bufs, fmt.Appendf(nil, "%x\r\n", len(c.body)), c.body, []byte("\r\n0\r\n\r\n"))
	case c.chunked:
		bufs = append(bufs, []byte("0\r\n\r\n"))
	case c.body != nil:
		bufs = append(bufs, c.body)
	}
	return bufs
}

// exchange sends c's request on a connection of its own and reads the
// answer. The request is written while the answer is read, so that an
// answer that comes before the whole body was taken is seen.
func (g *hostileGateway) exchange(c *hostileCase) (*http.Response, []byte, error) {
	conn, err := net.DialTimeout("tcp", g.host, 5*time.Second)
	if err != nil {
		return nil, nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	written := make(chan struct{})
	go func() {
		defer close(written)
		bufs := c.request(g.host)
		if _, err := bufs.WriteTo(conn); err == nil && c.halfClose {
			_ = conn.(*net.TCPConn).CloseWrite()
		}
	}()
	defer func() {
		conn.Close() // ends a write the gateway stopped reading
		<-written
	}()
	method := c.method
	if c.raw != "" {
		method, _, _ = strings.Cut(c.raw, " ")
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		return nil, nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, body, err
}

// run sends c and checks what came of it.
func (g *hostileGateway) run(t *testing.T, c hostileCase) {
	t.Helper()
	before := g.counts()
	fhirBefore, aBefore, bBefore := len(g.fhir.proxiedRequests()), len(g.a.requests()), len(g.b.requests())
	resp, body, err := g.exchange(&c)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	after := g.counts()
	show := string(body)
	if len(show) > 300 {
		show = show[:300] + "..."
	}
	if resp.StatusCode != c.status {
		t.Errorf("status %d, want %d: %s", resp.StatusCode, c.status, show)
	}
	required := hostileUpstream(0)
	switch c.by {
	case byFHIR:
		required = upFHIR
	case byArchive:
		required = c.up & (upA | upB)
	}
	for i, name := range hostileUpstreamNames {
		bit := hostileUpstream(1) << i
		switch {
		case c.up&bit == 0 && after[i] != before[i]:
			t.Errorf("%s got %d requests, want none", name, after[i]-before[i])
		case required&bit != 0 && after[i] == before[i]:
			t.Errorf("%s got no request", name)
		}
	}
	headOnly := c.method == http.MethodHead || strings.HasPrefix(c.raw, "HEAD ")
	switch {
	case c.by == byCaddy:
		if resp.StatusCode == http.StatusOK && len(body) != 0 {
			t.Errorf("an answer from no route has a body: %s", show)
		}
	case c.by == byServer:
		if !strings.Contains(string(body), c.msg) {
			t.Errorf("net/http's answer %q does not say %q", show, c.msg)
		}
	case resp.StatusCode >= 400 && !headOnly:
		msg, ok := hostileErrorMessage(body, c.by == byFHIR)
		if !ok {
			t.Errorf("error answer is not JSON with a message or an OperationOutcome: %s", show)
		} else if !strings.Contains(msg, c.msg) {
			t.Errorf("message %q does not say %q", msg, c.msg)
		}
	}
	if resp.StatusCode == http.StatusMethodNotAllowed && c.by == byGateway {
		allow := resp.Header.Get("Allow")
		methods := map[string]bool{}
		for _, m := range strings.Split(allow, ",") {
			methods[strings.TrimSpace(m)] = true
		}
		switch {
		case allow == "":
			t.Errorf("405 without an Allow header")
		case methods[c.method]:
			t.Errorf("405 for %s with Allow %q, which lists it", c.method, allow)
		}
	}
	if c.check != nil {
		a := &hostileAnswer{resp: resp, body: body, host: g.host}
		a.fhir = g.fhir.proxiedRequests()[fhirBefore:]
		a.a, a.b = g.a.requests()[aBefore:], g.b.requests()[bBefore:]
		c.check(t, a)
	}
}

func (f *hostileFHIR) proxiedRequests() []hostileSeen {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]hostileSeen(nil), f.proxied...)
}

// hostileErrorMessage returns the message of an error body: a JSON message, or
// with outcome, an OperationOutcome's diagnostics.
func hostileErrorMessage(body []byte, outcome bool) (string, bool) {
	if !gjson.ValidBytes(body) {
		return "", false
	}
	doc := gjson.ParseBytes(body)
	if m := doc.Get("message").String(); m != "" && !outcome {
		return m, true
	}
	if doc.Get("resourceType").String() == "OperationOutcome" {
		return doc.Get("issue.0.diagnostics").String(), true
	}
	return "", false
}

// The bodies of the write-back cases, made once.
var (
	hostileBigStudy = sync.OnceValue(func() []byte {
		// 40 MiB, over max_body_size (32 MiB), with an injected extension
		// that must reach the FHIR server as it is.
		var b bytes.Buffer
		b.WriteString(`{"resourceType":"ImagingStudy","id":"s1","series":[{"uid":"1.2.3.1","extension":[{"url":"` + extRS + `","valueUrl":"http://gw.example/wado-rs/studies/1.2.3/series/1.2.3.1"}]}],"note":[{"text":"`)
		chunk := strings.Repeat("0123456789abcdef", 4096)
		for b.Len() < 40<<20 {
			b.WriteString(chunk)
		}
		b.WriteString(`"}]}`)
		return b.Bytes()
	})
	hostileJSONPatch = sync.OnceValue(func() []byte {
		var b bytes.Buffer
		b.WriteString("[")
		for range 9999 {
			b.WriteString(`{"op":"replace","path":"/status","value":"available"},`)
		}
		b.WriteString(`{"op":"add","path":"/series/0/extension","value":[{"url":"` + extRS + `","valueUrl":"http://gw.example/wado-rs/studies/1.2.3/series/1.2.3.1"}]}]`)
		return b.Bytes()
	})
)

// hostileFHIRGot checks that the FHIR server got exactly one request, with
// exactly body.
func hostileFHIRGot(body []byte) func(t *testing.T, a *hostileAnswer) {
	return func(t *testing.T, a *hostileAnswer) {
		t.Helper()
		if len(a.fhir) != 1 {
			t.Fatalf("the FHIR server got %d requests, want 1", len(a.fhir))
		}
		got := a.fhir[0]
		if got.err != nil || got.size != int64(len(body)) || got.sum != sha256.Sum256(body) {
			t.Errorf("the FHIR server got %d bytes (%v), not the %d sent", got.size, got.err, len(body))
		}
	}
}

// hostileNoForeignHost checks that an answer names no host but the gateway's and
// that its URLs (RetrieveURLs, or the FHIR answer's) are on the gateway.
func hostileNoForeignHost(t *testing.T, a *hostileAnswer) {
	t.Helper()
	if bytes.Contains(a.body, []byte("evil")) {
		t.Errorf("the answer names the forwarded host or prefix: %s", a.body)
	}
	for _, name := range []string{"Location", "Content-Location", "Link"} {
		if v := a.resp.Header.Get(name); strings.Contains(v, "evil") {
			t.Errorf("%s: %s", name, v)
		}
	}
	urls := 0
	var walk func(v gjson.Result)
	walk = func(v gjson.Result) {
		switch {
		case v.IsObject() || v.IsArray():
			v.ForEach(func(_, c gjson.Result) bool { walk(c); return true })
		case v.Type == gjson.String && strings.Contains(v.String(), "://"):
			urls++
			if !strings.HasPrefix(v.String(), "http://"+a.host+"/") && !strings.HasPrefix(v.String(), "https://fhirimaging.github.io/") &&
				!strings.HasPrefix(v.String(), "http://terminology.hl7.org/") {
				t.Errorf("URL %q is not on the gateway", v.String())
			}
		}
	}
	walk(gjson.ParseBytes(a.body))
	if urls == 0 {
		t.Errorf("the answer has no URL to check: %s", a.body)
	}
	for _, r := range a.fhir {
		if fh := r.header.Get("X-Forwarded-Host"); fh != a.host {
			t.Errorf("the FHIR server got X-Forwarded-Host %q, want %q", fh, a.host)
		}
	}
}

// hostileDotMsg is what the gateway says of a path with dot segments.
const hostileDotMsg = `"." or ".."`

// Common request parts.
const (
	hostileWADOQuery = "requestType=WADO&studyUID=1.2.3&seriesUID=1.2.3.1&objectUID=1.2.3.1.1"
	hostileFHIRJSON  = "Content-Type: application/fhir+json"
)

// hostileCorpus is the corpus for the open gateway (no authorize).
func hostileCorpus() []hostileCase {
	get := func(name, target string, status int, by hostileOrigin, msg string, up hostileUpstream) hostileCase {
		return hostileCase{name: name, method: http.MethodGet, target: target, status: status, by: by, msg: msg, up: up}
	}
	dots := func(name, method, target string) hostileCase {
		return hostileCase{name: name, method: method, target: target, status: 400, by: byGateway, msg: hostileDotMsg}
	}
	withHeader := func(c hostileCase, h ...string) hostileCase { c.header = append(c.header, h...); return c }
	withCheck := func(c hostileCase, f func(*testing.T, *hostileAnswer)) hostileCase { c.check = f; return c }
	routedA := upLookup | upA

	cases := []hostileCase{
		// Traversal and encoding tricks: every dot-segment form is refused
		// by whichever handler Caddy's cleaned path reaches, before any
		// upstream request.
		dots("encoded dot-dot into the FHIR route", "GET", "/wado-rs/studies/1.2.3/%2e%2e/%2e%2e/%2e%2e/fhir/Patient"),
		dots("plain dot-dot from bulkdata into the FHIR route", "GET", "/wado-rs/studies/1.2.3/bulkdata/../../../../fhir/Patient"),
		dots("a single dot segment", "GET", "/wado-rs/./studies/1.2.3"),
		dots("upper-case %2E%2E", "GET", "/wado-rs/studies/1.2.3/%2E%2E/%2E%2E/%2E%2E/fhir/Patient"),
		dots(".%2e", "GET", "/wado-rs/studies/1.2.3/.%2e/metadata"),
		dots("%2e.", "GET", "/wado-rs/studies/1.2.3/%2e./metadata"),
		dots("..%2f", "GET", "/wado-rs/studies/1.2.3/..%2f..%2f..%2ffhir/Patient"),
		dots("%2f..%2f", "GET", "/wado-rs/studies/1.2.3%2f..%2fmetadata"),
		dots("a lone %2e", "GET", "/wado-rs/studies/1.2.3/%2e"),
		dots("dot-dot after a backslash", "GET", `/wado-rs/studies/1.2.3/..\..\..\fhir/Patient`),
		dots("dot-dot around %5c", "GET", "/wado-rs/studies/1.2.3/..%5c..%5c..%5cfhir/Patient"),
		dots("encoded dot-dot in a bulkdata tail", "GET", "/wado-rs/studies/1.2.3/bulkdata/%2e%2e%2f%2e%2e"),
		dots("trailing dot-dot", "GET", "/wado-rs/studies/1.2.3/series/.."),
		dots("dot-dot after a fragment mark", "GET", "/wado-rs/studies/1.2.3#/../../fhir"),
		dots("absolute form with dot-dot", "GET", "http://{host}/wado-rs/studies/1.2.3/../../fhir/Patient"),
		dots("from the FHIR route into dicomweb", "GET", "/fhir/Patient/../../wado-rs/studies/1.2.3"),
		dots("encoded, from the FHIR route into dicomweb", "GET", "/fhir/Patient/%2e%2e/%2e%2e/wado-rs/studies/1.2.3"),
		dots("a dot segment in the FHIR route", "GET", "/fhir/./metadata"),
		dots("from notify into dicomweb", "GET", "/fhir_imaging/notify/../../wado-rs/studies/1.2.3/metadata"),
		dots("into notify", "PUT", "/wado-rs/../fhir_imaging/notify/ImagingStudy/s1"),
		dots("from wado into dicomweb", "GET", "/wado/../wado-rs/studies/1.2.3"),
		dots("into wado_uri", "GET", "/fhir/../wado?"+hostileWADOQuery),
		get("double-encoded dot-dot is no dot segment: dicomweb names no such resource", "/wado-rs/studies/1.2.3/%252e%252e/%252e%252e/%252e%252e/fhir/Patient", 404, byGateway, "names no DICOMweb resource", 0),
		// "..;" is a dot segment to a Java server (Tomcat drops ";params"
		// before it resolves ".."), so the gateway refuses it too, wherever
		// it is: a request through /fhir or a bulkdata tail could otherwise
		// leave the upstream's base on such a server.
		dots("Tomcat-style ..; in a DICOMweb path", "GET", "/wado-rs/studies/1.2.3/..;/..;/..;/fhir/Patient"),
		dots("Tomcat-style ..; on the FHIR route", "GET", "/fhir/..;/..;/actuator/env"),
		dots("Tomcat-style ..; in a bulkdata tail", "GET", "/wado-rs/studies/1.2.3/series/1.2.3.1/instances/1.2.3.1.1/bulkdata/..;/..;/..;/..;/..;/..;/..;/manager"),
		get("an encoded NUL", "/wado-rs/studies/1.2.3%00/metadata", 400, byGateway, "control character", 0),
		get("an encoded NUL after dot-dot", "/wado-rs/studies/1.2.3/..%00/metadata", 400, byGateway, "control character", 0),
		get("a ; path parameter", "/wado-rs/studies/1.2.3;jsessionid=x/metadata", 400, byGateway, "not a valid DICOM UID", 0),
		get("a fragment", "/wado-rs/studies/1.2.3#frag", 400, byGateway, "not a valid DICOM UID", 0),
		get("absolute form naming another host: no site", "http://evil.example/wado-rs/studies/1.2.3", 200, byCaddy, "", 0),
		withCheck(get("absolute form naming the gateway", "http://{host}/wado-rs/studies/1.2.3/metadata", 200, byArchive, "", upLookup|upA), hostileNoForeignHost),
		withCheck(withHeader(get("absolute form naming the gateway, another Host header", "http://{host}/wado-rs/studies/1.2.3/metadata", 200, byArchive, "", upLookup|upA),
			"Host: evil.example"), hostileNoForeignHost),
		withCheck(get("absolute form with userinfo", "http://evil.example@{host}/wado-rs/studies/1.2.3/metadata", 200, byArchive, "", upLookup|upA), hostileNoForeignHost),
		{name: "a target without a leading slash", raw: "GET wado-rs/studies/1.2.3 HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
			method: "GET", status: 400, by: byServer, msg: "400 Bad Request"},
		{name: "OPTIONS *: no route", raw: "OPTIONS * HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n", method: "OPTIONS", status: 200, by: byCaddy},
		get("dot-dot out of every route: no route", "/wado-rs/../../../etc/passwd", 200, byCaddy, "", 0),
		// Caddy's strip_path_prefix cleans the path (path.Clean: plain dot
		// segments resolved, slashes merged) before dicomweb sees it: a
		// doubled slash is the same resource. Dot segments are still
		// refused, since the gateway looks at the path as sent.
		get("a doubled leading slash is merged by Caddy", "//wado-rs/studies/1.2.3", 200, byArchive, "", routedA),

		// Over-long and malformed UIDs.
		get("a 65-character UID", "/wado-rs/studies/"+strings.Repeat("1", 65), 400, byGateway, "longer than 64", 0),
		get("a 64-character UID is well formed, and unknown", "/wado-rs/studies/"+strings.Repeat("1", 64), 404, byGateway, "knows no ImagingStudy", upLookup),
		get("an empty study segment is merged away: series is no UID", "/wado-rs/studies//series", 400, byGateway, `the study UID "series" is not a valid DICOM UID`, 0),
		get("an empty segment before metadata is merged by Caddy", "/wado-rs/studies/1.2.3//metadata", 200, byArchive, "", routedA),
		get("a trailing slash", "/wado-rs/studies/1.2.3/", 400, byGateway, "empty segment", 0),
		get("letters", "/wado-rs/studies/1.2.abc", 400, byGateway, "other than digits and dots", 0),
		get("a leading dot", "/wado-rs/studies/.1.2.3", 400, byGateway, "starts with a dot", 0),
		get("a trailing dot", "/wado-rs/studies/1.2.3.", 400, byGateway, "ends with a dot", 0),
		get("an empty component", "/wado-rs/studies/1..2.3", 400, byGateway, "empty component", 0),
		get("urn:oid: in the path", "/wado-rs/studies/urn:oid:1.2.3", 400, byGateway, "other than digits and dots", 0),
		get("a UID of 10,000 digits", "/wado-rs/studies/"+strings.Repeat("7", 10000), 400, byGateway, "too long", 0),
		get("Arabic-Indic digits, raw UTF-8", "/wado-rs/studies/\u0661.\u0662.\u0663", 400, byGateway, "percent-encoded", 0),
		get("fullwidth digits, percent-encoded", "/wado-rs/studies/%EF%BC%91.%EF%BC%92", 400, byGateway, "percent-encoded", 0),
		get("a plus", "/wado-rs/studies/1.2+3", 400, byGateway, "other than digits and dots", 0),
		get("an encoded space", "/wado-rs/studies/1.2%203", 400, byGateway, "percent-encoded", 0),
		get("percent-encoded digits", "/wado-rs/studies/%31.2.3", 400, byGateway, "percent-encoded", 0),
		get("a 65-character instance UID", "/wado-rs/studies/1.2.3/series/1.2.3.1/instances/"+strings.Repeat("9", 65), 400, byGateway, "longer than 64", 0),
		get("frame 0", "/wado-rs/studies/1.2.3/series/1.2.3.1/instances/1.2.3.1.1/frames/0", 404, byGateway, "names no DICOMweb resource", 0),
		get("an empty frame number", "/wado-rs/studies/1.2.3/series/1.2.3.1/instances/1.2.3.1.1/frames/1,,2", 404, byGateway, "names no DICOMweb resource", 0),
		get("upper-case keyword", "/wado-rs/STUDIES/1.2.3", 404, byGateway, "names no DICOMweb resource", 0),
		get("an unknown study", "/wado-rs/studies/9.9.9", 404, byGateway, "knows no ImagingStudy", upLookup),
		{name: "a raw space ends the request target", raw: "GET /wado-rs/studies/1.2 3 HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
			method: "GET", status: 400, by: byServer, msg: "400 Bad Request"},
		withCheck(get("a route prefix in upper case is the same route", "/WADO-RS/studies/1.2.3/metadata", 200, byArchive, "", routedA),
			func(t *testing.T, a *hostileAnswer) {
				if len(a.a) != 1 || a.a[0].URL.Path != "/dicom-web/studies/1.2.3/metadata" {
					t.Errorf("archive a got %v", a.a)
				}
			}),
		withCheck(get("an escape in a bulkdata tail reaches the archive as sent", "/wado-rs/studies/1.2.3/series/1.2.3.1/instances/1.2.3.1.1/bulkdata/a%3Ab", 200, byArchive, "", routedA),
			func(t *testing.T, a *hostileAnswer) {
				if len(a.a) != 1 || a.a[0].URL.EscapedPath() != "/dicom-web/studies/1.2.3/series/1.2.3.1/instances/1.2.3.1.1/bulkdata/a%3Ab" {
					t.Errorf("archive a got %v, want the path as the client encoded it", a.a[0].RequestURI)
				}
			}),

		// QIDO-RS query abuse over the two archives.
		withCheck(get("an encoded offset key must not reach the archives", "/wado-rs/studies?%6Fffset=1", 200, byArchive, "", upA|upB),
			func(t *testing.T, a *hostileAnswer) {
				for _, r := range append(a.a, a.b...) {
					if r.URL.Query().Get("offset") != "" {
						t.Errorf("an archive was asked %q: it applies the offset the gateway applies too", r.URL.RawQuery)
					}
				}
				if n := len(gjson.ParseBytes(a.body).Array()); n != 3 {
					t.Errorf("%d studies, want 3 (4 less the offset)", n)
				}
			}),
		withCheck(get("the largest limit with an offset", "/wado-rs/studies?limit=9223372036854775807&offset=1", 200, byArchive, "", upA|upB),
			func(t *testing.T, a *hostileAnswer) {
				for _, r := range append(a.a, a.b...) {
					// Either a limit that means what it says, or none (all).
					if v := r.URL.Query().Get("limit"); v != "" {
						if n, err := strconv.Atoi(v); err != nil || n < 0 {
							t.Errorf("an archive was asked %q", r.URL.RawQuery)
						}
					}
				}
				if n := len(gjson.ParseBytes(a.body).Array()); n != 3 {
					t.Errorf("%d studies, want 3", n)
				}
			}),
		get("a negative limit", "/wado-rs/studies?limit=-1", 400, byGateway, "limit", 0),
		get("a malformed QIDO query", "/wado-rs/studies?PatientID=%zz", 400, byGateway, "malformed query", 0),

		// WADO-URI query abuse.
		withCheck(get("WADO-URI", "/wado?"+hostileWADOQuery, 200, byArchive, "", upLookup|upA),
			func(t *testing.T, a *hostileAnswer) {
				if len(a.a) != 1 || a.a[0].URL.Path != "/wado" || a.a[0].URL.RawQuery != hostileWADOQuery {
					t.Errorf("archive a got %v", a.a)
				}
			}),
		get("no query", "/wado", 400, byGateway, "requestType is required", 0),
		get("no studyUID", "/wado?requestType=WADO&seriesUID=1.2.3.1&objectUID=1.2.3.1.1", 400, byGateway, "studyUID is required", 0),
		get("no seriesUID", "/wado?requestType=WADO&studyUID=1.2.3&objectUID=1.2.3.1.1", 400, byGateway, "seriesUID is required", 0),
		get("no objectUID", "/wado?requestType=WADO&studyUID=1.2.3&seriesUID=1.2.3.1", 400, byGateway, "objectUID is required", 0),
		get("no requestType", "/wado?studyUID=1.2.3&seriesUID=1.2.3.1&objectUID=1.2.3.1.1", 400, byGateway, "requestType is required", 0),
		get("studyUID twice, same value", "/wado?"+hostileWADOQuery+"&studyUID=1.2.3", 400, byGateway, "only once", 0),
		get("studyUID twice, other value", "/wado?"+hostileWADOQuery+"&studyUID=2.1", 400, byGateway, "only once", 0),
		get("objectUID again, empty", "/wado?"+hostileWADOQuery+"&objectUID=", 400, byGateway, "only once", 0),
		get("every parameter twice", "/wado?"+hostileWADOQuery+"&"+hostileWADOQuery, 400, byGateway, "only once", 0),
		get("requestType in lower case", "/wado?requestType=wado&studyUID=1.2.3&seriesUID=1.2.3.1&objectUID=1.2.3.1.1", 400, byGateway, "requestType must be", 0),
		get("another requestType", "/wado?requestType=XYZ&studyUID=1.2.3&seriesUID=1.2.3.1&objectUID=1.2.3.1.1", 400, byGateway, "requestType must be", 0),
		get("a malformed escape", "/wado?"+hostileWADOQuery+"&x=%zz", 400, byGateway, "malformed query", 0),
		get("semicolons as separators", "/wado?requestType=WADO;studyUID=1.2.3;seriesUID=1.2.3.1;objectUID=1.2.3.1.1", 400, byGateway, "malformed query", 0),
		get("10,001 query parameters (empty ones count)", "/wado?"+hostileWADOQuery+strings.Repeat("&", 10000), 400, byGateway, "malformed query", 0),
		// Caddy's default max_header_size is 16 KiB; net/http allows 4 KiB
		// more for the request line and headers together, then answers 431.
		get("a 64 KiB query", "/wado?"+hostileWADOQuery+"&pad="+strings.Repeat("x", 64<<10), 431, byServer, "431", 0),
		withCheck(get("a 12 KiB query", "/wado?"+hostileWADOQuery+"&pad="+strings.Repeat("x", 12<<10), 200, byArchive, "", upLookup|upA),
			func(t *testing.T, a *hostileAnswer) {
				if len(a.a) != 1 || len(a.a[0].URL.RawQuery) != len(hostileWADOQuery)+5+12<<10 {
					t.Errorf("the archive did not get the whole query")
				}
			}),
		withCheck(get("contentType=application%2Fdicom", "/wado?"+hostileWADOQuery+"&contentType=application%2Fdicom", 200, byArchive, "", upLookup|upA),
			func(t *testing.T, a *hostileAnswer) {
				if len(a.a) != 1 || a.a[0].URL.RawQuery != hostileWADOQuery+"&contentType=application%2Fdicom" {
					t.Errorf("the archive did not get the query as sent: %v", a.a)
				}
			}),
		get("percent-encoded UID digits decode to the same UID", "/wado?requestType=WADO&studyUID=%31.2.3&seriesUID=1.2.3.1&objectUID=1.2.3.1.1", 200, byArchive, "", upLookup|upA),
		get("urn:oid: in studyUID", "/wado?requestType=WADO&studyUID=urn:oid:1.2.3&seriesUID=1.2.3.1&objectUID=1.2.3.1.1", 400, byGateway, "not a valid DICOM UID", 0),
		get("a NUL in studyUID", "/wado?requestType=WADO&studyUID=1.2.3%00&seriesUID=1.2.3.1&objectUID=1.2.3.1.1", 400, byGateway, "not a valid DICOM UID", 0),
		get("a + (space) in studyUID", "/wado?requestType=WADO&studyUID=1.2.3+&seriesUID=1.2.3.1&objectUID=1.2.3.1.1", 400, byGateway, "not a valid DICOM UID", 0),
		get("a 10,000-digit studyUID", "/wado?requestType=WADO&studyUID="+strings.Repeat("1", 10000)+"&seriesUID=1.2.3.1&objectUID=1.2.3.1.1", 400, byGateway, "longer than 64", 0),
		get("dot-dot as a studyUID", "/wado?requestType=WADO&studyUID=../../..&seriesUID=1.2.3.1&objectUID=1.2.3.1.1", 400, byGateway, "not a valid DICOM UID", 0),
		get("a fragment mark in the query", "/wado?"+hostileWADOQuery+"#x", 400, byGateway, "not a valid DICOM UID", 0),
		get("a study in an archive without wado_uri", "/wado?requestType=WADO&studyUID=1.2.4&seriesUID=1.2.4.1&objectUID=1.2.4.1.1", 404, byGateway, "wado_uri", upLookup),
		get("an unknown study", "/wado?requestType=WADO&studyUID=9.9.9&seriesUID=9.9.9.1&objectUID=9.9.9.1.1", 404, byGateway, "knows no ImagingStudy", upLookup),
		get("a trailing slash is another path: no route", "/wado/?"+hostileWADOQuery, 200, byCaddy, "", 0),

		// Header abuse.
		withCheck(withHeader(get("a 16 KiB header", "/wado-rs/studies/1.2.3/metadata", 200, byArchive, "", routedA), "X-Filler: "+strings.Repeat("f", 16<<10)),
			func(t *testing.T, a *hostileAnswer) {
				if len(a.a) != 1 || len(a.a[0].Header.Get("X-Filler")) != 16<<10 {
					t.Errorf("the archive did not get the header")
				}
			}),
		withHeader(get("a 16 KiB header on the FHIR route", "/fhir/ImagingStudy/s1", 200, byFHIR, "", upFHIR), "X-Filler: "+strings.Repeat("f", 16<<10)),
		withHeader(get("a 2 MiB header", "/wado-rs/studies/1.2.3", 431, byServer, "431", 0), "X-Filler: "+strings.Repeat("f", 2<<20)),
		withHeader(get("a Host with a path", "/wado-rs/studies/1.2.3/metadata", 400, byServer, "malformed Host header", 0), "Host: {host}/evil"),
		withHeader(get("a Host with spaces", "/wado-rs/studies/1.2.3/metadata", 400, byServer, "malformed Host header", 0), "Host: evil example"),
		withHeader(get("a Host of another site", "/wado-rs/studies/1.2.3/metadata", 200, byCaddy, "", 0), "Host: evil.example"),
		{name: "no Host", raw: "GET /wado-rs/studies/1.2.3 HTTP/1.1\r\nConnection: close\r\n\r\n", method: "GET", status: 400, by: byServer, msg: "missing required Host header"},
		{name: "HTTP/1.0 without Host: no site", raw: "GET /wado-rs/studies/1.2.3 HTTP/1.0\r\n\r\n", method: "GET", status: 200, by: byCaddy},
		{name: "HTTP/9.9", raw: "GET /wado-rs/studies/1.2.3 HTTP/9.9\r\nHost: {host}\r\nConnection: close\r\n\r\n", method: "GET", status: 505, by: byServer, msg: "unsupported protocol version"},
		withHeader(get("two Host headers", "/wado-rs/studies/1.2.3/metadata", 400, byServer, "400 Bad Request", 0), "Host: {host}", "Host: evil.example"),
		withCheck(withHeader(get("X-Forwarded-* from an untrusted client: metadata", "/wado-rs/studies/1.2.3/metadata", 200, byArchive, "", routedA),
			"X-Forwarded-Host: evil.example", "X-Forwarded-Proto: https", "X-Forwarded-Prefix: /evil"), hostileNoForeignHost),
		withCheck(withHeader(get("X-Forwarded-* from an untrusted client: QIDO-RS", "/wado-rs/studies?PatientID=x", 200, byArchive, "", upA|upB),
			"X-Forwarded-Host: evil.example", "X-Forwarded-Proto: https", "X-Forwarded-Prefix: /evil"), hostileNoForeignHost),
		withCheck(withHeader(get("X-Forwarded-* from an untrusted client: FHIR read", "/fhir/ImagingStudy/s1", 200, byFHIR, "", upFHIR),
			"X-Forwarded-Host: evil.example", "X-Forwarded-Proto: https", "X-Forwarded-Prefix: /evil"),
			func(t *testing.T, a *hostileAnswer) {
				hostileNoForeignHost(t, a)
				doc := gjson.ParseBytes(a.body)
				if got, want := doc.Get(`series.0.extension.#(url=="`+extRS+`").valueUrl`).String(), "http://"+a.host+"/wado-rs/studies/1.2.3/series/1.2.3.1"; got != want {
					t.Errorf("injected WADO-RS URL %q, want %q", got, want)
				}
				if got, want := doc.Get(`series.0.instance.0.extension.#(url=="`+extURI+`").valueUrl`).String(), "http://"+a.host+"/wado?"+hostileWADOQuery+"&contentType=application/dicom"; got != want {
					t.Errorf("injected WADO-URI URL %q, want %q", got, want)
				}
			}),
		withCheck(withHeader(get("X-Forwarded-* from an untrusted client: FHIR search", "/fhir/ImagingStudy", 200, byFHIR, "", upFHIR),
			"X-Forwarded-Host: evil.example", "X-Forwarded-Proto: https", "X-Forwarded-Prefix: /evil"),
			func(t *testing.T, a *hostileAnswer) {
				hostileNoForeignHost(t, a)
				if got, want := gjson.GetBytes(a.body, "link.0.url").String(), "http://"+a.host+"/fhir/ImagingStudy"; got != want {
					t.Errorf("self link %q, want %q", got, want)
				}
			}),
		withCheck(withHeader(get("Accept: */*;q=abc", "/wado-rs/studies/1.2.3/metadata", 200, byArchive, "", routedA), "Accept: */*;q=abc"),
			func(t *testing.T, a *hostileAnswer) {
				if len(a.a) != 1 || a.a[0].Header.Get("Accept") != "*/*;q=abc" {
					t.Errorf("Accept not passed on as it was")
				}
			}),
		withHeader(get("10 KiB of media types", "/wado-rs/studies/1.2.3", 200, byArchive, "", routedA),
			"Accept: "+strings.Repeat(`multipart/related; type="application/dicom"; transfer-syntax=*, `, 10<<10/60)),
		withHeader(get("a bogus Accept on QIDO-RS", "/wado-rs/studies", 200, byArchive, "", upA|upB), "Accept: */*;q=abc, ;;;"),
		withHeader(get("a bogus Accept on the FHIR route", "/fhir/ImagingStudy/s1", 200, byFHIR, "", upFHIR), "Accept: application/fhir+json;q=abc, ,,;;"),
		{name: "Transfer-Encoding: chunked on GET", method: "GET", target: "/wado-rs/studies/1.2.3/metadata", chunked: true, body: []byte{},
			status: 200, by: byArchive, up: routedA},
		{name: "a malformed chunk on a refused GET", raw: "GET /wado-rs/studies/1.2.x HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\n",
			method: "GET", status: 400, by: byGateway, msg: "not a valid DICOM UID"},
		{name: "a Content-Length longer than the body", raw: "GET /wado-rs/studies/1.2.x HTTP/1.1\r\nHost: {host}\r\nContent-Length: 100\r\nConnection: close\r\n\r\n",
			body: []byte("0123456789"), halfClose: true, method: "GET", status: 400, by: byGateway, msg: "not a valid DICOM UID"},
		{name: "a Content-Length shorter than the body", raw: "POST /fhir_imaging/notify HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\nConnection: close\r\n\r\n",
			body: []byte(`{"resourceType":"ImagingStudy","id":"s1"}`), method: "POST", status: 200, by: byGateway},
		{name: "two different Content-Lengths", raw: "POST /fhir/Patient HTTP/1.1\r\nHost: {host}\r\nContent-Length: 2\r\nContent-Length: 3\r\nConnection: close\r\n\r\n",
			body: []byte("{}"), method: "POST", status: 400, by: byServer, msg: "400 Bad Request"},
		{name: "Content-Length and chunked", raw: "POST /fhir/Patient HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/fhir+json\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
			// net/http lets Transfer-Encoding win (RFC 9112 6.3) and drops
			// Content-Length: the FHIR server gets the chunked body only.
			body: []byte("2\r\n{}\r\n0\r\n\r\n"), method: "POST", status: 201, by: byFHIR, up: upFHIR,
			check: func(t *testing.T, a *hostileAnswer) {
				hostileFHIRGot([]byte("{}"))(t, a)
				if len(a.fhir) == 1 && a.fhir[0].header.Get("Content-Length") == "3" {
					t.Errorf("the client's Content-Length reached the FHIR server")
				}
			}},
		{name: "an unknown transfer coding", raw: "POST /fhir/Patient HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n",
			body: []byte("0\r\n\r\n"), method: "POST", status: 501, by: byServer, msg: "Unsupported transfer encoding"},
		withHeader(get("a NUL in a header value", "/wado-rs/studies/1.2.3", 400, byServer, "400 Bad Request", 0), "X-A: a\x00b"),
		withHeader(get("an unknown expectation", "/wado-rs/studies/1.2.3", 417, byServer, "", 0), "Expect: the-unexpected"),
		{name: "Expect: 100-continue on a refused PUT", method: "PUT", target: "/wado-rs/studies/1.2.3", header: []string{"Expect: 100-continue"},
			body: []byte("never read"), status: 405, by: byGateway, msg: "not supported"},

		// Bodies written back through the FHIR route: none makes the
		// gateway answer for itself; each reaches the FHIR server.
		{name: "a 40 MiB PUT over max_body_size streams unchanged", method: "PUT", target: "/fhir/ImagingStudy/s1", header: []string{hostileFHIRJSON},
			body: hostileBigStudy(), status: 200, by: byFHIR, up: upFHIR, check: hostileFHIRGot(hostileBigStudy())},
		{name: "a chunked 40 MiB PUT streams unchanged", method: "PUT", target: "/fhir/ImagingStudy/s1", header: []string{hostileFHIRJSON},
			body: hostileBigStudy(), chunked: true, status: 200, by: byFHIR, up: upFHIR, check: hostileFHIRGot(hostileBigStudy())},
		{name: "100,000 [", method: "PUT", target: "/fhir/Patient/deep", header: []string{hostileFHIRJSON},
			body: []byte(strings.Repeat("[", 100000)), status: 400, by: byFHIR, up: upFHIR, check: hostileFHIRGot([]byte(strings.Repeat("[", 100000)))},
		{name: "100,000 nested arrays, closed", method: "PUT", target: "/fhir/Patient/deep", header: []string{hostileFHIRJSON},
			body: []byte(strings.Repeat("[", 100000) + strings.Repeat("]", 100000)), status: 400, by: byFHIR, up: upFHIR,
			check: hostileFHIRGot([]byte(strings.Repeat("[", 100000) + strings.Repeat("]", 100000)))},
		{name: "invalid UTF-8", method: "PUT", target: "/fhir/Patient/u", header: []string{hostileFHIRJSON},
			body: []byte("{\"resourceType\":\"Patient\",\"id\":\"u\",\"name\":[{\"text\":\"\xff\xfe\xc3\"}]}"), status: 200, by: byFHIR, up: upFHIR,
			check: hostileFHIRGot([]byte("{\"resourceType\":\"Patient\",\"id\":\"u\",\"name\":[{\"text\":\"\xff\xfe\xc3\"}]}"))},
		{name: "a JSON Patch of 10,000 operations", method: "PATCH", target: "/fhir/ImagingStudy/s1", header: []string{"Content-Type: application/json-patch+json"},
			body: hostileJSONPatch(), status: 200, by: byFHIR, up: upFHIR,
			check: func(t *testing.T, a *hostileAnswer) {
				if len(a.fhir) != 1 {
					t.Fatalf("the FHIR server got %d requests", len(a.fhir))
				}
				ops := gjson.ParseBytes(a.fhir[0].head)
				if n := len(ops.Array()); n != 9999 || bytes.Contains(a.fhir[0].head, []byte(extRS)) {
					t.Errorf("the FHIR server got %d operations (injected extension there: %v), want 9999 and none", n, bytes.Contains(a.fhir[0].head, []byte(extRS)))
				}
			}},
		{name: "not JSON, said to be", method: "POST", target: "/fhir/Patient", header: []string{hostileFHIRJSON},
			body: []byte("this is not JSON"), status: 400, by: byFHIR, up: upFHIR, check: hostileFHIRGot([]byte("this is not JSON"))},
		{name: "a gzip body that is not gzip", method: "PUT", target: "/fhir/ImagingStudy/s1", header: []string{hostileFHIRJSON, "Content-Encoding: gzip"},
			body: []byte("not gzip at all"), status: 200, by: byFHIR, up: upFHIR, check: hostileFHIRGot([]byte("not gzip at all"))},
		{name: "a malformed Content-Type", method: "POST", target: "/fhir/Patient", header: []string{"Content-Type: application/fhir+json;;;="},
			body: []byte(`{"resourceType":"Patient"}`), status: 201, by: byFHIR, up: upFHIR, check: hostileFHIRGot([]byte(`{"resourceType":"Patient"}`))},

		// fhir_notify.
		{name: "a notification", method: "PUT", target: "/fhir_imaging/notify/ImagingStudy/s1", header: []string{hostileFHIRJSON},
			body: []byte(`{"resourceType":"ImagingStudy","id":"s1","identifier":[{"system":"urn:dicom:uid","value":"1.2.3"}]}`), status: 200, by: byGateway},
		{name: "a notification that is not JSON", method: "POST", target: "/fhir_imaging/notify", header: []string{hostileFHIRJSON},
			body: []byte("{{{{"), status: 200, by: byGateway},
		{name: "a notification of 8 MiB and a byte", method: "POST", target: "/fhir_imaging/notify", header: []string{hostileFHIRJSON},
			body: bytes.Repeat([]byte(" "), 8<<20+1), status: 400, by: byGateway, msg: "larger than 8 MiB"},
	}

	// Every method on every route.
	for _, m := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "FOO", "get"} {
		c := hostileCase{name: m + " on a study", method: m, target: "/wado-rs/studies/1.2.3", status: 405, by: byGateway, msg: "not"}
		switch m {
		case "GET", "HEAD":
			c.status, c.by, c.up = 200, byArchive, routedA
		case "POST":
			c.msg = "STOW-RS is not enabled"
		}
		cases = append(cases, c)
		c = hostileCase{name: m + " on WADO-URI", method: m, target: "/wado?" + hostileWADOQuery, status: 405, by: byGateway, msg: "GET or HEAD only"}
		if m == "GET" || m == "HEAD" {
			c.status, c.by, c.up = 200, byArchive, upLookup|upA
		}
		cases = append(cases, c)
		c = hostileCase{name: m + " on notify", method: m, target: "/fhir_imaging/notify", status: 405, by: byGateway, msg: "PUT, POST or DELETE"}
		if m == "PUT" || m == "POST" || m == "DELETE" {
			c.status = 200
		}
		cases = append(cases, c)
		c = hostileCase{name: m + " on the FHIR route", method: m, target: "/fhir/ImagingStudy", status: 405, by: byFHIR, msg: "not supported", up: upFHIR}
		switch m {
		case "GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS":
			c.status = 200
		case "POST":
			c.status = 201
		}
		method := m
		c.check = func(t *testing.T, a *hostileAnswer) {
			if len(a.fhir) != 1 || a.fhir[0].method != method {
				t.Errorf("the FHIR server got %d requests, want one %s", len(a.fhir), method)
			}
		}
		cases = append(cases, c)
	}
	cases = append(cases,
		hostileCase{name: "POST on a series", method: "POST", target: "/wado-rs/studies/1.2.3/series/1.2.3.1", status: 405, by: byGateway, msg: "not supported"},
		hostileCase{name: "POST on metadata", method: "POST", target: "/wado-rs/studies/1.2.3/metadata", status: 405, by: byGateway, msg: "not supported"},
	)
	return cases
}

// hostileAuthorizeCorpus is the corpus for a gateway with authorize: tokens.
func hostileAuthorizeCorpus() []hostileCase {
	c := func(name, method, target string, status int, by hostileOrigin, msg string, up hostileUpstream, hdr ...string) hostileCase {
		return hostileCase{name: name, method: method, target: target, header: hdr, status: status, by: by, msg: msg, up: up}
	}
	withCheck := func(c hostileCase, f func(*testing.T, *hostileAnswer)) hostileCase { c.check = f; return c }
	alice := "Authorization: Bearer alice"
	return []hostileCase{
		c("no token", "GET", "/wado-rs/studies/1.1", 401, byGateway, "bearer token is required", 0),
		c("alice's study", "GET", "/wado-rs/studies/1.1", 200, byArchive, "", upAS|upLookup|upA, alice),
		c("another patient's study", "GET", "/wado-rs/studies/2.1", 403, byGateway, "not granted", upAS|upLookup, alice),
		c("a series of another study", "GET", "/wado-rs/studies/1.1/series/2.1.1", 403, byGateway, "not granted", upAS|upLookup|upA, alice),
		c("an empty bearer token", "GET", "/wado-rs/studies/1.1", 401, byGateway, "not a well-formed bearer token", 0, "Authorization: Bearer "),
		c("Basic credentials", "GET", "/wado-rs/studies/1.1", 401, byGateway, "not a well-formed bearer token", 0, "Authorization: Basic YWxpY2U6eA=="),
		c("a 16 KiB token is malformed (over 8 KiB): not introspected", "GET", "/wado-rs/studies/1.1", 401, byGateway, "not a well-formed bearer token", 0, "Authorization: Bearer "+strings.Repeat("t", 16<<10)),
		c("system scopes grant nothing", "GET", "/wado-rs/studies/1.1", 403, byGateway, "not granted", upAS, "Authorization: Bearer system"),
		c("a token with dot segments: refused before introspection", "GET", "/wado-rs/studies/1.1/../../fhir/Patient", 400, byGateway, hostileDotMsg, 0, alice),
		c("encoded dot segments into wado_uri with a token", "GET", "/wado-rs/%2e%2e/wado?requestType=WADO&studyUID=1.1&seriesUID=1.1.1&objectUID=1.1.1.1", 400, byGateway, hostileDotMsg, 0, alice),
		c("a malformed UID without a token: authentication first", "GET", "/wado-rs/studies/1.2.x", 401, byGateway, "bearer token is required", 0),
		c("two Authorization headers: the first decides", "GET", "/wado-rs/studies/2.1", 200, byArchive, "", upAS|upLookup|upA, "Authorization: Bearer bob", alice),
		c("studyUID twice with a token", "GET", "/wado?requestType=WADO&studyUID=1.1&studyUID=2.1&seriesUID=1.1.1&objectUID=1.1.1.1", 400, byGateway, "only once", upAS, alice),
		c("WADO-URI of another patient", "GET", "/wado?requestType=WADO&studyUID=2.1&seriesUID=2.1.1&objectUID=2.1.1.1", 403, byGateway, "not granted", upAS|upLookup, alice),
		c("WADO-URI crossing studies", "GET", "/wado?requestType=WADO&studyUID=1.1&seriesUID=1.1.1&objectUID=2.1.1.1", 403, byGateway, "not granted", upAS|upLookup|upA, alice),
		c("OPTIONS without cors", "OPTIONS", "/wado-rs/studies/1.1", 401, byGateway, "bearer token is required", 0),
		withCheck(c("QIDO-RS shows only alice's studies", "GET", "/wado-rs/studies", 200, byArchive, "", upAS|upLookup|upA|upB, alice),
			func(t *testing.T, a *hostileAnswer) {
				var got []string
				for _, ds := range gjson.ParseBytes(a.body).Array() {
					got = append(got, ds.Get("0020000D.Value.0").String())
				}
				if fmt.Sprint(got) != "[1.1]" {
					t.Errorf("studies %v, want [1.1]", got)
				}
			}),
		c("ImagingStudy search naming another study", "GET", "/fhir/ImagingStudy?identifier=urn:oid:2.1", 403, byGateway, "patient", upAS, alice),
		c("ImagingStudy search for two patients", "GET", "/fhir/ImagingStudy?patient=p1,p2", 403, byGateway, "patient", upAS, alice),
		c("ImagingStudy search repeating patient", "GET", "/fhir/ImagingStudy?patient=p1&patient=p2", 403, byGateway, "patient", upAS, alice),
		c("ImagingStudy search for alice", "GET", "/fhir/ImagingStudy?patient=p1", 200, byFHIR, "", upAS|upFHIR, alice),
		c("ImagingStudy search with a ; the gateway cannot parse", "GET", "/fhir/ImagingStudy?identifier=urn:oid:2.1,x;y", 403, byGateway, "patient", upAS, alice),
		c("ImagingStudy search with a malformed escape", "GET", "/fhir/ImagingStudy?identifier=urn:oid:2.1&_x=%zz", 403, byGateway, "patient", upAS, alice),
		hostileCase{name: "POSTed search form for two patients", method: "POST", target: "/fhir/ImagingStudy/_search",
			header: []string{alice, "Content-Type: application/x-www-form-urlencoded"}, body: []byte("patient=p1&patient=p2"),
			status: 403, by: byGateway, msg: "patient", up: upAS},
	}
}

func TestHostileRequests(t *testing.T) {
	t.Run("open", func(t *testing.T) {
		g := newHostileGateway(t, false)
		for _, c := range hostileCorpus() {
			t.Run(c.name, func(t *testing.T) { g.run(t, c) })
		}
		_ = caddyStop()
	})
	t.Run("authorize", func(t *testing.T) {
		g := newHostileGateway(t, true)
		for _, c := range hostileAuthorizeCorpus() {
			t.Run(c.name, func(t *testing.T) { g.run(t, c) })
		}
		_ = caddyStop()
	})
}

// TestHostileRequestsLeaveNothingBehind sends both corpora again and
// again and checks that the gateway is left with no more goroutines than
// it had: no handler, proxy or look-up is left hanging by a hostile
// request.
//
// The baseline is taken after a warm round, not at a cold start: the
// gateway keeps its connections to the FHIR server and the archives open
// for reuse (Caddy's transports keep idle connections for up to two
// minutes), and in this process each of them is a goroutine or two on
// both sides; a first round opens them, later rounds reuse them. The
// client here keeps nothing: every request goes on a connection of its
// own, with Connection: close, closed once the answer is read. So after
// two more rounds, once idle, the count must be back to the baseline,
// give or take a few (a connection an hostileUpstream closed and the next round
// opened again).
func TestHostileRequestsLeaveNothingBehind(t *testing.T) {
	for _, setup := range []struct {
		name      string
		authorize bool
		corpus    func() []hostileCase
	}{{"open", false, hostileCorpus}, {"authorize", true, hostileAuthorizeCorpus}} {
		t.Run(setup.name, func(t *testing.T) {
			g := newHostileGateway(t, setup.authorize)
			round := func() {
				for _, c := range setup.corpus() {
					if _, _, err := g.exchange(&c); err != nil {
						t.Fatalf("%s: no answer: %v", c.name, err)
					}
				}
			}
			round()
			base := hostileGoroutines(0, 0)
			round()
			round()
			const margin = 10
			n := hostileGoroutines(base+margin, 5*time.Second)
			t.Logf("%d goroutines after the warm round, %d after two more", base, n)
			if n > base+margin {
				var stacks bytes.Buffer
				_ = pprof.Lookup("goroutine").WriteTo(&stacks, 1)
				t.Errorf("%d goroutines after two more rounds, %d after the first: more than %d were left behind\n%s", n, base, margin, stacks.String())
			}
			_ = caddyStop()
		})
	}
}

// hostileGoroutines returns the number of goroutines once it has stopped
// falling (after a GC), waiting up to wait for it to reach at most want.
func hostileGoroutines(want int, wait time.Duration) int {
	deadline := time.Now().Add(wait)
	n := -1
	for {
		runtime.GC()
		time.Sleep(50 * time.Millisecond)
		m := runtime.NumGoroutine()
		if m == n && (m <= want || time.Now().After(deadline)) {
			return m
		}
		n = m
	}
}
