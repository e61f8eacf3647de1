// Package access decides whether a bearer token may read a DICOM study, the
// way the SMART Imaging Access guide has it: the token is introspected at the
// authorization server (RFC 7662), it must carry an imaging read scope and,
// for patient/ scopes, a patient; and the FHIR server, asked with the
// client's own token, must show the study to that token (for that patient).
// The gateway's own credentials never take part in a decision.
//
// What is learnt of a token is cached under a hash of the token, never the
// token itself, for at most the decision TTL and never past the token's exp;
// a token's decisions live and die with it and serve no other token. The
// package knows nothing of Caddy.
package access

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tidwall/gjson"
	"go.opentelemetry.io/otel/attribute"

	"github.com/fhirimaging/caddy-fhir-imaging/module/dicom"
	"github.com/fhirimaging/caddy-fhir-imaging/module/fhirjson"
	"github.com/fhirimaging/caddy-fhir-imaging/module/internal/ttlcache"
	"github.com/fhirimaging/caddy-fhir-imaging/module/telemetry"
)

// Config configures an Authorizer.
type Config struct {
	// Introspector asks the authorization server about tokens.
	Introspector *Introspector
	// FHIRBase is the FHIR server's base URL, asked whether a token sees a
	// study.
	FHIRBase string
	// Client sends those FHIR look-ups. It must add no credentials of its
	// own: each look-up carries the client's Authorization header only.
	// http.DefaultClient when nil.
	Client *http.Client
	// DecisionTTL is how long what was learnt of a token (its
	// introspection, and which studies it may read) is reused.
	DecisionTTL time.Duration
	// MaxTokens bounds the number of tokens remembered.
	MaxTokens int
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// OnIntrospect, if set, is told of every introspection: its result
	// (active, inactive, error) and how long it took.
	OnIntrospect func(result string, d time.Duration)
	// OnLookup, if set, is told of every FHIR visibility look-up: its
	// result (ok, error) and how long it took.
	OnLookup func(result string, d time.Duration)
	// STU3 says that the FHIR server speaks FHIR STU3: a study's UID is
	// ImagingStudy.uid (urn:oid:<uid>), searched with "study", and its
	// patient is ImagingStudy.patient. The look-up then asks study= first
	// and identifier= for the UIDs that one did not show.
	STU3 bool
}

// maxStudiesPerToken bounds the decisions remembered for one token; when
// it is reached they are forgotten and asked for again.
const maxStudiesPerToken = 4096

// batchSize is the most study UIDs asked about in one FHIR search.
const batchSize = 20

// Authorizer makes access decisions. It is safe for concurrent use.
type Authorizer struct {
	cfg      Config
	sessions *ttlcache.Cache[*Session]
	intro    ttlcache.Flights[*Session]
	lookups  ttlcache.Flights[map[string]bool]
}

