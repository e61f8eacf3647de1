package module_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/tidwall/gjson"
)

// memFHIR is an in-memory FHIR server with what registration uses:
// searches of Endpoint (connection-type), Patient and ImagingStudy
// (identifier), conditional creates (If-None-Exist) and version-checked
// updates (If-Match), and a count of every write.
type memFHIR struct {
	*httptest.Server
	mu        sync.Mutex
	res       map[string]map[string]map[string]any // type → id → resource
	next      int
	writes    []string // "POST ImagingStudy", "PUT ImagingStudy/1 W/\"1\""...
	auth      []string // Authorization headers seen
	conflicts int      // answer 412 to this many PUTs
	fail      string   // answer 500 to requests whose path starts with this
}

func newMemFHIR(t *testing.T) *memFHIR {
	f := &memFHIR{res: map[string]map[string]map[string]any{}}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func (f *memFHIR) put(rt string, r map[string]any) map[string]any {
	if f.res[rt] == nil {
		f.res[rt] = map[string]map[string]any{}
	}
	if r["id"] == nil {
		f.next++
		r["id"] = fmt.Sprintf("%s-%d", strings.ToLower(rt), f.next)
	}
	v := 1
	if old := f.res[rt][r["id"].(string)]; old != nil {
		v, _ = strconv.Atoi(old["meta"].(map[string]any)["versionId"].(string))
		v++
	}
	r["meta"] = map[string]any{"versionId": strconv.Itoa(v)}
	f.res[rt][r["id"].(string)] = r
	return r
}

// memMatches is the fake's token search: identifier (any of a comma list,
// system|value or value) and connection-type.
func memMatches(r map[string]any, q url.Values) bool {
	if ct := q.Get("connection-type"); ct != "" {
		c, _ := r["connectionType"].(map[string]any)
		return c["code"] == ct
	}
	want := q.Get("identifier")
	if want == "" {
		return true
	}
	ids, _ := r["identifier"].([]any)
	for _, alt := range strings.Split(want, ",") {
		sys, val, hasSys := strings.Cut(alt, "|")
		if !hasSys {
			sys, val = "", alt
		}
		for _, i := range ids {
			id := i.(map[string]any)
			if id["value"] == val && (!hasSys || id["system"] == sys) {
				return true
			}
		}
	}
	return false
}

func (f *memFHIR) search(rt string, q url.Values) []map[string]any {
	var out []map[string]any
	for _, r := range f.res[rt] {
		if memMatches(r, q) {
			out = append(out, r)
		}
	}
	return out
}

func (f *memFHIR) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	path := strings.TrimPrefix(r.URL.Path, "/fhir/")
	if f.fail != "" && strings.HasPrefix(path, f.fail) {
		w.WriteHeader(500)
		return
	}
	rt, id, _ := strings.Cut(path, "/")
	w.Header().Set("Content-Type", "application/fhir+json")
	answer := func(status int, v any) {
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	var body map[string]any
	if r.Body != nil {
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &body)
	}
	switch {
	case r.Method == "GET" && id == "":
		var entries []any
		for _, m := range f.search(rt, r.URL.Query()) {
			entries = append(entries, map[string]any{"resource": m, "search": map[string]any{"mode": "match"}})
		}
		answer(200, map[string]any{"resourceType": "Bundle", "type": "searchset", "entry": entries})
	case r.Method == "GET":
		if m := f.res[rt][id]; m != nil {
			answer(200, m)
		} else {
			answer(404, map[string]any{"resourceType": "OperationOutcome"})
		}
	case r.Method == "POST" && id == "":
		f.writes = append(f.writes, "POST "+rt)
		if ine := r.Header.Get("If-None-Exist"); ine != "" {
			q, _ := url.ParseQuery(ine)
			if found := f.search(rt, q); len(found) == 1 {
				answer(200, found[0])
				return
			}
		}
		delete(body, "id")
		answer(201, f.put(rt, body))
	case r.Method == "PUT":
		f.writes = append(f.writes, "PUT "+rt+" "+r.Header.Get("If-Match"))
		old := f.res[rt][id]
		if f.conflicts > 0 {
			f.conflicts--
			old["status"] = old["status"] // another writer made a version meanwhile
			f.put(rt, old)
			answer(412, map[string]any{"resourceType": "OperationOutcome"})
			return
		}
		if old != nil && r.Header.Get("If-Match") != `W/"`+old["meta"].(map[string]any)["versionId"].(string)+`"` {
			answer(412, map[string]any{"resourceType": "OperationOutcome"})
			return
		}
		body["id"] = id
		answer(200, f.put(rt, body))
	default:
		answer(405, nil)
	}
}

