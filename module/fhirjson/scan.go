package fhirjson

import (
	"errors"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/fhirimaging/caddy-fhir-imaging/module/dicom"
	"github.com/fhirimaging/caddy-fhir-imaging/module/internal/jsontext"
)

// The one pass of Scan: a validating scanner reads the body once, byte by
// byte, and records where the ImagingStudies, their series, instances and
// extension arrays, and the Endpoints are, together with the base swaps
// that Rewrite makes. What it finds is read as gjson's Get would read it
// (the first of repeated keys, a value of another type as its text), so
// that the rewrite means what it meant when it was built on gjson.

// errTooComplex ends a scan whose objects name their resourceType late so
// often that reading them again would cost more than twice the body.
var errTooComplex = errors.New("fhirjson: too many objects with a late resourceType")

type scanner struct {
	s           jsontext.Scanner
	in          string // the body, as a string shared by every UID found
	d           *Document
	rules       []baseRule
	scratch     []byte
	detect      bool       // look for the string values "ImagingStudy" and "Endpoint"
	found       bool       // one was found
	rereadBytes int        // bytes read a second time for a late resourceType
	insts       []Instance // the instances of the series at hand
	slab        []Instance // where the instances of every series are kept
}

// frame is what an object's members need to know of where it sits.
type frame struct {
	container *scope // set for the elements of a contained list
	scope     *scope // the innermost resource around, or nil
}

func (p *scanner) document() error {
	if err := p.value(frame{}); err != nil {
		return err
	}
	return p.s.End()
}

// value reads any value, finding the resources in it.
func (p *scanner) value(f frame) error {
	_, err := p.valueEndpoint(f)
	return err
}

// valueEndpoint is value that returns the Endpoint the value is, if it is
// one.
func (p *scanner) valueEndpoint(f frame) (*Endpoint, error) {
	k, err := p.s.Next()
	switch k {
	case jsontext.Object:
		return p.object(f, "")
	case jsontext.Array:
		more, err := p.s.OpenArray()
		inner := frame{container: f.container, scope: f.scope}
		for more && err == nil {
			if err = p.value(inner); err == nil {
				more, err = p.s.MoreElements()
			}
		}
		return nil, err
	case jsontext.String:
		_, err := p.str()
		return nil, err
	case jsontext.Invalid:
		if err == nil {
			return nil, p.s.Errorf("unexpected character")
		}
	}
	return nil, err
}

// skip reads any value without looking for resources in it; string values
// are still rebased (and looked at by detect).
func (p *scanner) skip() error {
	p.s.SkipSpace()
	if p.s.Pos < len(p.s.In) {
		// A string, number or literal first, as skipTokens reads them:
		// most of what is skipped, and no loop to set up.
		switch c := p.s.In[p.s.Pos]; {
		case c == '"':
			_, err := p.str()
			return err
		case c == '-' || '0' <= c && c <= '9' || c == 't' || c == 'f' || c == 'n':
			_, err := p.s.Next()
			return err
		}
	}
	rebased, found := len(p.d.rebase), p.found
	if p.s.Skim(p.visit) {
		return nil
	}
	// Not valid: read it again token by token to say where and why.
	p.d.rebase, p.found = p.d.rebase[:rebased], found
	return p.skipTokens()
}

// visit records what a string value read by skip or str means: its base
// swap, and for detect whether it names a resource type looked for.
// Most strings are neither: what rules out either is checked here first.
func (p *scanner) visit(str jsontext.Str) {
	n := str.End - str.Start - 2
	if len(p.rules) > 0 && n >= 8 && p.mayRebase(str) {
		p.d.rebase, p.scratch = rebaseEdit(p.rules, p.s.In, str, p.d.rebase, p.scratch)
	}
	if p.detect && !p.found && (str.Escaped || n == len("ImagingStudy") || n == len("Endpoint")) {
		p.found = namesResource(str.Content(p.s.In), str.Escaped)
	}
}

