# bpfstatd: every target runs from a fresh clone; see README.md.
GO        ?= go
BIN       ?= bin/bpfstatd
ARGS      ?=
TESTFLAGS ?=
BENCHTIME ?= 1s
COUNT     ?= 5
IMAGE     ?= bin/bpfstatd-image.tar
IMAGE_NAME ?= ghcr.io/bpfstatd/bpfstatd:latest
PLATFORMS ?= linux/amd64,linux/arm64
SOAK_DURATION ?= 30m
SOAK_RATE ?= 100000
SOAK_OUT  ?= bin/soak

.PHONY: all generate build run test e2e bench soak lint image

all: lint build test

## generate: recompile the kernel programs into bpf/*_bpfel.{go,o} (needs clang-19)
generate:
	$(GO) generate ./...

## build: build the static daemon into bin/bpfstatd (no clang needed; CGO_ENABLED=0 lets it drop capabilities on every thread)
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN) ./cmd/bpfstatd

## run: build and run the daemon as root, printing metrics to the terminal
run: build
	./$(BIN) $(ARGS)

## test: the whole suite with the race detector; kernel tests need root
test:
	$(GO) test -race -count=1 -timeout 20m $(TESTFLAGS) ./...
	$(GO) -C deploy vet ./... && $(GO) -C deploy test -count=1 -timeout 10m $(TESTFLAGS) ./...
	cd e2e && $(GO) test -race -count=1 -timeout 10m $(TESTFLAGS) ./...
	$(GO) -C bench vet ./... && $(GO) -C bench test -count=1 $(TESTFLAGS) ./...

## e2e: the end-to-end suite: the daemon against a real statsd_exporter (root; BPFSTATD_REQUIRE_KERNEL=1 fails instead of skipping; BPFSTATD_E2E_LONG=1 for the long forms)
e2e:
	cd e2e && $(GO) test -race -count=1 -timeout 15m -v $(TESTFLAGS) ./...

## image: the container image, built reproducibly without a container engine, as an OCI archive in $(IMAGE)
image:
	$(GO) -C deploy run ./cmd/bpfstatd-image -src $(CURDIR) -o $(abspath $(IMAGE)) -name $(IMAGE_NAME) -platform $(PLATFORMS)

## bench: every benchmark (module, e2e, bench/), COUNT runs each, with allocations, then the daemon under
## generated load; writes BENCHMARKS.md and bench/*.png (as root, ~10 min; BENCH_QUICK=1 for a short smoke run)
bench:
	cd bench && GO=$(GO) $(GO) run . -root .. -out ../BENCHMARKS.md -png . -count $(COUNT) -benchtime $(BENCHTIME)

## soak: the daemon against statsd_exporter at $(SOAK_RATE) syscalls/s for $(SOAK_DURATION) (as root, not in CI):
## RSS and goroutines flat, no drift in the kernel ledger, the receiver reconciled with the drops; writes $(SOAK_OUT)/soak.{csv,png,md}
soak: build
	cd bench && GO=$(GO) $(GO) run . -soak -root .. -soak-bin $(abspath $(BIN)) -soak-duration $(SOAK_DURATION) -soak-rate $(SOAK_RATE) -soak-out $(abspath $(SOAK_OUT))

## lint: go vet and gofmt
lint:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