func (f *memFHIR) studies() []map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []map[string]any
	for _, r := range f.res["ImagingStudy"] {
		out = append(out, r)
	}
	return out
}

func (f *memFHIR) takeWrites() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	w := f.writes
	f.writes = nil
	return w
}

// fakeStore is an archive that takes STOW-RS (answering with the
// references of what the test says it holds) and answers instance-level
// QIDO-RS of a study with what it holds.
type fakeStore struct {
	*httptest.Server
	mu       sync.Mutex
	held     []string // "series/sop" of study 1.2.9
	stowed   int
	qidoSeen []string
	arrived  chan struct{} // closed when the first bytes of an upload arrive, when not nil
}

func newFakeStore(t *testing.T) *fakeStore {
	s := &fakeStore{}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *fakeStore) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	base := "http://" + r.Host + "/dicom-web"
	switch {
	case r.Method == "POST" && r.URL.Path == "/dicom-web/studies":
		if s.arrived != nil {
			s.mu.Unlock()
			_, _ = r.Body.Read(make([]byte, 1))
			close(s.arrived)
			s.mu.Lock()
			s.arrived = nil
		}
		_, _ = io.Copy(io.Discard, r.Body)
		s.stowed++
		var items []any
		for _, h := range s.held {
			series, sop, _ := strings.Cut(h, "/")
			items = append(items, map[string]any{
				"00081150": map[string]any{"vr": "UI", "Value": []string{"1.2.840.10008.5.1.4.1.1.2"}},
				"00081155": map[string]any{"vr": "UI", "Value": []string{sop}},
				"00081190": map[string]any{"vr": "UR", "Value": []string{base + "/studies/1.2.9/series/" + series + "/instances/" + sop}},
			})
		}
		if strings.Contains(r.Header.Get("Accept"), "xml") {
			w.Header().Set("Content-Type", "application/dicom+xml")
			_, _ = io.WriteString(w, `<?xml version="1.0"?><NativeDicomModel><DicomAttribute tag="00081199" vr="SQ">`)
			for i, h := range s.held {
				series, sop, _ := strings.Cut(h, "/")
				fmt.Fprintf(w, `<Item number="%d"><DicomAttribute tag="00081155" vr="UI"><Value number="1">%s</Value></DicomAttribute>`+
					`<DicomAttribute tag="00081190" vr="UR"><Value number="1">%s/studies/1.2.9/series/%s/instances/%s</Value></DicomAttribute></Item>`, i+1, sop, base, series, sop)
			}
			_, _ = io.WriteString(w, `</DicomAttribute></NativeDicomModel>`)
			return
		}
		w.Header().Set("Content-Type", "application/dicom+json")
		_ = json.NewEncoder(w).Encode(map[string]any{"00081199": map[string]any{"vr": "SQ", "Value": items}})
	case r.Method == "GET" && r.URL.Path == "/dicom-web/studies/1.2.9/instances":
		s.qidoSeen = append(s.qidoSeen, r.URL.RawQuery)
		var out []any
		if off, _ := strconv.Atoi(r.URL.Query().Get("offset")); off == 0 {
			for _, h := range s.held {
				series, sop, _ := strings.Cut(h, "/")
				n := sop[strings.LastIndexByte(sop, '.')+1:]
				out = append(out, json.RawMessage(`{"0020000D":{"vr":"UI","Value":["1.2.9"]},"0020000E":{"vr":"UI","Value":["`+series+`"]},`+
					`"00080018":{"vr":"UI","Value":["`+sop+`"]},"00080016":{"vr":"UI","Value":["1.2.840.10008.5.1.4.1.1.2"]},`+
					`"00080020":{"vr":"DA","Value":["20240601"]},"00100020":{"vr":"LO","Value":["pat-9"]},`+
					`"00100010":{"vr":"PN","Value":[{"Alphabetic":"Doe^Jane"}]},"00100040":{"vr":"CS","Value":["F"]},`+
					`"00080060":{"vr":"CS","Value":["CT"]},"00200011":{"vr":"IS","Value":[1]},"00200013":{"vr":"IS","Value":[`+n+`]}}`))
			}
		}
		w.Header().Set("Content-Type", "application/dicom+json")
		_ = json.NewEncoder(w).Encode(out)
	default:
		w.WriteHeader(404)
	}
}