// mayRebase reports whether the string str may start with a base of the
// rules: false rules it out from its first eight bytes.
func (p *scanner) mayRebase(str jsontext.Str) bool {
	raw := str.Content(p.s.In)
	for i := range p.rules {
		if p.rules[i].quick.MayMatch(raw, str.Escaped) {
			return true
		}
	}
	return false
}

// skipTokens is skip token by token.
func (p *scanner) skipTokens() error {
	k, err := p.s.Next()
	if err != nil {
		return err
	}
	switch k {
	case jsontext.Invalid:
		return p.s.Errorf("unexpected character")
	case jsontext.String:
		_, err = p.str()
		return err
	case jsontext.Object:
		more, err := p.s.OpenObject()
		for more && err == nil {
			if _, err = p.s.Key(); err == nil {
				if err = p.skipTokens(); err == nil {
					more, err = p.s.MoreMembers()
				}
			}
		}
		return err
	case jsontext.Array:
		more, err := p.s.OpenArray()
		for more && err == nil {
			if err = p.skipTokens(); err == nil {
				more, err = p.s.MoreElements()
			}
		}
		return err
	}
	return nil
}

// finish reads the rest of a value whose kind Next has returned (Next has
// read numbers and literals whole already).
func (p *scanner) finish(k jsontext.Kind) error {
	switch k {
	case jsontext.Number, jsontext.Literal:
		return nil
	case jsontext.Invalid:
		return p.s.Errorf("unexpected character")
	}
	return p.skip()
}

// nextObject reports whether the next value is an object, leaving it to be
// read; any other value is read (and err is what reading it gave).
func (p *scanner) nextObject() (bool, error) {
	k, err := p.s.Next()
	if err != nil {
		return false, err
	}
	if k != jsontext.Object {
		return false, p.finish(k)
	}
	return true, nil
}

// str reads a string value at Pos, records its base swap, and returns it.
func (p *scanner) str() (jsontext.Str, error) {
	str, err := p.s.ReadString()
	if err == nil {
		p.visit(str)
	}
	return str, err
}

// namesResource reports whether the string content raw is "ImagingStudy"
// or "Endpoint".
func namesResource(raw []byte, escaped bool) bool {
	if escaped {
		if len(raw) > 6*len("ImagingStudy") {
			return false
		}
		raw = jsontext.Unescape(nil, raw)
	}
	return string(raw) == "ImagingStudy" || string(raw) == "Endpoint"
}

// text reads any value and returns it as gjson's String gives it: a
// string unescaped, null as "", anything else as written. isStr reports
// whether it was a string.
func (p *scanner) text() (s string, isStr bool, err error) {
	p.s.SkipSpace()
	start := p.s.Pos
	if start < len(p.s.In) && p.s.In[start] == '"' {
		str, err := p.str()
		if err != nil {
			return "", false, err
		}
		if !str.Escaped {
			return p.in[str.Start+1 : str.End-1], true, nil
		}
		return string(jsontext.Unescape(nil, str.Content(p.s.In))), true, nil
	}
	if err := p.skip(); err != nil {
		return "", false, err
	}
	return gjson.Parse(p.in[start:p.s.Pos]).String(), false, nil
}

// walkText is text for a member of an object that is looked into: an
// object or array value is looked into for resources too.
func (p *scanner) walkText(f frame) (string, error) {
	p.s.SkipSpace()
	if p.s.Pos < len(p.s.In) && (p.s.In[p.s.Pos] == '{' || p.s.In[p.s.Pos] == '[') {
		start := p.s.Pos
		if err := p.value(f); err != nil {
			return "", err
		}
		return gjson.Parse(p.in[start:p.s.Pos]).String(), nil
	}
	s, _, err := p.text()
	return s, err
}

// typeText reads the value of a resourceType: its text, and whether it is
// an object or an array (which the first read did not look into).
func (p *scanner) typeText() (string, bool, error) {
	p.s.SkipSpace()
	c := p.s.Pos < len(p.s.In) && (p.s.In[p.s.Pos] == '{' || p.s.In[p.s.Pos] == '[')
	s, _, err := p.text()
	return s, c, err
}

