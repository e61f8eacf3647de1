package access

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// authServer is an RFC 7662 endpoint over a fixed table of tokens.
type authServer struct {
	*httptest.Server
	tokens map[string]map[string]any
	calls  atomic.Int32
	down   atomic.Bool
}

func newAuthServer(t testing.TB) *authServer {
	a := &authServer{tokens: map[string]map[string]any{}}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.calls.Add(1)
		if a.down.Load() {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		// RFC 6749 section 2.3.1: form-encoded, then Basic.
		id, secret, ok := r.BasicAuth()
		secret, _ = url.QueryUnescape(secret)
		if !ok || id != "gw" || secret != "s:cret" || r.Method != http.MethodPost {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		ans, ok := a.tokens[r.PostFormValue("token")]
		if !ok {
			ans = map[string]any{"active": false}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(ans)
	}))
	t.Cleanup(a.Close)
	return a
}

// visibilityFHIR answers ImagingStudy?identifier=..&patient=.. from a table
// of study UID → subject, showing a study only to the token that may see it.
type visibilityFHIR struct {
	*httptest.Server
	studies      map[string]string   // uid → subject reference
	hidden       map[string][]string // token → uids it must not see
	searches     atomic.Int32
	status       atomic.Int32
	lastAuth     atomic.Value
	wrongSubject bool
}

func newVisibilityFHIR(t testing.TB) *visibilityFHIR {
	f := &visibilityFHIR{studies: map[string]string{}, hidden: map[string][]string{}}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.searches.Add(1)
		f.lastAuth.Store(r.Header.Get("Authorization"))
		if s := f.status.Load(); s != 0 {
			w.WriteHeader(int(s))
			return
		}
		if r.URL.Path != "/fhir/ImagingStudy" || r.URL.Query().Get("_elements") != "identifier,subject" {
			http.Error(w, "unexpected request", http.StatusBadRequest)
			return
		}
		tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		patient := r.URL.Query().Get("patient")
		var entries []string
		for _, v := range strings.Split(r.URL.Query().Get("identifier"), ",") {
			uid := strings.TrimPrefix(strings.TrimPrefix(v, "urn:dicom:uid|"), "urn:oid:")
			subject, ok := f.studies[uid]
			if !ok || strings.HasPrefix(v, "urn:dicom:uid|urn:oid:") {
				continue
			}
			if patient != "" && !strings.HasSuffix(subject, "Patient/"+patient) && !f.wrongSubject {
				continue
			}
			hide := false
			for _, h := range f.hidden[tok] {
				hide = hide || h == uid
			}
			if !hide {
				entries = append(entries, fmt.Sprintf(`{"resource":{"resourceType":"ImagingStudy","identifier":[{"system":"urn:dicom:uid","value":"urn:oid:%s"}],"subject":{"reference":"%s"}}}`, uid, subject))
			}
		}
		w.Header().Set("Content-Type", "application/fhir+json")
		fmt.Fprintf(w, `{"resourceType":"Bundle","type":"searchset","entry":[%s]}`, strings.Join(entries, ","))
	}))
	t.Cleanup(f.Close)
	return f
}

type fixture struct {
	auth *authServer
	fhir *visibilityFHIR
	clk  *clock
	az   *Authorizer
}

func newFixture(t testing.TB) *fixture {
	f := &fixture{auth: newAuthServer(t), fhir: newVisibilityFHIR(t), clk: &clock{t: time.Unix(1_700_000_000, 0)}}
	exp := f.clk.now().Add(time.Hour).Unix()
	f.auth.tokens["alice"] = map[string]any{"active": true, "scope": "launch/patient patient/ImagingStudy.rs", "patient": "p1", "exp": exp, "client_id": "app", "iss": "http://as.example"}
	f.auth.tokens["alice-proxy"] = map[string]any{"active": true, "scope": "patient/ImagingStudy.rs", "patient": "p1", "exp": exp}
	f.auth.tokens["bob"] = map[string]any{"active": true, "scope": "patient/*.read", "patient": "p2", "exp": exp}
	f.auth.tokens["doctor"] = map[string]any{"active": true, "scope": "user/ImagingStudy.rs", "exp": exp}
	f.auth.tokens["system"] = map[string]any{"active": true, "scope": "system/*.rs", "exp": exp}
	f.auth.tokens["nopatient"] = map[string]any{"active": true, "scope": "patient/ImagingStudy.rs", "exp": exp}
	f.auth.tokens["short"] = map[string]any{"active": true, "scope": "patient/ImagingStudy.rs", "patient": "p1", "exp": f.clk.now().Add(5 * time.Second).Unix()}
	f.auth.tokens["stale"] = map[string]any{"active": true, "scope": "patient/ImagingStudy.rs", "patient": "p1", "exp": f.clk.now().Add(-time.Second).Unix()}
	f.auth.tokens["foreign"] = map[string]any{"active": true, "scope": "patient/ImagingStudy.rs", "patient": "p1", "iss": "http://other.example"}
	f.auth.tokens["badpatient"] = map[string]any{"active": true, "scope": "patient/ImagingStudy.rs", "patient": "p1&patient=p2"}
	f.fhir.studies["1.1"] = "Patient/p1"
	f.fhir.studies["1.2"] = "http://fhir.example/fhir/Patient/p1"
	f.fhir.studies["2.1"] = "Patient/p2"
	f.fhir.hidden["alice-proxy"] = []string{"1.2"}
	f.az = New(Config{
		Introspector: &Introspector{URL: f.auth.URL, ClientID: "gw", ClientSecret: "s:cret", Issuer: "http://as.example/"},
		FHIRBase:     f.fhir.URL + "/fhir/",
		DecisionTTL:  30 * time.Second,
		Now:          f.clk.now,
	})
	return f
}

