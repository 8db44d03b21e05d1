# dev: build, example and test targets. `make test` is what CI runs (.ci/run).

GO       ?= go
BIN      := bin/dev
LDFLAGS  := -s -w
TIMEOUT  ?= 20m

# Example services: each one is compiled into its own build context
# (examples/hello/<svc>/<svc>) and COPYed into a FROM scratch image.
EXAMPLE_SERVICES := examples/hello/web examples/hello/backend
EXAMPLE_BINS     := $(foreach d,$(EXAMPLE_SERVICES),$(d)/$(notdir $(d)))
EXAMPLE_COMPOSE  := examples/hello/compose.yaml

.PHONY: all build example-bins example test vet bench clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/dev

example-bins:
	@set -e; for d in $(EXAMPLE_SERVICES); do \
		echo "CGO_ENABLED=0 $(GO) build -trimpath -ldflags \"$(LDFLAGS)\" -o $$d/$$(basename $$d) ./$$d"; \
		CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $$d/$$(basename $$d) ./$$d; \
	done

example: build example-bins
	./$(BIN) up -d --build -f $(EXAMPLE_COMPOSE)

vet:
	$(GO) vet ./...

# -p 1: packages that share the Docker Engine (test/e2e, agent/docker) never run concurrently.
test: vet
	$(GO) test -count=1 -p 1 -timeout $(TIMEOUT) ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf bin bench/out
	rm -f $(EXAMPLE_BINS)
	rm -f coverage.out coverage.html cover.out *.coverprofile
