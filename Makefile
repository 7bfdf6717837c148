# Damselfly build, test, demo and benchmark entry points.
GO       ?= go
BIN      := $(CURDIR)/bin
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse --short HEAD 2>/dev/null)
DATE     := $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
VPKG     := github.com/damselfly-p2p/damselfly/pkg/version
LDFLAGS  := -s -w -X $(VPKG).Version=$(VERSION) -X $(VPKG).Revision=$(REVISION) -X $(VPKG).BuildDate=$(DATE)
# End-to-end tests find the binaries here.
export DAMSELFLY_BIN := $(BIN)

.PHONY: all build test unit e2e lint generate docs fuzz demo bench clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/supernode ./cmd/dfget ./cmd/dfdaemon

# Every test: unit tests, then the end-to-end tests against the real binaries.
test: build
	$(GO) test -count=1 -timeout 20m ./...

unit:
	$(GO) test -count=1 -short ./...

e2e: build
	$(GO) test -count=1 -timeout 20m ./test/...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

generate:
	$(GO) generate ./...

# The command reference in docs/cli, from the binaries' own flags
# (TestCLIDocsCurrent fails when a page is stale).
docs: build
	for b in supernode dfget dfdaemon; do $(BIN)/$$b gen-doc -p docs/cli; done

# Short runs of every fuzz target (corpora live in testdata/fuzz).
FUZZTIME ?= 5s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "fuzz $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

demo: build
	$(GO) run ./test/cmd/demo

bench: build
	$(GO) run ./test/cmd/bench

clean:
	rm -rf $(BIN)
