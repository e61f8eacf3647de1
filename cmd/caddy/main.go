// Command caddy is Caddy with its standard modules plus the
// caddy-fhir-imaging modules.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	// The standard Caddy modules.
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	// The imaging gateway's modules and Caddyfile directives.
	_ "github.com/fhirimaging/caddy-fhir-imaging"
)

func main() {
	caddycmd.Main()
}
