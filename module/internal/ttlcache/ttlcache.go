// Package ttlcache is the gateway's in-memory cache: a size-bounded map whose
// entries expire, evicting the least recently used entry when full, and a
// way to collapse concurrent fetches of one key into one. Everything it
// holds is soft: the FHIR server and the archives stay the source of truth,
// and a miss only costs a look-up.
package ttlcache

import (
	"container/list"
	"sync"
	"time"
)

// Cache is a size-bounded map whose entries expire. When full, a new key
// evicts the least recently used entry, in constant time: an unbounded
// cache, or one whose eviction scans it, is a memory leak or a denial of
// service driven by client input. It is safe for concurrent use.
type Cache[V any] struct {
	mu    sync.Mutex
	max   int
	items map[string]*list.Element // of *item[V]
	lru   list.List                // front: most recently used
	now   func() time.Time
}

type item[V any] struct {
	key   string
	entry Entry[V]
}

// Entry is a cached value and the time it expires.
type Entry[V any] struct {
	Value   V
	Expires time.Time
}

// New returns a cache of at most size entries (at least 1) whose clock is
// now (time.Now when nil).
func New[V any](size int, now func() time.Time) *Cache[V] {
	if now == nil {
		now = time.Now
	}
	return &Cache[V]{max: max(size, 1), items: map[string]*list.Element{}, now: now}
}

// Get returns the unexpired value of key.
func (c *Cache[V]) Get(key string) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		var zero V
		return zero, false
	}
	it := el.Value.(*item[V])
	if !c.now().Before(it.entry.Expires) {
		c.remove(el)
		var zero V
		return zero, false
	}
	c.lru.MoveToFront(el)
	return it.entry.Value, true
}

// Put stores v under key for ttl; a ttl that is not positive stores
// nothing.
func (c *Cache[V]) Put(key string, v V, ttl time.Duration) {
	if ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := Entry[V]{Value: v, Expires: c.now().Add(ttl)}
	if el, ok := c.items[key]; ok {
		el.Value.(*item[V]).entry = e
		c.lru.MoveToFront(el)
		return
	}
	if len(c.items) >= c.max {
		c.remove(c.lru.Back())
	}
	c.items[key] = c.lru.PushFront(&item[V]{key: key, entry: e})
}

func (c *Cache[V]) remove(el *list.Element) {
	c.lru.Remove(el)
	delete(c.items, el.Value.(*item[V]).key)
}

// Delete drops key.
func (c *Cache[V]) Delete(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		c.remove(el)
	}
}

// Purge drops every entry.
func (c *Cache[V]) Purge() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.items = map[string]*list.Element{}
	c.lru.Init()
}

// Len returns the number of entries, expired ones not yet dropped included.
func (c *Cache[V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.items)
}

// Snapshot returns the unexpired entries.
func (c *Cache[V]) Snapshot() map[string]Entry[V] {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	out := make(map[string]Entry[V], len(c.items))
	for k, el := range c.items {
		if e := el.Value.(*item[V]).entry; now.Before(e.Expires) {
			out[k] = e
		}
	}
	return out
}

// Flights collapses concurrent fetches of the same key into one. The zero
// value is ready to use.
type Flights[V any] struct {
	mu sync.Mutex
	m  map[string]*Flight[V]
}

// Flight is one fetch in progress. Done is closed once Value and Err hold
// its result.
type Flight[V any] struct {
	Done  chan struct{}
	Value V
	Err   error
}

// Join returns the flight for key and whether the caller leads it; a
// leader must fetch and then call Land.
func (f *Flights[V]) Join(key string) (*Flight[V], bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[string]*Flight[V]{}
	}
	if fl, ok := f.m[key]; ok {
		return fl, false
	}
	fl := &Flight[V]{Done: make(chan struct{})}
	f.m[key] = fl
	return fl, true
}

// Land publishes the result of a flight that the caller leads.
func (f *Flights[V]) Land(key string, fl *Flight[V], v V, err error) {
	fl.Value, fl.Err = v, err
	f.mu.Lock()
	delete(f.m, key)
	f.mu.Unlock()
	close(fl.Done)
}
