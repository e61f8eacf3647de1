# caddy-fhir-imaging: build, test, demo.
#   make build    the custom Caddy binary ./caddy (standard modules + ours)
#   make unit     Go unit tests with the race detector
#   make e2e      end-to-end tests against the real stack (Orthanc x2, HAPI open, enforcing
#                 SMART tokens and serving STU3, Medplum, the authorization server, the gateway) in a private
#                 network namespace: integration/run-e2e.sh, after installing what is missing
#   make test     unit, then e2e; ends with the e2e summary line "e2e: N passed, N failed, N skipped"
#   make demo     the whole stack with sample data at http://127.0.0.1:8000 (Ctrl-C stops it)
#   make xcaddy-check  build Caddy with xcaddy and this checkout as a plugin (what xcaddy.md says)
#   make fuzz     every Go fuzz target in turn, FUZZTIME each (default 10m): integration/fuzz.sh
#   make install  apt/npm/Maven dependencies of the stack (integration/install.sh, as root;
#                 idempotent, seconds when everything is there; e2e and demo run it first)
#   make clean    remove ./caddy and the e2e scratch directories
SHELL := /bin/bash
GO ?= go

.PHONY: all build unit e2e test demo install clean xcaddy-check fuzz bench

all: build

build:
	@echo "[make] building ./caddy (the first build compiles Caddy and its modules: a few minutes on 2 cores, then seconds)"
	$(GO) build -o caddy ./cmd/caddy

unit:
	@echo "[make] Go tests with the race detector (the first run compiles everything for it: a few minutes on 2 cores)"
	$(GO) test -race ./...

e2e: build install
	integration/run-e2e.sh

test: unit e2e

demo: install
	DEMO_SKIP_INSTALL=1 integration/demo.sh

xcaddy-check:
	integration/xcaddy-check.sh

fuzz:
	integration/fuzz.sh

# Load runs against plain reverse_proxy and nginx, and the in-process
# benchmarks; rewrites the measured part of docs/PERFORMANCE.md (about 9
# minutes; see integration/bench/bench.sh for the knobs).
bench:
	integration/bench/bench.sh

install:
	integration/install.sh

clean:
	rm -f caddy
	rm -rf integration/tmp/e2e integration/tmp/hapi-build.log
