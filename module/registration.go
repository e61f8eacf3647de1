package module

import (
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/fhirimaging/caddy-fhir-imaging/module/fhirjson"
	"github.com/fhirimaging/caddy-fhir-imaging/module/registrar"
)

// Registration makes images stored through the gateway (STOW-RS to the
// store_archive) discoverable in FHIR: after the archive has stored them,
// and before the client gets the archive's answer, the ImagingStudy of
// each stored study is created, or updated, in the FHIR server, with the
// gateway's own credentials (fhir_credentials), never the client's. Its
// facts (identifier, subject, started, modalities, series and instances,
// counts) come from the store archive itself, through a QIDO-RS search of
// the study at instance level, never from the upload, which streams
// through. Its endpoint is the store archive's active dicom-wado-rs
// Endpoint, found once in the FHIR server, or created once when there is
// none. Storing what the ImagingStudy already lists writes nothing (its
// version stays); storing more updates it on the condition that it has
// not changed meanwhile (If-Match), retried on 409/412.
//
// When registration fails after the store succeeded, the client gets the
// archive's answer with 202 instead of 200 and a Warning header
// (299, "stored, but not registered in FHIR: ..."), and the failure is
// logged at error level; the images stay stored.
type Registration struct {
	// UnknownPatient says what happens when no Patient has the study's
	// DICOM PatientID (0010,0020) as an identifier (Patient?identifier=):
	// "leave" registers the study without a subject and logs it; "create"
	// creates a Patient with that identifier and the DICOM name, birth
	// date and sex, and makes it the subject. When several Patients match,
	// the study is left without a subject either way. Default: leave.
	UnknownPatient string `json:"unknown_patient,omitempty"`

	// Timeout bounds the registration of the studies of one STOW-RS
	// request (the archive's searches and the FHIR requests). Default
	// (also for 0): 30s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	registrar *registrar.Registrar
}

func (rg *Registration) provision(a *App) {
	if rg.UnknownPatient == "" {
		rg.UnknownPatient = registrar.LeavePatient
	}
	if rg.Timeout == 0 {
		rg.Timeout = caddy.Duration(30 * time.Second)
	}
	ar := a.Archives[a.StoreArchive]
	client := &http.Client{Timeout: time.Duration(rg.Timeout)}
	if a.FHIRCredentials != nil {
		client = a.FHIRCredentials.client(client)
	}
	addresses, store := a.addresses, a.StoreArchive
	rg.registrar = registrar.New(registrar.Config{
		FHIRBase:        a.FHIR,
		Client:          client,
		UnknownPatient:  rg.UnknownPatient,
		EndpointAddress: endpointAddress(ar),
		EndpointName:    "DICOMweb WADO-RS of archive " + store,
		IsArchive:       func(address string) bool { return addresses[fhirjson.NormalizeBase(address)] == store },
	})
}

// endpointAddress is the address an Endpoint made for an archive gets:
// its first endpoint_address (the address FHIR data is meant to carry),
// else its url.
func endpointAddress(ar *Archive) string {
	if len(ar.EndpointAddresses) > 0 {
		return ar.EndpointAddresses[0]
	}
	return ar.URL
}

func (rg *Registration) validate(a *App) error {
	switch rg.UnknownPatient {
	case "", registrar.LeavePatient, registrar.CreatePatient:
	default:
		return fmt.Errorf("unknown_patient must be leave or create, not %q", rg.UnknownPatient)
	}
	if rg.Timeout < 0 {
		return fmt.Errorf("timeout must not be negative")
	}
	if a.FHIR == "" {
		return fmt.Errorf("needs fhir")
	}
	if a.StoreArchive == "" {
		return fmt.Errorf("needs store_archive")
	}
	return nil
}
