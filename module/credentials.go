package module

import (
	"context"
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// ClientCredentials are the gateway's own OAuth 2.0 client credentials at
// the authorization server that protects the FHIR server. With them, the
// gateway's own look-ups (study routing, Endpoints, Subscriptions) carry a
// token from the client_credentials grant, fetched when first needed and
// renewed before it expires. They only ever serve the gateway's own
// questions: access decisions for a client are asked with that client's
// token.
type ClientCredentials struct {
	// TokenURL is the authorization server's token endpoint.
	TokenURL string `json:"token_url"`

	// ClientID is the gateway's client id.
	ClientID string `json:"client_id"`

	// ClientSecret is the gateway's client secret. Placeholders such as
	// {env.FHIR_CLIENT_SECRET} are replaced when the config is loaded.
	ClientSecret string `json:"client_secret,omitempty"`

	// Scopes are the scopes asked for, e.g. system/ImagingStudy.rs and
	// system/Endpoint.rs. Default: none, the authorization server's
	// default for the client.
	Scopes []string `json:"scopes,omitempty"`
}

func (c *ClientCredentials) validate() error {
	if err := checkHTTPURL(c.TokenURL); err != nil {
		return fmt.Errorf("token_url: %v", err)
	}
	if c.ClientID == "" {
		return fmt.Errorf("client_id is required")
	}
	return nil
}

// client returns an HTTP client like base whose requests carry the
// gateway's token. The token requests themselves use base.
func (c *ClientCredentials) client(base *http.Client) *http.Client {
	repl := caddy.NewReplacer()
	cfg := clientcredentials.Config{
		ClientID:     repl.ReplaceAll(c.ClientID, ""),
		ClientSecret: repl.ReplaceAll(c.ClientSecret, ""),
		TokenURL:     c.TokenURL,
		Scopes:       c.Scopes,
		AuthStyle:    oauth2.AuthStyleInHeader,
	}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, base)
	return &http.Client{
		Timeout:   base.Timeout,
		Transport: &oauth2.Transport{Source: cfg.TokenSource(ctx), Base: base.Transport},
	}
}