// New returns an Authorizer for cfg, filling in defaults.
func New(cfg Config) *Authorizer {
	if cfg.Client == nil {
		cfg.Client = http.DefaultClient
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.DecisionTTL <= 0 {
		cfg.DecisionTTL = 30 * time.Second
	}
	if cfg.MaxTokens <= 0 {
		cfg.MaxTokens = 10000
	}
	if cfg.OnIntrospect == nil {
		cfg.OnIntrospect = func(string, time.Duration) {}
	}
	if cfg.OnLookup == nil {
		cfg.OnLookup = func(string, time.Duration) {}
	}
	if cfg.Introspector != nil && cfg.Introspector.Now == nil {
		cfg.Introspector.Now = cfg.Now
	}
	cfg.FHIRBase = strings.TrimRight(cfg.FHIRBase, "/")
	return &Authorizer{cfg: cfg, sessions: ttlcache.New[*Session](cfg.MaxTokens, cfg.Now)}
}

// Session is what the gateway knows of one token: its introspection, and
// the studies it was found to see or not to see.
type Session struct {
	// Token is the introspection's answer.
	Token   Token
	hash    string
	mu      sync.Mutex
	studies map[string]bool
}

// AuthError is a refusal to authenticate a request: no token, a malformed
// one, or one that is not active. It is answered with 401 and the
// WWW-Authenticate challenge.
type AuthError struct {
	// Challenge is the WWW-Authenticate header value.
	Challenge string
	// Message says what was wrong, in words fit for the client.
	Message string
}

func (e *AuthError) Error() string { return e.Message }

// Authenticate introspects the bearer token of an Authorization header
// value, or takes what is cached of it. Errors are an *AuthError (answer
// 401) or an *UnavailableError (answer 503).
func (a *Authorizer) Authenticate(ctx context.Context, header string) (*Session, error) {
	token, present, ok := BearerToken(header)
	switch {
	case !present:
		return nil, &AuthError{Challenge: `Bearer realm="imaging"`, Message: "a bearer token is required"}
	case !ok:
		return nil, &AuthError{Challenge: `Bearer realm="imaging", error="invalid_request"`, Message: "the Authorization header is not a well-formed bearer token"}
	}
	s, err := a.session(ctx, token)
	if err != nil {
		return nil, err
	}
	if !s.Token.Active {
		return nil, &AuthError{Challenge: `Bearer realm="imaging", error="invalid_token"`, Message: "the bearer token is not active: it is unknown, expired or revoked"}
	}
	return s, nil
}

// session returns the cached session of token, or introspects it; callers
// that arrive while the same token is being introspected wait for that
// answer.
func (a *Authorizer) session(ctx context.Context, token string) (*Session, error) {
	hash := Hash(token)
	if s, ok := a.sessions.Get(hash); ok {
		return s, nil
	}
	fl, leader := a.intro.Join(hash)
	if !leader {
		select {
		case <-fl.Done:
			return fl.Value, fl.Err
		case <-ctx.Done():
			return nil, &UnavailableError{What: "the authorization server", Err: ctx.Err()}
		}
	}
	start := a.cfg.Now()
	tok, err := a.cfg.Introspector.Introspect(context.WithoutCancel(ctx), token)
	var s *Session
	switch {
	case err != nil:
		a.cfg.OnIntrospect("error", a.cfg.Now().Sub(start))
	default:
		result := "inactive"
		if tok.Active {
			result = "active"
		}
		a.cfg.OnIntrospect(result, a.cfg.Now().Sub(start))
		s = &Session{Token: tok, hash: hash}
		ttl := a.cfg.DecisionTTL
		if !tok.Expires.IsZero() {
			ttl = min(ttl, tok.Expires.Sub(a.cfg.Now()))
		}
		a.sessions.Put(hash, s, ttl)
	}
	a.intro.Land(hash, fl, s, err)
	return s, err
}

// MayRead reports whether the session's token may read the study with the
// given UID (already validated): its grant must cover imaging, and the FHIR
// server, asked with header (the client's own Authorization header), must
// return an ImagingStudy with that UID, and for a patient-bound grant, of
// that patient. A study the FHIR server does not show is not readable,
// whether it exists or not.
func (a *Authorizer) MayRead(ctx context.Context, s *Session, header, uid string) (bool, error) {
	seen, err := a.Visible(ctx, s, header, []string{uid})
	return seen[uid], err
}

// Visible returns which of the given study UIDs the session's token may
// read, asking the FHIR server in batches about those not decided yet.
func (a *Authorizer) Visible(ctx context.Context, s *Session, header string, uids []string) (map[string]bool, error) {
	grant, ok := s.Token.ImagingRead()
	out := make(map[string]bool, len(uids))
	if !ok {
		return out, nil
	}
	var ask []string
	s.mu.Lock()
	for _, u := range uids {
		if v, known := s.studies[u]; known {
			out[u] = v
		} else if !slices.Contains(ask, u) {
			ask = append(ask, u)
		}
	}
	s.mu.Unlock()
	for i := 0; i < len(ask); i += batchSize {
		batch := ask[i:min(i+batchSize, len(ask))]
		seen, err := a.lookup(ctx, s, header, grant, batch)
		if err != nil {
			return out, err
		}
		for _, u := range batch {
			out[u] = seen[u]
		}
	}
	return out, nil
}

// lookup asks the FHIR server, with the client's own token, which of uids
// it shows, and keeps the answer in the session; concurrent identical
// questions for one token share one search.
func (a *Authorizer) lookup(ctx context.Context, s *Session, header string, g Grant, uids []string) (map[string]bool, error) {
	key := s.hash + "|" + strings.Join(uids, ",")
	fl, leader := a.lookups.Join(key)
	if !leader {
		select {
		case <-fl.Done:
			return fl.Value, fl.Err
		case <-ctx.Done():
			return nil, &UnavailableError{What: "the FHIR server", Err: ctx.Err()}
		}
	}
	// A search that ended between the caller's look at the session and
	// this flight has already answered.
	if seen, ok := s.known(uids); ok {
		a.lookups.Land(key, fl, seen, nil)
		return seen, nil
	}
	start := a.cfg.Now()
	seen, err := a.search(context.WithoutCancel(ctx), header, g, uids)
	result := "ok"
	if err != nil {
		result = "error"
	}
	a.cfg.OnLookup(result, a.cfg.Now().Sub(start))
	if err == nil {
		// Kept before the flight lands, so that no later question misses
		// both.
		s.keep(uids, seen)
	}
	a.lookups.Land(key, fl, seen, err)
	return seen, err
}

// known returns the session's decisions for uids when it has them all.
func (s *Session) known(uids []string) (map[string]bool, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]bool, len(uids))
	for _, u := range uids {
		v, ok := s.studies[u]
		if !ok {
			return nil, false
		}
		out[u] = v
	}
	return out, true
}

// keep records decisions in the session, starting afresh when it holds
// too many.
func (s *Session) keep(uids []string, seen map[string]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.studies)+len(uids) > maxStudiesPerToken || s.studies == nil {
		s.studies = make(map[string]bool, len(uids))
	}
	for _, u := range uids {
		s.studies[u] = seen[u]
	}
}

