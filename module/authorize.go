package module

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/fhirimaging/caddy-fhir-imaging/module/access"
)

// Authorize makes access to images follow the FHIR server's own access
// rules, as the SMART Imaging Access guide has it: every DICOMweb and
// WADO-URI request must carry a SMART bearer token, which is introspected
// at the authorization server, must grant imaging read access (for patient/
// scopes, with a patient), and must see the study on the FHIR server, asked
// with that very token. On the FHIR side, a patient-bound token's
// ImagingStudy searches must name its patient, and the FHIR base's
// .well-known/smart-configuration lists smart-imaging-access.
type Authorize struct {
	// Introspect is the authorization server's token introspection endpoint
	// (RFC 7662), e.g. https://auth.example.org/token/introspection.
	// Required.
	Introspect string `json:"introspect"`

	// ClientID is the gateway's client id at the authorization server,
	// with which it authenticates its introspection requests (HTTP Basic).
	// Required.
	ClientID string `json:"client_id"`

	// ClientSecret is the gateway's client secret. Placeholders such as
	// {env.INTROSPECT_SECRET} are replaced when the config is loaded.
	ClientSecret string `json:"client_secret,omitempty"`

	// Issuer is the authorization server's issuer URL. Its
	// /.well-known/openid-configuration feeds the FHIR base's
	// smart-configuration when the FHIR server serves none. When set, an
	// introspection answer whose iss differs makes the token inactive.
	// Default: the origin of the introspect URL, and iss is not checked.
	Issuer string `json:"issuer,omitempty"`

	// DecisionTTL is how long what was learnt of one token (its
	// introspection, and whether it may read each study) is reused; never
	// past the token's exp. A revoked token stops working within it.
	// Default: 30s.
	DecisionTTL caddy.Duration `json:"decision_ttl,omitempty"`

	// CORS lists the origins of browser apps allowed to call the gateway
	// ("*" for any): preflights are answered without a token, and every
	// answer to such an origin, errors included, may be read by it.
	// Default: none, and no CORS headers are sent.
	CORS []string `json:"cors,omitempty"`

	authorizer *access.Authorizer
	cors       *access.CORS
	issuer     string
	client     *http.Client
	logger     *zap.Logger
	metrics    *metrics
	traceUIDs  bool

	discoveryMu  sync.Mutex
	discovery    []byte
	discoveredAt time.Time
}

func (az *Authorize) validate(app *App) error {
	if err := checkHTTPURL(az.Introspect); err != nil {
		return fmt.Errorf("introspect: %v", err)
	}
	if az.ClientID == "" {
		return errors.New("client_id is required")
	}
	if az.Issuer != "" {
		if err := checkHTTPURL(az.Issuer); err != nil {
			return fmt.Errorf("issuer: %v", err)
		}
	}
	if az.DecisionTTL < 0 {
		return errors.New("decision_ttl must not be negative")
	}
	if app.FHIR == "" {
		return errors.New("needs the fhir setting: access decisions ask the FHIR server")
	}
	return nil
}

// provision builds the authorizer, or takes the one an earlier config with
// the same settings kept, so that a reload keeps what was learnt of
// tokens. The look-ups it makes to the FHIR server go with a plain client:
// they carry the client's own token and never the gateway's credentials.
func (az *Authorize) provision(app *App) error {
	if az.DecisionTTL == 0 {
		az.DecisionTTL = caddy.Duration(30 * time.Second)
	}
	az.issuer = strings.TrimRight(az.Issuer, "/")
	if az.issuer == "" {
		az.issuer = schemeHost(az.Introspect)
	}
	az.client = &http.Client{Timeout: time.Duration(app.LookupTimeout)}
	az.logger = app.logger.Named("authorize")
	az.metrics = app.metrics
	az.traceUIDs = app.TraceUIDs
	az.cors = access.NewCORS(az.CORS)
	repl := caddy.NewReplacer()
	clientID, secret := repl.ReplaceAll(az.ClientID, ""), repl.ReplaceAll(az.ClientSecret, "")
	key := poolKey("fhir_imaging.authorize", az.Introspect, clientID, secret, az.Issuer,
		durationKey(az.DecisionTTL), app.FHIR, app.CacheSize, durationKey(app.LookupTimeout), app.FHIRVersion)
	var err error
	az.authorizer, err = share(app, key, func(newest func() *App) (*access.Authorizer, func(), error) {
		check := func(kind string) func(string, time.Duration) {
			return func(result string, d time.Duration) {
				if a := newest(); a != nil {
					a.metrics.accessCheck(kind, result, d)
				}
			}
		}
		return access.New(access.Config{
			Introspector: &access.Introspector{
				URL:          az.Introspect,
				ClientID:     clientID,
				ClientSecret: secret,
				Issuer:       az.Issuer,
				Client:       az.client,
			},
			FHIRBase:     app.FHIR,
			Client:       az.client,
			DecisionTTL:  time.Duration(az.DecisionTTL),
			MaxTokens:    app.CacheSize,
			OnIntrospect: check("introspect"),
			OnLookup:     check("fhir_lookup"),
			STU3:         app.FHIRVersion == FHIRVersionSTU3,
		}), nil, nil
	})
	return err
}

// forbidden is the one answer to every refusal of an authenticated
// request, so that it does not tell a study that exists from one that
// does not, nor one of another patient from a hidden one.
const forbidden = "access to this resource is not granted to this token"