func (s *fakeStore) hold(items ...string) {
	s.mu.Lock()
	s.held = append(s.held, items...)
	s.mu.Unlock()
}

func stow(t *testing.T, gw string) (*http.Response, []byte) {
	t.Helper()
	return do(t, "POST", gw+"/wado-rs/studies", strings.NewReader("--B\r\nContent-Type: application/dicom\r\n\r\nDICM\r\n--B--"),
		"Content-Type", `multipart/related; type="application/dicom"; boundary=B`, "Accept", "application/dicom+json",
		"Authorization", "Bearer the-clients-token")
}

func registrationGateway(t *testing.T, fhir *memFHIR, store *fakeStore, options string) string {
	globals := fmt.Sprintf("\tfhir_imaging {\n\t\tfhir %s/fhir\n\t\tarchive s %s/dicom-web\n\t\tstore_archive s\n\t\tregister_imaging_study on {\n%s\n\t\t}\n\t}", fhir.URL, store.URL, options)
	return startGateway(t, globals, "\thandle_path /wado-rs/* {\n\t\tdicomweb\n\t}")
}

func TestRegistrationCreatesThenUpdatesOnlyWhenNeeded(t *testing.T) {
	fhir, store := newMemFHIR(t), newFakeStore(t)
	fhir.put("Patient", map[string]any{"resourceType": "Patient", "id": "p9", "identifier": []any{map[string]any{"system": "urn:x", "value": "pat-9"}}})
	gw := registrationGateway(t, fhir, store, "")

	store.hold("1.2.9.1/1.2.9.1.1")
	resp, body := stow(t, gw)
	if resp.StatusCode != 200 || resp.Header.Get("Warning") != "" {
		t.Fatalf("first store: %d %q %s", resp.StatusCode, resp.Header.Get("Warning"), body)
	}
	if strings.Contains(string(body), store.URL) || !strings.Contains(string(body), gw+"/wado-rs/studies/1.2.9/") {
		t.Errorf("the STOW answer's RetrieveURLs are not the gateway's: %s", body)
	}
	st := fhir.studies()
	if len(st) != 1 {
		t.Fatalf("%d ImagingStudies after the first store", len(st))
	}
	js, _ := json.Marshal(st[0])
	doc := gjson.ParseBytes(js)
	for path, want := range map[string]string{
		"identifier.0.value": "urn:oid:1.2.9", "subject.reference": "Patient/p9", "started": "2024-06-01",
		"numberOfSeries": "1", "numberOfInstances": "1", "series.0.uid": "1.2.9.1", "series.0.instance.0.uid": "1.2.9.1.1",
		"meta.versionId": "1",
	} {
		if got := doc.Get(path).String(); got != want {
			t.Errorf("%s = %q, want %q", path, got, want)
		}
	}
	ep := doc.Get("endpoint.0.reference").String()
	epID := strings.TrimPrefix(ep, "Endpoint/")
	if e := fhir.res["Endpoint"][epID]; e == nil || e["address"] != store.URL+"/dicom-web" || e["connectionType"].(map[string]any)["code"] != "dicom-wado-rs" {
		t.Fatalf("the study's Endpoint %q is not the store archive's: %v", ep, fhir.res["Endpoint"])
	}
	if w := fhir.takeWrites(); len(w) != 2 || w[0] != "POST Endpoint" || w[1] != "POST ImagingStudy" {
		t.Fatalf("writes of the first store: %q", w)
	}
	if q := store.qidoSeen[0]; !strings.Contains(q, "includefield=") || !strings.Contains(q, "limit=1000") {
		t.Errorf("the archive was asked %q", q)
	}
	for _, a := range fhir.auth {
		if a != "" {
			t.Errorf("a FHIR request carried Authorization %q; registration uses the gateway's own credentials only", a)
		}
	}

	// The same again: nothing is written, the Endpoint is not looked for again.
	if resp, body := stow(t, gw); resp.StatusCode != 200 {
		t.Fatalf("second store: %d %s", resp.StatusCode, body)
	}
	if w := fhir.takeWrites(); len(w) != 0 {
		t.Fatalf("storing the same instance again wrote %q", w)
	}

	// One more instance: a conditional update, retried over a conflict.
	store.hold("1.2.9.1/1.2.9.1.2")
	fhir.mu.Lock()
	fhir.conflicts = 1
	fhir.mu.Unlock()
	if resp, body := stow(t, gw); resp.StatusCode != 200 || resp.Header.Get("Warning") != "" {
		t.Fatalf("third store: %d %q %s", resp.StatusCode, resp.Header.Get("Warning"), body)
	}
	if w := fhir.takeWrites(); len(w) != 2 || w[0] != `PUT ImagingStudy W/"1"` || w[1] != `PUT ImagingStudy W/"2"` {
		t.Fatalf("writes of the update: %q", w)
	}
	js, _ = json.Marshal(fhir.studies()[0])
	if doc := gjson.ParseBytes(js); doc.Get("numberOfInstances").Int() != 2 || doc.Get("series.0.instance.1.uid").String() != "1.2.9.1.2" || doc.Get("meta.versionId").String() != "3" {
		t.Fatalf("after the update: %s", js)
	}
}

