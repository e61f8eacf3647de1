package module_test

import (
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

// PS3.18 clients may ask for frames and bulk data with any type; the
// archive is asked for what every archive serves (Orthanc refuses */*).
func TestDICOMwebWildcardAccept(t *testing.T) {
	s := newRoutingSetup(t, "")
	inst := "/studies/1.2.1/series/1.2.1.1/instances/1.2.1.1.1"
	tests := []struct{ path, accept, want string }{
		{inst + "/frames/1", `multipart/related; type="*/*"`, `multipart/related; type="application/octet-stream"`},
		{inst + "/bulk/7fe00010", `multipart/related; type="*/*"; transfer-syntax=*`, `multipart/related; type="application/octet-stream"; transfer-syntax=*`},
		{inst + "/pixeldata", `multipart/related; type="*/*"`, `multipart/related; type="application/octet-stream"`},
		// Left alone: a concrete type, and resources that are not raw data.
		{inst + "/frames/1", `multipart/related; type="image/jpeg"`, `multipart/related; type="image/jpeg"`},
		{inst, `multipart/related; type="*/*"`, `multipart/related; type="*/*"`},
		{inst + "/frames/1/rendered", `*/*`, `*/*`},
	}
	for _, tt := range tests {
		get(t, s.gw+"/wado-rs"+tt.path, "Accept", tt.accept)
		reqs := s.a.requests()
		if got := reqs[len(reqs)-1].Header.Get("Accept"); got != tt.want {
			t.Errorf("%s with Accept %s: the archive was asked for %q, want %q", tt.path, tt.accept, got, tt.want)
		}
	}
}

// wildcard_accept */* passes a wildcard on, for archives that choose well.
func TestDICOMwebWildcardAcceptPassed(t *testing.T) {
	a := newFakeArchive(t, "/rs")
	f := newRoutingFHIR(t)
	f.included = []string{endpointJSON("a", "active", "dicom-wado-rs", a.base())}
	f.studies["1.2.1"] = `{"resourceType":"ImagingStudy","id":"s1","identifier":[{"system":"urn:dicom:uid","value":"1.2.1"}],"endpoint":[{"reference":"Endpoint/a"}]}`
	gw := startGateway(t, fmt.Sprintf("\tfhir_imaging {\n\t\tfhir %s/fhir\n\t\tarchive a %s {\n\t\t\twildcard_accept */*\n\t\t}\n\t}", f.URL, a.base()),
		"\thandle_path /wado-rs/* {\n\t\tdicomweb\n\t}")
	get(t, gw+"/wado-rs/studies/1.2.1/series/1.2.1.1/instances/1.2.1.1.1/frames/1", "Accept", `multipart/related; type="*/*"`)
	if reqs := a.requests(); len(reqs) != 1 || reqs[0].Header.Get("Accept") != `multipart/related; type="*/*"` {
		t.Errorf("the archive was asked %v", reqs)
	}
}

// An archive's error answer reaches the client in the gateway's words,
// with the archive's status; a DICOM answer to a failed store is the
// standard's own and passes.
func TestDICOMwebArchiveErrorsInGatewayWords(t *testing.T) {
	s := newRoutingSetup(t, "\t\tstore_archive a")
	internal := s.a.base() + "/studies/1.2.1/series/1.2.1.1/instances/1.2.1.1.1/frames/1"
	s.a.serve = func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/studies/1.2.9") {
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusUnsupportedMediaType)
			fmt.Fprintf(w, "Unsupported at %s", internal)
			return
		}
		if r.Method == http.MethodPost {
			w.Header().Set("Content-Type", "application/dicom+json")
			w.WriteHeader(http.StatusConflict)
			io.WriteString(w, `{"00081198":{"vr":"SQ","Value":[{"00081197":{"vr":"US","Value":[272]}}]}}`)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, "{\n\t\"Details\" : \"Transfer syntax is incompatible\",\n\t\"Uri\" : %q\n}", internal)
	}
	resp, body := get(t, s.gw+"/wado-rs/studies/1.2.1/series/1.2.1.1/instances/1.2.1.1.1/frames/1")
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d, want the archive's 400", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" || strings.Contains(string(body), s.a.URL) || strings.Contains(string(body), "Details") {
		t.Errorf("the archive's own error came through: %s %s", ct, body)
	}
	if msg := gjson.GetBytes(body, "message").String(); msg != "archive a answered 400 Bad Request" {
		t.Errorf("message %q", msg)
	}
	resp, body = do(t, "POST", s.gw+"/wado-rs/studies", strings.NewReader("--B\r\n\r\nDICM\r\n--B--"), "Content-Type", `multipart/related; type="application/dicom"; boundary=B`)
	if resp.StatusCode != http.StatusConflict || !gjson.GetBytes(body, "00081198").Exists() {
		t.Errorf("a failed store: %d %s, want the archive's 409 with its FailedSOPSequence", resp.StatusCode, body)
	}
	resp, body = do(t, "POST", s.gw+"/wado-rs/studies/1.2.9", strings.NewReader("--B\r\n\r\nDICM\r\n--B--"), "Content-Type", `multipart/related; type="application/dicom"; boundary=B`)
	if resp.StatusCode != http.StatusUnsupportedMediaType || strings.Contains(string(body), s.a.URL) || gjson.GetBytes(body, "message").String() == "" {
		t.Errorf("a store refused in text: %d %s, want 415 in the gateway's words", resp.StatusCode, body)
	}
}

