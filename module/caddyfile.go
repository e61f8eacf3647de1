package module

import (
	"math"
	"strings"

	"fmt"
	"net/url"
	"strconv"

	"github.com/dustin/go-humanize"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

// UnmarshalCaddyfile sets up the app from Caddyfile tokens. Syntax:
//
//	fhir_imaging {
//		fhir            <base-url> [{
//			token_url     <url>
//			client_id     <id>
//			client_secret <secret>
//			scope         <scope>...
//		}]
//		fhir_version    r4|stu3
//		archive         <name> <dicomweb-url> {
//			wado_uri            <wado-uri-url>
//			endpoint_address    <url>...
//			pass_authorization
//			wildcard_accept     <media-type>|*/*
//			<any reverse_proxy subdirective>
//		}
//		cache_ttl       <duration>
//		negative_ttl    <duration>
//		cache_size      <entries>
//		lookup_timeout  <duration>
//		lookup_rate     <per-second>
//		store_archive   <name>
//		register_imaging_study on|off [{
//			unknown_patient leave|create
//			timeout         <duration>
//		}]
//		default_archive <name>
//		subscribe       <notify-url>
//		trace_uids      on|off
//		authorize {
//			introspect   <url> {
//				client_id     <id>
//				client_secret <secret>
//			}
//			issuer       <url>
//			decision_ttl <duration>
//			cors         <origin>...
//		}
//	}
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the option name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "fhir":
			if !d.NextArg() {
				return d.ArgErr()
			}
			a.FHIR = d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
			cc, err := unmarshalCredentials(d)
			if err != nil {
				return err
			}
			a.FHIRCredentials = cc
		case "fhir_version":
			if !d.AllArgs(&a.FHIRVersion) {
				return d.ArgErr()
			}
			if a.FHIRVersion != FHIRVersionR4 && a.FHIRVersion != FHIRVersionSTU3 {
				return d.Errf("fhir_version must be %s or %s, not %q", FHIRVersionR4, FHIRVersionSTU3, a.FHIRVersion)
			}
		case "authorize":
			if a.Authorize != nil {
				return d.Err("authorize may appear only once")
			}
			az, err := unmarshalAuthorize(d)
			if err != nil {
				return err
			}
			a.Authorize = az
		case "archive":
			name, ar, err := unmarshalArchive(d)
			if err != nil {
				return err
			}
			if a.Archives == nil {
				a.Archives = map[string]*Archive{}
			}
			if _, dup := a.Archives[name]; dup {
				return d.Errf("archive %q is defined twice", name)
			}
			a.Archives[name] = ar
		case "cache_ttl", "negative_ttl", "lookup_timeout":
			opt := d.Val()
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(v)
			if err != nil {
				return d.Errf("%s: %v", opt, err)
			}
			switch opt {
			case "cache_ttl":
				a.CacheTTL = caddy.Duration(dur)
			case "negative_ttl":
				a.NegativeTTL = caddy.Duration(dur)
			default:
				a.LookupTimeout = caddy.Duration(dur)
			}
		case "lookup_rate":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			n, err := strconv.ParseFloat(strings.TrimSuffix(v, "/s"), 64)
			if err != nil {
				return d.Errf("lookup_rate must be a number of look-ups per second, not %q", v)
			}
			a.LookupRate = n
		case "cache_size":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(v)
			if err != nil {
				return d.Errf("cache_size must be a number of entries, not %q", v)
			}
			a.CacheSize = n
		case "store_archive":
			if !d.AllArgs(&a.StoreArchive) {
				return d.ArgErr()
			}
		case "subscribe":
			if !d.AllArgs(&a.Subscribe) {
				return d.ArgErr()
			}
		case "trace_uids":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			on, err := onOff(v)
			if err != nil {
				return d.Errf("trace_uids %v", err)
			}
			a.TraceUIDs = on
		case "register_imaging_study":
			rg, err := unmarshalRegistration(d)
			if err != nil {
				return err
			}
			a.RegisterImagingStudy = rg
		case "default_archive":
			if !d.AllArgs(&a.DefaultArchive) {
				return d.ArgErr()
			}
		default:
			return d.Errf("unrecognized fhir_imaging option '%s'", d.Val())
		}
	}
	return nil
}

