# ec2-policy-routes — see README.md. Needs Go >= 1.26.8; integration tests and
# the demo need root (network namespaces).
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
BIN := bin/ec2-policy-routes
TOOLS := $(CURDIR)/.tools/bin
CNITOOL_VERSION := v1.3.0
PLUGINS_VERSION := v1.10.0
AEMM_VERSION := v1.13.0
LDFLAGS := -s -w -X main.Version=$(VERSION)

export CGO_ENABLED := 0

.PHONY: all build test unit integration demo demo-ecs lint clean tools

all: build

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./plugins/ec2-policy-routes

# Helper binaries for tests and the demo, pinned, installed locally.
tools: $(TOOLS)/cnitool $(TOOLS)/host-device $(TOOLS)/static $(TOOLS)/sbr $(TOOLS)/loopback $(TOOLS)/ec2-metadata-mock

$(TOOLS)/cnitool:
	GOBIN=$(TOOLS) $(GO) install github.com/containernetworking/cni/cnitool@$(CNITOOL_VERSION)
$(TOOLS)/host-device:
	GOBIN=$(TOOLS) $(GO) install github.com/containernetworking/plugins/plugins/main/host-device@$(PLUGINS_VERSION)
$(TOOLS)/static:
	GOBIN=$(TOOLS) $(GO) install github.com/containernetworking/plugins/plugins/ipam/static@$(PLUGINS_VERSION)
$(TOOLS)/sbr:
	GOBIN=$(TOOLS) $(GO) install github.com/containernetworking/plugins/plugins/meta/sbr@$(PLUGINS_VERSION)
# containerd's CRI runs loopback for every pod, whatever the conflist says.
$(TOOLS)/loopback:
	GOBIN=$(TOOLS) $(GO) install github.com/containernetworking/plugins/plugins/main/loopback@$(PLUGINS_VERSION)
# AWS's IMDS mock, for the integration test that proves the client speaks to
# a real IMDS implementation (always run bound to 127.0.0.1).
$(TOOLS)/ec2-metadata-mock:
	GOBIN=$(TOOLS) $(GO) install github.com/aws/amazon-ec2-metadata-mock/cmd/ec2-metadata-mock@$(AEMM_VERSION)

