package module_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

// Endpoint shapes seen in the wild (issue 14): an address that names the
// studies resource rather than the root, an address with a query, an R5
// Endpoint that says what it serves by its payload MIME types only; and
// archives at the DICOMweb roots of dcm4chee and Google Healthcare, one
// configured with a trailing /studies.

// r5PayloadEndpoint is an R5 Endpoint with a local connection type and
// DICOM payload MIME types only.
func r5PayloadEndpoint(id, address string) string {
	return fmt.Sprintf(`{"resourceType":"Endpoint","id":%q,"status":"active","connectionType":[{"coding":[{"system":"urn:example:local","code":"pacs"}]}],"payload":[{"mimeType":["application/dicom","multipart/related; type=\"application/dicom\""]}],"address":%q}`, id, address)
}

// r4PayloadEndpoint is an R4 Endpoint with no connection type the gateway
// knows and payloadMimeType application/dicom+json.
func r4PayloadEndpoint(id, address string) string {
	return fmt.Sprintf(`{"resourceType":"Endpoint","id":%q,"status":"active","payloadMimeType":["application/dicom+json"],"address":%q}`, id, address)
}

type shapesSetup struct {
	fhir          *routingFHIR
	orthanc, dcm4 *fakeArchive
	google        *fakeArchive
	gw            string
}

// newShapesSetup: three archives, Orthanc-, dcm4chee- and Google-style; the
// Google one configured with a trailing /studies. Studies: 2.1 through an
// address with /studies (Orthanc), 2.2 through an address with a query
// (dcm4chee), 2.3 through an R5 payload-only Endpoint (Google), 2.4
// through an R4 payloadMimeType-only Endpoint with /studies/ (dcm4chee),
// 2.5 through an Endpoint of another standard connection type with DICOM
// payloads (never routed).
func newShapesSetup(t *testing.T) *shapesSetup {
	s := &shapesSetup{
		fhir:    newRoutingFHIR(t),
		orthanc: newFakeArchive(t, "/dicom-web"),
		dcm4:    newFakeArchive(t, "/dcm4chee-arc/aets/DCM4CHEE/rs"),
		google:  newFakeArchive(t, "/v1/projects/p/locations/l/datasets/d/dicomStores/s/dicomWeb"),
	}
	s.fhir.included = []string{
		endpointJSON("slash-studies", "active", "dicom-wado-rs", s.orthanc.base()+"/studies"),
		endpointJSON("query", "active", "dicom-wado-rs", s.dcm4.base()+"?includefield=all"),
		r5PayloadEndpoint("r5", s.google.base()),
		r4PayloadEndpoint("r4", s.dcm4.base()+"/studies/"),
		`{"resourceType":"Endpoint","id":"xds","status":"active","connectionType":{"system":"http://terminology.hl7.org/CodeSystem/endpoint-connection-type","code":"ihe-xds"},"payloadMimeType":["application/dicom"],"address":"` + s.orthanc.base() + `"}`,
	}
	for i, ep := range []string{"slash-studies", "query", "r5", "r4", "xds"} {
		uid := fmt.Sprintf("2.%d", i+1)
		s.fhir.studies[uid] = fmt.Sprintf(`{"resourceType":"ImagingStudy","id":"s%d","identifier":[{"system":"urn:dicom:uid","value":%q}],"endpoint":[{"reference":"Endpoint/%s"}],"series":[{"uid":"%s.1"}]}`, i+1, uid, ep, uid)
	}
	globals := fmt.Sprintf(`	fhir_imaging {
		fhir %s/fhir
		archive orthanc %s
		archive dcm4chee %s
		archive google %s/studies
		lookup_timeout 500ms
	}`, s.fhir.URL, s.orthanc.base(), s.dcm4.base(), s.google.base())
	site := "\thandle_path /wado-rs/* {\n\t\tdicomweb\n\t}"
	s.gw = startGateway(t, globals, site)
	return s
}

