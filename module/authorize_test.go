package module_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidwall/gjson"
)

// smartAS is an authorization server with RFC 7662 introspection over a
// fixed table of tokens, and OpenID discovery.
type smartAS struct {
	*httptest.Server
	mu     sync.Mutex
	tokens map[string]map[string]any
	calls  atomic.Int32
	down   atomic.Bool
}

func newSmartAS(t testing.TB) *smartAS {
	a := &smartAS{tokens: map[string]map[string]any{}}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/.well-known/openid-configuration" {
			fmt.Fprintf(w, `{"issuer":%q,"authorization_endpoint":"%[1]s/auth","token_endpoint":"%[1]s/token","introspection_endpoint":"%[1]s/token/introspection","grant_types_supported":["authorization_code","client_credentials"]}`, a.URL)
			return
		}
		a.calls.Add(1)
		if a.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		id, secret, ok := r.BasicAuth()
		if !ok || id != "gw" || secret != "gw-secret" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		a.mu.Lock()
		ans, ok := a.tokens[r.PostFormValue("token")]
		a.mu.Unlock()
		if !ok {
			ans = map[string]any{"active": false}
		}
		_ = json.NewEncoder(w).Encode(ans)
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *smartAS) revoke(token string) {
	a.mu.Lock()
	delete(a.tokens, token)
	a.mu.Unlock()
}

// studyRow is one study the fakes know: who it belongs to, which tokens
// the FHIR server hides it from, and the series and instances the archive
// holds.
type studyRow struct {
	uid, patient string
	hiddenFrom   []string
	series       map[string][]string
}

// smartFHIR answers the gateway's routing searches (_include) and the
// visibility searches made with the client's token (_elements), honouring
// patient= and hiding studies per token, and counts what it gets.
type smartFHIR struct {
	*httptest.Server
	studies    []studyRow
	archive    string // the Endpoint address of every study
	replica    string // when set, a second archive's Endpoint every study lists after the first
	visibility atomic.Int32
	down       atomic.Bool
	lastOther  atomic.Value // the last request that was neither: method, URI, Authorization
}

func newSmartFHIR(t testing.TB, studies []studyRow) *smartFHIR {
	f := &smartFHIR{studies: studies}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/fhir+json")
		if f.down.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		q := r.URL.Query()
		routing := q.Get("_include") == "ImagingStudy:endpoint" && q.Get("_count") == "100"
		if r.URL.Path != "/fhir/ImagingStudy" || !routing && q.Get("_elements") != "identifier,subject" {
			f.lastOther.Store(r.Method + " " + r.URL.RequestURI() + " " + r.Header.Get("Authorization"))
			if strings.HasSuffix(r.URL.Path, "/.well-known/smart-configuration") {
				w.WriteHeader(http.StatusNotFound)
				fmt.Fprint(w, `{"resourceType":"OperationOutcome"}`)
				return
			}
			fmt.Fprint(w, `{"resourceType":"Bundle","type":"searchset","total":0}`)
			return
		}
		token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !routing {
			f.visibility.Add(1)
		}
		var entries []string
		for _, st := range f.studies {
			if !strings.Contains(q.Get("identifier"), "|"+st.uid+",") && !strings.HasSuffix(q.Get("identifier"), "|"+st.uid) {
				continue
			}
			if !routing {
				if p := q.Get("patient"); p != "" && p != st.patient {
					continue
				}
				hidden := false
				for _, h := range st.hiddenFrom {
					hidden = hidden || h == token
				}
				if hidden {
					continue
				}
			}
			var series []string
			for s := range st.series {
				series = append(series, fmt.Sprintf(`{"uid":%q}`, s))
			}
			endpoints := `{"reference":"Endpoint/a"}`
			if f.replica != "" {
				endpoints += `,{"reference":"Endpoint/b"}`
			}
			entries = append(entries, fmt.Sprintf(`{"resource":{"resourceType":"ImagingStudy","identifier":[{"system":"urn:dicom:uid","value":"urn:oid:%s"}],"subject":{"reference":"Patient/%s"},"endpoint":[%s],"series":[%s]}}`,
				st.uid, st.patient, endpoints, strings.Join(series, ",")))
		}
		if routing && len(entries) > 0 {
			entries = append(entries, `{"resource":`+endpointJSON("a", "active", "dicom-wado-rs", f.archive)+`}`)
			if f.replica != "" {
				entries = append(entries, `{"resource":`+endpointJSON("b", "active", "dicom-wado-rs", f.replica)+`}`)
			}
		}
		fmt.Fprintf(w, `{"resourceType":"Bundle","type":"searchset","entry":[%s]}`, strings.Join(entries, ","))
	}))
	t.Cleanup(f.Close)
	return f
}