// strOnly reads any value and returns it when it is a string (gjson's Str).
func (p *scanner) strOnly() (string, error) {
	s, isStr, err := p.text()
	if !isStr {
		s = ""
	}
	return s, err
}

// key reads an object key and returns it unescaped.
func (p *scanner) key() (string, error) {
	k, err := p.s.Key()
	if err != nil {
		return "", err
	}
	if !k.Escaped {
		return p.in[k.Start+1 : k.End-1], nil
	}
	return string(jsontext.Unescape(nil, k.Content(p.s.In))), nil
}

// mark is how far the lists of the document had grown, to go back to
// when an object is read again.
type mark struct{ studies, endpoints, rebase, extElems int }

func (p *scanner) mark() mark {
	d := p.d
	return mark{len(d.Studies), len(d.Endpoints), len(d.rebase), len(d.extElems)}
}

func (p *scanner) reset(m mark) {
	d := p.d
	d.Studies, d.Endpoints, d.rebase, d.extElems = d.Studies[:m.studies], d.Endpoints[:m.endpoints], d.rebase[:m.rebase], d.extElems[:m.extElems]
}

// object reads an object at Pos. rt is its resourceType when already known
// (an object read again); otherwise a first member "resourceType" tells it.
// An object whose resourceType comes after other members is read again
// from its start, once the type is known, when the type changes how it is
// read. It returns the Endpoint the object is, if it is one.
func (p *scanner) object(f frame, rt string) (*Endpoint, error) {
	start, m := p.s.Pos, p.mark()
	more, err := p.s.OpenObject()
	if err != nil || !more {
		return nil, err
	}
	known := rt != ""
	rtSeen := known
	complexRT := false // a resourceType that is an object or array, to be looked into
	var first *string  // the first key, when read already
	if !known {
		k, err := p.key()
		if err != nil {
			return nil, err
		}
		first = &k
		if k == "resourceType" {
			rtSeen = true
			if rt, complexRT, err = p.typeText(); err != nil {
				return nil, err
			}
			if more, err = p.s.MoreMembers(); err != nil {
				return nil, err
			}
			if !more && complexRT {
				return p.reread(f, rt, start, m)
			}
			if !more {
				if rt == "ImagingStudy" {
					p.d.Studies = append(p.d.Studies, &Study{})
				}
				return p.resourceEnd(rt, f, start)
			}
			first = nil
		}
	}
	switch rt {
	case "ImagingStudy":
		return nil, p.study(f, start, first)
	case "Endpoint":
		if err := p.members(first, func(string) error { return p.skip() }); err != nil {
			return nil, err
		}
		return p.resourceEnd(rt, f, start)
	}
	// Any other object: a resource of another type, a Bundle entry, an
	// element. A "resource" member takes the object's "fullUrl"; a
	// resource's contained list forms a scope.
	var sc *scope
	if rt != "" {
		sc = &scope{parent: f.scope, rt: rt}
	}
	var (
		fullURL      string
		haveFullURL  bool
		entryEPs     []*Endpoint
		lateRT       string
		haveLateRT   bool
		sawContained bool
	)
	inner := frame{scope: f.scope}
	if sc != nil {
		inner.scope = sc
	}
	err = p.members(first, func(k string) error {
		switch k {
		case "resourceType":
			if rtSeen || haveLateRT {
				break // looked into like any member
			}
			s, c, err := p.typeText()
			lateRT, haveLateRT, complexRT = s, true, complexRT || c
			return err
		case "fullUrl":
			if haveFullURL {
				break
			}
			s, err := p.walkText(inner)
			fullURL, haveFullURL = s, true
			return err
		case "id":
			if sc == nil || sc.hasID {
				break
			}
			s, err := p.walkText(inner)
			sc.id, sc.hasID = s, true
			return err
		case "resource":
			e, err := p.valueEndpoint(inner)
			if e != nil {
				entryEPs = append(entryEPs, e)
			}
			return err
		case "contained":
			sawContained = true
			if sc == nil {
				return p.value(frame{scope: f.scope})
			}
			return p.contained(sc, true)
		}
		return p.value(inner)
	})
	if err != nil {
		return nil, err
	}
	if !known && (complexRT || haveLateRT && lateRT != "" && (lateRT == "ImagingStudy" || lateRT == "Endpoint" || sawContained)) {
		// The type changes how the object is read: read it again.
		if !haveLateRT {
			lateRT = rt
		}
		return p.reread(f, lateRT, start, m)
	}
	if haveFullURL && fullURL != "" {
		for _, e := range entryEPs {
			p.d.byFullURL[stripHistory(fullURL)] = e
		}
	}
	return nil, nil
}