// unmarshalRegistration reads "register_imaging_study on|off" and its
// optional block; nil for off.
func unmarshalRegistration(d *caddyfile.Dispenser) (*Registration, error) {
	if !d.NextArg() {
		return nil, d.ArgErr()
	}
	on, err := onOff(d.Val())
	if err != nil {
		return nil, d.Errf("register_imaging_study %v", err)
	}
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	rg := new(Registration)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if !on {
			return nil, d.Err("register_imaging_study off takes no options")
		}
		switch d.Val() {
		case "unknown_patient":
			if !d.AllArgs(&rg.UnknownPatient) {
				return nil, d.ArgErr()
			}
			if rg.UnknownPatient != "leave" && rg.UnknownPatient != "create" {
				return nil, d.Errf("unknown_patient must be leave or create, not %q", rg.UnknownPatient)
			}
		case "timeout":
			var v string
			if !d.AllArgs(&v) {
				return nil, d.ArgErr()
			}
			dur, err := caddy.ParseDuration(v)
			if err != nil {
				return nil, d.Errf("timeout: %v", err)
			}
			rg.Timeout = caddy.Duration(dur)
		default:
			return nil, d.Errf("unrecognized register_imaging_study option '%s'", d.Val())
		}
	}
	if !on {
		return nil, nil
	}
	return rg, nil
}

// unmarshalCredentials reads the optional block of "fhir <url> { ... }",
// the gateway's own client credentials; nil when there is none.
func unmarshalCredentials(d *caddyfile.Dispenser) (*ClientCredentials, error) {
	nesting := d.Nesting()
	if !d.NextBlock(nesting) {
		return nil, nil
	}
	cc := new(ClientCredentials)
	for {
		switch d.Val() {
		case "token_url":
			if !d.AllArgs(&cc.TokenURL) {
				return nil, d.ArgErr()
			}
		case "client_id":
			if !d.AllArgs(&cc.ClientID) {
				return nil, d.ArgErr()
			}
		case "client_secret":
			if !d.AllArgs(&cc.ClientSecret) {
				return nil, d.ArgErr()
			}
		case "scope":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return nil, d.ArgErr()
			}
			cc.Scopes = append(cc.Scopes, args...)
		default:
			return nil, d.Errf("unrecognized fhir subdirective '%s'", d.Val())
		}
		if !d.NextBlock(nesting) {
			break
		}
	}
	if cc.TokenURL == "" || cc.ClientID == "" {
		return nil, d.Err("fhir credentials need token_url and client_id")
	}
	return cc, nil
}

// unmarshalAuthorize reads an "authorize { ... }" block.
func unmarshalAuthorize(d *caddyfile.Dispenser) (*Authorize, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	az := new(Authorize)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "introspect":
			if !d.NextArg() {
				return nil, d.ArgErr()
			}
			az.Introspect = d.Val()
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			for inner := d.Nesting(); d.NextBlock(inner); {
				switch d.Val() {
				case "client_id":
					if !d.AllArgs(&az.ClientID) {
						return nil, d.ArgErr()
					}
				case "client_secret":
					if !d.AllArgs(&az.ClientSecret) {
						return nil, d.ArgErr()
					}
				default:
					return nil, d.Errf("unrecognized introspect subdirective '%s'", d.Val())
				}
			}
		case "issuer":
			if !d.AllArgs(&az.Issuer) {
				return nil, d.ArgErr()
			}
		case "decision_ttl":
			var v string
			if !d.AllArgs(&v) {
				return nil, d.ArgErr()
			}
			dur, err := caddy.ParseDuration(v)
			if err != nil {
				return nil, d.Errf("decision_ttl must be a duration, not %q", v)
			}
			az.DecisionTTL = caddy.Duration(dur)
		case "cors":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return nil, d.ArgErr()
			}
			az.CORS = append(az.CORS, args...)
		default:
			return nil, d.Errf("unrecognized authorize subdirective '%s'", d.Val())
		}
	}
	if az.Introspect == "" || az.ClientID == "" {
		return nil, d.Err("authorize needs introspect <url> with client_id")
	}
	return az, nil
}