type smartSetup struct {
	as      *smartAS
	fhir    *smartFHIR
	archive *fakeArchive
	gw      string
	retr    atomic.Int32 // retrieves (non-QIDO requests) that reached the archive
	globals string       // the gateway's config, to start it again
	site    string
}

// newSmartSetup: patient p1 has studies 1.1 and 1.2 (1.2 hidden from the
// proxy token), patient p2 has 2.1.
func newSmartSetup(t testing.TB, authorizeExtra string) *smartSetup {
	s := &smartSetup{as: newSmartAS(t)}
	exp := time.Now().Add(time.Hour).Unix()
	s.as.tokens["alice"] = map[string]any{"active": true, "scope": "launch/patient patient/ImagingStudy.rs", "patient": "p1", "exp": exp, "client_id": "app"}
	s.as.tokens["alice-proxy"] = map[string]any{"active": true, "scope": "patient/ImagingStudy.rs", "patient": "p1", "exp": exp}
	s.as.tokens["bob"] = map[string]any{"active": true, "scope": "patient/ImagingStudy.rs", "patient": "p2", "exp": exp}
	s.as.tokens["doctor"] = map[string]any{"active": true, "scope": "user/*.rs", "exp": exp}
	s.as.tokens["system"] = map[string]any{"active": true, "scope": "system/*.cruds", "exp": exp}
	s.as.tokens["observations"] = map[string]any{"active": true, "scope": "patient/Observation.rs", "patient": "p1", "exp": exp}
	s.as.tokens["modality"] = map[string]any{"active": true, "scope": "system/ImagingStudy.c", "exp": exp}
	studies := []studyRow{
		{uid: "1.1", patient: "p1", series: map[string][]string{"1.1.1": {"1.1.1.1", "1.1.1.2"}}},
		{uid: "1.2", patient: "p1", hiddenFrom: []string{"alice-proxy"}, series: map[string][]string{"1.2.1": {"1.2.1.1"}}},
		{uid: "2.1", patient: "p2", series: map[string][]string{"2.1.1": {"2.1.1.1"}}},
	}
	s.fhir = newSmartFHIR(t, studies)
	s.archive = newFakeArchive(t, "/dicom-web")
	s.archive.serve = func(w http.ResponseWriter, r *http.Request) {
		p := strings.TrimPrefix(r.URL.Path, "/dicom-web")
		parts := strings.Split(strings.Trim(p, "/"), "/")
		if r.Method == http.MethodGet && (strings.HasSuffix(p, "/instances") || p == "/studies") {
			// QIDO-RS: what this archive holds, narrowed by the path and
			// SOPInstanceUID.
			w.Header().Set("Content-Type", "application/dicom+json")
			var out []string
			for _, st := range studies {
				for se, insts := range st.series {
					for _, in := range insts {
						if len(parts) >= 4 && (parts[1] != st.uid || parts[3] != se) {
							continue
						}
						if sop := r.URL.Query().Get("SOPInstanceUID"); sop != "" && sop != in {
							continue
						}
						out = append(out, fmt.Sprintf(`{"0020000D":{"vr":"UI","Value":[%q]},"0020000E":{"vr":"UI","Value":[%q]},"00080018":{"vr":"UI","Value":[%q]}}`, st.uid, se, in))
					}
				}
			}
			fmt.Fprintf(w, "[%s]", strings.Join(out, ","))
			return
		}
		s.retr.Add(1)
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Header().Set("Access-Control-Allow-Origin", "*")
		fmt.Fprint(w, "pixels of "+p)
	}
	s.fhir.archive = s.archive.base()
	globals := fmt.Sprintf(`	fhir_imaging {
		fhir %s/fhir
		archive a %s {
			wado_uri %s/wado
		}
		lookup_timeout 1s
		store_archive a
		authorize {
			introspect %s/token/introspection {
				client_id gw
				client_secret gw-secret
			}
			%s
		}
	}`, s.fhir.URL, s.archive.base(), s.archive.URL, s.as.URL, authorizeExtra)
	site := fmt.Sprintf(`	handle_path /wado-rs/* {
		dicomweb
	}
	handle /wado {
		wado_uri
	}
	@fhir path /fhir /fhir/*
	handle @fhir {
		fhir_rewrite
		reverse_proxy %s
	}`, strings.TrimPrefix(s.fhir.URL, "http://"))
	s.globals, s.site = globals, site
	s.gw = startGateway(t, globals, site)
	return s
}

