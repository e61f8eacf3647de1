package module

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/tidwall/gjson"
	"go.uber.org/zap"

	"github.com/fhirimaging/caddy-fhir-imaging/module/fhirjson"
)

// This file holds what fhir_rewrite does to Endpoint addresses: in answers,
// an Endpoint that means a configured archive is given the gateway's own
// base; in what clients write back, the gateway's base is swapped for the
// address the FHIR server has stored.

// readdressing reports whether archive Endpoints are answered with the
// gateway's address.
func (h *FHIRRewrite) readdressing() bool {
	return h.Mode == ModeProxy && h.EndpointAddresses == AddressesPublic
}

// publicAddress returns the gateway's address for an Endpoint that means a
// configured archive: the gateway's WADO-URI base for one that serves
// WADO-URI only (or whose address is the archive's wado_uri), else its
// DICOMweb base. It returns false for any other Endpoint.
func (h *FHIRRewrite) publicAddress(e fhirjson.Endpoint, rsBase, uriBase string) (string, bool) {
	ar := h.app.ArchiveFor(e.Address)
	if ar == nil {
		return "", false
	}
	wadoURI := ar.WADOURI != "" && fhirjson.NormalizeBase(e.Address) == fhirjson.NormalizeBase(ar.WADOURI)
	if wadoURI || e.Has(fhirjson.WADOURI) && !e.Has(fhirjson.WADORS) {
		return uriBase, true
	}
	return rsBase, true
}

// errStoredAddress is returned when the stored address of an Endpoint that
// a client writes back could not be read.
var errStoredAddress = errors.New("the stored address of an Endpoint written back with the gateway's address could not be read")

// restoreAddresses puts back the stored address of every Endpoint (standalone
// or contained) in a written body whose address is the gateway's own base,
// as it was given in an answer. The stored resource is read from the FHIR
// server with the client's own Authorization header. An Endpoint the FHIR
// server does not have (a create) keeps what the client wrote.
func (h *FHIRRewrite) restoreAddresses(r *http.Request, body []byte, b bases) ([]byte, error) {
	rsBase, uriBase := absolute(b.origin, h.DICOMwebBase), absolute(b.origin, h.WADOURIBase)
	if !bytes.Contains(body, []byte(`"Endpoint"`)) || !bytes.Contains(body, []byte(rsBase)) && !bytes.Contains(body, []byte(uriBase)) {
		return body, nil
	}
	doc, err := fhirjson.Scan(body, fhirjson.ScanOptions{})
	if err != nil {
		return body, nil
	}
	ours := map[string]bool{fhirjson.NormalizeBase(rsBase): true, fhirjson.NormalizeBase(uriBase): true}
	stored := map[string]*fhirjson.Document{} // "Type/id" → the stored resource
	var failed error
	restore := func(site *fhirjson.EndpointSite) (string, bool) {
		if failed != nil || !ours[fhirjson.NormalizeBase(site.Endpoint.Address)] {
			return "", false
		}
		addr, ok, err := h.storedAddress(r, site, stored)
		if err != nil {
			failed = err
		}
		return addr, ok
	}
	none := func(*fhirjson.Study, *fhirjson.Series) fhirjson.Bases { return fhirjson.Bases{} }
	out, changed, stats := doc.Rewrite(none, restore, h.ext)
	if failed != nil {
		return nil, failed
	}
	if changed {
		h.logger.Debug("write-back: stored Endpoint addresses put back", zap.Int("endpoints", stats.Endpoints))
		return out, nil
	}
	return body, nil
}

// storedAddress returns the address the FHIR server has for the Endpoint
// at site: Endpoint/<id>, or the Endpoint of that id contained in the
// resource that contains it. ok is false when there is none to put back.
func (h *FHIRRewrite) storedAddress(r *http.Request, site *fhirjson.EndpointSite, stored map[string]*fhirjson.Document) (string, bool, error) {
	ref := "Endpoint/" + site.Endpoint.ID
	if site.Container != "" {
		ref = site.Container
	}
	rt, id, _ := strings.Cut(ref, "/")
	if !fhirjson.IsResourceType(rt) || !fhirjson.ValidID(id) || !fhirjson.ValidID(site.Endpoint.ID) {
		return "", false, nil
	}
	doc, seen := stored[ref]
	if !seen {
		var err error
		if doc, err = h.readStored(r, ref); err != nil {
			h.logger.Error("write-back refused: the stored Endpoint address could not be read", zap.String("resource_type", rt), zap.Error(err))
			return "", false, errStoredAddress
		}
		stored[ref] = doc
	}
	if doc == nil {
		return "", false, nil
	}
	for _, s := range doc.Endpoints {
		if s.Container == site.Container && s.Endpoint.ID == site.Endpoint.ID {
			return s.Address(), true, nil
		}
	}
	return "", false, nil
}

// readStored reads one resource from the upstream FHIR server with the
// client's Authorization header; nil when the server has none to show
// (404, 410) or will not show it to this client (401, 403: the write is then
// the FHIR server's to judge).
func (h *FHIRRewrite) readStored(r *http.Request, ref string) (*fhirjson.Document, error) {
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, h.app.FHIR+"/"+ref, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/fhir+json")
	if a := r.Header.Get("Authorization"); a != "" {
		req.Header.Set("Authorization", a)
	}
	resp, err := h.reads.Do(req)
	if err != nil {
		return nil, errors.Unwrap(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, h.MaxBodySize))
	switch {
	case err != nil:
		return nil, err
	case resp.StatusCode == http.StatusNotFound, resp.StatusCode == http.StatusGone,
		resp.StatusCode == http.StatusUnauthorized, resp.StatusCode == http.StatusForbidden:
		return nil, nil
	case resp.StatusCode != http.StatusOK || !gjson.ValidBytes(body):
		return nil, fmt.Errorf("the read answered %d", resp.StatusCode)
	}
	return fhirjson.Scan(body, fhirjson.ScanOptions{})
}
