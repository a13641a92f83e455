# zhianhub — build, test and run the integration hub (GNU make).
#
#   make run     start local services, build, migrate, make demo keys once, then
#                the Ministry-bus and city-bus simulators, the hub, demo filings
#                and a demo dispatch order with feedback (Ctrl-C stops)
#   make test    start local services, go vet, go test -race
#   make bench   start local services, run the benchmarks (with the API
#                load run, make bench-api)
#
# Everything a fresh Debian machine needs is installed by
# deploy/local-services.sh (PostgreSQL, RabbitMQ) as the targets go.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build
MAKEFLAGS += --no-builtin-rules

GO      ?= go
PKGS    ?= ./...
BIN     := bin/zhianhub
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.Version=$(VERSION)

# Benchmarks: per-benchmark time and the timeout of each package's run; the
# total stays well under ten minutes.
BENCHTIME ?= 1s
BENCHTIMEOUT ?= 10m
# Fuzzing: time given to each Fuzz target by `make fuzz`.
FUZZTIME ?= 10s

# Demo setup for `make run`.
DB_NAME  ?= zhianhub
PGHOST   ?= 127.0.0.1
PGUSER   ?= postgres
KEYS_DIR ?= var/keys
NODE     ?= 310000000000
# Demo keys: the hub's own, plus the simulated Ministry bus (000000000000)
# and city bureau (310000000001) under DEMO_PEERS_DIR, each side trusting
# the other. Generated once, only when $(KEYS_DIR)/self/node is missing.
DEMO_PEERS_DIR ?= var/demo-peers
KEYS_GEN_FLAGS ?= --demo-peers $(DEMO_PEERS_DIR)

# Downward messages per second of the Ministry-bus simulator in `make run`.
SIM_RATE ?= 0.5
# Dispatch orders per second of the city-bus simulator in `make run`.
CITY_RATE ?= 0.05

# API load run (make bench-api, part of make bench): simulated officers with
# their own bearer tokens against the hub binary as its own process.
LOAD_USERS      ?= 200
LOAD_DURATION   ?= 60s
LOAD_BASELINE   ?= 10s
LOAD_PERSONS    ?= 3000
LOAD_THINK      ?= 1s
LOAD_SATURATION ?= 15s

.PHONY: build services test vet fmt bench bench-api fuzz run run-db run-keys clean

build:
	@mkdir -p bin
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/zhianhub
	@echo "built $(BIN) ($(VERSION))"

services:
	bash deploy/local-services.sh

vet:
	$(GO) vet $(PKGS)

fmt:
	$(GO) fmt $(PKGS)

# The export tests open the .xlsx files the hub writes with LibreOffice
# (sheettest installs it too when missing; installing it first keeps apt's
# time out of the tests' timeout).
test: services
	bash deploy/install-libreoffice.sh
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 $(PKGS)

# bench runs the benchmarks one package at a time (-p 1: they share the two
# cores with PostgreSQL and RabbitMQ); each prints its baseline and ratio.
bench: services
	$(GO) test -p 1 -run '^$$' -bench '^BenchmarkEnvelope$$' -benchmem -benchtime=$(BENCHTIME) -timeout $(BENCHTIMEOUT) ./envelope/
	ZHIANHUB_BENCH_ROUNDS=5 $(GO) test -p 1 -run '^$$' -bench 'BenchmarkJournalAudit' -benchtime=2s -timeout $(BENCHTIMEOUT) ./store/audit/
	$(GO) test -p 1 -run '^$$' -bench 'BenchmarkParsePayload' -benchmem -benchtime=$(BENCHTIME) -timeout $(BENCHTIMEOUT) ./contracts/
	$(GO) test -p 1 -run '^$$' -bench 'BenchmarkInboundRoute' -benchtime=1x -timeout $(BENCHTIMEOUT) ./routes/
	$(GO) test -p 1 -run '^$$' -bench 'BenchmarkAuditQuery' -benchtime=1x -timeout $(BENCHTIMEOUT) ./store/audit/
	$(GO) test -p 1 -run '^$$' -bench 'BenchmarkAuditExport' -benchtime=1x -timeout $(BENCHTIMEOUT) ./adapters/api/
	$(MAKE) --no-print-directory bench-api

