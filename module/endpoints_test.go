package module_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/tidwall/gjson"
)

// storeFHIR keeps resources by path: GET answers them, PUT and POST record
// what was sent and echo it.
type storeFHIR struct {
	*httptest.Server
	mu      sync.Mutex
	stored  map[string]string
	written map[string]string
	reads   map[string]string // path → Authorization of the last GET
	fail    bool
}

func newStoreFHIR(t testing.TB) *storeFHIR {
	f := &storeFHIR{stored: map[string]string{}, written: map[string]string{}, reads: map[string]string{}}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		w.Header().Set("Content-Type", "application/fhir+json")
		switch r.Method {
		case http.MethodGet:
			f.reads[r.URL.Path] = r.Header.Get("Authorization")
			if f.fail {
				w.WriteHeader(http.StatusInternalServerError)
				return
			}
			body, ok := f.stored[r.URL.Path]
			if !ok {
				w.WriteHeader(http.StatusNotFound)
				fmt.Fprint(w, `{"resourceType":"OperationOutcome"}`)
				return
			}
			fmt.Fprint(w, body)
		default:
			b, _ := io.ReadAll(r.Body)
			f.written[r.URL.Path] = string(b)
			w.Write(b)
		}
	}))
	t.Cleanup(f.Close)
	return f
}

const (
	archiveRS  = "http://127.0.0.1:18042/dicom-web"
	archiveURI = "http://127.0.0.1:18042/wado"
)

func endpointsGateway(t *testing.T, rewriteOpts string) (*storeFHIR, string) {
	f := newStoreFHIR(t)
	f.stored["/fhir/Endpoint/a-rs"] = endpointJSON("a-rs", "active", "dicom-wado-rs", archiveRS+"/")
	f.stored["/fhir/Endpoint/a-uri"] = endpointJSON("a-uri", "active", "dicom-wado-uri", archiveURI)
	f.stored["/fhir/Endpoint/other"] = endpointJSON("other", "active", "dicom-wado-rs", "https://pacs.elsewhere.example/dicom-web")
	f.stored["/fhir/ImagingStudy/c"] = `{"resourceType":"ImagingStudy","id":"c","contained":[` + endpointJSON("ep", "active", "dicom-wado-rs", archiveRS) +
		`],"identifier":[{"system":"urn:dicom:uid","value":"urn:oid:1.2.9"}],"endpoint":[{"reference":"#ep"}],"series":[{"uid":"1.2.9.1"}]}`
	globals := fmt.Sprintf("\tfhir_imaging {\n\t\tfhir %s/fhir\n\t\tarchive a %s {\n\t\t\twado_uri %s\n\t\t}\n\t}", f.URL, archiveRS, archiveURI)
	site := fmt.Sprintf("\thandle /fhir/* {\n\t\tfhir_rewrite {\n%s\n\t\t}\n\t\treverse_proxy %s\n\t}", rewriteOpts, hostPort(f.URL))
	return f, startGateway(t, globals, site)
}

func TestEndpointAddressesInAnswers(t *testing.T) {
	_, gw := endpointsGateway(t, "")
	for path, want := range map[string]string{
		"/fhir/Endpoint/a-rs":  gw + "/wado-rs",
		"/fhir/Endpoint/a-uri": gw + "/wado",
		"/fhir/Endpoint/other": "https://pacs.elsewhere.example/dicom-web",
	} {
		_, body := get(t, gw+path)
		if got := gjson.GetBytes(body, "address").String(); got != want {
			t.Errorf("%s: address %q, want %q", path, got, want)
		}
	}
	_, body := get(t, gw+"/fhir/ImagingStudy/c")
	doc := gjson.ParseBytes(body)
	if got := doc.Get("contained.0.address").String(); got != gw+"/wado-rs" {
		t.Errorf("contained Endpoint address %q", got)
	}
	if got := doc.Get("series.0.extension.0.valueUrl").String(); got != gw+"/wado-rs/studies/1.2.9/series/1.2.9.1" {
		t.Errorf("injected URL %q: the stored address must still route", got)
	}
	if strings.Contains(string(body), "18042") {
		t.Errorf("the archive's address is in the answer: %s", body)
	}

	_, stored := endpointsGateway(t, "\t\t\tendpoint_addresses stored")
	_, body = get(t, stored+"/fhir/Endpoint/a-rs")
	if got := gjson.GetBytes(body, "address").String(); got != archiveRS+"/" {
		t.Errorf("endpoint_addresses stored: address %q", got)
	}
}

func TestEndpointAddressesWrittenBack(t *testing.T) {
	f, gw := endpointsGateway(t, "")
	put := func(path, body string) (*http.Response, string) {
		resp, b := do(t, http.MethodPut, gw+path, strings.NewReader(body), "Content-Type", "application/fhir+json", "Authorization", "Bearer client")
		f.mu.Lock()
		defer f.mu.Unlock()
		_ = b
		return resp, f.written[path]
	}
	// Read, change the name, write back: the stored address goes upstream.
	_, read := get(t, gw+"/fhir/Endpoint/a-rs")
	edited := strings.Replace(string(read), `"status":"active"`, `"status":"active","name":"A"`, 1)
	if resp, sent := put("/fhir/Endpoint/a-rs", edited); resp.StatusCode != 200 || gjson.Get(sent, "address").String() != archiveRS+"/" || gjson.Get(sent, "name").String() != "A" {
		t.Fatalf("write-back of an Endpoint: %d, upstream got %s", resp.StatusCode, sent)
	}
	if f.reads["/fhir/Endpoint/a-rs"] != "Bearer client" {
		t.Errorf("the stored Endpoint was read with %q, want the client's own Authorization", f.reads["/fhir/Endpoint/a-rs"])
	}
	_, read = get(t, gw+"/fhir/ImagingStudy/c")
	if _, sent := put("/fhir/ImagingStudy/c", string(read)); gjson.Get(sent, "contained.0.address").String() != archiveRS {
		t.Fatalf("write-back of a contained Endpoint: upstream got %s", sent)
	}
	// A new Endpoint the FHIR server does not have keeps what was written.
	if _, sent := put("/fhir/Endpoint/new", endpointJSON("new", "active", "dicom-wado-rs", gw+"/wado-rs")); gjson.Get(sent, "address").String() != gw+"/wado-rs" {
		t.Fatalf("a new Endpoint: upstream got %s", sent)
	}
	// When the stored address cannot be read, the write does not go on.
	f.mu.Lock()
	f.fail = true
	f.written = map[string]string{}
	f.mu.Unlock()
	if resp, sent := put("/fhir/Endpoint/a-rs", string(read)); resp.StatusCode != 503 || sent != "" {
		t.Fatalf("stored address unreadable: %d, upstream got %q", resp.StatusCode, sent)
	}
}