func TestDICOMwebEndpointShapes(t *testing.T) {
	s := newShapesSetup(t)
	for _, tt := range []struct {
		name    string
		path    string
		archive *fakeArchive
	}{
		{"address ending in /studies", "/studies/2.1/series/2.1.1/metadata", s.orthanc},
		{"address with a query (the query is not sent)", "/studies/2.2/series/2.2.1", s.dcm4},
		{"R5 payload MIME types only, archive URL ending in /studies", "/studies/2.3/series/2.3.1/instances/2.3.1.1/frames/1", s.google},
		{"R4 payloadMimeType only, address ending in /studies/", "/studies/2.4/metadata?includefield=00080020", s.dcm4},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := getRoutedTo(t, tt.archive, s.gw+"/wado-rs"+tt.path)
			p, q, _ := strings.Cut(tt.path, "?")
			if got.URL.Path != tt.archive.prefix+p || got.URL.RawQuery != q {
				t.Errorf("archive got %s, want %s?%s", got.URL.RequestURI(), tt.archive.prefix+p, q)
			}
		})
	}
	t.Run("another connection type with DICOM payloads is not DICOMweb", func(t *testing.T) {
		resp, body := get(t, s.gw+"/wado-rs/studies/2.5/series/2.5.1")
		if resp.StatusCode != 404 {
			t.Errorf("status %d, want 404: %s", resp.StatusCode, body)
		}
	})
}

// TestInjectionEndpointShapes: the URLs injected for each shape, in proxy
// and in direct mode.
func TestInjectionEndpointShapes(t *testing.T) {
	const (
		orthanc = "http://127.0.0.1:18042/dicom-web"
		dcm4    = "http://127.0.0.1:18044/dcm4chee-arc/aets/DCM4CHEE/rs"
		google  = "https://healthcare.googleapis.com/v1/projects/p/locations/l/datasets/d/dicomStores/s/dicomWeb"
	)
	shapes := []struct {
		name, endpoint string
		direct         string // the series URL in direct mode, "" for none
	}{
		{"/studies", endpointJSON("e", "active", "dicom-wado-rs", orthanc+"/studies"), orthanc + "/studies/1.2.7/series/1.2.7.1"},
		{"/studies/", endpointJSON("e", "active", "dicom-wado-rs", dcm4+"/studies/"), dcm4 + "/studies/1.2.7/series/1.2.7.1"},
		{"query", endpointJSON("e", "active", "dicom-wado-rs", dcm4+"?apikey=x"), ""},
		{"R5 payload only", r5PayloadEndpoint("e", google), google + "/studies/1.2.7/series/1.2.7.1"},
		{"R4 payloadMimeType only", r4PayloadEndpoint("e", google+"/studies"), google + "/studies/1.2.7/series/1.2.7.1"},
	}
	for _, mode := range []string{"proxy", "direct"} {
		f := newStoreFHIR(t)
		for i, sh := range shapes {
			f.stored[fmt.Sprintf("/fhir/ImagingStudy/s%d", i)] = `{"resourceType":"ImagingStudy","id":"s","contained":[` + sh.endpoint +
				`],"identifier":[{"system":"urn:dicom:uid","value":"1.2.7"}],"endpoint":[{"reference":"#e"}],"series":[{"uid":"1.2.7.1"}]}`
		}
		globals := fmt.Sprintf("\tfhir_imaging {\n\t\tfhir %s/fhir\n\t\tarchive orthanc %s\n\t\tarchive dcm4chee %s\n\t\tarchive google %s/studies\n\t}", f.URL, orthanc, dcm4, google)
		site := fmt.Sprintf("\thandle /fhir/* {\n\t\tfhir_rewrite {\n\t\t\tmode %s\n\t\t}\n\t\treverse_proxy %s\n\t}", mode, hostPort(f.URL))
		gw := startGateway(t, globals, site)
		for i, sh := range shapes {
			t.Run(mode+"/"+sh.name, func(t *testing.T) {
				_, body := get(t, fmt.Sprintf("%s/fhir/ImagingStudy/s%d", gw, i))
				got := gjson.GetBytes(body, `series.0.extension.#(url%"*wado-rs").valueUrl`).String()
				want := sh.direct
				if mode == "proxy" {
					want = gw + "/wado-rs/studies/1.2.7/series/1.2.7.1"
				}
				if got != want {
					t.Errorf("series URL %q, want %q in %s", got, want, body)
				}
			})
		}
	}
}