// The parts of a multipart answer name themselves by the gateway's URLs,
// not the archive's, whether one archive answers or several are merged.
func TestDICOMwebPartHeadersRebased(t *testing.T) {
	s := newRoutingSetup(t, "")
	parts := func(ar *fakeArchive) func(w http.ResponseWriter, r *http.Request) {
		return func(w http.ResponseWriter, r *http.Request) {
			mw := multipart.NewWriter(w)
			w.Header().Set("Content-Type", mime.FormatMediaType("multipart/related", map[string]string{"type": "application/octet-stream", "boundary": mw.Boundary()}))
			w.Header().Set("ETag", `"archive"`)
			for i := 1; i <= 2; i++ {
				pw, _ := mw.CreatePart(map[string][]string{
					"Content-Type":     {"application/octet-stream"},
					"Content-Location": {fmt.Sprintf("%s%s/frames/%d", ar.base(), strings.TrimPrefix(r.URL.Path, ar.prefix), i)},
				})
				pw.Write([]byte(strings.Repeat("\x00", 1000*i)))
			}
			mw.Close()
		}
	}
	s.a.serve, s.b.serve, s.c.serve = parts(s.a), parts(s.b), parts(s.c)
	for _, path := range []string{
		"/studies/1.2.1/series/1.2.1.1/instances/1.2.1.1.1/frames/1,2", // one archive
		"/studies/1.2.2", // spread over B and C: merged
	} {
		resp, body := get(t, s.gw+"/wado-rs"+path)
		if resp.StatusCode != 200 || resp.Header.Get("ETag") != "" {
			t.Fatalf("%s: status %d, ETag %q", path, resp.StatusCode, resp.Header.Get("ETag"))
		}
		for _, ar := range []*fakeArchive{s.a, s.b, s.c} {
			if strings.Contains(string(body), ar.URL) {
				t.Errorf("%s: an archive's address is in the answer", path)
			}
		}
		_, params, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		mr := multipart.NewReader(strings.NewReader(string(body)), params["boundary"])
		n := 0
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			n++
			if loc := p.Header.Get("Content-Location"); !strings.HasPrefix(loc, s.gw+"/wado-rs/studies/") {
				t.Errorf("%s: part Content-Location %q", path, loc)
			}
			if data, _ := io.ReadAll(p); len(data) != 1000*(2-n%2) {
				t.Errorf("%s: part %d has %d bytes", path, n, len(data))
			}
		}
		if want := map[bool]int{true: 2, false: 4}[strings.Contains(path, "frames")]; n != want {
			t.Errorf("%s: %d parts, want %d", path, n, want)
		}
	}
}