// unmarshalArchive reads one "archive <name> <url> [{ ... }]" line. The
// block's own subdirectives are read here; every other subdirective is handed
// to reverse_proxy's own Caddyfile parser, as if it appeared in
// "reverse_proxy <scheme>://<host> { ... }", so that archives take exactly
// the reverse_proxy syntax users know.
func unmarshalArchive(d *caddyfile.Dispenser) (string, *Archive, error) {
	head := d.Token()
	var name, rawURL string
	if !d.Args(&name, &rawURL) {
		return "", nil, d.ArgErr()
	}
	urlTok := d.Token()
	if d.NextArg() {
		return "", nil, d.ArgErr()
	}
	ar := &Archive{URL: rawURL}
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", nil, d.Errf("archive %s: %q is not an http or https URL", name, rawURL)
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return "", nil, d.Errf("archive %s: %q must not have a query or fragment: the gateway appends /studies/... to the URL; send credentials with header_up", name, rawURL)
	}
	// New tokens, placed where from was: a copy of from would keep its
	// quoting, and a quoted "}" closes no block.
	tok := func(from caddyfile.Token, text string, lineDelta int) caddyfile.Token {
		return caddyfile.Token{File: from.File, Line: from.Line + lineDelta, Text: text}
	}
	proxyTokens := []caddyfile.Token{tok(head, "reverse_proxy", 0)}
	custom, hasTo := false, false
	var block []caddyfile.Token
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "wado_uri":
			if !d.AllArgs(&ar.WADOURI) {
				return "", nil, d.ArgErr()
			}
		case "endpoint_address":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return "", nil, d.ArgErr()
			}
			ar.EndpointAddresses = append(ar.EndpointAddresses, args...)
		case "pass_authorization":
			if d.NextArg() {
				return "", nil, d.ArgErr()
			}
			ar.PassAuthorization = true
		case "wildcard_accept":
			if !d.AllArgs(&ar.WildcardAccept) {
				return "", nil, d.ArgErr()
			}
		case "handle_response", "rewrite", "method":
			return "", nil, d.Errf("archive %s: reverse_proxy subdirective '%s' is not supported in an archive block: the gateway decides paths and handles answers itself", name, d.Val())
		default:
			// "to" lists the archive's upstreams, replacing the URL's host.
			hasTo = hasTo || d.Val() == "to"
			block = append(block, d.NextSegment()...)
			custom = true
		}
	}
	if !hasTo {
		proxyTokens = append(proxyTokens, tok(urlTok, u.Scheme+"://"+u.Host, 0))
	}
	proxyTokens = append(proxyTokens, tok(urlTok, "{", 0))
	proxyTokens = append(proxyTokens, block...)
	if !custom {
		// Provision derives the default proxy from the URL; keeping it out
		// of the JSON keeps the adapted config readable.
		return name, ar, nil
	}
	last := proxyTokens[len(proxyTokens)-1]
	proxyTokens = append(proxyTokens, tok(last, "}", 1))
	rp := new(reverseproxy.Handler)
	if err := rp.UnmarshalCaddyfile(caddyfile.NewDispenser(proxyTokens)); err != nil {
		return "", nil, err
	}
	ar.Proxy = rp
	return name, ar, nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	fhir_rewrite {
//		dicomweb_base  <path-or-url>
//		wado_uri_base  <path-or-url>
//		mode           proxy|direct
//		extension_base <uri>
//		max_body_size  <bytes>
//		public_base    <url>
//		rebase         on|off
//		endpoint_addresses public|stored
//		levels         study|series|instance ...
//	}
func (h *FHIRRewrite) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return eachOption(d, func(opt string, vals []string) error {
		if opt == "levels" {
			if err := checkLevels(vals); err != nil {
				return d.Err(err.Error())
			}
			h.Levels = vals
			return nil
		}
		if len(vals) != 1 {
			return d.ArgErr()
		}
		v := vals[0]
		switch opt {
		case "dicomweb_base":
			h.DICOMwebBase = v
		case "wado_uri_base":
			h.WADOURIBase = v
		case "mode":
			if v != ModeProxy && v != ModeDirect {
				return d.Errf("mode must be %s or %s, not %q", ModeProxy, ModeDirect, v)
			}
			h.Mode = v
		case "extension_base":
			h.ExtensionBase = v
		case "max_body_size":
			n, err := parseSize(v)
			if err != nil {
				return d.Errf("max_body_size: %v", err)
			}
			h.MaxBodySize = n
		case "public_base":
			if err := checkHTTPURL(v); err != nil {
				return d.Errf("public_base: %v", err)
			}
			h.PublicBase = v
		case "rebase":
			on, err := onOff(v)
			if err != nil {
				return d.Errf("rebase %v", err)
			}
			h.DisableRebase = !on
		case "endpoint_addresses":
			if v != AddressesPublic && v != AddressesStored {
				return d.Errf("endpoint_addresses must be %s or %s, not %q", AddressesPublic, AddressesStored, v)
			}
			h.EndpointAddresses = v
		default:
			return d.Errf("unrecognized fhir_rewrite subdirective '%s'", opt)
		}
		return nil
	})
}

