// Package caddyfhirimaging is the Caddy plugin of caddy-fhir-imaging: an
// imaging gateway in front of a FHIR server and DICOM archives. Importing it
// (as xcaddy does with --with) registers all of its modules and Caddyfile
// directives.
package caddyfhirimaging

import (
	// The modules and their Caddyfile side.
	_ "github.com/fhirimaging/caddy-fhir-imaging/caddyfile"
	_ "github.com/fhirimaging/caddy-fhir-imaging/module"
)