func (s *smartSetup) get(t *testing.T, path, token string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	if token != "" {
		hdr = append(hdr, "Authorization", "Bearer "+token)
	}
	return get(t, s.gw+path, hdr...)
}

func TestAuthorizeDICOMweb(t *testing.T) {
	s := newSmartSetup(t, "")
	var forbiddenBody string
	for _, tc := range []struct {
		path, token string
		status      int
	}{
		{"/wado-rs/studies/1.1", "alice", 200},
		{"/wado-rs/studies/1.1/metadata", "alice", 200},
		{"/wado-rs/studies/1.1/series/1.1.1", "alice", 200},
		{"/wado-rs/studies/1.1/series/1.1.1/instances/1.1.1.2/frames/1", "alice", 200},
		{"/wado-rs/studies/1.2/series/1.2.1/rendered", "alice", 200},
		{"/wado-rs/studies/2.1", "bob", 200},
		{"/wado-rs/studies/2.1/series/2.1.1", "doctor", 200},
		{"/wado-rs/studies/1.1", "alice-proxy", 200},
		// Every refusal of an authenticated request is the same 403.
		{"/wado-rs/studies/2.1", "alice", 403},                                // another patient's study
		{"/wado-rs/studies/1.2", "alice-proxy", 403},                          // hidden by the FHIR server
		{"/wado-rs/studies/9.9.9", "alice", 403},                              // does not exist
		{"/wado-rs/studies/1.1/series/2.1.1", "alice", 403},                   // a series of another study
		{"/wado-rs/studies/1.1/series/1.1.1/instances/2.1.1.1", "alice", 403}, // an instance of another study
		{"/wado-rs/studies/1.1/series/1.1.1/instances/1.2.1.1/metadata", "alice", 403},
		{"/wado-rs/studies/1.1", "system", 403},       // system scopes grant nothing
		{"/wado-rs/studies/1.1", "observations", 403}, // no imaging scope
		{"/wado?requestType=WADO&studyUID=1.1&seriesUID=1.1.1&objectUID=1.1.1.1", "alice", 200},
		{"/wado?requestType=WADO&studyUID=1.1&seriesUID=1.1.1&objectUID=2.1.1.1", "alice", 403}, // crosses studies
		{"/wado?requestType=WADO&studyUID=2.1&seriesUID=2.1.1&objectUID=2.1.1.1", "alice", 403},
		// No, malformed or inactive tokens: 401.
		{"/wado-rs/studies/1.1", "", 401},
		{"/wado-rs/studies/1.1", "not-a-token", 401},
		{"/wado?requestType=WADO&studyUID=1.1&seriesUID=1.1.1&objectUID=1.1.1.1", "", 401},
		{"/wado-rs/studies/1.1/../../fhir", "", 400}, // dot segments: refused before anything else
	} {
		retrBefore := s.retr.Load()
		resp, body := s.get(t, tc.path, tc.token)
		if resp.StatusCode != tc.status {
			t.Errorf("%s with %q: %d %s, want %d", tc.path, tc.token, resp.StatusCode, body, tc.status)
			continue
		}
		switch tc.status {
		case 200:
			if cc := resp.Header.Get("Cache-Control"); cc != "max-age=3600, private" {
				t.Errorf("%s: Cache-Control %q, want the archive's without public, plus private", tc.path, cc)
			}
		case 400:
			jsonMessage(t, body)
		case 401:
			if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s: 401 without a Bearer challenge", tc.path)
			}
			jsonMessage(t, body)
		case 403:
			if forbiddenBody == "" {
				forbiddenBody = string(body)
			} else if string(body) != forbiddenBody {
				t.Errorf("%s with %q: a 403 that differs from the others: %s vs %s", tc.path, tc.token, body, forbiddenBody)
			}
			if resp.Header.Get("WWW-Authenticate") != "" {
				t.Errorf("%s: a 403 with a challenge", tc.path)
			}
			if s.retr.Load() != retrBefore {
				t.Errorf("%s with %q: refused, but a retrieve reached the archive", tc.path, tc.token)
			}
		}
	}
	if strings.Contains(forbiddenBody, "1.") || strings.Contains(forbiddenBody, "p1") {
		t.Errorf("the 403 body names a UID or a patient: %s", forbiddenBody)
	}
	// The client's token went to the FHIR server, never to the archive.
	for _, r := range s.archive.requests() {
		if r.Header.Get("Authorization") != "" {
			t.Fatalf("the archive was sent an Authorization header: %s", r.URL)
		}
	}
}

