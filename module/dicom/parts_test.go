package dicom

import (
	"bytes"
	"fmt"
	"io"
	"math/rand"
	"mime/multipart"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

const bnd = "ac92748d-0d18-4966"

// orthancFrames is a multipart answer to a frames request the way
// Orthanc's DICOMweb plugin writes it: each part names its frame by the
// archive's own URL.
func orthancFrames(frames ...string) string {
	var b strings.Builder
	for i, f := range frames {
		b.WriteString("--" + bnd + "\r\n")
		b.WriteString("Content-Location: http://archive:8042/dicom-web/studies/1.2/series/3/instances/4/frames/" + string(rune('1'+i)) + "\r\n")
		b.WriteString("Content-Type: application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1\r\n")
		b.WriteString("MIME-Version: 1.0\r\n\r\n")
		b.WriteString(f)
		b.WriteString("\r\n")
	}
	b.WriteString("--" + bnd + "--")
	return b.String()
}

// rebaseParts writes in to a PartRebaser in chunks of the given size.
func rebaseParts(t *testing.T, in string, rules []Rebase, chunk int) string {
	t.Helper()
	return rebasePartsKeeping(t, in, rules, chunk, nil)
}

// rebasePartsKeeping is rebaseParts with a KeepLength decision (none: nil).
func rebasePartsKeeping(t *testing.T, in string, rules []Rebase, chunk int, decide func(bool) bool) string {
	t.Helper()
	var out bytes.Buffer
	u, err := NewURLRebaser(rules)
	if err != nil {
		t.Fatal(err)
	}
	p := NewPartRebaser(&out, bnd, u)
	if decide != nil {
		p.KeepLength(func(changes bool) bool {
			if out.Len() != 0 {
				t.Fatalf("%d bytes written before the decision", out.Len())
			}
			return decide(changes)
		})
	}
	for b := []byte(in); len(b) > 0; {
		n := min(chunk, len(b))
		if k, err := p.Write(b[:n]); err != nil || k != n {
			t.Fatalf("Write = %d, %v", k, err)
		}
		b = b[n:]
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func TestPartRebaser(t *testing.T) {
	in := orthancFrames("\x00\x01\r\n--not-the-boundary\r\n\x02", strings.Repeat("\xff", 3000))
	want := strings.ReplaceAll(in, "http://archive:8042/dicom-web/", "https://gw.example/wado-rs/")
	if want == in {
		t.Fatal("fixture has nothing to rebase")
	}
	for _, chunk := range []int{1, 2, 3, 7, 19, 64, 4096, 1 << 20} {
		if got := rebaseParts(t, in, fwd, chunk); got != want {
			t.Errorf("chunks of %d:\n got %q\nwant %q", chunk, got, want)
		}
	}
	// What it writes is still the same multipart body, part for part.
	mr := multipart.NewReader(strings.NewReader(want), bnd)
	for i := 0; ; i++ {
		part, err := mr.NextPart()
		if err == io.EOF {
			if i != 2 {
				t.Fatalf("%d parts, want 2", i)
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if loc := part.Header.Get("Content-Location"); !strings.HasPrefix(loc, gateway+"/studies/1.2/") {
			t.Errorf("part %d: Content-Location %q", i, loc)
		}
	}
}

// Parts that announce their length (Orthanc's bulk data and instances do)
// are passed without a search through them; the next part is still found.
func TestPartRebaserAnnouncedLengths(t *testing.T) {
	var b strings.Builder
	for i, body := range []string{"\r\n--" + bnd + "\r\nnot a part", strings.Repeat("x", 5000), ""} {
		fmt.Fprintf(&b, "--%s\r\nContent-Length: %d\r\nContent-Location: http://archive:8042/dicom-web/studies/1.2/bulk/%d\r\n\r\n%s\r\n", bnd, len(body), i, body)
	}
	b.WriteString("--" + bnd + "--\r\n")
	in := b.String()
	want := strings.ReplaceAll(in, "http://archive:8042/dicom-web/", "https://gw.example/wado-rs/")
	for _, chunk := range []int{1, 4, 100, 1 << 20} {
		if got := rebaseParts(t, in, fwd, chunk); got != want {
			t.Errorf("chunks of %d:\n got %q\nwant %q", chunk, got, want)
		}
	}
}

// An answer whose Content-Length is still to go keeps its length when its
// first part needs nothing: a later URL header is rebased in place where
// it fits, else blanked; never left with the archive's address.
func TestPartRebaserKeepLength(t *testing.T) {
	part := func(loc string) string {
		if loc == "" {
			return "--" + bnd + "\r\nContent-Type: application/dicom\r\n\r\nDICM\r\n"
		}
		return "--" + bnd + "\r\nContent-Type: application/dicom\r\nContent-Location: " + loc + "\r\n\r\nDICM\r\n"
	}
	long := "http://archive:8042/dicom-web/studies/1.2"
	in := part("") + part(long) + "--" + bnd + "--"
	keep := func(changes bool) bool { return !changes }
	for _, tt := range []struct {
		name, to, want string
	}{
		{"shorter: padded", "https://gw/rs", part("") + part("https://gw/rs/studies/1.2"+strings.Repeat(" ", len(long)-len("https://gw/rs/studies/1.2"))) + "--" + bnd + "--"},
		{"longer: blanked", "https://gateway.example.org/public/wado-rs", strings.Replace(in, "Content-Location: "+long, "X-Omitted:"+strings.Repeat(" ", len("Content-Location: "+long)-10), 1)},
	} {
		for _, chunk := range []int{1, 7, 1 << 20} {
			got := rebasePartsKeeping(t, in, []Rebase{{From: archive, To: tt.to}}, chunk, keep)
			if got != tt.want || len(got) != len(in) {
				t.Errorf("%s, chunks of %d:\n got %q\nwant %q", tt.name, chunk, got, tt.want)
			}
		}
	}
	// A first part that needs rebasing settles for a new length.
	var decided []bool
	in = part(long) + "--" + bnd + "--"
	got := rebasePartsKeeping(t, in, fwd, 3, func(changes bool) bool { decided = append(decided, changes); return !changes })
	if want := strings.ReplaceAll(in, archive, gateway); got != want || fmt.Sprint(decided) != "[true]" {
		t.Errorf("got %q (decisions %v), want %q", got, decided, want)
	}
	// A body with no part at all is decided at its end, unchanged.
	decided = nil
	if got := rebasePartsKeeping(t, "no parts", fwd, 2, func(changes bool) bool { decided = append(decided, changes); return !changes }); got != "no parts" || fmt.Sprint(decided) != "[false]" {
		t.Errorf("got %q, decisions %v", got, decided)
	}
}

func TestPartRebaserLeavesTheRestAlone(t *testing.T) {
	tests := map[string]string{
		"no rule matches": strings.ReplaceAll(orthancFrames("abc"), "archive:8042", "elsewhere:8042"),
		"preamble and epilogue": "a preamble\r\n--" + bnd + "\r\nContent-Type: text/plain\r\n\r\nbody\r\n--" + bnd +
			"--\r\nContent-Location: http://archive:8042/dicom-web/epilogue\r\n\r\n",
		"no headers":          "--" + bnd + "\r\n\r\nbody\r\n--" + bnd + "--\r\n",
		"truncated header":    "--" + bnd + "\r\nContent-Location: http://archive:8042/dicom-web/x",
		"truncated delimiter": "--" + bnd + "\r\n\r\nbody\r\n--" + bnd[:5],
		"not multipart":       "Content-Location: http://archive:8042/dicom-web/x\r\n\r\n",
		"empty":               "",
	}
	for name, in := range tests {
		for _, chunk := range []int{1, 5, 1 << 20} {
			if got := rebaseParts(t, in, fwd, chunk); got != in {
				t.Errorf("%s, chunks of %d:\n got %q\nwant %q", name, chunk, got, in)
			}
		}
	}
}

func TestPartRebaserHeaderForms(t *testing.T) {
	in := "--" + bnd + "\r\ncontent-location:\thttp://ARCHIVE:8042/dicom-web/studies/1.2 \r\n" +
		"Location: http://archive:8042/dicom-web\r\nX-Other: http://archive:8042/dicom-web/x\r\n\r\nbody\r\n--" + bnd + "--"
	want := "--" + bnd + "\r\ncontent-location:\thttps://gw.example/wado-rs/studies/1.2 \r\n" +
		"Location: https://gw.example/wado-rs\r\nX-Other: http://archive:8042/dicom-web/x\r\n\r\nbody\r\n--" + bnd + "--"
	if got := rebaseParts(t, in, fwd, 3); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestPartRebaserBadRule(t *testing.T) {
	if _, err := NewURLRebaser([]Rebase{{From: "archive/dicom-web", To: gateway}}); err == nil {
		t.Error("a rule without a scheme was accepted")
	}
	if _, err := ParseFroms(archive, "archive/dicom-web"); err == nil {
		t.Error("ParseFroms accepted a base without a scheme")
	}
}

// FuzzPartRebaser checks that how a body is cut into writes never changes
// what comes out, and that a body with no archive URL in it comes out as
// it went in.
func FuzzPartRebaser(f *testing.F) {
	f.Add([]byte(orthancFrames("\x00\r\n-", "x")), uint8(3))
	f.Add([]byte("--"+bnd+"\r\n\r\n--"+bnd+"--"), uint8(1))
	f.Add([]byte("\r\n--"+bnd[:4]+"\r\n--"+bnd+"\r\nLocation: http://archive:8042/dicom-web/q\r\n\r\n"), uint8(2))
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		whole := rebaseParts(t, string(in), fwd, len(in)+1)
		if got := rebaseParts(t, string(in), fwd, int(chunk)%37+1); got != whole {
			t.Fatalf("chunks of %d: %q, whole: %q", int(chunk)%37+1, got, whole)
		}
		if !bytes.Contains(bytes.ToLower(in), []byte("archive:8042")) && whole != string(in) {
			t.Fatalf("changed without an archive URL: %q -> %q", in, whole)
		}
		// Keeping the length: it is kept, however the writes fall.
		fixed := func(bool) bool { return true }
		kept := rebasePartsKeeping(t, string(in), fwd, len(in)+1, fixed)
		if len(kept) != len(in) {
			t.Fatalf("KeepLength: %d bytes out of %d: %q -> %q", len(kept), len(in), in, kept)
		}
		if got := rebasePartsKeeping(t, string(in), fwd, int(chunk)%37+1, fixed); got != kept {
			t.Fatalf("KeepLength, chunks of %d: %q, whole: %q", int(chunk)%37+1, got, kept)
		}
	})
}

// BenchmarkPartRebaser streams a 64 MiB single-part answer of random
// pixel data in the proxy's 32 KiB writes; its bytes per second against
// BenchmarkPartRebaserBaseline (the same writes straight to the writer) is
// what rebasing costs a large retrieve.
func BenchmarkPartRebaser(b *testing.B)         { benchParts(b, benchBody(), true) }
func BenchmarkPartRebaserBaseline(b *testing.B) { benchParts(b, benchBody(), false) }

// BenchmarkPartRebaserAnnounced: the same part announcing its length, as
// Orthanc's instance and bulk data parts do.
func BenchmarkPartRebaserAnnounced(b *testing.B) { benchParts(b, benchAnnounced(), true) }

var benchAnnounced = sync.OnceValue(func() []byte {
	body := benchBody()
	i := bytes.Index(body, []byte("\r\n\r\n"))
	n := bytes.LastIndex(body, []byte("\r\n--"+bnd)) - (i + 4)
	return slices.Concat(body[:i], []byte("\r\nContent-Length: "+strconv.Itoa(n)), body[i:])
})

var benchBody = sync.OnceValue(func() []byte {
	pixels := make([]byte, 64<<20)
	rand.New(rand.NewSource(1)).Read(pixels)
	return []byte(orthancFrames(string(pixels)))
})

func benchParts(b *testing.B, body []byte, rebase bool) {
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		var w io.Writer = io.Discard
		var p *PartRebaser
		if rebase {
			u, _ := NewURLRebaser(fwd)
			p = NewPartRebaser(io.Discard, bnd, u)
			w = p
		}
		for off := 0; off < len(body); off += 32 << 10 {
			w.Write(body[off:min(off+32<<10, len(body))])
		}
		if p != nil {
			p.Close()
		}
	}
}
