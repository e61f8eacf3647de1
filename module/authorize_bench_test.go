package module_test

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"
)

// BenchmarkAuthorize measures what access control adds to a warm request:
// the same instance retrieve through the gateway with authorize off and on,
// the token's introspection, its decision for the study and the archive's
// answer on the instance all cached (decision_ttl 1h). Compare the two
// ns/op (or req/s) of one run; docs/PERFORMANCE.md reports the ratio.
func BenchmarkAuthorize(b *testing.B) {
	const path = "/wado-rs/studies/1.1/series/1.1.1/instances/1.1.1.1"
	s := newSmartSetup(b, "decision_ttl 1h")
	s.archive.quiet.Store(true)
	// The same archive and FHIR server without an authorize block.
	off := fmt.Sprintf("\tfhir_imaging {\n\t\tfhir %s/fhir\n\t\tarchive a %s\n\t}", s.fhir.URL, s.archive.base())
	configs := map[string]string{"off": off, "on": s.globals}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 10 * time.Second}
	get := func(gw string) error {
		req, _ := http.NewRequest(http.MethodGet, gw+path, nil)
		req.Header.Set("Authorization", "Bearer alice")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	// The two take turns, so that drift over the run hits both alike.
	for range 5 {
		for _, mode := range []string{"off", "on"} {
			b.Run(mode, func(b *testing.B) {
				gw := startGateway(b, configs[mode], s.site)
				for range 20 { // warm the caches and the connections
					if err := get(gw); err != nil {
						b.Fatal(err)
					}
				}
				before := s.as.calls.Load()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := get(gw); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.StopTimer()
				if n := s.as.calls.Load() - before; n != 0 {
					b.Fatalf("%d introspections while warm", n)
				}
			})
		}
	}
}