func TestAuthorizeQIDOShowsOnlyVisibleStudies(t *testing.T) {
	s := newSmartSetup(t, "")
	for _, tc := range []struct {
		token, query string
		want         []string
	}{
		{"alice", "", []string{"1.1", "1.2"}},
		{"alice-proxy", "", []string{"1.1"}},
		{"bob", "", []string{"2.1"}},
		{"doctor", "", []string{"1.1", "1.2", "2.1"}},
		{"alice", "?limit=1&offset=1", []string{"1.2"}},
		{"system", "", nil},
	} {
		resp, body := s.get(t, "/wado-rs/studies"+tc.query, tc.token, "Accept", "application/dicom+json")
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", tc.token, resp.StatusCode, body)
		}
		var got []string
		for _, ds := range gjson.ParseBytes(body).Array() {
			got = append(got, ds.Get("0020000D.Value.0").String())
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s%s: studies %v, want %v", tc.token, tc.query, got, tc.want)
		}
	}
}

func TestAuthorizeCaching(t *testing.T) {
	s := newSmartSetup(t, "decision_ttl 1s")
	for range 200 {
		if resp, body := s.get(t, "/wado-rs/studies/1.1/series/1.1.1/instances/1.1.1.1", "alice"); resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	}
	if n, m := s.as.calls.Load(), s.fhir.visibility.Load(); n != 1 || m != 1 {
		t.Fatalf("200 requests with one token: %d introspections and %d visibility searches, want 1 and 1", n, m)
	}
	// A revoked token stops working once decision_ttl has passed.
	s.as.revoke("alice")
	time.Sleep(1100 * time.Millisecond)
	if resp, _ := s.get(t, "/wado-rs/studies/1.1", "alice"); resp.StatusCode != 401 {
		t.Fatalf("a revoked token got %d after decision_ttl", resp.StatusCode)
	}
}

func TestAuthorizeFailsClosed(t *testing.T) {
	s := newSmartSetup(t, "")
	s.as.down.Store(true)
	resp, body := s.get(t, "/wado-rs/studies/1.1", "alice")
	if resp.StatusCode != 503 || strings.Contains(string(body), "127.0.0.1") {
		t.Fatalf("introspection down: %d %s", resp.StatusCode, body)
	}
	s.as.down.Store(false)
	s.fhir.down.Store(true)
	if resp, body := s.get(t, "/wado-rs/studies/1.1", "alice"); resp.StatusCode != 503 {
		t.Fatalf("FHIR down: %d %s", resp.StatusCode, body)
	}
	if s.retr.Load() != 0 {
		t.Fatal("data was served while access could not be checked")
	}
}

func TestAuthorizeCORS(t *testing.T) {
	s := newSmartSetup(t, "cors https://viewer.example.org")
	pre := func(path string) *http.Response {
		resp, _ := do(t, http.MethodOptions, s.gw+path, nil, "Origin", "https://viewer.example.org",
			"Access-Control-Request-Method", "GET", "Access-Control-Request-Headers", "authorization")
		return resp
	}
	for _, path := range []string{"/wado-rs/studies/1.1", "/wado?requestType=WADO", "/fhir/ImagingStudy"} {
		if resp := pre(path); resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "https://viewer.example.org" ||
			resp.Header.Get("Access-Control-Allow-Headers") != "authorization" {
			t.Errorf("preflight of %s: %d %v", path, resp.StatusCode, resp.Header)
		}
	}
	for _, tc := range []struct {
		token  string
		status int
	}{{"alice", 200}, {"", 401}, {"bob", 403}} {
		resp, _ := s.get(t, "/wado-rs/studies/1.1", tc.token, "Origin", "https://viewer.example.org")
		if resp.StatusCode != tc.status || resp.Header.Values("Access-Control-Allow-Origin")[0] != "https://viewer.example.org" ||
			len(resp.Header.Values("Access-Control-Allow-Origin")) != 1 {
			t.Errorf("%q: %d, Access-Control-Allow-Origin %v", tc.token, resp.StatusCode, resp.Header.Values("Access-Control-Allow-Origin"))
		}
	}
	if resp, _ := s.get(t, "/wado-rs/studies/1.1", "alice", "Origin", "https://evil.example"); resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Error("a foreign origin was allowed")
	}
}

