package access

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"
)

// Token is what the authorization server said of a bearer token when it was
// introspected (RFC 7662, with SMART's patient and fhirUser members).
type Token struct {
	// Active is the introspection's verdict; an expired token is never
	// active.
	Active bool
	// Scopes are the token's resource scopes.
	Scopes Scopes
	// Patient is the FHIR id of the patient in context, for patient/
	// scopes; empty when the token has none.
	Patient string
	// ClientID is the OAuth client the token was issued to; it goes into
	// the gateway's logs, the token itself never does.
	ClientID string
	// Expires is the token's exp; zero when the answer had none.
	Expires time.Time
}

// Grant is what a token lets its holder do with images.
type Grant struct {
	// Patient is the patient whose studies may be read; empty when the
	// grant is not bound to a patient (a user/ scope), in which case the
	// FHIR server's answer to the token alone decides.
	Patient string
}

// ImagingRead returns what the token lets its holder read through DICOMweb,
// and false when it grants nothing: an imaging read scope in user/ context
// (unbound), else one in patient/ context together with a patient. System
// scopes grant nothing: the gateway does not implement SMART Backend
// Services, and a patient/ scope without a patient is no grant at all.
func (t *Token) ImagingRead() (Grant, bool) {
	if !t.Active {
		return Grant{}, false
	}
	if t.Scopes.readsImaging(UserContext) {
		return Grant{}, true
	}
	if t.Patient != "" && t.Scopes.readsImaging(PatientContext) {
		return Grant{Patient: t.Patient}, true
	}
	return Grant{}, false
}

// ImagingStore reports whether the token lets its holder store images
// (STOW-RS): a user/ or system/ scope that may create ImagingStudy.
func (t *Token) ImagingStore() bool { return t.Active && t.Scopes.storesImaging() }

// PatientBound reports whether the token's ImagingStudy access is bound to
// its patient: it reads ImagingStudy only through patient/ scopes. Such a
// token's ImagingStudy searches must name that patient.
func (t *Token) PatientBound() bool {
	return t.Active && !t.Scopes.readsImaging(UserContext) && !t.Scopes.readsImaging(SystemContext) &&
		t.Scopes.readsImaging(PatientContext)
}

// BearerToken returns the token of an Authorization header value of the
// Bearer scheme (RFC 6750 section 2.1). present is false when there is no
// header at all; ok is false when the header is there but is not a
// well-formed bearer credential.
func BearerToken(header string) (token string, present, ok bool) {
	if header == "" {
		return "", false, false
	}
	scheme, tok, found := strings.Cut(header, " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return "", true, false
	}
	tok = strings.TrimLeft(tok, " ")
	if tok == "" || len(tok) > 8192 {
		return "", true, false
	}
	// b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
	end := len(tok)
	for end > 0 && tok[end-1] == '=' {
		end--
	}
	if end == 0 {
		return "", true, false
	}
	for i := 0; i < end; i++ {
		c := tok[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~+/", c) >= 0) {
			return "", true, false
		}
	}
	return tok, true, true
}

// Hash returns the key under which everything known of a token is cached:
// its SHA-256, so that the token itself is never kept.
func Hash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}