func TestRegistrationFailureStillAnswersTheStore(t *testing.T) {
	fhir, store := newMemFHIR(t), newFakeStore(t)
	gw := registrationGateway(t, fhir, store, "")
	store.hold("1.2.9.1/1.2.9.1.1")
	fhir.mu.Lock()
	fhir.fail = "ImagingStudy"
	fhir.mu.Unlock()
	resp, body := stow(t, gw)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d, want 202: %s", resp.StatusCode, body)
	}
	if w := resp.Header.Get("Warning"); !strings.HasPrefix(w, `299 fhir-imaging "stored, but not registered in FHIR: the FHIR server answered 500`) {
		t.Errorf("Warning %q", w)
	}
	if !gjson.GetBytes(body, "00081199.Value.0").Exists() {
		t.Errorf("the archive's answer is not passed on: %s", body)
	}
	if store.stowed != 1 {
		t.Errorf("the archive got %d stores", store.stowed)
	}
}

func TestRegistrationUnknownPatient(t *testing.T) {
	for _, c := range []struct{ option, subject string }{{"", ""}, {"\t\t\tunknown_patient create", "Patient/"}} {
		fhir, store := newMemFHIR(t), newFakeStore(t)
		gw := registrationGateway(t, fhir, store, c.option)
		store.hold("1.2.9.1/1.2.9.1.1")
		if resp, body := stow(t, gw); resp.StatusCode != 200 {
			t.Fatalf("%q: %d %s", c.option, resp.StatusCode, body)
		}
		st := fhir.studies()
		if len(st) != 1 {
			t.Fatalf("%q: %d studies", c.option, len(st))
		}
		subj, _ := st[0]["subject"].(map[string]any)
		ref, _ := subj["reference"].(string)
		if c.subject == "" && subj != nil || c.subject != "" && !strings.HasPrefix(ref, c.subject) {
			t.Fatalf("%q: subject %v", c.option, subj)
		}
		if c.subject != "" {
			p := fhir.res["Patient"][strings.TrimPrefix(ref, "Patient/")]
			js, _ := json.Marshal(p)
			if d := gjson.ParseBytes(js); d.Get("identifier.0.value").String() != "pat-9" || d.Get("name.0.family").String() != "Doe" || d.Get("gender").String() != "female" {
				t.Fatalf("the Patient made: %s", js)
			}
		}
		_ = caddyStop()
	}
}