func (f *fixture) may(t *testing.T, token, uid string) (bool, error) {
	t.Helper()
	s, err := f.az.Authenticate(context.Background(), "Bearer "+token)
	if err != nil {
		return false, err
	}
	return f.az.MayRead(context.Background(), s, "Bearer "+token, uid)
}

func TestDecisions(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		token, uid string
		want       bool
	}{
		{"alice", "1.1", true},
		{"alice", "1.2", true},        // subject as an absolute URL
		{"alice", "2.1", false},       // another patient's study
		{"alice", "9.9", false},       // a study that does not exist
		{"alice-proxy", "1.1", true},  //
		{"alice-proxy", "1.2", false}, // hidden by the FHIR server from this token
		{"bob", "2.1", true},          // v1 wildcard
		{"doctor", "2.1", true},       // user/ scope: the FHIR server decides
		{"doctor", "9.9", false},      //
		{"system", "1.1", false},      // system scopes grant nothing
		{"nopatient", "1.1", false},   // patient/ scope without a patient
		{"badpatient", "1.1", false},  // a patient that is no FHIR id
	} {
		got, err := f.may(t, tc.token, tc.uid)
		if err != nil || got != tc.want {
			t.Errorf("%s may read %s: %v, %v; want %v", tc.token, tc.uid, got, err, tc.want)
		}
	}
	if got := f.fhir.lastAuth.Load(); got != "Bearer doctor" {
		t.Errorf("the look-up carried Authorization %q, want the client's own", got)
	}
	// system, nopatient and badpatient never reached the FHIR server.
	if n := f.fhir.searches.Load(); n != 9 {
		t.Errorf("%d FHIR searches, want 9", n)
	}
}

func TestAuthenticationFailures(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct{ header, challenge string }{
		{"", `Bearer realm="imaging"`},
		{"Basic Zm9vOmJhcg==", `error="invalid_request"`},
		{"Bearer not-a-token", `error="invalid_token"`},
		{"Bearer stale", `error="invalid_token"`},
		{"Bearer foreign", `error="invalid_token"`},
	} {
		_, err := f.az.Authenticate(context.Background(), tc.header)
		var ae *AuthError
		if !errors.As(err, &ae) || !strings.Contains(ae.Challenge, tc.challenge) {
			t.Errorf("Authenticate(%q) = %v, want an AuthError with %s", tc.header, err, tc.challenge)
		}
	}
}

func TestCachingPerTokenAndTTL(t *testing.T) {
	f := newFixture(t)
	for range 50 {
		if ok, err := f.may(t, "alice", "1.1"); !ok || err != nil {
			t.Fatalf("alice: %v, %v", ok, err)
		}
	}
	if n, m := f.auth.calls.Load(), f.fhir.searches.Load(); n != 1 || m != 1 {
		t.Fatalf("50 requests: %d introspections and %d searches, want 1 and 1", n, m)
	}
	// Another token's decision is its own, even for the same study.
	if ok, _ := f.may(t, "bob", "1.1"); ok {
		t.Fatal("bob was allowed alice's study")
	}
	// Within the TTL nothing is asked again; past it, both are.
	f.clk.add(29 * time.Second)
	f.may(t, "alice", "1.1")
	if n := f.auth.calls.Load(); n != 2 {
		t.Fatalf("%d introspections within the TTL, want 2 (alice, bob)", n)
	}
	f.clk.add(2 * time.Second)
	f.may(t, "alice", "1.1")
	if n, m := f.auth.calls.Load(), f.fhir.searches.Load(); n != 3 || m != 3 {
		t.Fatalf("past the TTL: %d introspections and %d searches, want 3 and 3", n, m)
	}
	// A revoked token stops working once its cached introspection expires.
	delete(f.auth.tokens, "alice")
	f.clk.add(31 * time.Second)
	if _, err := f.may(t, "alice", "1.1"); err == nil {
		t.Fatal("a revoked token still works after the TTL")
	}
}

