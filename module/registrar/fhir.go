package registrar

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/tidwall/gjson"
)

// Unknown patient policies: what Register does when no Patient has the
// study's DICOM PatientID as an identifier.
const (
	// LeavePatient registers the study without a subject.
	LeavePatient = "leave"
	// CreatePatient creates a Patient with the PatientID as its identifier
	// (and the DICOM name, birth date and sex) and makes it the subject.
	CreatePatient = "create"
)

// Config sets up a Registrar.
type Config struct {
	// FHIRBase is the FHIR server's base URL; every request goes there.
	FHIRBase string
	// Client sends the requests, with the gateway's own credentials.
	Client *http.Client
	// UnknownPatient is LeavePatient or CreatePatient.
	UnknownPatient string
	// EndpointAddress is the address an Endpoint created for the archive
	// gets; EndpointName its name.
	EndpointAddress, EndpointName string
	// IsArchive reports whether an Endpoint address means the archive, so
	// that an existing Endpoint is found again.
	IsArchive func(address string) bool
	// Attempts bounds the tries of a write that meets a conflict (409,
	// 412). Default: 5.
	Attempts int
}

// Registrar creates and updates ImagingStudies in one FHIR server for one
// archive. It is safe for concurrent use: registrations of one study made
// through it run one at a time.
type Registrar struct {
	cfg      Config
	mu       sync.Mutex // guards endpoint and studies
	endpoint string     // "Endpoint/<id>" once found or made
	epMu     sync.Mutex // one find-or-create of the Endpoint at a time
	studies  map[string]*studyLock
}

type studyLock struct {
	sync.Mutex
	users int
}

// New returns a Registrar.
func New(cfg Config) *Registrar {
	cfg.FHIRBase = strings.TrimRight(cfg.FHIRBase, "/")
	if cfg.Attempts <= 0 {
		cfg.Attempts = 5
	}
	if cfg.UnknownPatient == "" {
		cfg.UnknownPatient = LeavePatient
	}
	return &Registrar{cfg: cfg, studies: map[string]*studyLock{}}
}

// Result says what Register did.
type Result struct {
	// ID and Version are the ImagingStudy's id and versionId after it.
	ID, Version string
	// Action is "created", "updated" or "unchanged".
	Action string
	// Subject says how the subject was found: "found", "created",
	// "kept" (the stored study has one), "none" (no Patient matches, or
	// the study has no PatientID) or "ambiguous" (several match).
	Subject string
	// Attempts is the number of writes tried (0 when unchanged at once).
	Attempts int
	// Body is the ImagingStudy as written (nil when unchanged).
	Body []byte
}

// FHIRError is a FHIR request that got an unexpected answer.
type FHIRError struct {
	What   string // e.g. "ImagingStudy search"
	Status int    // 0 when no answer came
	Err    error
}

func (e *FHIRError) Error() string {
	if e.Status == 0 {
		return fmt.Sprintf("%s failed: %v", e.What, e.Err)
	}
	return fmt.Sprintf("%s answered %d", e.What, e.Status)
}

func (e *FHIRError) Unwrap() error { return e.Err }

// ErrConflict is returned when every attempt to write met a conflict.
var ErrConflict = errors.New("the ImagingStudy kept changing under the update (409/412 on every attempt)")

// ErrAmbiguous is returned when several ImagingStudies carry the study UID.
var ErrAmbiguous = errors.New("several ImagingStudies carry the study's UID; none was changed")