# bench-api runs BenchmarkAPILoad once: the hub binary (bin/zhianhub) on a
# database and Ministry and city bus exchanges of its own, seeded with
# LOAD_PERSONS persons through its API and 24 dispatch orders per unit over
# the city bus (into the units' inboxes), then LOAD_USERS users (reads,
# inbox, dispatch orders, 5 % feedback), each pausing about LOAD_THINK
# between calls, for LOAD_BASELINE of GET /me and LOAD_DURATION of the mix,
# then LOAD_SATURATION of the mix with no pause (the hub's capacity); it
# prints p50/p99, errors and the hub's peak RSS against the targets
# (p99 < 100 ms, 0 errors, RSS < 200 MiB).
bench-api: services build
	ZHIANHUB_BIN=$(CURDIR)/$(BIN) ZHIANHUB_LOAD_USERS=$(LOAD_USERS) ZHIANHUB_LOAD_DURATION=$(LOAD_DURATION) \
	ZHIANHUB_LOAD_BASELINE=$(LOAD_BASELINE) ZHIANHUB_LOAD_PERSONS=$(LOAD_PERSONS) ZHIANHUB_LOAD_THINK=$(LOAD_THINK) \
	ZHIANHUB_LOAD_SATURATION=$(LOAD_SATURATION) \
		$(GO) test -p 1 -run '^$$' -bench '^BenchmarkAPILoad$$' -benchtime=1x -timeout $(BENCHTIMEOUT) ./adapters/api/apiload/

# fuzz runs every Fuzz target of every package for FUZZTIME.
fuzz:
	@found=0; \
	for pkg in $$($(GO) list $(PKGS)); do \
		for fz in $$($(GO) test -list '^Fuzz' "$$pkg" | grep '^Fuzz' || true); do \
			found=1; \
			echo "fuzz $$pkg $$fz ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$fz\$$" -fuzztime $(FUZZTIME) "$$pkg"; \
		done; \
	done; \
	if [[ $$found == 0 ]]; then echo "no Fuzz targets"; fi

# run-db creates the database if it is missing.
run-db: services
	@if psql -h $(PGHOST) -U $(PGUSER) -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$(DB_NAME)'" | grep -q 1; then \
		echo "database $(DB_NAME) exists"; \
	else \
		createdb -h $(PGHOST) -U $(PGUSER) $(DB_NAME); \
		echo "created database $(DB_NAME)"; \
	fi

# run-keys generates the demo key directory once; existing keys are kept.
run-keys: build
	@if [[ -e $(KEYS_DIR)/self/node ]]; then \
		echo "keys in $(KEYS_DIR) exist (node $$(cat $(KEYS_DIR)/self/node)): kept"; \
	else \
		$(BIN) keys gen --dir $(KEYS_DIR) --node $(NODE) $(KEYS_GEN_FLAGS); \
		echo "generated demo keys in $(KEYS_DIR) for node $(NODE)"; \
		dropdb -h $(PGHOST) -U $(PGUSER) --if-exists --force $(DB_NAME); \
		createdb -h $(PGHOST) -U $(PGUSER) $(DB_NAME); \
		echo "recreated the demo database $(DB_NAME): its data keys and audit checkpoints belong to the keys they were made with"; \
	fi

# run starts the Ministry-bus and city-bus simulators, the hub (city bus
# enabled), a few demo filings and a demo dispatch order answered with
# feedback (deploy/run-demo.sh); Ctrl-C stops them all.
run: services build run-db run-keys
	ZHIANHUB_KEYS_DIR=$(KEYS_DIR) $(BIN) migrate
	BIN=$(BIN) KEYS_DIR=$(KEYS_DIR) DEMO_PEERS_DIR=$(DEMO_PEERS_DIR) SIM_RATE=$(SIM_RATE) CITY_RATE=$(CITY_RATE) bash deploy/run-demo.sh

clean:
	rm -rf bin/ coverage.out coverage.html *.coverprofile
