package registrar

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// The archive's Endpoint is found on a later page of the search, following
// next links on the FHIR base only.
func TestEndpointFoundOnALaterPage(t *testing.T) {
	var pages atomic.Int32
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/fhir+json")
		if r.Method != http.MethodGet || !strings.HasPrefix(r.URL.Path, "/fhir") {
			t.Errorf("unexpected %s %s", r.Method, r.URL)
			w.WriteHeader(500)
			return
		}
		n := pages.Add(1)
		ep := func(id, addr string) string {
			return fmt.Sprintf(`{"resource":{"resourceType":"Endpoint","id":%q,"status":"active","connectionType":{"code":"dicom-wado-rs"},"address":%q}}`, id, addr)
		}
		switch r.URL.Query().Get("page") {
		case "":
			fmt.Fprintf(w, `{"resourceType":"Bundle","entry":[%s],"link":[{"relation":"next","url":"%s/fhir?page=2"}]}`, ep("other", "http://other/dicom-web"), srv.URL)
		case "2":
			fmt.Fprintf(w, `{"resourceType":"Bundle","entry":[%s],"link":[{"relation":"next","url":"http://elsewhere.example/fhir?page=3"}]}`, ep("ours", "http://pacs/dicom-web/"))
		default:
			t.Errorf("page %d asked: %s", n, r.URL)
		}
	}))
	defer srv.Close()
	g := New(Config{FHIRBase: srv.URL + "/fhir", Client: srv.Client(), EndpointAddress: "http://pacs/dicom-web",
		IsArchive: func(a string) bool { return strings.TrimRight(a, "/") == "http://pacs/dicom-web" }})
	ref, err := g.Endpoint(context.Background())
	if err != nil || ref != "Endpoint/ours" {
		t.Fatalf("%q, %v", ref, err)
	}
	if ref, _ := g.Endpoint(context.Background()); ref != "Endpoint/ours" || pages.Load() != 2 {
		t.Fatalf("asked %d pages; the Endpoint is looked up once", pages.Load())
	}
}