func TestNeverPastExp(t *testing.T) {
	f := newFixture(t)
	if ok, err := f.may(t, "short", "1.1"); !ok || err != nil {
		t.Fatalf("short: %v, %v", ok, err)
	}
	f.clk.add(5 * time.Second)
	if _, err := f.may(t, "short", "1.1"); err == nil {
		t.Fatal("a token was honoured past its exp")
	}
	if n := f.auth.calls.Load(); n != 2 {
		t.Fatalf("%d introspections, want 2: the first answer must not outlive exp", n)
	}
}

func TestFailClosed(t *testing.T) {
	f := newFixture(t)
	f.auth.down.Store(true)
	_, err := f.az.Authenticate(context.Background(), "Bearer alice")
	var ue *UnavailableError
	if !errors.As(err, &ue) {
		t.Fatalf("introspection down: %v, want UnavailableError", err)
	}
	f.auth.down.Store(false)
	f.fhir.status.Store(http.StatusInternalServerError)
	if ok, err := f.may(t, "alice", "1.1"); ok || !errors.As(err, &ue) {
		t.Fatalf("FHIR 500: %v, %v; want no and UnavailableError", ok, err)
	}
	f.fhir.status.Store(0)
	if ok, err := f.may(t, "alice", "1.1"); !ok || err != nil {
		t.Fatalf("a failed look-up was cached: %v, %v", ok, err)
	}
	for _, st := range []int{http.StatusUnauthorized, http.StatusForbidden} {
		f.fhir.status.Store(int32(st))
		if ok, err := f.may(t, "alice", "1.9"); ok || err != nil {
			t.Fatalf("FHIR %d: %v, %v; want a plain no", st, ok, err)
		}
	}
}

func TestAnswerIsCheckedNotTrusted(t *testing.T) {
	f := newFixture(t)
	f.fhir.wrongSubject = true // a server that ignores the patient parameter
	if ok, _ := f.may(t, "alice", "2.1"); ok {
		t.Fatal("a study of another patient was allowed because the FHIR server returned it")
	}
}

func TestConcurrentRequestsShareOneAnswer(t *testing.T) {
	f := newFixture(t)
	var wg sync.WaitGroup
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if ok, err := f.may(t, "alice", "1.1"); !ok || err != nil {
				t.Errorf("alice: %v, %v", ok, err)
			}
		}()
	}
	wg.Wait()
	if n, m := f.auth.calls.Load(), f.fhir.searches.Load(); n != 1 || m != 1 {
		t.Fatalf("100 concurrent requests: %d introspections and %d searches, want 1 and 1", n, m)
	}
}

func TestVisibleInBatches(t *testing.T) {
	f := newFixture(t)
	s, err := f.az.Authenticate(context.Background(), "Bearer doctor")
	if err != nil {
		t.Fatal(err)
	}
	uids := []string{"1.1", "2.1", "9.9"}
	for i := range 45 {
		uids = append(uids, fmt.Sprintf("7.%d", i))
	}
	seen, err := f.az.Visible(context.Background(), s, "Bearer doctor", uids)
	if err != nil || !seen["1.1"] || !seen["2.1"] || seen["9.9"] || len(seen) != len(uids) {
		t.Fatalf("Visible = %v, %v", seen, err)
	}
	if n := f.fhir.searches.Load(); n != 3 {
		t.Fatalf("%d searches for 48 UIDs, want 3 batches", n)
	}
}

// BenchmarkWarmDecision is the work access control adds to a request once
// the token's introspection and its decision for the study are cached.
func BenchmarkWarmDecision(b *testing.B) {
	f := newFixture(b)
	ctx := context.Background()
	header := "Bearer alice"
	s, err := f.az.Authenticate(ctx, header)
	if err != nil {
		b.Fatal(err)
	}
	if ok, err := f.az.MayRead(ctx, s, header, "1.1"); !ok || err != nil {
		b.Fatal(ok, err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s, err := f.az.Authenticate(ctx, header)
			if err != nil {
				b.Error(err)
				return
			}
			if ok, err := f.az.MayRead(ctx, s, header, "1.1"); !ok || err != nil {
				b.Error(ok, err)
				return
			}
		}
	})
}
