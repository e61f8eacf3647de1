package access

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

func TestCORS(t *testing.T) {
	c := NewCORS([]string{"https://viewer.example.org/"})
	if NewCORS(nil) != nil {
		t.Fatal("no origins must mean no CORS")
	}
	pre := httptest.NewRequest(http.MethodOptions, "/wado-rs/studies/1.2", nil)
	pre.Header.Set("Origin", "https://viewer.example.org")
	pre.Header.Set("Access-Control-Request-Method", "GET")
	pre.Header.Set("Access-Control-Request-Headers", "authorization, accept")
	w := httptest.NewRecorder()
	if !c.Preflight(w, pre) {
		t.Fatal("a preflight was not answered")
	}
	if w.Code != http.StatusNoContent || w.Header().Get("Access-Control-Allow-Origin") != "https://viewer.example.org" ||
		w.Header().Get("Access-Control-Allow-Headers") != "authorization, accept" || !strings.Contains(w.Header().Get("Access-Control-Allow-Methods"), "GET") {
		t.Fatalf("preflight answer %d %v", w.Code, w.Header())
	}
	// An origin that is not allowed gets no CORS header.
	pre.Header.Set("Origin", "https://evil.example")
	w = httptest.NewRecorder()
	c.Preflight(w, pre)
	if w.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("a foreign origin was allowed: %v", w.Header())
	}
	// A plain OPTIONS is not a preflight.
	plain := httptest.NewRequest(http.MethodOptions, "/", nil)
	if c.Preflight(httptest.NewRecorder(), plain) {
		t.Fatal("an OPTIONS without Origin was taken for a preflight")
	}
	// An actual answer carries the origin, replacing an upstream's.
	get := httptest.NewRequest(http.MethodGet, "/", nil)
	get.Header.Set("Origin", "https://viewer.example.org")
	h := http.Header{"Access-Control-Allow-Origin": {"*"}}
	c.Decorate(h, get)
	if h.Get("Access-Control-Allow-Origin") != "https://viewer.example.org" || len(h.Values("Access-Control-Allow-Origin")) != 1 ||
		!strings.Contains(h.Get("Access-Control-Expose-Headers"), "WWW-Authenticate") || h.Get("Vary") != "Origin" {
		t.Fatalf("decorated headers %v", h)
	}
	star := NewCORS([]string{"*"})
	h = http.Header{}
	star.Decorate(h, get)
	if h.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("cors * gave %v", h)
	}
}

func TestSMARTConfiguration(t *testing.T) {
	out, err := AddCapabilities([]byte(`{"issuer":"x","capabilities":["launch-standalone","smart-imaging-access"]}`))
	if err != nil {
		t.Fatal(err)
	}
	caps := gjson.GetBytes(out, "capabilities").Array()
	if len(caps) != 3 || caps[0].String() != "launch-standalone" || caps[1].String() != "smart-imaging-access" ||
		caps[2].String() != ImagingCapabilities[1] || gjson.GetBytes(out, "issuer").String() != "x" {
		t.Fatalf("AddCapabilities = %s", out)
	}
	if out, _ := AddCapabilities([]byte(`{}`)); len(gjson.GetBytes(out, "capabilities").Array()) != 2 {
		t.Fatalf("no capabilities array: %s", out)
	}
	for _, bad := range []string{`[]`, `nope`, `{"capabilities":"x"}`} {
		if _, err := AddCapabilities([]byte(bad)); err == nil {
			t.Errorf("AddCapabilities(%s) took it", bad)
		}
	}
	built, err := FromDiscovery([]byte(`{"issuer":"http://as","authorization_endpoint":"http://as/auth","token_endpoint":"http://as/token","userinfo_endpoint":"http://as/me","grant_types_supported":["authorization_code"]}`))
	if err != nil {
		t.Fatal(err)
	}
	doc := gjson.ParseBytes(built)
	if doc.Get("token_endpoint").String() != "http://as/token" || doc.Get("userinfo_endpoint").Exists() ||
		doc.Get("code_challenge_methods_supported.0").String() != "S256" || doc.Get("capabilities.0").String() != "smart-imaging-access" {
		t.Fatalf("FromDiscovery = %s", built)
	}
	if _, err := FromDiscovery([]byte(`{"issuer":"x"}`)); err == nil {
		t.Error("metadata without a token endpoint was taken")
	}
}
