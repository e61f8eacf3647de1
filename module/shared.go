package module

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// What must outlive a config reload lives here, in a caddy.UsagePool, as
// caddy-ratelimit and reverse_proxy's upstream hosts do: the caches (study
// routes, Endpoints, archive membership, token decisions) and the FHIR
// Subscriptions. Each is kept under a key made of the settings it depends
// on, so a reload that changes something else keeps it, and one that
// changes its settings makes a new one. It goes (and the Subscriptions are
// deleted) when the last config that uses it is cleaned up. Everything kept
// is soft: the FHIR server and the archives remain the source of truth.

var sharedPool = caddy.NewUsagePool()

// shared is one pooled value and the configs (apps) that use it, newest
// last: the newest gets its metrics, so that counters follow the config
// load whose registry is being scraped.
type shared[T any] struct {
	value  T
	stop   func() // run when the last user is gone; may be nil
	mu     sync.Mutex
	users  []*App
	newest atomic.Pointer[App]
}

// Destruct implements caddy.Destructor: the last config that used the
// value is gone.
func (s *shared[T]) Destruct() error {
	if s.stop != nil {
		s.stop()
	}
	return nil
}

// share returns the value kept under key for app a, making it with build
// when no config holds it yet (build gets the way to the newest user, for
// callbacks), and arranges for a's Cleanup to let go of it.
func share[T any](a *App, key string, build func(newest func() *App) (T, func(), error)) (T, error) {
	v, _, err := sharedPool.LoadOrNew(key, func() (caddy.Destructor, error) {
		s := new(shared[T])
		val, stop, err := build(s.newest.Load)
		if err != nil {
			return nil, err
		}
		s.value, s.stop = val, stop
		return s, nil
	})
	if err != nil {
		var zero T
		return zero, err
	}
	s := v.(*shared[T])
	s.mu.Lock()
	s.users = append(s.users, a)
	s.newest.Store(a)
	s.mu.Unlock()
	a.releases = append(a.releases, func() {
		s.mu.Lock()
		s.users = slices.DeleteFunc(s.users, func(u *App) bool { return u == a })
		if len(s.users) > 0 {
			s.newest.Store(s.users[len(s.users)-1])
		} else {
			s.newest.Store(nil)
		}
		s.mu.Unlock()
		if _, err := sharedPool.Delete(key); err != nil {
			a.logger.Error("releasing state kept across reloads", zap.String("key", key[:strings.IndexByte(key, ':')]), zap.Error(err))
		}
	})
	return s.value, nil
}

// poolKey makes a pool key of a kind and the settings a value depends on.
// Settings are hashed, so that a secret among them is never kept as such.
func poolKey(kind string, settings ...any) string {
	h := sha256.New()
	for _, s := range settings {
		fmt.Fprintf(h, "%v\x00", s)
	}
	return kind + ":" + hex.EncodeToString(h.Sum(nil))
}

// addressKey is the archive address map in a stable form, for keys.
func addressKey(addresses map[string]string) string {
	keys := make([]string, 0, len(addresses))
	for addr, name := range addresses {
		keys = append(keys, addr+"="+name)
	}
	sort.Strings(keys)
	return strings.Join(keys, ",")
}

// credentialsKey is what identifies the gateway's own client credentials.
func credentialsKey(c *ClientCredentials) string {
	if c == nil {
		return ""
	}
	repl := caddy.NewReplacer()
	return c.TokenURL + "|" + repl.ReplaceAll(c.ClientID, "") + "|" + repl.ReplaceAll(c.ClientSecret, "") + "|" + strings.Join(c.Scopes, " ")
}

func durationKey(d caddy.Duration) string { return time.Duration(d).String() }
