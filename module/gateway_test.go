package module_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	// The standard modules (reverse_proxy, encode, ...) and ours.
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/fhirimaging/caddy-fhir-imaging/caddyfile"
)

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startGateway runs a real Caddy in this process with the given Caddyfile
// site body (global options are added) and returns the gateway's base URL.
// globals goes inside the global options block.
func startGateway(t testing.TB, globals, site string) string {
	t.Helper()
	port := freePort(t)
	cf := fmt.Sprintf("{\n\tadmin off\n\tpersist_config off\n\tauto_https off\n\tskip_install_trust\n%s\n}\nhttp://127.0.0.1:%d {\n%s\n}\n", globals, port, site)
	loadCaddyfile(t, cf)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			return base
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway did not start: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// noCompression is a client that neither asks for nor undoes compression.
var noCompression = &http.Client{Transport: &http.Transport{DisableCompression: true}, Timeout: 20 * time.Second}

func get(t testing.TB, url string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	return do(t, http.MethodGet, url, nil, hdr...)
}

func do(t testing.TB, method, url string, body io.Reader, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := noCompression.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading %s: %v", url, err)
	}
	return resp, b
}

func jsonMessage(t testing.TB, body []byte) string {
	t.Helper()
	var e struct {
		Message string `json:"message"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Message == "" {
		t.Fatalf("error body is not JSON with a message: %q", body)
	}
	return e.Message
}

func hostPort(u string) string { return strings.TrimPrefix(u, "http://") }

func caddyStop() error { return caddy.Stop() }

// loadCaddyfile adapts a whole Caddyfile and runs it in this process.
func loadCaddyfile(t testing.TB, cf string) {
	t.Helper()
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cf), nil)
	if err != nil {
		t.Fatalf("adapting Caddyfile: %v\n%s", err, cf)
	}
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatalf("loading config: %v\n%s", err, cfg)
	}
	// A reload shuts the old servers down, closing their idle connections:
	// a request that picked one of those up as it closed would fail with
	// EOF, a race of the test's client, not of the gateway.
	noCompression.CloseIdleConnections()
	t.Cleanup(func() { _ = caddy.Stop() })
}
