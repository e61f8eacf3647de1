package module_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Faults of the archives: whatever an archive does, the client gets a clear
// answer in bounded time, a broken stream is never passed off as a whole
// one, and a client that leaves lets go of the archive at once.
func TestFaultsArchive(t *testing.T) {
	t.Run("slow past the response header timeout: 504", func(t *testing.T) {
		s := newRoutingSetup(t, "")
		_ = caddyStop()
		release := make(chan struct{})
		t.Cleanup(func() { close(release) })
		s.a.serve = func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		globals := fmt.Sprintf("\tfhir_imaging {\n\t\tfhir %s/fhir\n\t\tarchive a %s {\n\t\t\ttransport http {\n\t\t\t\tresponse_header_timeout 300ms\n\t\t\t}\n\t\t}\n\t}", s.fhir.URL, s.a.base())
		gw := startGateway(t, globals, "\thandle_path /wado-rs/* {\n\t\tdicomweb\n\t}")
		start := time.Now()
		resp, body := get(t, gw+"/wado-rs/studies/1.2.1/metadata")
		if resp.StatusCode != http.StatusGatewayTimeout || time.Since(start) > 5*time.Second {
			t.Fatalf("%d after %v: %s", resp.StatusCode, time.Since(start), body)
		}
		if msg := jsonMessage(t, body); !strings.Contains(msg, "archive a") || strings.Contains(msg, "127.0.0.1") {
			t.Errorf("message %q", msg)
		}
	})
	t.Run("killed mid-stream: the answer is broken off, not ended", func(t *testing.T) {
		s := newRoutingSetup(t, "")
		s.a.serve = func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", `multipart/related; type="application/dicom"; boundary=x`)
			w.Header().Set("Content-Length", "10000000")
			w.Write(make([]byte, 100000))
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler) // the archive dies
		}
		resp, err := noCompression.Get(s.gw + "/wado-rs/studies/1.2.1/series/1.2.1.1")
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Fatal("a stream the archive broke off reached the client as a whole answer")
		}
	})
	t.Run("a client that leaves lets go of the archive within a second", func(t *testing.T) {
		s := newRoutingSetup(t, "")
		gone := make(chan time.Time, 1)
		s.a.serve = func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", `multipart/related; type="application/dicom"; boundary=x`)
			chunk := make([]byte, 64<<10)
			for {
				if _, err := w.Write(chunk); err != nil {
					break
				}
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
				case <-time.After(time.Millisecond):
					continue
				}
				break
			}
			gone <- time.Now()
		}
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.gw+"/wado-rs/studies/1.2.1/series/1.2.1.1", nil)
		resp, err := noCompression.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.CopyN(io.Discard, resp.Body, 1<<20)
		left := time.Now()
		cancel()
		resp.Body.Close()
		select {
		case at := <-gone:
			if d := at.Sub(left); d > time.Second {
				t.Errorf("the archive kept streaming %v after the client left", d)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the archive was never let go")
		}
	})
}

// Faults of the FHIR server: DICOMweb answers a clear 502/504 in bounded
// time; FHIR answers still flow, without URLs where a look-up failed.
func TestFaultsFHIR(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer func(w http.ResponseWriter)
		status int
	}{
		{"answering 500", func(w http.ResponseWriter) { w.WriteHeader(http.StatusInternalServerError) }, http.StatusBadGateway},
		{"malformed JSON", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/fhir+json")
			io.WriteString(w, `{"resourceType":"Bundle","entry":[{"resource":`)
		}, http.StatusBadGateway},
		{"truncated answer", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/fhir+json")
			w.Header().Set("Content-Length", "1000")
			io.WriteString(w, `{"resourceType":"Bundle","entry":[`)
		}, http.StatusBadGateway},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newRoutingFHIR(t)
			f.Server.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { tc.answer(w) })
			a := newFakeArchive(t, "/dicom-web")
			gw := startGateway(t, fmt.Sprintf("\tfhir_imaging {\n\t\tfhir %s/fhir\n\t\tarchive a %s\n\t}", f.URL, a.base()), "\thandle_path /wado-rs/* {\n\t\tdicomweb\n\t}")
			resp, body := get(t, gw+"/wado-rs/studies/1.2.1/metadata")
			if resp.StatusCode != tc.status {
				t.Fatalf("%d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if msg := jsonMessage(t, body); strings.Contains(msg, "127.0.0.1") {
				t.Errorf("the message names an internal address: %q", msg)
			}
			if len(a.requests()) != 0 {
				t.Error("an archive was asked although the study could not be located")
			}
		})
	}
	t.Run("slow look-ups: FHIR answers still flow, without URLs, within lookup_timeout", func(t *testing.T) {
		f, gw := rewriteGatewayWith(t, "", "", "")
		f.searchDelay = 3 * time.Second
		start := time.Now()
		resp, body := get(t, gw+"/fhir/ImagingStudy/s1")
		if resp.StatusCode != http.StatusOK || time.Since(start) > 2500*time.Millisecond {
			t.Fatalf("%d after %v", resp.StatusCode, time.Since(start))
		}
		if strings.Contains(string(body), extRS) {
			t.Error("URLs injected although the Endpoints could not be looked up")
		}
	})
	t.Run("archives down: FHIR answers still flow", func(t *testing.T) {
		_, gw := rewriteGatewayWith(t, "", "", "")
		// The archives of rewriteGateway (127.0.0.1:18042/18043) do not run here.
		resp, body := get(t, gw+"/fhir/ImagingStudy/s1")
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), extRS) {
			t.Fatalf("%d: %s", resp.StatusCode, body)
		}
	})
}

