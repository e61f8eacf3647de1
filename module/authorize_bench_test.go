package module_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
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
	for _, mode := range []string{"off", "on"} {
		b.Run(mode, func(b *testing.B) {
			s := newSmartSetup(b, "decision_ttl 1h")
			gw := s.gw
			if mode == "off" {
				// The same archive and FHIR server, no authorize block.
				globals := fmt.Sprintf("\tfhir_imaging {\n\t\tfhir %s/fhir\n\t\tarchive a %s\n\t}", s.fhir.URL, s.archive.base())
				gw = startGateway(b, globals, "\thandle_path /wado-rs/* {\n\t\tdicomweb\n\t}")
			}
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 10 * time.Second}
			get := func() error {
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
			for range 10 { // warm the caches and the connections
				if err := get(); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := get(); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			if mode == "on" {
				b.ReportMetric(float64(s.as.calls.Load()), "introspections")
			}
			if n := s.retr.Load(); n < int32(b.N) && !strings.Contains(b.Name(), "off") {
				b.Fatalf("%d retrieves reached the archive for %d requests", n, b.N)
			}
		})
	}
}
