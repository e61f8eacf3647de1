// Soak: SOAK_CLIENTS (200) concurrent clients read FHIR and DICOMweb through the
// gateway for SOAK_SECONDS (60) (integration/soak.mjs has the mix of requests);
// no request may fail, and the gateway's process must come back afterwards:
// goroutines, open fds and memory from its Prometheus metrics
// (stack.Caddyfile serves them on 127.0.0.1:$GATEWAY_METRICS_PORT, 8001).
// HAPI run only (FHIR_SERVER=hapi): one soak per `make test` is enough, and HAPI
// is the FHIR server the gateway is built for. Read-only: it changes nothing
// the other tests see.
//
//   SOAK_SECONDS=600 E2E_SERVERS=hapi E2E_TESTS="e2e/soak.test.mjs" integration/run-e2e.sh
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { soak, formatSummary } from '../soak.mjs';
import { FHIR_SERVER, GATEWAY, manifest, skip as noStack } from './lib/env.mjs';

const SECONDS = Number(process.env.SOAK_SECONDS || 60);
const CLIENTS = Number(process.env.SOAK_CLIENTS || 200);
const METRICS = process.env.GATEWAY_METRICS_URL ||
  `http://127.0.0.1:${process.env.GATEWAY_METRICS_PORT || 8001}/metrics`;
const skip = noStack || (FHIR_SERVER !== 'hapi'
  ? `the soak runs in the hapi run only (FHIR_SERVER=${FHIR_SERVER})` : false);

const MB = 2 ** 20;

// How far above the baseline goroutines and open fds may stay once the load is over.
// During the load there is a goroutine and an fd per client connection (200) and
// per upstream connection (hundreds more). Afterwards our connections are closed,
// but the gateway's transports keep idle connections to the upstreams (up to 32 per
// upstream for reverse_proxy; 2 goroutines and an fd each) until the upstream's idle
// timeout closes them: HAPI's (Jetty) after 30 s, hence the wait of up to 60 s below
// (measured: ~34 idle connections to HAPI 5 s after the load, none after ~27 s).
// What is left then is the baseline plus a little: +20 goroutines or 10% (timers,
// the odd connection of the caches' look-ups), +20 fds. A goroutine or fd left behind
// per request or per connection would be thousands here, and never goes away.
const gSlack = (before) => Math.max(20, Math.ceil(before.goroutines * 0.1));
const FD_SLACK = 20;
const back = (before, h) => h.goroutines <= before.goroutines + gSlack(before) && h.fds <= before.fds + FD_SLACK;

test(`[${FHIR_SERVER}] soak: ${CLIENTS} clients for ${SECONDS}s of FHIR and DICOMweb reads: no errors, goroutines/fds/memory come back`,
  { skip, timeout: (SECONDS + 240) * 1000 }, async (t) => {
    const r = await soak({
      gateway: GATEWAY, metricsUrl: METRICS, clients: CLIENTS, seconds: SECONDS, manifest,
      // Generous: the gateway, HAPI, both Orthancs and this load generator share 2 cores,
      // so a slow answer is expected; any answer other than 200 is still an error.
      timeoutMs: 30000,
      settleSeconds: 5, settled: back, maxSettleSeconds: 60,
      log: (l) => process.stderr.write(`[soak] ${l}\n`),
    });
    t.diagnostic(formatSummary(r));
    const { before, peak, after } = r.health;

    assert.ok(r.requests > 0, 'requests were made');
    assert.equal(r.errors + r.warmupErrors, 0, `no request failed; by kind and status: ${JSON.stringify(r.errorCounts)}; ` +
      `errors per second of the load: ${JSON.stringify(r.errorSeconds)}; samples: ${JSON.stringify(r.errorSamples.slice(0, 8))}`);
    for (const [k, s] of Object.entries(r.kinds)) assert.ok(s.requests > 0, `${k}: at least one request`);
    assert.ok(r.verified > 0, 'some bodies were verified');
    assert.ok(r.health.during.length > 0 && peak.goroutines != null, 'the gateway\'s metrics were sampled during the load');

    const waited = `${after.at.toFixed(0)}s after the load`;
    assert.ok(after.goroutines <= before.goroutines + gSlack(before),
      `goroutines back near the baseline ${waited}: before ${before.goroutines}, peak ${peak.goroutines}, after ${after.goroutines} (allowed +${gSlack(before)})`);
    assert.ok(after.fds <= before.fds + FD_SLACK,
      `open fds back near the baseline ${waited}: before ${before.fds}, peak ${peak.fds}, after ${after.fds} (allowed +${FD_SLACK})`);
    // Memory: Go returns freed heap to the OS slowly (the scavenger, minutes), and
    // keeps what it needed at the peak of the load, so RSS after the load is not
    // expected back at the baseline; it is bounded with room for that heap: at most
    // 1.5x the baseline plus 50 MB (200 connections' buffers, JSON rewriting, GOGC=100
    // letting the heap reach twice the live data; measured: 55-60 MB before, 90-100 MB
    // at the peak). A leak of 1 KB per request exceeds it within a 10-minute soak.
    // And with no traffic, RSS must not grow past what it was during the load.
    const rssLimit = 1.5 * before.rss + 50 * MB;
    assert.ok(after.rss <= rssLimit,
      `RSS after the load ${Math.round(after.rss / MB)} MB <= 1.5 x baseline ${Math.round(before.rss / MB)} MB + 50 MB = ${Math.round(rssLimit / MB)} MB ` +
      `(peak during ${Math.round(peak.rss / MB)} MB)`);
    assert.ok(after.rss <= Math.max(peak.rss, before.rss) * 1.1 + 10 * MB,
      `RSS does not grow after the load: peak during ${Math.round(peak.rss / MB)} MB, after ${Math.round(after.rss / MB)} MB`);
  });