// eachOption reads a directive that takes no arguments and a block of
// options of one value or more each, handing every option to set.
func eachOption(d *caddyfile.Dispenser, set func(opt string, vals []string) error) error {
	d.Next() // the directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		opt := d.Val()
		vals := d.RemainingArgs()
		if len(vals) == 0 {
			return d.ArgErr()
		}
		if err := set(opt, vals); err != nil {
			return err
		}
	}
	return nil
}

// oneValue adapts a setter of options that take exactly one value to
// eachOption.
func oneValue(d *caddyfile.Dispenser, set func(opt, v string) error) func(string, []string) error {
	return func(opt string, vals []string) error {
		if len(vals) != 1 {
			return d.ArgErr()
		}
		return set(opt, vals[0])
	}
}

// onOff reads a switch written on or off.
func onOff(v string) (bool, error) {
	switch v {
	case "on":
		return true, nil
	case "off":
		return false, nil
	}
	return false, fmt.Errorf("must be on or off, not %q", v)
}

// parseSize reads a byte count such as 1048576, 512KiB, 32MiB or 1GB, as
// Caddy's own directives do (request_body max_size).
func parseSize(s string) (int64, error) {
	n, err := humanize.ParseBytes(s)
	if err != nil {
		return 0, err
	}
	if n > math.MaxInt64 {
		return 0, fmt.Errorf("%s is too large", s)
	}
	return int64(n), nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	dicomweb {
//		public_base   <url>
//		max_json_size <bytes>
//	}
func (h *DICOMweb) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return eachOption(d, oneValue(d, func(opt, v string) error {
		switch opt {
		case "public_base":
			h.PublicBase = v
		case "max_json_size":
			n, err := parseSize(v)
			if err != nil {
				return d.Errf("max_json_size: %v", err)
			}
			h.MaxJSONSize = n
		default:
			return d.Errf("unrecognized dicomweb subdirective '%s'", opt)
		}
		return nil
	}))
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. The
// directive takes no arguments and no block: "wado_uri".
func (h *WADOURI) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(0) {
		return d.Errf("wado_uri takes no options, found '%s'", d.Val())
	}
	return nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. The
// directive takes no arguments and no block: "fhir_notify".
func (h *FHIRNotify) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(0) {
		return d.Errf("fhir_notify takes no options, found '%s'", d.Val())
	}
	return nil
}

// Interface guards.
var (
	_ caddyfile.Unmarshaler = (*FHIRNotify)(nil)
	_ caddyfile.Unmarshaler = (*App)(nil)
	_ caddyfile.Unmarshaler = (*FHIRRewrite)(nil)
	_ caddyfile.Unmarshaler = (*DICOMweb)(nil)
	_ caddyfile.Unmarshaler = (*WADOURI)(nil)
)