// search sends ImagingStudy?identifier=...[&patient=...] to the FHIR server
// with the client's Authorization header and reads which of uids came back
// (for an STU3 server ImagingStudy?study=... first, then identifier= for
// the UIDs not seen). The answer is checked rather than trusted: only
// ImagingStudies carrying one of the UIDs, and for a patient-bound grant
// whose subject (STU3: patient) is that patient, count.
func (a *Authorizer) search(ctx context.Context, header string, g Grant, uids []string) (_ map[string]bool, err error) {
	ctx, span := telemetry.StartSpan(ctx, "fhir_imaging.access_lookup", attribute.Int("fhir_imaging.studies", len(uids)))
	defer func() { telemetry.End(span, err) }()
	if a.cfg.FHIRBase == "" {
		return nil, &UnavailableError{What: "the FHIR server", Err: errors.New("no FHIR server is configured")}
	}
	if !a.cfg.STU3 {
		return a.searchBy(ctx, header, g, uids, "identifier", "identifier,subject")
	}
	seen, err := a.searchBy(ctx, header, g, uids, "study", "uid,identifier,patient")
	if err != nil {
		return nil, err
	}
	var rest []string
	for _, u := range uids {
		if !seen[u] {
			rest = append(rest, u)
		}
	}
	if len(rest) == 0 {
		return seen, nil
	}
	more, err := a.searchBy(ctx, header, g, rest, "identifier", "uid,identifier,patient")
	if err != nil {
		return nil, err
	}
	for u := range more {
		seen[u] = true
	}
	return seen, nil
}

// searchBy sends one ImagingStudy search naming the studies with param:
// identifier (urn:dicom:uid|urn:oid:<uid> and urn:dicom:uid|<uid>) or STU3's
// study (urn:oid:<uid> and <uid>), asking for the elements listed.
func (a *Authorizer) searchBy(ctx context.Context, header string, g Grant, uids []string, param, elements string) (_ map[string]bool, err error) {
	ids := make([]string, 0, 2*len(uids))
	for _, u := range uids {
		if param == "study" {
			ids = append(ids, "urn:oid:"+u, u)
		} else {
			ids = append(ids, "urn:dicom:uid|urn:oid:"+u, "urn:dicom:uid|"+u)
		}
	}
	q := url.Values{
		param:       {strings.Join(ids, ",")},
		"_elements": {elements},
		"_count":    {strconv.Itoa(4 * len(uids))},
	}
	if g.Patient != "" {
		q.Set("patient", g.Patient)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.cfg.FHIRBase+"/ImagingStudy?"+q.Encode(), nil)
	if err != nil {
		return nil, &UnavailableError{What: "the FHIR server", Err: err}
	}
	req.Header.Set("Authorization", header)
	req.Header.Set("Accept", "application/fhir+json")
	telemetry.Inject(ctx, req.Header)
	resp, err := a.cfg.Client.Do(req)
	if err != nil {
		// The URL carries UIDs; keep it out of errors, which reach logs.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, &UnavailableError{What: "the FHIR server", Err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, &UnavailableError{What: "the FHIR server", Err: err}
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized, resp.StatusCode == http.StatusForbidden, resp.StatusCode == http.StatusNotFound:
		// The FHIR server refuses this token the search: it sees nothing.
		return map[string]bool{}, nil
	case resp.StatusCode/100 != 2:
		return nil, &UnavailableError{What: "the FHIR server", Err: fmt.Errorf("the ImagingStudy search answered %d", resp.StatusCode)}
	}
	if !gjson.ValidBytes(body) {
		return nil, &UnavailableError{What: "the FHIR server", Err: errors.New("the ImagingStudy search answer is not JSON")}
	}
	return visibleIn(body, g, uids), nil
}

// visibleIn reads a searchset Bundle and returns which of uids it holds an
// ImagingStudy for (of the grant's patient, for a patient-bound grant).
func visibleIn(body []byte, g Grant, uids []string) map[string]bool {
	seen := map[string]bool{}
	gjson.GetBytes(body, "entry.#.resource").ForEach(func(_, res gjson.Result) bool {
		if res.Get("resourceType").String() != "ImagingStudy" {
			return true
		}
		if g.Patient != "" {
			subject := res.Get("subject.reference").String()
			if subject == "" {
				subject = res.Get("patient.reference").String() // STU3
			}
			if _, rt, id := fhirjson.SplitReference(subject); rt != "Patient" || id != g.Patient {
				return true
			}
		}
		// STU3: ImagingStudy.uid, an oid.
		if v := dicom.TrimOIDPrefix(res.Get("uid").String()); v != "" && slices.Contains(uids, v) {
			seen[v] = true
		}
		res.Get("identifier").ForEach(func(_, idf gjson.Result) bool {
			if idf.Get("system").String() != "urn:dicom:uid" {
				return true
			}
			v := strings.TrimPrefix(idf.Get("value").String(), "urn:oid:")
			if slices.Contains(uids, v) {
				seen[v] = true
			}
			return true
		})
		return true
	})
	return seen
}