// reread reads the object that starts at start again, as a resource of
// type rt, after dropping what its first read recorded.
func (p *scanner) reread(f frame, rt string, start int, m mark) (*Endpoint, error) {
	p.rereadBytes += p.s.Pos - start
	if p.rereadBytes > 2*len(p.s.In)+1<<16 {
		return nil, errTooComplex
	}
	end, depth := p.s.Pos, p.s.Depth()
	p.reset(m)
	p.s.Pos = start
	e, err := p.object(f, rt)
	if err == nil && (p.s.Pos != end || p.s.Depth() != depth) {
		err = p.s.Errorf("object read again to a different end")
	}
	return e, err
}

// members reads the members of an object whose '{' has been read, and
// whose first key too when first is not nil; each value is read by fn.
func (p *scanner) members(first *string, fn func(key string) error) error {
	for {
		var k string
		if first != nil {
			k, first = *first, nil
		} else {
			var err error
			if k, err = p.key(); err != nil {
				return err
			}
		}
		if err := fn(k); err != nil {
			return err
		}
		more, err := p.s.MoreMembers()
		if err != nil || !more {
			return err
		}
	}
}

// resourceEnd finishes a resource read whole, from start: an Endpoint is
// parsed from its text and recorded.
func (p *scanner) resourceEnd(rt string, f frame, start int) (*Endpoint, error) {
	if rt != "Endpoint" {
		return nil, nil
	}
	raw := p.in[start:p.s.Pos]
	v := gjson.Parse(raw)
	e, _ := parseEndpoint(v)
	addr := v.Get("address")
	addr.Index += start
	d := p.d
	d.Endpoints = append(d.Endpoints, &EndpointSite{Endpoint: e, address: addr, in: f.container})
	ep := &d.Endpoints[len(d.Endpoints)-1].Endpoint
	if e.ID != "" {
		if _, dup := d.byID[e.ID]; !dup {
			d.byID[e.ID] = ep
		}
	}
	return ep, nil
}

// contained reads the contained list of the resource sc: its elements are
// read as resources in the scope of sc, and the Endpoints among them with an
// id are added to it. A value that is not a list is looked into for
// resources when lookInto is set, and only read otherwise.
func (p *scanner) contained(sc *scope, lookInto bool) error {
	if k, err := p.s.Next(); err != nil || k != jsontext.Array {
		if err != nil {
			return err
		}
		if !lookInto || k != jsontext.Object {
			return p.finish(k)
		}
		_, err = p.object(frame{container: sc, scope: sc.parent}, "")
		return err
	}
	more, err := p.s.OpenArray()
	for more && err == nil {
		var e *Endpoint
		if e, err = p.valueEndpoint(frame{container: sc, scope: sc}); err != nil {
			return err
		}
		if e != nil && e.ID != "" {
			if sc.ids == nil {
				sc.ids = map[string]*Endpoint{}
			}
			sc.ids[e.ID] = e
		}
		more, err = p.s.MoreElements()
	}
	return err
}