func TestAuthorizeSTOW(t *testing.T) {
	s := newSmartSetup(t, "")
	for _, tc := range []struct {
		token  string
		status int
	}{{"alice", 403}, {"doctor", 403}, {"", 401}, {"modality", 200}} {
		before := s.retr.Load()
		resp, body := do(t, http.MethodPost, s.gw+"/wado-rs/studies", strings.NewReader("x"), "Authorization", "Bearer "+tc.token,
			"Content-Type", `multipart/related; type="application/dicom"; boundary=b`)
		if resp.StatusCode != tc.status {
			t.Errorf("STOW with %q: %d %s, want %d", tc.token, resp.StatusCode, body, tc.status)
		}
		if stored := s.retr.Load() != before; stored != (tc.status == 200) {
			t.Errorf("STOW with %q: reached the archive: %v", tc.token, stored)
		}
	}
}

func TestAuthorizeFHIRSearches(t *testing.T) {
	s := newSmartSetup(t, "")
	for _, tc := range []struct {
		path, token string
		status      int
	}{
		{"/fhir/ImagingStudy?patient=p1", "alice", 200},
		{"/fhir/ImagingStudy?patient=Patient/p1&identifier=urn:oid:1.1&_include=ImagingStudy:endpoint", "alice", 200},
		{"/fhir/Patient/p1/ImagingStudy", "alice", 200},
		{"/fhir/ImagingStudy?patient=p2", "alice", 403},
		{"/fhir/ImagingStudy", "alice", 403},
		{"/fhir/ImagingStudy?identifier=urn:oid:2.1", "alice", 403},
		{"/fhir/Patient/p2/ImagingStudy", "alice", 403},
		{"/fhir?_type=ImagingStudy", "alice", 403},
		{"/fhir/ImagingStudy?identifier=urn:oid:2.1", "doctor", 200}, // the FHIR server decides
		{"/fhir/ImagingStudy", "", 200},                              // the FHIR server answers untokened requests
		{"/fhir/ImagingStudy", "not-a-token", 200},                   // and tokens it does not know
		{"/fhir/Observation?patient=p2", "alice", 200},               // only ImagingStudy searches are held to it
	} {
		resp, body := s.get(t, tc.path, tc.token)
		if resp.StatusCode != tc.status {
			t.Errorf("%s with %q: %d %s, want %d", tc.path, tc.token, resp.StatusCode, body, tc.status)
			continue
		}
		if tc.status == 403 && gjson.GetBytes(body, "issue.0.code").String() != "forbidden" {
			t.Errorf("%s: 403 body is not an OperationOutcome: %s", tc.path, body)
		}
		if tc.status == 200 && tc.token != "" {
			if last, _ := s.fhir.lastOther.Load().(string); !strings.HasSuffix(last, "Bearer "+tc.token) {
				t.Errorf("%s: the FHIR server did not get the client's token: %q", tc.path, last)
			}
		}
	}
	// A POSTed search form is held to the same rule, and reaches the FHIR
	// server intact when it passes.
	for _, tc := range []struct {
		form   string
		status int
	}{{"patient=p2", 403}, {"patient=p1&_count=5", 200}} {
		resp, _ := do(t, http.MethodPost, s.gw+"/fhir/ImagingStudy/_search", strings.NewReader(tc.form),
			"Authorization", "Bearer alice", "Content-Type", "application/x-www-form-urlencoded")
		if resp.StatusCode != tc.status {
			t.Errorf("POST _search %s: %d, want %d", tc.form, resp.StatusCode, tc.status)
		}
	}
	s.as.down.Store(true)
	if resp, _ := s.get(t, "/fhir/ImagingStudy?patient=p1", "bob"); resp.StatusCode != 503 {
		t.Errorf("introspection down: %d, want 503", resp.StatusCode)
	}
}

