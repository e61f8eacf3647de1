package access

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/fhirimaging/caddy-fhir-imaging/module/fhirjson"
	"github.com/fhirimaging/caddy-fhir-imaging/module/telemetry"
)

// Introspector asks an OAuth 2.0 token introspection endpoint (RFC 7662)
// about bearer tokens, authenticating as a client of the authorization
// server with HTTP Basic (client_secret_basic).
type Introspector struct {
	// URL is the introspection endpoint.
	URL string
	// ClientID and ClientSecret are the gateway's client credentials at
	// the authorization server.
	ClientID, ClientSecret string
	// Issuer, when set, must equal the iss of an introspection answer that
	// carries one; a token of another issuer is taken as inactive.
	Issuer string
	// Client sends the requests; http.DefaultClient when nil.
	Client *http.Client
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// UnavailableError says that a question needed for an access decision
// could not be answered (the authorization server or the FHIR server was
// unreachable, slow, or answered with an error). Access is then refused
// with 503: the gateway fails closed.
type UnavailableError struct {
	// What names the party that could not be asked.
	What string
	// Err is the cause. It never holds a token or a URL with UIDs.
	Err error
}

func (e *UnavailableError) Error() string { return e.What + " could not be asked: " + e.Err.Error() }

func (e *UnavailableError) Unwrap() error { return e.Err }

// introspection is the part of an RFC 7662 answer the gateway reads.
type introspection struct {
	Active   bool        `json:"active"`
	Scope    string      `json:"scope"`
	Patient  string      `json:"patient"`
	ClientID string      `json:"client_id"`
	Exp      json.Number `json:"exp"`
	Iss      string      `json:"iss"`
}

// Introspect asks the authorization server about token. An answer that
// says inactive, that has expired, or that comes from another issuer gives
// an inactive Token and no error; an error means no answer was had.
func (in *Introspector) Introspect(ctx context.Context, token string) (_ Token, err error) {
	ctx, span := telemetry.StartSpan(ctx, "fhir_imaging.introspect")
	defer func() { telemetry.End(span, err) }()
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, in.URL, strings.NewReader(form.Encode()))
	if err != nil {
		return Token{}, &UnavailableError{What: "the authorization server", Err: err}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	// RFC 6749 section 2.3.1: the credentials are form-encoded before Basic.
	req.SetBasicAuth(url.QueryEscape(in.ClientID), url.QueryEscape(in.ClientSecret))
	telemetry.Inject(ctx, req.Header)
	client := in.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return Token{}, &UnavailableError{What: "the authorization server", Err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Token{}, &UnavailableError{What: "the authorization server", Err: err}
	}
	if resp.StatusCode != http.StatusOK {
		return Token{}, &UnavailableError{What: "the authorization server",
			Err: fmt.Errorf("token introspection answered %d", resp.StatusCode)}
	}
	var ans introspection
	if err := json.Unmarshal(body, &ans); err != nil {
		return Token{}, &UnavailableError{What: "the authorization server", Err: fmt.Errorf("token introspection answer is not JSON: %v", err)}
	}
	return in.token(ans), nil
}

// token turns an introspection answer into a Token, holding it to exp and
// the issuer.
func (in *Introspector) token(ans introspection) Token {
	if !ans.Active {
		return Token{}
	}
	t := Token{Active: true, Scopes: ParseScopes(ans.Scope), ClientID: ans.ClientID}
	if fhirjson.ValidID(ans.Patient) {
		// Anything else cannot name a patient of the FHIR server, and
		// patient/ scopes without a patient grant nothing.
		t.Patient = ans.Patient
	}
	if ans.Exp != "" {
		sec, err := ans.Exp.Float64()
		if err != nil {
			return Token{}
		}
		t.Expires = time.Unix(int64(sec), 0)
		now := time.Now
		if in.Now != nil {
			now = in.Now
		}
		if !now().Before(t.Expires) {
			return Token{}
		}
	}
	if in.Issuer != "" && ans.Iss != "" && strings.TrimRight(ans.Iss, "/") != strings.TrimRight(in.Issuer, "/") {
		return Token{}
	}
	return t
}
