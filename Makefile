# ec2-policy-routes — see README.md. Needs Go >= 1.26.8; integration tests and
# the demo need root (network namespaces).
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
BIN := bin/ec2-policy-routes
TOOLS := $(CURDIR)/.tools/bin
CNITOOL_VERSION := v1.3.0
PLUGINS_VERSION := v1.10.0
LDFLAGS := -s -w -X main.Version=$(VERSION)

export CGO_ENABLED := 0

.PHONY: all build test unit integration demo lint clean tools

all: build

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./plugins/ec2-policy-routes

# Helper binaries for tests and the demo, pinned, installed locally.
tools: $(TOOLS)/cnitool $(TOOLS)/host-device $(TOOLS)/static $(TOOLS)/sbr

$(TOOLS)/cnitool:
	GOBIN=$(TOOLS) $(GO) install github.com/containernetworking/cni/cnitool@$(CNITOOL_VERSION)
$(TOOLS)/host-device:
	GOBIN=$(TOOLS) $(GO) install github.com/containernetworking/plugins/plugins/main/host-device@$(PLUGINS_VERSION)
$(TOOLS)/static:
	GOBIN=$(TOOLS) $(GO) install github.com/containernetworking/plugins/plugins/ipam/static@$(PLUGINS_VERSION)
$(TOOLS)/sbr:
	GOBIN=$(TOOLS) $(GO) install github.com/containernetworking/plugins/plugins/meta/sbr@$(PLUGINS_VERSION)

# Unit tests run anywhere; integration tests need root and skip without it.
test: build tools lint
	EC2PR_BIN=$(CURDIR)/$(BIN) EC2PR_TOOLS=$(TOOLS) $(GO) test -count=1 ./...

unit:
	$(GO) test -count=1 ./pkg/... ./plugins/...

integration: build tools
	EC2PR_BIN=$(CURDIR)/$(BIN) EC2PR_TOOLS=$(TOOLS) $(GO) test -count=1 -v ./integration/...

demo: build tools
	BIN=$(CURDIR)/$(BIN) TOOLS=$(TOOLS) ./scripts/demo.sh

lint:
	$(GO) vet ./...
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi

clean:
	rm -rf bin .tools