func TestAuthorizeSMARTConfiguration(t *testing.T) {
	s := newSmartSetup(t, "")
	resp, body := get(t, s.gw+"/fhir/.well-known/smart-configuration")
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	doc := gjson.ParseBytes(body)
	if doc.Get("token_endpoint").String() != s.as.URL+"/token" || !strings.Contains(doc.Get("capabilities").Raw, `"smart-imaging-access"`) {
		t.Fatalf("built configuration %s", body)
	}
	// A FHIR server's own document keeps everything and gains the capability.
	own := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"issuer":"https://ehr.example","capabilities":["launch-ehr"],"token_endpoint":"https://ehr.example/token"}`)
	}))
	t.Cleanup(own.Close)
	_ = caddyStop()
	globals := fmt.Sprintf("\tfhir_imaging {\n\t\tfhir %s/fhir\n\t\tauthorize {\n\t\t\tintrospect %s/i {\n\t\t\t\tclient_id gw\n\t\t\t}\n\t\t}\n\t}", own.URL, s.as.URL)
	gw := startGateway(t, globals, fmt.Sprintf("\thandle /fhir/* {\n\t\tfhir_rewrite\n\t\treverse_proxy %s\n\t}", strings.TrimPrefix(own.URL, "http://")))
	resp, body = get(t, gw+"/fhir/.well-known/smart-configuration")
	doc = gjson.ParseBytes(body)
	if resp.StatusCode != 200 || doc.Get("issuer").String() != "https://ehr.example" ||
		doc.Get("capabilities").Raw != `["launch-ehr","smart-imaging-access","http://fhir.org/argonaut/smart-imaging/capabilities/app-launch"]` {
		t.Fatalf("augmented configuration %d %s", resp.StatusCode, body)
	}
}

// TestAuthorizeWithReplicas: the membership check asks the replicas in
// order, passes over one that cannot be asked, and fails closed only when
// none can; a failover goes to a replica only once it, too, has said that
// it holds the series.
func TestAuthorizeWithReplicas(t *testing.T) {
	s := newSmartSetup(t, "")
	holds := s.archive.serve
	b := newFakeArchive(t, "/dicom-web")
	b.serve = holds
	s.fhir.replica = b.base()
	down := func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", http.StatusServiceUnavailable) }
	s.gw = startGateway(t, strings.Replace(s.globals, "\t\tlookup_timeout 1s", "\t\tarchive b "+b.base()+"\n\t\tlookup_timeout 1s", 1), s.site)

	// a answers nothing: b is asked whether it holds the series, and serves.
	s.archive.serve = down
	resp, body := s.get(t, "/wado-rs/studies/1.1/series/1.1.1/instances/1.1.1.1", "alice")
	if resp.StatusCode != 200 || string(body) != "pixels of /studies/1.1/series/1.1.1/instances/1.1.1.1" {
		t.Errorf("the first replica down: %d %s", resp.StatusCode, body)
	}
	// b's "no" is an answer: another study's series stays refused.
	if resp, body := s.get(t, "/wado-rs/studies/1.1/series/2.1.1", "alice"); resp.StatusCode != 403 {
		t.Errorf("another study's series with the first replica down: %d %s", resp.StatusCode, body)
	}
	// a says it holds the series but fails the retrieve: b, which holds
	// it too, serves.
	s.archive.serve = func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/instances") {
			holds(w, r)
			return
		}
		down(w, r)
	}
	resp, body = s.get(t, "/wado-rs/studies/1.1/series/1.1.1/instances/1.1.1.2", "alice")
	if resp.StatusCode != 200 || string(body) != "pixels of /studies/1.1/series/1.1.1/instances/1.1.1.2" {
		t.Errorf("the first replica failing the retrieve: %d %s", resp.StatusCode, body)
	}
	// Neither can be asked: fail closed.
	s.archive.serve, b.serve = down, down
	if resp, body := s.get(t, "/wado-rs/studies/2.1/series/2.1.1", "bob"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("no replica can be asked: %d %s", resp.StatusCode, body)
	}
}
