package access

import (
	"encoding/json"
	"errors"
	"slices"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
)

// ImagingCapabilities are what a FHIR base's .well-known/smart-configuration
// lists when images are to be had with its tokens: SMART Imaging Access, in
// its App Launch mode (the only one the gateway implements; it grants
// nothing on system scopes).
var ImagingCapabilities = []string{
	"smart-imaging-access",
	"http://fhir.org/argonaut/smart-imaging/capabilities/app-launch",
}

// AddCapabilities returns a SMART configuration document (a JSON object)
// with the imaging capabilities added to its capabilities array, each once;
// everything else in it stays as it was.
func AddCapabilities(doc []byte) ([]byte, error) {
	if !gjson.ValidBytes(doc) || !gjson.ParseBytes(doc).IsObject() {
		return nil, errors.New("the SMART configuration is not a JSON object")
	}
	have := map[string]bool{}
	caps := gjson.GetBytes(doc, "capabilities")
	if caps.Exists() && !caps.IsArray() {
		return nil, errors.New("the SMART configuration's capabilities is not an array")
	}
	caps.ForEach(func(_, v gjson.Result) bool {
		have[v.String()] = true
		return true
	})
	out := doc
	var err error
	for _, c := range ImagingCapabilities {
		if have[c] {
			continue
		}
		if out, err = sjson.SetBytes(out, "capabilities.-1", c); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// discoveryFields are the members of an OpenID Connect / OAuth 2.0
// authorization server metadata document that a SMART configuration
// carries over.
var discoveryFields = []string{
	"issuer", "jwks_uri", "authorization_endpoint", "token_endpoint", "introspection_endpoint",
	"revocation_endpoint", "registration_endpoint", "grant_types_supported", "response_types_supported",
	"scopes_supported", "token_endpoint_auth_methods_supported", "token_endpoint_auth_signing_alg_values_supported",
	"code_challenge_methods_supported",
}

// FromDiscovery builds a SMART configuration document for a FHIR server that
// has none, from its authorization server's metadata
// (.well-known/openid-configuration): the endpoints and supported values
// are copied, and the capabilities are the imaging ones. SMART requires
// PKCE with S256, so that is what is listed when the metadata says nothing.
func FromDiscovery(discovery []byte) ([]byte, error) {
	var meta map[string]json.RawMessage
	if err := json.Unmarshal(discovery, &meta); err != nil {
		return nil, errors.New("the authorization server's metadata is not a JSON object")
	}
	if _, ok := meta["token_endpoint"]; !ok {
		return nil, errors.New("the authorization server's metadata has no token_endpoint")
	}
	out := map[string]json.RawMessage{}
	for _, f := range discoveryFields {
		if v, ok := meta[f]; ok {
			out[f] = v
		}
	}
	if _, ok := out["code_challenge_methods_supported"]; !ok {
		out["code_challenge_methods_supported"] = json.RawMessage(`["S256"]`)
	}
	caps, _ := json.Marshal(slices.Clone(ImagingCapabilities))
	out["capabilities"] = caps
	return json.Marshal(out)
}
