# dev: build, example and test targets. `make test` is what CI runs (.ci/run).

GO       ?= go
BIN      := bin/dev
# Empty outside a git checkout: the binary then reports the commit Go
# recorded in it, else "dev".
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null)
LDFLAGS  := -s -w -X github.com/devhq/dev/cmd/dev/cli.Version=$(VERSION)
TIMEOUT  ?= 20m

# Example services: each one is compiled into its own build context
# (examples/<example>/<svc>/<svc>) and COPYed into a FROM scratch image.
EXAMPLE_SERVICES := examples/hello/web examples/hello/backend examples/sidecar/app examples/sidecar/ambassador
EXAMPLE_BINS     := $(foreach d,$(EXAMPLE_SERVICES),$(d)/$(notdir $(d)))
EXAMPLE_COMPOSE  := examples/hello/compose.yaml

.PHONY: all build example-bins example deps test vet fuzz bench bench-quick clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/dev

example-bins:
	@set -e; for d in $(EXAMPLE_SERVICES); do \
		echo "CGO_ENABLED=0 $(GO) build -trimpath -ldflags \"$(LDFLAGS)\" -o $$d/$$(basename $$d) ./$$d"; \
		CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $$d/$$(basename $$d) ./$$d; \
	done

# A Docker Engine (installed and started when missing), then the example;
# as root or as a user of the docker group (the agent then runs in a
# container).
example: build example-bins
	bash test/deps.sh engine
	./$(BIN) up -d --build -f $(EXAMPLE_COMPOSE)

vet:
	$(GO) vet ./...

# What the tests need: packages and a running Docker Engine, installed and
# started when missing.
deps:
	bash test/deps.sh

# -p 1: packages that share the Docker Engine (test/e2e, agent/docker) never run concurrently.
test: deps vet fuzz
	$(GO) test -count=1 -p 1 -timeout $(TIMEOUT) ./...

# Each fuzz target for a few seconds: what peers and clients send (a join
# token, a raft entry, an image archive, a dev cp archive).
FUZZ_TARGETS := FuzzParseToken:./cluster/pki FuzzDecode:./cluster/state \
	FuzzCheckImageArchive:./cluster/agent/docker FuzzRebase:./cluster/agent/docker
# -fuzzminimizetime bounds the minimising of each new interesting input:
# by default it may take 60 s, and in the Docker driver's package (a large
# binary, slow coverage-guided runs) it stalled the fuzzer until -fuzztime
# ran out mid-minimisation and the run failed with "context deadline
# exceeded" (CI, 2026-12-07); bounded, it runs ~10,000 inputs a second.
# It came back once more for the token parser on a busy machine: a time
# limit is a deadline the coordinator can miss while workers stop; a count
# of inputs has none (50,000: 3-6 s a target here).
FUZZ_TIME ?= 50000x
FUZZ_FLAGS = -fuzztime $(FUZZ_TIME) -fuzzminimizetime 100x
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "$(GO) test -run '^$$' -fuzz '^$${t%%:*}$$' $(FUZZ_FLAGS) $${t#*:}"; \
		$(GO) test -run '^$$' -fuzz "^$${t%%:*}\$$" $(FUZZ_FLAGS) $${t#*:}; \
	done

# Benchmarks against real peers (docker-compose, the raw Engine API, swarm
# mode), the data path, the control plane at scale and failover on three
# simulated hosts; records in bench/out, report in BENCHMARKS.md and
# bench/plots. About 40 minutes on a 2-core machine.
bench: build
	$(GO) run ./bench/peers
	$(GO) run ./bench/controlplane
	bench/datapath.sh
	bench/rules.sh
	DEV_BENCH=1 $(GO) test -count=1 -run "TestFailoverBenchmark|TestDatapathBenchmark" -v -timeout 45m ./test/e2e/
	$(GO) run ./bench/report

# The same harness in a couple of minutes (one run, small sizes), writing to
# a scratch directory: CI runs it so that the benchmarks cannot rot.
BENCH_QUICK_OUT ?= $(CURDIR)/bench/out/quick
bench-quick: build
	rm -rf $(BENCH_QUICK_OUT)
	DEV_BENCH_OUT=$(BENCH_QUICK_OUT) $(GO) run ./bench/peers -quick
	DEV_BENCH_OUT=$(BENCH_QUICK_OUT) $(GO) run ./bench/controlplane -quick
	DEV_BENCH_OUT=$(BENCH_QUICK_OUT) bench/datapath.sh --quick
	DEV_BENCH_OUT=$(BENCH_QUICK_OUT) bench/rules.sh --quick
	$(GO) run ./bench/report -in $(BENCH_QUICK_OUT) -md $(BENCH_QUICK_OUT)/BENCHMARKS.md -plots $(BENCH_QUICK_OUT)/plots

clean:
	rm -rf bin bench/out
	rm -f $(EXAMPLE_BINS)
	rm -f coverage.out coverage.html cover.out *.coverprofile