// Register creates the ImagingStudy of st, or brings the stored one up to
// date (a conditional update on its version, retried on 409/412), or
// leaves it as it is when it already says everything st says.
func (g *Registrar) Register(ctx context.Context, st *Study) (Result, error) {
	unlock := g.lockStudy(st.UID)
	defer unlock()
	endpoint, err := g.Endpoint(ctx)
	if err != nil {
		return Result{}, err
	}
	res := Result{}
	subjectDone := false
	subject := ""
	for attempt := 1; ; attempt++ {
		stored, id, version, err := g.findStudy(ctx, st.UID)
		if err != nil {
			return res, err
		}
		if stored != nil && gjson.GetBytes(stored, "subject").Exists() {
			res.Subject = "kept"
		} else if !subjectDone {
			subject, res.Subject, err = g.subject(ctx, st)
			if err != nil {
				return res, err
			}
			subjectDone = true
		}
		body, changed, err := Merge(stored, st, subject, endpoint)
		if err != nil {
			return res, fmt.Errorf("the stored ImagingStudy could not be read: %v", err)
		}
		if !changed {
			res.ID, res.Version, res.Action = id, version, "unchanged"
			return res, nil
		}
		if attempt > g.cfg.Attempts {
			return res, ErrConflict
		}
		res.Attempts = attempt
		var status int
		var answer []byte
		var hdr http.Header
		if stored == nil {
			status, hdr, answer, err = g.do(ctx, http.MethodPost, "/ImagingStudy", body, map[string]string{"If-None-Exist": studyQuery(st.UID).Encode()})
			if err == nil && status == http.StatusCreated {
				res.Action = "created"
			}
		} else {
			body = withoutVersion(body)
			h := map[string]string{}
			if version != "" {
				h["If-Match"] = `W/"` + version + `"`
			}
			status, hdr, answer, err = g.do(ctx, http.MethodPut, "/ImagingStudy/"+url.PathEscape(id), body, h)
			if err == nil && (status == http.StatusOK || status == http.StatusCreated) {
				res.Action = "updated"
			}
		}
		switch {
		case err != nil:
			return res, &FHIRError{What: "ImagingStudy write", Err: err}
		case res.Action != "":
			res.ID, res.Version = written(hdr, answer)
			if res.ID == "" {
				res.ID = id
			}
			res.Body = body
			return res, nil
		case stored == nil && status == http.StatusOK:
			// The conditional create found a study made meanwhile: merge into it.
		case status == http.StatusConflict, status == http.StatusPreconditionFailed:
			backoff(ctx, attempt)
		default:
			return res, &FHIRError{What: "ImagingStudy write", Status: status}
		}
	}
}

// lockStudy serialises registrations of one study through this Registrar.
func (g *Registrar) lockStudy(uid string) func() {
	g.mu.Lock()
	l := g.studies[uid]
	if l == nil {
		l = &studyLock{}
		g.studies[uid] = l
	}
	l.users++
	g.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		g.mu.Lock()
		if l.users--; l.users == 0 {
			delete(g.studies, uid)
		}
		g.mu.Unlock()
	}
}