// A config reload in the middle of a large retrieve lets it complete; under
// steady small requests none fails and no cached route is lost.
func TestReloadUnderLoad(t *testing.T) {
	f := newRoutingFHIR(t)
	a := newFakeArchive(t, "/dicom-web")
	a.quiet.Store(true)
	f.included = []string{endpointJSON("a", "active", "dicom-wado-rs", a.base())}
	f.studies["urn:oid:1.2.1"] = `{"resourceType":"ImagingStudy","identifier":[{"system":"urn:dicom:uid","value":"urn:oid:1.2.1"}],"endpoint":[{"reference":"Endpoint/a"}],"series":[{"uid":"1.2.1.1"},{"uid":"1.2.1.2"}]}`
	const size = 200 << 20
	chunk := make([]byte, 1<<20)
	a.serve = func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", `multipart/related; type="application/dicom"; boundary=x`)
		if strings.HasSuffix(r.URL.Path, "1.2.1.1") {
			w.Header().Set("Content-Length", fmt.Sprint(size))
			for i := 0; i < size/len(chunk); i++ {
				if _, err := w.Write(chunk); err != nil {
					return
				}
				if i%5 == 0 {
					time.Sleep(20 * time.Millisecond) // about a second: long enough to reload in the middle
				}
			}
			return
		}
		io.WriteString(w, "small")
	}
	port := freePort(t)
	config := func(n int) string {
		return fmt.Sprintf("{\n\tadmin off\n\tpersist_config off\n\tfhir_imaging {\n\t\tfhir %s/fhir\n\t\tarchive a %s\n\t}\n}\nhttp://127.0.0.1:%d {\n\thandle_path /wado-rs/* {\n\t\tdicomweb\n\t}\n\trespond /round \"%d\"\n}\n", f.URL, a.base(), port, n)
	}
	gw := fmt.Sprintf("http://127.0.0.1:%d", port)
	loadCaddyfile(t, config(0))
	waitFor(t, gw+"/wado-rs/studies/1.2.1/series/1.2.1.2")

	var large error
	var got int64
	var finished time.Time
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() { finished = time.Now() }()
		resp, err := noCompression.Get(gw + "/wado-rs/studies/1.2.1/series/1.2.1.1")
		if err != nil {
			large = err
			return
		}
		defer resp.Body.Close()
		got, large = io.Copy(io.Discard, resp.Body)
	}()
	var small, failed atomic.Int32
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 10 * time.Second}
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Get(gw + "/wado-rs/studies/1.2.1/series/1.2.1.2")
				if err != nil || resp.StatusCode != http.StatusOK {
					failed.Add(1)
					if err == nil {
						resp.Body.Close()
					}
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				small.Add(1)
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	var reloaded time.Time
	for round := 1; round <= 3; round++ {
		loadCaddyfile(t, config(round))
		reloaded = time.Now()
		time.Sleep(100 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	<-done
	if !finished.After(reloaded) {
		t.Fatalf("the large retrieve ended before the last reload; the test proves nothing")
	}
	if large != nil || got != size {
		t.Errorf("the retrieve under way during the reloads: %d of %d bytes, %v", got, size, large)
	}
	if failed.Load() != 0 || small.Load() == 0 {
		t.Errorf("steady requests during the reloads: %d failed, %d succeeded", failed.Load(), small.Load())
	}
	if n := f.searches.Load(); n != 1 {
		t.Errorf("%d FHIR searches across the reloads, want 1: the cached route was lost", n)
	}
	if resp, body := get(t, gw+"/round"); string(body) != "3" {
		t.Errorf("the last config is not in effect: %d %s", resp.StatusCode, body)
	}

}