func TestRegistrationGivesUpOnEndlessConflicts(t *testing.T) {
	fhir, store := newMemFHIR(t), newFakeStore(t)
	gw := registrationGateway(t, fhir, store, "")
	store.hold("1.2.9.1/1.2.9.1.1")
	if resp, body := stow(t, gw); resp.StatusCode != 200 {
		t.Fatalf("first store: %d %s", resp.StatusCode, body)
	}
	store.hold("1.2.9.1/1.2.9.1.2")
	fhir.mu.Lock()
	fhir.conflicts = 1000
	fhir.mu.Unlock()
	fhir.takeWrites()
	resp, body := stow(t, gw)
	if resp.StatusCode != http.StatusAccepted || !strings.Contains(resp.Header.Get("Warning"), "kept changing") {
		t.Fatalf("status %d, Warning %q: %s", resp.StatusCode, resp.Header.Get("Warning"), body)
	}
	if w := fhir.takeWrites(); len(w) != 5 {
		t.Fatalf("%d writes, want 5 (the bound): %q", len(w), w)
	}
}

func TestRegistrationConcurrentStoresMakeOneStudy(t *testing.T) {
	fhir, store := newMemFHIR(t), newFakeStore(t)
	gw := registrationGateway(t, fhir, store, "")
	store.hold("1.2.9.1/1.2.9.1.1", "1.2.9.1/1.2.9.1.2", "1.2.9.2/1.2.9.2.1")
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("POST", gw+"/wado-rs/studies", strings.NewReader("--B--"))
			req.Header.Set("Content-Type", `multipart/related; type="application/dicom"; boundary=B`)
			resp, err := noCompression.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("status %d", resp.StatusCode)
			}
		}()
	}
	wg.Wait()
	st := fhir.studies()
	if len(st) != 1 {
		t.Fatalf("%d ImagingStudies for one study", len(st))
	}
	if n := len(fhir.res["Endpoint"]); n != 1 {
		t.Fatalf("%d Endpoints made for one archive", n)
	}
	if st[0]["numberOfInstances"] != float64(3) || st[0]["meta"].(map[string]any)["versionId"] != "1" {
		t.Fatalf("the study: %v", st[0])
	}
}

func TestRegistrationValidate(t *testing.T) {
	for _, c := range []struct{ cfg, want string }{
		{`{"fhir":"http://127.0.0.1:1/fhir","archives":{"a":{"url":"http://127.0.0.1:2/dicom-web"}},"register_imaging_study":{}}`, "register_imaging_study: needs store_archive"},
		{`{"archives":{"a":{"url":"http://127.0.0.1:2/dicom-web"}},"store_archive":"a","register_imaging_study":{}}`, "register_imaging_study: needs fhir"},
		{`{"fhir":"http://127.0.0.1:1/fhir","archives":{"a":{"url":"http://127.0.0.1:2/dicom-web"}},"store_archive":"a","register_imaging_study":{"unknown_patient":"guess"}}`, "unknown_patient must be leave or create"},
	} {
		err := caddy.Validate(&caddy.Config{Admin: &caddy.AdminConfig{Disabled: true}, AppsRaw: caddy.ModuleMap{"fhir_imaging": json.RawMessage(c.cfg)}})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.cfg, err, c.want)
		}
	}
}

