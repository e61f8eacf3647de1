// Package caddyfile registers the Caddyfile side of caddy-fhir-imaging: the
// fhir_imaging global option and the fhir_rewrite, dicomweb, wado_uri and
// fhir_notify directives, with their place in Caddy's directive order, so that no
// "order" option is needed. It holds no behaviour of its own: the parsing of
// each block lives beside the module it configures.
package caddyfile

import (
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/fhirimaging/caddy-fhir-imaging/module"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("fhir_imaging", parseApp)
	httpcaddyfile.RegisterHandlerDirective("fhir_rewrite", parseFHIRRewrite)
	// fhir_rewrite wraps the proxy to the FHIR server, so it must run first.
	httpcaddyfile.RegisterDirectiveOrder("fhir_rewrite", httpcaddyfile.Before, "reverse_proxy")
	httpcaddyfile.RegisterHandlerDirective("dicomweb", parseDICOMweb)
	httpcaddyfile.RegisterHandlerDirective("wado_uri", parseWADOURI)
	httpcaddyfile.RegisterHandlerDirective("fhir_notify", parseFHIRNotify)
	// Both are terminal handlers, like reverse_proxy, which they follow.
	httpcaddyfile.RegisterDirectiveOrder("dicomweb", httpcaddyfile.After, "reverse_proxy")
	httpcaddyfile.RegisterDirectiveOrder("wado_uri", httpcaddyfile.After, "reverse_proxy")
	httpcaddyfile.RegisterDirectiveOrder("fhir_notify", httpcaddyfile.After, "reverse_proxy")
}

func parseApp(d *caddyfile.Dispenser, existing any) (any, error) {
	if existing != nil {
		return nil, d.Err("the fhir_imaging global option may appear only once")
	}
	app := new(module.App)
	if err := app.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "fhir_imaging", Value: caddyconfig.JSON(app, nil)}, nil
}

func parseFHIRRewrite(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(module.FHIRRewrite)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

func parseDICOMweb(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(module.DICOMweb)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

func parseWADOURI(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(module.WADOURI)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

func parseFHIRNotify(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(module.FHIRNotify)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}