# Unit tests run anywhere; integration tests need root and skip without it
# (TestContainerdCRI also skips without containerd and runc). The timeout is
# per package binary: ./integration is the long one on a loaded 2-core box.
TEST_TIMEOUT ?= 30m
test: build tools lint
	EC2PR_BIN=$(CURDIR)/$(BIN) EC2PR_TOOLS=$(TOOLS) $(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

unit:
	$(GO) test -count=1 ./pkg/... ./plugins/...

integration: build tools
	EC2PR_BIN=$(CURDIR)/$(BIN) EC2PR_TOOLS=$(TOOLS) $(GO) test -count=1 -timeout $(TEST_TIMEOUT) -v ./integration/...

demo: build tools
	$(GO) build -o bin/fake-imds ./integration/cmd/fake-imds
	BIN=$(CURDIR)/$(BIN) FAKE_IMDS=$(CURDIR)/bin/fake-imds TOOLS=$(TOOLS) ./scripts/demo.sh

# The stock-ECS-agent flow (ecs install, ADD/DEL through the front as the
# agent invokes it, uninstall) with the vpc-eni stand-in; root.
demo-ecs: build
	$(GO) build -o bin/fake-vpc-eni ./integration/cmd/fake-vpc-eni
	BIN=$(CURDIR)/$(BIN) FAKE_VPC_ENI=$(CURDIR)/bin/fake-vpc-eni ./scripts/demo-ecs.sh

# .rpm (Amazon Linux 2023) and .deb per architecture into dist/, with nfpm
# run as a Go tool of packaging/tools/go.mod (kept out of the plugin's
# go.mod). Contents: packaging/nfpm.yaml; checked by go test ./packaging.
PKG_ARCHES ?= amd64 arm64
PKG_VERSION ?= $(shell echo '$(VERSION)' | sed -E 's/^v([0-9])/\1/; s/^([^0-9])/0.0.0+\1/; s/-/./g')
PKG_MAINTAINER ?= ec2-policy-routes maintainers <maintainers@ec2-policy-routes.invalid>
NFPM := $(GO) tool -modfile=packaging/tools/go.mod nfpm

.PHONY: package
package:
	@mkdir -p dist
	@set -e; for arch in $(PKG_ARCHES); do \
	  GOARCH=$$arch $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o dist/$$arch/ec2-policy-routes ./plugins/ec2-policy-routes; \
	  for format in rpm deb; do \
	    PKG_ARCH=$$arch PKG_VERSION='$(PKG_VERSION)' PKG_MAINTAINER='$(PKG_MAINTAINER)' EC2PR_PKG_BIN=$(CURDIR)/dist/$$arch/ec2-policy-routes \
	      $(NFPM) package --config packaging/nfpm.yaml --packager $$format --target dist/; \
	  done; \
	done

# Real-host tests (root; QEMU): a Debian 12 guest with systemd and
# amazon-ec2-net-utils, booted with TCG (integration/host): the
# stuck-process baseline, doctor, repair, ecs install, the package's
# install/upgrade/remove. Needs qemu-system-x86, mmdebstrap, e2fsprogs; the
# image is cached in /var/cache/ec2-policy-routes/vm. The upgrade starts
# from an older build of the same source (version 0~hosttest, sorts before
# any PKG_VERSION). Writes docs/HOST.md and its summary into
# docs/RELIABILITY.md and docs/RACE.md; evidence in bin/host/. ~4-5 min.
HOST_OLD_VERSION := 0~hosttest
HOST_DEB := dist/ec2-policy-routes_$(PKG_VERSION)-1_amd64.deb
.PHONY: test-host
test-host:
	@mkdir -p bin
	@set -e; t0=$$(date +%s.%N); \
	$(MAKE) --no-print-directory build; \
	$(MAKE) --no-print-directory package PKG_ARCHES=amd64 VERSION=host-test-old PKG_VERSION=$(HOST_OLD_VERSION); \
	mv -f dist/ec2-policy-routes_$(HOST_OLD_VERSION)-1_amd64.deb bin/host-old.deb; \
	rm -f dist/ec2-policy-routes-$(HOST_OLD_VERSION)-1.*.rpm; \
	$(MAKE) --no-print-directory package PKG_ARCHES=amd64; \
	prep=$$(echo "$$(date +%s.%N) $$t0" | awk '{print $$1 - $$2}'); \
	echo "test-host: build and packages in $${prep}s"; \
	EC2PR_HOST=1 EC2PR_HOST_DEB=$(CURDIR)/$(HOST_DEB) EC2PR_HOST_DEB_OLD=$(CURDIR)/bin/host-old.deb \
	  EC2PR_HOST_ARTIFACTS=$(CURDIR)/bin/host EC2PR_HOST_REPORT=$(CURDIR)/docs/HOST.md EC2PR_HOST_PREP_SECONDS=$$prep \
	  $(GO) test -count=1 -v -timeout 20m ./integration/host/

lint:
	$(GO) vet ./...
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	@# Merge-conflict markers in any tracked file fail the build (the
	@# pattern is spelled with counts so this line does not match itself).
	@if git grep -nE '^(<{7}|>{7})( |$$)' -- . 2>/dev/null; then echo "merge-conflict markers above"; exit 1; fi

clean:
	rm -rf bin .tools
	rm -rf dist

# Performance against upstream sbr, and the ECS front's cost, in one
# interleaved run (root; ~4-5 min); writes docs/BENCHMARKS.md. Quick run that only prints:
# make bench BENCHFLAGS=-quick. Not run by CI.
.PHONY: bench
bench: build tools
	$(GO) build -trimpath -ldflags "-s -w" -o bin/bench-empty ./integration/bench/empty
	$(GO) build -trimpath -ldflags "-s -w" -o bin/bench-spawn ./integration/bench/spawn
	$(GO) build -trimpath -ldflags "-s -w" -o bin/bench-imdsfloor ./integration/bench/imdsfloor
	$(GO) build -trimpath -ldflags "-s -w" -o bin/bench-fake-vpc-eni ./integration/cmd/fake-vpc-eni
	$(GO) build -trimpath -ldflags "-s -w" -o bin/bench-frontfloor ./integration/bench/frontfloor
	$(GO) build -o bin/bench ./integration/bench
	$(if $(filter 0,$(shell id -u)),,sudo) ./bin/bench -bin $(BIN) -sbr $(TOOLS)/sbr -aemm $(TOOLS)/ec2-metadata-mock -empty bin/bench-empty -spawn bin/bench-spawn -fake bin/bench-fake-vpc-eni $(BENCHFLAGS)

# Reliability suite (root; ~4 min on 2 cores): each fuzz target for FUZZTIME,
# then every reliability scenario with the churn enabled (CHURN_CYCLES ADD/DEL
# cycles, CHURN_PARALLEL at a time); writes docs/RELIABILITY.md. Logs in
# bin/stress/. CI (.ci/run) runs it with FUZZTIME=20s.
FUZZTIME ?= 45s
CHURN_CYCLES ?= 1000
CHURN_PARALLEL ?= 8
STRESS_OUT := $(CURDIR)/bin/stress
STRESS_TESTS := ^(TestFault|TestConcurrent|TestHostile|TestSecurity|TestIMDSFaults|TestStress|TestECSFront|TestRoute|TestOwnership|TestLogPathNeverBlocks)
.PHONY: stress
stress: build tools
	@mkdir -p $(STRESS_OUT)
	@set -e; for t in pkg/config:FuzzParse pkg/plugin:FuzzPrevResult; do \
	  pkg=$${t%%:*}; fz=$${t##*:}; log=$(STRESS_OUT)/fuzz-$$fz.log; echo "--- fuzz $$fz ($(FUZZTIME))"; \
	  echo "package github.com/ec2-policy-routes/ec2-policy-routes/$$pkg" > $$log; \
	  $(GO) test -run '^$$' -fuzz "^$$fz\$$" -fuzztime $(FUZZTIME) ./$$pkg >> $$log 2>&1 || { cat $$log; exit 1; }; \
	  tail -n 3 $$log; \
	done
	@echo "--- reliability scenarios, churn $(CHURN_CYCLES) cycles x $(CHURN_PARALLEL)"
	set -o pipefail; EC2PR_STRESS=1 EC2PR_CHURN_CYCLES=$(CHURN_CYCLES) EC2PR_CHURN_PARALLEL=$(CHURN_PARALLEL) \
	  EC2PR_REPORT=$(CURDIR)/docs/RELIABILITY.md EC2PR_FUZZ_LOGS=$(STRESS_OUT) \
	  EC2PR_BIN=$(CURDIR)/$(BIN) EC2PR_TOOLS=$(TOOLS) \
	  $(GO) test -count=1 -timeout 15m -run '$(STRESS_TESTS)' ./integration/ 2>&1 | tee $(STRESS_OUT)/integration.log

# Extra static analysis (errcheck, staticcheck, errorlint, ...; see
# .golangci.yml). Not part of make test: building golangci-lint takes minutes.
GOLANGCI_VERSION := v2.15.0
$(TOOLS)/golangci-lint:
	GOBIN=$(TOOLS) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_VERSION)

.PHONY: golangci
golangci: $(TOOLS)/golangci-lint
	$(TOOLS)/golangci-lint run ./...