// A study that several archives hold is one study in a search, counted
// whole: its series once each (a replica too), all its instances, and
// every modality.
func TestDICOMwebSpreadStudyCounts(t *testing.T) {
	s := newRoutingSetup(t, "")
	ds := func(uid string, attrs string) string {
		return fmt.Sprintf(`{"0020000D":{"vr":"UI","Value":["%s"]}%s}`, uid, attrs)
	}
	counts := func(series, instances int, mods string) string {
		return fmt.Sprintf(`,"00201206":{"vr":"IS","Value":[%d]},"00201208":{"vr":"IS","Value":[%d]},"00080061":{"vr":"CS","Value":[%s]}`, series, instances, mods)
	}
	seriesDS := func(uid string, n int) string {
		return fmt.Sprintf(`{"0020000E":{"vr":"UI","Value":["%s"]},"00201209":{"vr":"IS","Value":[%d]}}`, uid, n)
	}
	answer := func(studies string, series ...string) func(w http.ResponseWriter, r *http.Request) {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/dicom+json")
			if strings.HasSuffix(r.URL.Path, "/series") {
				if series == nil {
					http.Error(w, "no", 500)
					return
				}
				io.WriteString(w, "["+strings.Join(series, ",")+"]")
				return
			}
			io.WriteString(w, studies)
		}
	}
	// A holds series 1 (2 instances); B holds series 1 too (a replica) and
	// series 2 (3 instances); C holds nothing of it.
	s.a.serve = answer("["+ds("1.5", counts(1, 2, `"CT"`))+","+ds("1.6", counts(1, 1, `"US"`))+"]", seriesDS("1.5.1", 2))
	s.b.serve = answer("["+ds("1.5", counts(2, 5, `"CT","MR"`))+"]", seriesDS("1.5.1", 2), seriesDS("1.5.2", 3))
	s.c.serve = func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }
	check := func(name string, series, instances int) {
		t.Helper()
		_, body := get(t, s.gw+"/wado-rs/studies?PatientID=x")
		arr := gjson.ParseBytes(body).Array()
		if len(arr) != 2 {
			t.Fatalf("%s: %d studies: %s", name, len(arr), body)
		}
		st := arr[0]
		got := fmt.Sprintf("%d %d %s", st.Get("00201206.Value.0").Int(), st.Get("00201208.Value.0").Int(), st.Get("00080061.Value").Raw)
		if want := fmt.Sprintf(`%d %d ["CT","MR"]`, series, instances); got != want {
			t.Errorf("%s: series, instances, modalities = %s, want %s", name, got, want)
		}
		if other := arr[1].Get("00201208.Value.0").Int(); other != 1 {
			t.Errorf("%s: a study one archive holds changed: %s", name, arr[1].Raw)
		}
	}
	check("counted over the union of series", 2, 5)
	// When an archive cannot list the study's series, the archives' counts
	// are added up.
	s.b.serve = answer("[" + ds("1.5", counts(2, 5, `"CT","MR"`)) + "]")
	check("added up", 3, 7)
}

// A multipart answer of known length keeps it when its parts need nothing
// longer (Orthanc's instance parts carry no Content-Location): a client
// reads a chunked gigabyte a fifth slower. Its frames, named by the
// archive's URL, are rebased and go chunked.
func TestDICOMwebPartLengthKept(t *testing.T) {
	s := newRoutingSetup(t, "")
	s.a.serve = func(w http.ResponseWriter, r *http.Request) {
		loc := ""
		if strings.Contains(r.URL.Path, "/frames/") {
			loc = "Content-Location: " + s.a.base() + strings.TrimPrefix(r.URL.Path, s.a.prefix) + "\r\n"
		}
		body := "--B\r\nContent-Type: application/octet-stream\r\n" + loc + "Content-Length: 3000\r\n\r\n" + strings.Repeat("\x07", 3000) + "\r\n--B--\r\n"
		w.Header().Set("Content-Type", `multipart/related; type="application/octet-stream"; boundary=B`)
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.Header().Set("ETag", `"v1"`)
		io.WriteString(w, body)
	}
	inst := s.gw + "/wado-rs/studies/1.2.1/series/1.2.1.1/instances/1.2.1.1.1"
	resp, body := get(t, inst)
	if resp.ContentLength != int64(len(body)) || resp.ContentLength < 3000 || resp.Header.Get("ETag") != `W/"v1"` {
		t.Errorf("instance: Content-Length %d for %d bytes, ETag %q; want the archive's length kept and a weak ETag", resp.ContentLength, len(body), resp.Header.Get("ETag"))
	}
	resp, body = get(t, inst+"/frames/1")
	if resp.ContentLength != -1 || resp.Header.Get("ETag") != "" || !strings.Contains(string(body), "Content-Location: "+s.gw+"/wado-rs/studies/1.2.1/") {
		t.Errorf("frames: Content-Length %d, ETag %q, body %.200q; want chunked, rebased", resp.ContentLength, resp.Header.Get("ETag"), body)
	}
}