func TestRegistrationUploadStreams(t *testing.T) {
	fhir, store := newMemFHIR(t), newFakeStore(t)
	gw := registrationGateway(t, fhir, store, "")
	store.hold("1.2.9.1/1.2.9.1.1")
	arrived := make(chan struct{})
	store.mu.Lock()
	store.arrived = arrived
	store.mu.Unlock()
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", gw+"/wado-rs/studies", pr)
	req.Header.Set("Content-Type", `multipart/related; type="application/dicom"; boundary=B`)
	done := make(chan *http.Response, 1)
	go func() {
		resp, err := noCompression.Do(req)
		if err != nil {
			t.Error(err)
			close(done)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		done <- resp
	}()
	_, _ = pw.Write([]byte("--B\r\nContent-Type: application/dicom\r\n\r\nDICM"))
	select {
	case <-arrived:
	case <-time.After(5 * time.Second):
		t.Fatal("the archive got nothing of the upload before its end: the gateway holds the upload")
	}
	_, _ = pw.Write([]byte("\r\n--B--"))
	pw.Close()
	if resp := <-done; resp == nil || resp.StatusCode != 200 {
		t.Fatalf("answer %v", resp)
	}
	if len(fhir.studies()) != 1 {
		t.Fatal("the streamed store was not registered")
	}
}

func TestRegistrationUnreadableAnswerIsTold(t *testing.T) {
	fhir := newMemFHIR(t)
	archive := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "stored")
	}))
	t.Cleanup(archive.Close)
	gw := registrationGateway(t, fhir, &fakeStore{Server: archive}, "")
	resp, body := stow(t, gw)
	if resp.StatusCode != 200 || string(body) != "stored" || !strings.Contains(resp.Header.Get("Warning"), "not registered in FHIR") {
		t.Fatalf("status %d, Warning %q, body %q", resp.StatusCode, resp.Header.Get("Warning"), body)
	}
	if len(fhir.studies()) != 0 {
		t.Fatal("registered from an answer it could not read")
	}
}

func TestSTOWAnswerPointsAtTheGatewayWithoutRegistration(t *testing.T) {
	store := newFakeStore(t)
	store.hold("1.2.9.1/1.2.9.1.1")
	gw := startGateway(t, fmt.Sprintf("\tfhir_imaging {\n\t\tarchive s %s/dicom-web\n\t\tstore_archive s\n\t}", store.URL), "\thandle_path /wado-rs/* {\n\t\tdicomweb\n\t}")
	resp, body := stow(t, gw)
	if resp.StatusCode != 200 || resp.Header.Get("Warning") != "" {
		t.Fatalf("status %d, Warning %q: %s", resp.StatusCode, resp.Header.Get("Warning"), body)
	}
	if strings.Contains(string(body), store.URL) || gjson.GetBytes(body, "00081199.Value.0.00081190.Value.0").String() != gw+"/wado-rs/studies/1.2.9/series/1.2.9.1/instances/1.2.9.1.1" {
		t.Fatalf("the archive's address is in the STOW answer: %s", body)
	}
	if len(store.qidoSeen) != 0 {
		t.Fatal("the archive was searched without register_imaging_study")
	}
}

func TestRegistrationFromAnXMLAnswer(t *testing.T) {
	fhir, store := newMemFHIR(t), newFakeStore(t)
	gw := registrationGateway(t, fhir, store, "")
	store.hold("1.2.9.1/1.2.9.1.1", "1.2.9.1/1.2.9.1.2")
	resp, body := do(t, "POST", gw+"/wado-rs/studies", strings.NewReader("--B--"),
		"Content-Type", `multipart/related; type="application/dicom"; boundary=B`, "Accept", "application/dicom+xml")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/dicom+xml" || !strings.HasPrefix(string(body), "<?xml") {
		t.Fatalf("status %d, %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	st := fhir.studies()
	if len(st) != 1 || st[0]["numberOfInstances"] != float64(2) {
		t.Fatalf("registered from the XML answer: %v", st)
	}
}
