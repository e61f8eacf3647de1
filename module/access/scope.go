package access

import (
	"strings"

	"github.com/fhirimaging/caddy-fhir-imaging/module/fhirjson"
)

// Context is the first part of a SMART scope: whose data it covers.
type Context string

// The SMART scope contexts.
const (
	// PatientContext scopes cover the data of the token's patient only.
	PatientContext Context = "patient"
	// UserContext scopes cover what the signed-in user may see.
	UserContext Context = "user"
	// SystemContext scopes belong to backend services with no user.
	SystemContext Context = "system"
)

// Scope is one SMART on FHIR resource scope, such as
// patient/ImagingStudy.rs (SMART v2) or user/*.read (SMART v1).
type Scope struct {
	// Context is patient, user or system.
	Context Context
	// Resource is a FHIR resource type, or "*" for all of them.
	Resource string
	// Create, Read, Update, Delete and Search are the permissions granted:
	// the letters of a v2 scope (cruds), or read (r, s), write (c, u, d)
	// and * (all) of a v1 scope.
	Create, Read, Update, Delete, Search bool
}

// ParseScope reads one resource scope. Scopes that are not resource scopes
// (openid, launch/patient, ...), that are malformed, or that carry a v2
// query (patient/Observation.rs?category=...) are reported as not ok: a
// query narrows a scope in a way only the FHIR server can evaluate, so the
// gateway grants nothing for it rather than too much.
func ParseScope(s string) (Scope, bool) {
	ctx, rest, ok := strings.Cut(s, "/")
	if !ok {
		return Scope{}, false
	}
	var sc Scope
	switch Context(ctx) {
	case PatientContext, UserContext, SystemContext:
		sc.Context = Context(ctx)
	default:
		return Scope{}, false
	}
	if strings.ContainsAny(rest, "?/ ") {
		return Scope{}, false
	}
	res, perm, ok := strings.Cut(rest, ".")
	if !ok || res == "" || perm == "" || (res != "*" && !fhirjson.IsResourceType(res)) {
		return Scope{}, false
	}
	sc.Resource = res
	switch perm {
	case "read":
		sc.Read, sc.Search = true, true
	case "write":
		sc.Create, sc.Update, sc.Delete = true, true, true
	case "*":
		sc.Create, sc.Read, sc.Update, sc.Delete, sc.Search = true, true, true, true, true
	default:
		// SMART v2: a non-empty subsequence of "cruds", in that order.
		next := 0
		for i := 0; i < len(perm); i++ {
			j := strings.IndexByte("cruds"[next:], perm[i])
			if j < 0 {
				return Scope{}, false
			}
			next += j + 1
			switch perm[i] {
			case 'c':
				sc.Create = true
			case 'r':
				sc.Read = true
			case 'u':
				sc.Update = true
			case 'd':
				sc.Delete = true
			case 's':
				sc.Search = true
			}
		}
	}
	return sc, true
}

// covers reports whether the scope applies to resource type rt.
func (s Scope) covers(rt string) bool { return s.Resource == "*" || s.Resource == rt }

// Scopes is the parsed scope string of a token.
type Scopes []Scope

// ParseScopes reads a space-separated scope string, keeping the resource
// scopes that ParseScope accepts.
func ParseScopes(s string) Scopes {
	var out Scopes
	for _, f := range strings.Fields(s) {
		if sc, ok := ParseScope(f); ok {
			out = append(out, sc)
		}
	}
	return out
}

// readsImaging reports whether a scope of context ctx lets its holder read
// and search ImagingStudy resources: patient/ImagingStudy.rs, .read, the
// wildcards *.rs and *.read, or any v2 permission set holding both r and
// s (cruds). Reading images means finding the study first, so a scope
// without search does not do.
func (ss Scopes) readsImaging(ctx Context) bool {
	for _, s := range ss {
		if s.Context == ctx && s.covers("ImagingStudy") && s.Read && s.Search {
			return true
		}
	}
	return false
}

// storesImaging reports whether the scopes let their holder create
// ImagingStudy data (STOW-RS): a user/ or system/ scope with create
// permission on ImagingStudy or *.
func (ss Scopes) storesImaging() bool {
	for _, s := range ss {
		if s.Context != PatientContext && s.covers("ImagingStudy") && s.Create {
			return true
		}
	}
	return false
}
