# dcagent build. `make demo` and `make test` are the two commands a new user
# needs; each installs what it needs (scripts/deps.sh says what).

GO        ?= go
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
# The flags of the device build. buildroot/package/dcagent/dcagent.mk uses the
# same; a test checks that they agree. -gcflags=all=-l turns inlining off:
# it takes 1.2 MiB (12%) off the arm64 binary, which matters more on a
# management controller's flash than the few percent of CPU it costs an
# agent that is idle almost all the time.
GOFLAGS_DEVICE := -trimpath -gcflags=all=-l -ldflags "-s -w -X main.version=$(VERSION)"
ARCHES    := amd64 arm64 armv7
TEST_TIMEOUT ?= 15m

.PHONY: all build deps test vet unit fuzz cross bench footprint demo clean

all: build

bin/linux-amd64/%: FORCE
	@mkdir -p $(dir $@)
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build $(GOFLAGS_DEVICE) -o $@ ./cmd/$*
bin/linux-arm64/%: FORCE
	@mkdir -p $(dir $@)
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build $(GOFLAGS_DEVICE) -o $@ ./cmd/$*
bin/linux-armv7/%: FORCE
	@mkdir -p $(dir $@)
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=7 $(GO) build $(GOFLAGS_DEVICE) -o $@ ./cmd/$*
FORCE:

# The static device binaries for every architecture, and the simulator.
build: $(foreach a,$(ARCHES),bin/linux-$(a)/dcagent bin/linux-$(a)/dcsim) bin/dcagent-pkcs11

# A cgo build of the agent for amd64 that includes PKCS#11 support.
bin/dcagent-pkcs11: FORCE
	CGO_ENABLED=1 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o $@ ./cmd/dcagent

deps:
	@./scripts/deps.sh

vet: deps
	$(GO) vet ./...

unit: deps
	CGO_ENABLED=1 $(GO) test -race -timeout $(TEST_TIMEOUT) ./...

fuzz: deps
	@./scripts/fuzz.sh

cross: deps build
	@./scripts/cross.sh

test: deps
	$(GO) vet ./...
	CGO_ENABLED=1 $(GO) test -race -timeout $(TEST_TIMEOUT) ./...
	@./scripts/fuzz.sh
	@$(MAKE) --no-print-directory build
	@./scripts/cross.sh

bench: deps
	CGO_ENABLED=1 $(GO) test -run '^$$' -bench . -benchmem ./...

# Binary sizes, then the daemon's resident memory and CPU per hour on
# simulated hardware (24 drives, 60 s heartbeat) after FOOTPRINT_DURATION.
FOOTPRINT_DURATION ?= 10m
footprint: deps build
	@./scripts/footprint.sh
	@./bin/linux-amd64/dcsim footprint --agent ./bin/linux-amd64/dcagent --duration $(FOOTPRINT_DURATION)

demo: deps
	@$(MAKE) --no-print-directory bin/linux-amd64/dcagent bin/linux-amd64/dcsim >/dev/null
	@./bin/linux-amd64/dcsim demo --agent ./bin/linux-amd64/dcagent

clean:
	rm -rf bin