func backoff(ctx context.Context, attempt int) {
	d := time.Duration(attempt*25+rand.IntN(25)) * time.Millisecond
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// studyQuery is the search for the ImagingStudy of a study UID, with the
// identifier value with or without urn:oid: (a token search is exact).
func studyQuery(uid string) url.Values {
	return url.Values{"identifier": {UIDSystem + "|urn:oid:" + uid + "," + UIDSystem + "|" + uid}}
}

// findStudy returns the stored ImagingStudy of the study, its id and
// versionId; nil when there is none.
func (g *Registrar) findStudy(ctx context.Context, uid string) ([]byte, string, string, error) {
	q := studyQuery(uid)
	q.Set("_count", "2")
	entries, err := g.search(ctx, "ImagingStudy", q)
	if err != nil {
		return nil, "", "", err
	}
	switch len(entries) {
	case 0:
		return nil, "", "", nil
	case 1:
	default:
		return nil, "", "", ErrAmbiguous
	}
	e := entries[0]
	id := e.Get("id").String()
	if id == "" {
		return nil, "", "", &FHIRError{What: "ImagingStudy search", Status: http.StatusOK, Err: errors.New("a study without id")}
	}
	return []byte(e.Raw), id, e.Get("meta.versionId").String(), nil
}

// search runs a search and returns the resources of that type it matched
// on its first page.
func (g *Registrar) search(ctx context.Context, resourceType string, q url.Values) ([]gjson.Result, error) {
	out, _, err := g.searchPage(ctx, resourceType, "/"+resourceType+"?"+q.Encode())
	return out, err
}

// maxPages bounds the pages of a search that is read to its end.
const maxPages = 20

// searchAll runs a search and returns what it matched on all its pages,
// following next links that stay on the FHIR base, at most maxPages.
func (g *Registrar) searchAll(ctx context.Context, resourceType string, q url.Values) ([]gjson.Result, error) {
	var all []gjson.Result
	path := "/" + resourceType + "?" + q.Encode()
	for page := 0; page < maxPages && path != ""; page++ {
		out, next, err := g.searchPage(ctx, resourceType, path)
		if err != nil {
			return nil, err
		}
		all = append(all, out...)
		path = ""
		if rest, ok := strings.CutPrefix(next, g.cfg.FHIRBase); ok && (strings.HasPrefix(rest, "?") || strings.HasPrefix(rest, "/")) {
			path = rest
		}
	}
	return all, nil
}

// searchPage reads one page of a search at path (below the FHIR base) and
// returns the resources of that type it matched and its next link.
func (g *Registrar) searchPage(ctx context.Context, resourceType, path string) ([]gjson.Result, string, error) {
	status, _, body, err := g.do(ctx, http.MethodGet, path, nil, nil)
	what := resourceType + " search"
	switch {
	case err != nil:
		return nil, "", &FHIRError{What: what, Err: err}
	case status != http.StatusOK:
		return nil, "", &FHIRError{What: what, Status: status}
	case !gjson.ValidBytes(body):
		return nil, "", &FHIRError{What: what, Status: status, Err: errors.New("not JSON")}
	}
	var out []gjson.Result
	for _, e := range gjson.GetBytes(body, "entry").Array() {
		r := e.Get("resource")
		if r.Get("resourceType").String() == resourceType && (e.Get("search.mode").String() == "" || e.Get("search.mode").String() == "match") {
			out = append(out, r)
		}
	}
	next := ""
	for _, l := range gjson.GetBytes(body, "link").Array() {
		if l.Get("relation").String() == "next" {
			next = l.Get("url").String()
		}
	}
	return out, next, nil
}

// subject finds the Patient whose identifier is the study's PatientID, or
// creates one (unknown_patient create). It returns the reference ("" for
// none) and how it came.
func (g *Registrar) subject(ctx context.Context, st *Study) (string, string, error) {
	if st.PatientID == "" {
		return "", "none", nil
	}
	q := url.Values{"identifier": {escapeToken(st.PatientID)}, "_count": {"2"}}
	found, err := g.search(ctx, "Patient", q)
	if err != nil {
		return "", "", err
	}
	switch {
	case len(found) == 1 && found[0].Get("id").String() != "":
		return "Patient/" + found[0].Get("id").String(), "found", nil
	case len(found) > 1:
		return "", "ambiguous", nil
	case g.cfg.UnknownPatient != CreatePatient:
		return "", "none", nil
	}
	body, _ := json.Marshal(patientResource(st))
	status, hdr, answer, err := g.do(ctx, http.MethodPost, "/Patient", body, map[string]string{"If-None-Exist": url.Values{"identifier": {escapeToken(st.PatientID)}}.Encode()})
	switch {
	case err != nil:
		return "", "", &FHIRError{What: "Patient create", Err: err}
	case status == http.StatusPreconditionFailed:
		return "", "ambiguous", nil
	case status != http.StatusCreated && status != http.StatusOK:
		return "", "", &FHIRError{What: "Patient create", Status: status}
	}
	id, _ := written(hdr, answer)
	if id == "" {
		return "", "", &FHIRError{What: "Patient create", Status: status, Err: errors.New("no id in the answer")}
	}
	how := "created"
	if status == http.StatusOK {
		how = "found"
	}
	return "Patient/" + id, how, nil
}

// patientResource is the Patient made for an unknown PatientID.
func patientResource(st *Study) resource {
	p := resource{"resourceType": "Patient", "identifier": []any{resource{"value": st.PatientID}}}
	if st.Patient.Name != "" {
		parts := strings.Split(st.Patient.Name, "^")
		n := resource{}
		if parts[0] != "" {
			n["family"] = parts[0]
		}
		var given []any
		for _, g := range parts[1:min(len(parts), 3)] {
			if g != "" {
				given = append(given, g)
			}
		}
		if len(given) > 0 {
			n["given"] = given
		}
		if len(n) > 0 {
			p["name"] = []any{n}
		}
	}
	if d := fhirDate(st.Patient.BirthDate); d != "" {
		p["birthDate"] = d
	}
	if g := map[string]string{"M": "male", "F": "female", "O": "other"}[st.Patient.Sex]; g != "" {
		p["gender"] = g
	}
	return p
}

// escapeToken escapes a token search value (FHIR search: \ | , $).
func escapeToken(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `|`, `\|`, `,`, `\,`, `$`, `\$`)
	return r.Replace(s)
}

