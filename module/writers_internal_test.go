package module

import (
	"slices"
	"testing"
)

// countingWriter records the size of each write it gets.
type countingWriter struct{ sizes []int }

func (c *countingWriter) Write(p []byte) (int, error) {
	c.sizes = append(c.sizes, len(p))
	return len(p), nil
}

// TestOutBufferGathers: the writes a stream makes reach the client gathered
// up to 64 KiB, a write of more than half of that goes out as it is, and a
// flush sends what is gathered.
func TestOutBufferGathers(t *testing.T) {
	var c countingWriter
	b := &outBuffer{buf: make([]byte, 0, 64<<10), w: &c}
	for i := 0; i < 4; i++ {
		b.Write(make([]byte, 30<<10))
	}
	if want := []int{60 << 10}; !slices.Equal(c.sizes, want) {
		t.Errorf("four 30 KiB writes reached the client as %v, want %v and 60 KiB gathered", c.sizes, want)
	}
	b.Write(make([]byte, 40<<10)) // flushes the 60 KiB gathered, then goes out itself
	if want := []int{60 << 10, 60 << 10, 40 << 10}; !slices.Equal(c.sizes, want) {
		t.Errorf("after a 40 KiB write: %v, want %v", c.sizes, want)
	}
	b.Write(make([]byte, 100))
	b.Flush()
	b.Flush() // nothing more
	if want := []int{60 << 10, 60 << 10, 40 << 10, 100}; !slices.Equal(c.sizes, want) {
		t.Errorf("after a flush: %v, want %v", c.sizes, want)
	}
}