// study reads the members of an ImagingStudy (its '{' and resourceType
// read, and first, the key read next, when not nil): what routing and injection need,
// and its contained resources. Nothing else in it is looked into.
func (p *scanner) study(f frame, start int, first *string) error {
	st := &Study{scope: &scope{parent: f.scope, rt: "ImagingStudy"}, obj: objSpan{open: int32(start)}}
	p.d.Studies = append(p.d.Studies, st)
	var stu3UID string
	var haveContained bool
	err := p.members(first, func(k string) error {
		switch k {
		case "id":
			if st.scope.hasID {
				return p.skip()
			}
			s, _, err := p.text()
			st.scope.id, st.scope.hasID = s, true
			return err
		case "identifier":
			return p.elements(true, func() error {
				sys, val, err := p.identifier()
				if st.UID == "" && sys == "urn:dicom:uid" {
					st.UID = dicom.TrimOIDPrefix(strings.TrimSpace(val))
				}
				return err
			})
		case "extension":
			ext, err := p.extension()
			st.ext = ext
			return err
		case "uid": // STU3
			s, err := p.strOnly()
			stu3UID = dicom.TrimOIDPrefix(strings.TrimSpace(s))
			return err
		case "endpoint":
			refs, err := p.references(nil)
			st.refs = refs
			return err
		case "series":
			return p.elements(true, func() error {
				if isObj, err := p.nextObject(); !isObj {
					return err
				}
				se, err := p.series()
				st.Series = append(st.Series, se)
				return err
			})
		case "contained":
			if haveContained {
				return p.skip()
			}
			haveContained = true
			return p.contained(st.scope, false)
		}
		return p.skip()
	})
	if st.UID == "" {
		st.UID = stu3UID
	}
	if !dicom.ValidUID(st.UID) {
		st.UID = ""
	}
	return err
}

// elements reads an array and calls fn at each element. Like gjson's
// ForEach, an object's member values count as elements when objects is
// set; any other value is read and has none.
func (p *scanner) elements(objects bool, fn func() error) error {
	k, err := p.s.Next()
	if err != nil {
		return err
	}
	switch {
	case k == jsontext.Array:
		more, err := p.s.OpenArray()
		for more && err == nil {
			if err = fn(); err == nil {
				more, err = p.s.MoreElements()
			}
		}
		return err
	case k == jsontext.Object && objects:
		more, err := p.s.OpenObject()
		for more && err == nil {
			if _, err = p.s.Key(); err == nil {
				if err = fn(); err == nil {
					more, err = p.s.MoreMembers()
				}
			}
		}
		return err
	}
	return p.finish(k)
}

// identifier reads one Identifier and returns its system and value (the
// first of each, when a string).
func (p *scanner) identifier() (system, value string, err error) {
	if isObj, err := p.nextObject(); !isObj {
		return "", "", err
	}
	more, err := p.s.OpenObject()
	if err != nil || !more {
		return "", "", err
	}
	var haveSys, haveVal bool
	err = p.members(nil, func(k string) error {
		switch {
		case k == "system" && !haveSys:
			haveSys = true
			system, err = p.strOnly()
			return err
		case k == "value" && !haveVal:
			haveVal = true
			value, err = p.strOnly()
			return err
		}
		return p.skip()
	})
	return system, value, err
}

// references reads a list of References (a single Reference is tolerated)
// and appends their reference strings to refs.
func (p *scanner) references(refs []string) ([]string, error) {
	k, err := p.s.Next()
	if err != nil {
		return refs, err
	}
	switch k {
	case jsontext.Array:
		more, err := p.s.OpenArray()
		for more && err == nil {
			if refs, err = p.reference(refs); err == nil {
				more, err = p.s.MoreElements()
			}
		}
		return refs, err
	case jsontext.Object:
		return p.reference(refs)
	}
	return refs, p.finish(k)
}