// Endpoint returns the reference of the archive's WADO-RS Endpoint: an
// active dicom-wado-rs Endpoint whose address means the archive, found
// once, or created once when there is none.
func (g *Registrar) Endpoint(ctx context.Context) (string, error) {
	g.epMu.Lock()
	defer g.epMu.Unlock()
	g.mu.Lock()
	ep := g.endpoint
	g.mu.Unlock()
	if ep != "" {
		return ep, nil
	}
	found, err := g.searchAll(ctx, "Endpoint", url.Values{"connection-type": {"dicom-wado-rs"}, "_count": {"100"}})
	if err != nil {
		return "", err
	}
	for _, e := range found {
		if e.Get("status").String() == "active" && e.Get("connectionType.code").String() == "dicom-wado-rs" &&
			g.cfg.IsArchive != nil && g.cfg.IsArchive(e.Get("address").String()) && e.Get("id").String() != "" {
			ep = "Endpoint/" + e.Get("id").String()
			break
		}
	}
	if ep == "" {
		body, _ := json.Marshal(EndpointResource(g.cfg.EndpointName, g.cfg.EndpointAddress))
		status, hdr, answer, err := g.do(ctx, http.MethodPost, "/Endpoint", body, nil)
		switch {
		case err != nil:
			return "", &FHIRError{What: "Endpoint create", Err: err}
		case status != http.StatusCreated && status != http.StatusOK:
			return "", &FHIRError{What: "Endpoint create", Status: status}
		}
		id, _ := written(hdr, answer)
		if id == "" {
			return "", &FHIRError{What: "Endpoint create", Status: status, Err: errors.New("no id in the answer")}
		}
		ep = "Endpoint/" + id
	}
	g.mu.Lock()
	g.endpoint = ep
	g.mu.Unlock()
	return ep, nil
}

// EndpointResource is the R4 Endpoint made for an archive: an active
// dicom-wado-rs Endpoint at address, shaped as DICOMcast makes them.
func EndpointResource(name, address string) map[string]any {
	return resource{
		"resourceType":   "Endpoint",
		"status":         "active",
		"connectionType": resource{"system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type", "code": "dicom-wado-rs"},
		"name":           name,
		"payloadType": []any{resource{
			"coding": []any{resource{"system": "http://terminology.hl7.org/CodeSystem/endpoint-payload-type", "code": "DICOM"}},
			"text":   "DICOM",
		}},
		"payloadMimeType": []any{"application/dicom"},
		"address":         address,
	}
}

// withoutVersion drops meta.versionId and meta.lastUpdated from a resource
// about to be written: the server sets them, If-Match carries the version.
func withoutVersion(body []byte) []byte {
	r, err := decode(body)
	if err != nil {
		return body
	}
	meta, ok := r["meta"].(resource)
	if !ok {
		return body
	}
	delete(meta, "versionId")
	delete(meta, "lastUpdated")
	if len(meta) == 0 {
		delete(r, "meta")
	}
	out, err := json.Marshal(r)
	if err != nil {
		return body
	}
	return out
}

// written returns the id and versionId of a written resource: from the
// answer's body, else from its Location (…/Type/id/_history/v) and ETag.
func written(hdr http.Header, body []byte) (id, version string) {
	if gjson.ValidBytes(body) {
		id, version = gjson.GetBytes(body, "id").String(), gjson.GetBytes(body, "meta.versionId").String()
	}
	if loc := hdr.Get("Location"); loc != "" && id == "" {
		if i := strings.Index(loc, "/_history/"); i >= 0 {
			if version == "" {
				version = loc[i+len("/_history/"):]
			}
			loc = loc[:i]
		}
		id = loc[strings.LastIndexByte(loc, '/')+1:]
	}
	if version == "" {
		version = strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(hdr.Get("ETag"), "W/"), `"`), `"`)
	}
	return id, version
}

// maxAnswer bounds a FHIR answer the Registrar reads.
const maxAnswer = 16 << 20

// do sends one request to the FHIR server and reads its answer.
func (g *Registrar) do(ctx context.Context, method, path string, body []byte, headers map[string]string) (int, http.Header, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, g.cfg.FHIRBase+path, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Accept", "application/fhir+json")
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
		req.Header.Set("Prefer", "return=representation")
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := g.cfg.Client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL may not go to a log
		}
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return 0, nil, nil, err
	}
	return resp.StatusCode, resp.Header, out, nil
}