// admit starts every DICOMweb and WADO-URI request: without authorize it
// lets the request in as it is; with it, a CORS preflight is answered, the
// answer is made readable by the allowed browser origins and kept out of
// shared caches (Cache-Control: private, since it is decided for one
// token), and the token is authenticated. ok is false when the request has
// been answered.
func (az *Authorize) admit(w http.ResponseWriter, r *http.Request, via string) (_ http.ResponseWriter, _ *access.Session, ok bool) {
	if az == nil {
		return w, nil, true
	}
	if az.cors.Preflight(w, r) {
		return w, nil, false
	}
	w = newHookWriter(w, func(h http.Header) {
		az.cors.Decorate(h, r)
		privateCache(h)
	})
	s := az.authenticate(w, r, via)
	return w, s, s != nil
}

// authenticate returns what is known of the request's bearer token, or
// answers 401 (no, malformed or inactive token) or 503 (the authorization
// server could not be asked) and returns nil.
func (az *Authorize) authenticate(w http.ResponseWriter, r *http.Request, via string) *access.Session {
	s, err := az.authorizer.Authenticate(r.Context(), r.Header.Get("Authorization"))
	if err == nil {
		return s
	}
	var ae *access.AuthError
	if errors.As(err, &ae) {
		az.decided(via, "unauthenticated")
		az.logger.Info("request refused: not authenticated", zap.String("handler", via), zap.String("reason", ae.Message))
		w.Header().Set("WWW-Authenticate", ae.Challenge)
		writeError(w, http.StatusUnauthorized, ae.Message)
		return nil
	}
	az.unavailable(w, via, err)
	return nil
}

// unavailable answers 503 for a decision that could not be made, and logs
// why at error level: the gateway fails closed.
func (az *Authorize) unavailable(w http.ResponseWriter, via string, err error) {
	az.decided(via, "unavailable")
	what := "the authorization server or the FHIR server"
	var ue *access.UnavailableError
	if errors.As(err, &ue) {
		what = ue.What
		err = ue.Err
	}
	az.logger.Error("access could not be checked; request refused", zap.String("handler", via), zap.String("unavailable", what), zap.Error(err))
	writeError(w, http.StatusServiceUnavailable, "access could not be checked: "+what+" is unavailable")
}

// deny answers 403 and logs why (the body does not say).
func (az *Authorize) deny(w http.ResponseWriter, s *access.Session, via, reason string, fields ...zap.Field) {
	az.decided(via, "forbidden")
	fields = append(fields, zap.String("handler", via), zap.String("reason", reason), zap.String("client_id", s.Token.ClientID))
	az.logger.Info("request refused: access not granted", fields...)
	writeError(w, http.StatusForbidden, forbidden)
}

// decided counts a refusal.
func (az *Authorize) decided(via, result string) {
	az.metrics.accessDecisions.WithLabelValues(via, result).Inc()
}

// mayReadStudy reports whether the session's token may read the study; when
// it may not, the request has been answered (403 or 503).
func (az *Authorize) mayReadStudy(w http.ResponseWriter, r *http.Request, s *access.Session, via, study string) bool {
	if _, ok := s.Token.ImagingRead(); !ok {
		az.deny(w, s, via, "the token grants no imaging read access (scope, or patient context)")
		return false
	}
	ok, err := az.authorizer.MayRead(r.Context(), s, r.Header.Get("Authorization"), study)
	switch {
	case err != nil:
		az.unavailable(w, via, err)
		return false
	case !ok:
		az.deny(w, s, via, "the FHIR server shows this token no ImagingStudy with this UID", az.uidField("study_uid", study))
		return false
	}
	return true
}

func (az *Authorize) uidField(key, uid string) zap.Field {
	if az.traceUIDs {
		return zap.String(key, uid)
	}
	return zap.Skip()
}

// discoveryTTL is how long the authorization server's metadata is reused.
const discoveryTTL = 5 * time.Minute

// smartConfiguration returns a SMART configuration built from the
// authorization server's metadata, fetched at most every discoveryTTL.
func (az *Authorize) smartConfiguration(ctx context.Context) ([]byte, error) {
	az.discoveryMu.Lock()
	defer az.discoveryMu.Unlock()
	if az.discovery != nil && time.Since(az.discoveredAt) < discoveryTTL {
		return az.discovery, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, az.issuer+"/.well-known/openid-configuration", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := az.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("the authorization server's metadata answered %d", resp.StatusCode)
	}
	doc, err := access.FromDiscovery(body)
	if err != nil {
		return nil, err
	}
	az.discovery, az.discoveredAt = doc, time.Now()
	return doc, nil
}

// privateCache marks an answer as one for a single user: shared caches
// must not keep it. A stricter directive (no-store) stays; public and
// s-maxage go.
func privateCache(h http.Header) {
	var keep []string
	private := false
	for _, v := range h.Values("Cache-Control") {
		for _, d := range strings.Split(v, ",") {
			d = strings.TrimSpace(d)
			name, _, _ := strings.Cut(strings.ToLower(d), "=")
			switch name {
			case "", "public", "s-maxage", "proxy-revalidate":
				continue
			case "private":
				private = true
			}
			keep = append(keep, d)
		}
	}
	if !private {
		keep = append(keep, "private")
	}
	h.Set("Cache-Control", strings.Join(keep, ", "))
}