// reference reads one Reference and appends its reference string.
func (p *scanner) reference(refs []string) ([]string, error) {
	if isObj, err := p.nextObject(); !isObj {
		return refs, err
	}
	more, err := p.s.OpenObject()
	if err != nil || !more {
		return refs, err
	}
	var ref string
	have := false
	err = p.members(nil, func(k string) error {
		if k != "reference" || have {
			return p.skip()
		}
		have = true
		var err error
		ref, _, err = p.text()
		return err
	})
	if have && ref != "" {
		refs = append(refs, ref)
	}
	return refs, err
}

// series reads one series object at Pos.
func (p *scanner) series() (*Series, error) {
	se := &Series{}
	start := p.s.Pos
	more, err := p.s.OpenObject()
	se.obj = objSpan{open: int32(start), empty: !more}
	if err != nil || !more {
		return se, err
	}
	p.insts = p.insts[:0]
	err = p.members(nil, func(k string) error {
		switch k {
		case "uid":
			s, err := p.strOnly()
			se.UID = validUID(s)
			return err
		case "endpoint":
			refs, err := p.references(nil)
			se.refs = refs
			return err
		case "extension":
			ext, err := p.extension()
			se.ext = ext
			return err
		case "instance":
			return p.elements(true, func() error {
				if isObj, err := p.nextObject(); !isObj {
					return err
				}
				in, err := p.instance()
				p.insts = append(p.insts, in)
				return err
			})
		}
		return p.skip()
	})
	se.Instances = p.keep(p.insts)
	p.d.nInstances += len(se.Instances)
	return se, err
}

// keep copies the instances of a series into the slab they all share, so
// that their number costs no allocations of its own.
func (p *scanner) keep(list []Instance) []Instance {
	if len(list) == 0 {
		return nil
	}
	if cap(p.slab)-len(p.slab) < len(list) {
		p.slab = make([]Instance, 0, max(len(list), 2*cap(p.slab), 256))
	}
	start := len(p.slab)
	p.slab = append(p.slab, list...)
	return p.slab[start:len(p.slab):len(p.slab)]
}

// instance reads one instance object at Pos. There are thousands in a
// searchset, so its members are read in a loop of its own, not through
// members.
func (p *scanner) instance() (Instance, error) {
	var in Instance
	start := p.s.Pos
	more, err := p.s.OpenObject()
	in.obj = objSpan{open: int32(start), empty: !more}
	for more && err == nil {
		var k string
		if k, err = p.key(); err != nil {
			break
		}
		switch k {
		case "uid":
			var s string
			s, err = p.strOnly()
			in.UID = validUID(s)
		case "extension":
			in.ext, err = p.extension()
		default:
			err = p.skip()
		}
		if err == nil {
			more, err = p.s.MoreMembers()
		}
	}
	return in, err
}

// extension reads the value of an "extension" member and records where its
// elements and their urls are.
func (p *scanner) extension() (extSpan, error) {
	k, err := p.s.Next()
	if err != nil {
		return extSpan{}, err
	}
	if k != jsontext.Array {
		return extSpan{kind: extNotArray}, p.finish(k)
	}
	x := extSpan{kind: extArray, first: int32(len(p.d.extElems))}
	more, err := p.s.OpenArray()
	for more && err == nil {
		p.s.SkipSpace()
		el := extElem{start: p.s.Pos}
		if el.url, err = p.extensionURL(); err != nil {
			return x, err
		}
		el.end = p.s.Pos
		p.d.extElems = append(p.d.extElems, el)
		x.n++
		more, err = p.s.MoreElements()
	}
	x.close = int32(p.s.Pos - 1)
	return x, err
}

// extensionURL reads one element of an extension array and returns its
// "url" (the first one, as gjson's String gives it).
func (p *scanner) extensionURL() (string, error) {
	if isObj, err := p.nextObject(); !isObj {
		return "", err
	}
	more, err := p.s.OpenObject()
	if err != nil || !more {
		return "", err
	}
	var url string
	have := false
	err = p.members(nil, func(k string) error {
		if k != "url" || have {
			return p.skip()
		}
		have = true
		var err error
		url, _, err = p.text()
		return err
	})
	return url, err
}
