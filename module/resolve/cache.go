package resolve

import (
	"sync"
	"time"
)

// cache is a size-bounded map whose entries expire. It is safe for
// concurrent use. When full, it first drops expired entries and then, if
// still full, arbitrary ones: entries are cheap to fetch again, and an
// unbounded cache is a memory leak driven by client input.
type cache[V any] struct {
	mu      sync.Mutex
	max     int
	entries map[string]cacheEntry[V]
	now     func() time.Time
}

type cacheEntry[V any] struct {
	value   V
	expires time.Time
}

func newCache[V any](max int, now func() time.Time) *cache[V] {
	return &cache[V]{max: max, entries: map[string]cacheEntry[V]{}, now: now}
}

func (c *cache[V]) get(key string) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok || !c.now().Before(e.expires) {
		var zero V
		return zero, false
	}
	return e.value, true
}

func (c *cache[V]) put(key string, v V, ttl time.Duration) {
	if ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, exists := c.entries[key]; !exists && len(c.entries) >= c.max {
		now := c.now()
		for k, e := range c.entries {
			if !now.Before(e.expires) {
				delete(c.entries, k)
			}
		}
		for k := range c.entries {
			if len(c.entries) < c.max {
				break
			}
			delete(c.entries, k)
		}
	}
	c.entries[key] = cacheEntry[V]{value: v, expires: c.now().Add(ttl)}
}

func (c *cache[V]) delete(key string) {
	c.mu.Lock()
	delete(c.entries, key)
	c.mu.Unlock()
}

func (c *cache[V]) purge() {
	c.mu.Lock()
	c.entries = map[string]cacheEntry[V]{}
	c.mu.Unlock()
}

func (c *cache[V]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// flights collapses concurrent fetches of the same key into one.
type flights[V any] struct {
	mu sync.Mutex
	m  map[string]*flight[V]
}

type flight[V any] struct {
	done  chan struct{}
	value V
	err   error
}

// join returns the flight for key and whether the caller leads it (and so
// must fetch and then call land).
func (f *flights[V]) join(key string) (*flight[V], bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[string]*flight[V]{}
	}
	if fl, ok := f.m[key]; ok {
		return fl, false
	}
	fl := &flight[V]{done: make(chan struct{})}
	f.m[key] = fl
	return fl, true
}

// land publishes the result of a flight that the caller leads.
func (f *flights[V]) land(key string, fl *flight[V], v V, err error) {
	fl.value, fl.err = v, err
	f.mu.Lock()
	delete(f.m, key)
	f.mu.Unlock()
	close(fl.done)
}

// snapshot returns the unexpired entries with their expiry times.
func (c *cache[V]) snapshot() map[string]cacheEntry[V] {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	out := make(map[string]cacheEntry[V], len(c.entries))
	for k, e := range c.entries {
		if now.Before(e.expires) {
			out[k] = e
		}
	}
	return out
}
