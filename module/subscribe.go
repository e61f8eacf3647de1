package module

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/tidwall/gjson"
	"go.uber.org/zap"
)

// subscriptions registers, for scale-out, FHIR rest-hook Subscriptions on
// ImagingStudy and Endpoint changes that point at this instance's notify
// route, so a change made anywhere (through another gateway instance, or
// directly in the FHIR server) drops the affected cache entries here at
// once. The cache TTL stays the fallback when a notification is lost.
type subscriptions struct {
	fhir     string
	callback string
	client   *http.Client
	logger   *zap.Logger

	mu     sync.Mutex
	ids    []string
	cancel context.CancelFunc
	done   chan struct{}
}

// subscriptionCriteria are what the gateway's caches depend on.
var subscriptionCriteria = []string{"ImagingStudy?", "Endpoint?"}

// start registers the Subscriptions in the background, retrying while the
// FHIR server is not up yet. Only the first call does anything: a config
// reload keeps the Subscriptions that an earlier config registered.
func (s *subscriptions) start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.done = make(chan struct{})
	go func() {
		defer close(s.done)
		for _, criteria := range subscriptionCriteria {
			for attempt := 0; ; attempt++ {
				id, err := s.create(ctx, criteria)
				if err == nil {
					s.mu.Lock()
					s.ids = append(s.ids, id)
					s.mu.Unlock()
					s.logger.Info("registered FHIR Subscription for cache invalidation", zap.String("criteria", criteria), zap.String("id", id), zap.String("callback", s.callback))
					break
				}
				delay := min(time.Duration(1<<min(attempt, 5))*time.Second, 30*time.Second)
				s.logger.Warn("could not register FHIR Subscription; retrying", zap.String("criteria", criteria), zap.Duration("in", delay), zap.Error(err))
				select {
				case <-ctx.Done():
					return
				case <-time.After(delay):
				}
			}
		}
	}()
}

func (s *subscriptions) create(ctx context.Context, criteria string) (string, error) {
	body, _ := json.Marshal(map[string]any{
		"resourceType": "Subscription",
		"status":       "requested",
		"reason":       "caddy-fhir-imaging: drop cached routes when ImagingStudy or Endpoint resources change",
		"criteria":     criteria,
		"channel": map[string]any{
			"type":     "rest-hook",
			"endpoint": s.callback,
			"payload":  "application/fhir+json",
		},
	})
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.fhir+"/Subscription", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/fhir+json")
	req.Header.Set("Accept", "application/fhir+json")
	resp, err := s.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		return "", fmt.Errorf("the FHIR server answered %d", resp.StatusCode)
	}
	id := gjson.GetBytes(out, "id").String()
	if id == "" {
		return "", fmt.Errorf("the FHIR server returned no Subscription id")
	}
	return id, nil
}

// stop ends the registration and deletes the Subscriptions this instance
// made, so that a stopped gateway leaves none behind. It runs when the last
// config that uses them is cleaned up.
func (s *subscriptions) stop() {
	s.mu.Lock()
	cancel := s.cancel
	s.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-s.done
	s.mu.Lock()
	ids := s.ids
	s.ids = nil
	s.mu.Unlock()
	for _, id := range ids {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		req, err := http.NewRequestWithContext(ctx, http.MethodDelete, s.fhir+"/Subscription/"+id, nil)
		if err == nil {
			if resp, err := s.client.Do(req); err == nil {
				resp.Body.Close()
			} else {
				s.logger.Warn("could not delete FHIR Subscription", zap.String("id", id), zap.Error(err))
			}
		}
		cancel()
	}
}
