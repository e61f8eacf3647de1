package ttlcache

import (
	"strconv"
	"sync"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestExpiry(t *testing.T) {
	clk := &clock{t: time.Unix(1000, 0)}
	c := New[int](10, clk.now)
	c.Put("a", 1, time.Second)
	c.Put("never", 2, 0)
	if v, ok := c.Get("a"); !ok || v != 1 {
		t.Fatalf("Get(a) = %v, %v", v, ok)
	}
	if _, ok := c.Get("never"); ok {
		t.Fatal("a zero ttl stored an entry")
	}
	clk.t = clk.t.Add(time.Second)
	if _, ok := c.Get("a"); ok {
		t.Fatal("an entry outlived its ttl")
	}
	if c.Len() != 0 {
		t.Fatalf("an expired entry was kept after Get: %d entries", c.Len())
	}
}

func TestEvictsLeastRecentlyUsed(t *testing.T) {
	c := New[int](3, nil)
	for i := range 3 {
		c.Put(strconv.Itoa(i), i, time.Hour)
	}
	c.Get("0") // 1 is now the least recently used
	c.Put("3", 3, time.Hour)
	if _, ok := c.Get("1"); ok {
		t.Fatal("the least recently used entry was kept")
	}
	for _, k := range []string{"0", "2", "3"} {
		if _, ok := c.Get(k); !ok {
			t.Fatalf("entry %s was evicted", k)
		}
	}
	c.Put("0", 10, time.Hour) // an update does not grow the cache
	if c.Len() != 3 {
		t.Fatalf("Len = %d, want 3", c.Len())
	}
	if v, _ := c.Get("0"); v != 10 {
		t.Fatalf("updated value = %d", v)
	}
	c.Delete("0")
	if _, ok := c.Get("0"); ok {
		t.Fatal("Delete kept the entry")
	}
	c.Purge()
	if c.Len() != 0 || len(c.Snapshot()) != 0 {
		t.Fatal("Purge kept entries")
	}
}

func TestSnapshotSkipsExpired(t *testing.T) {
	clk := &clock{t: time.Unix(1000, 0)}
	c := New[string](10, clk.now)
	c.Put("short", "s", time.Second)
	c.Put("long", "l", time.Minute)
	clk.t = clk.t.Add(2 * time.Second)
	snap := c.Snapshot()
	if len(snap) != 1 || snap["long"].Value != "l" || !snap["long"].Expires.Equal(time.Unix(1060, 0)) {
		t.Fatalf("Snapshot = %v", snap)
	}
}

func TestFlightsCollapse(t *testing.T) {
	var f Flights[int]
	leader, lead := f.Join("k")
	if !lead {
		t.Fatal("the first caller does not lead")
	}
	var wg sync.WaitGroup
	got := make([]int, 5)
	for i := range got {
		fl, lead := f.Join("k")
		if lead {
			t.Fatal("a second caller leads")
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-fl.Done
			got[i] = fl.Value
		}()
	}
	f.Land("k", leader, 42, nil)
	wg.Wait()
	for _, v := range got {
		if v != 42 {
			t.Fatalf("a follower saw %d", v)
		}
	}
	if _, lead := f.Join("k"); !lead {
		t.Fatal("a landed flight is still joined")
	}
}

// BenchmarkPutFull measures a new key on a full cache: eviction must not
// grow with the cache's size.
func BenchmarkPutFull(b *testing.B) {
	for _, size := range []int{10_000, 100_000} {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			c := New[int](size, nil)
			for i := range size {
				c.Put(strconv.Itoa(i), i, time.Hour)
			}
			keys := make([]string, b.N)
			for i := range keys {
				keys[i] = "n" + strconv.Itoa(i)
			}
			b.ResetTimer()
			for i := range b.N {
				c.Put(keys[i], i, time.Hour)
			}
		})
	}
}
