# keysmith Makefile. Tools run from the pinned module in hack/tools, never from PATH.
SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

GO ?= go
# go.mod asks for toolchain go1.26.10 (the standard library fixes that govulncheck requires); with auto, an
# older local Go fetches it once through the module proxy. The control-plane wrapper modules keep the local Go.
export GOTOOLCHAIN ?= auto
TOOLS := $(GO) tool -modfile=hack/tools/go.mod
CONTROLLER_GEN := $(TOOLS) controller-gen
KUSTOMIZE := $(TOOLS) kustomize
HELM := $(TOOLS) helm
BIN := $(CURDIR)/bin
export KUBEBUILDER_ASSETS := $(BIN)
IMG ?= keysmith:dev
KUBECTL ?= $(shell command -v kubectl 2>/dev/null || echo $(BIN)/kubectl)

.PHONY: all
all: build

##@ Development

.PHONY: manifests
manifests: ## Generate the CRD and RBAC manifests from the markers, and argocd-cm's patch from the Argo CD scripts.
	$(CONTROLLER_GEN) rbac:roleName=keysmith-manager crd paths="./..." output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac
	$(GO) run ./hack/argocd-gen

.PHONY: generate
generate: ## Generate deepcopy code.
	$(CONTROLLER_GEN) object paths="./api/..."

.PHONY: fmt
fmt:
	$(GO) fmt ./...

.PHONY: vet
vet:
	$(GO) vet ./...

.PHONY: chart
chart: manifests ## Copy the generated CRDs and the Argo CD scripts into the Helm chart (dist/chart).
	hack/chart.sh sync

.PHONY: verify-generated
verify-generated: manifests generate chart ## Fail when committed generated files are stale.
	@if [ -n "$$(git status --porcelain -- api config dist)" ]; then \
	  echo "generated files are stale; run 'make manifests generate chart' and commit:"; git status --porcelain -- api config dist; git diff --stat -- api config dist; exit 1; fi

.PHONY: controlplane
controlplane: ## Build the pinned kube-apiserver, kube-controller-manager, etcd and kubectl into bin/ (cached per user).
	hack/controlplane.sh

.PHONY: promtool
promtool: ## Extract promtool from Debian's prometheus package into bin/ (cached per user; no service starts).
	hack/promtool.sh install

.PHONY: chart-lint
chart-lint: ## helm lint the chart in dist/chart.
	hack/chart.sh lint

.PHONY: prometheus-test
prometheus-test: promtool ## promtool check and test the alerting rules, parse the dashboard's queries.
	hack/promtool.sh test

.PHONY: test
test: verify-generated vet controlplane chart-lint prometheus-test ## Unit tests, fuzz seeds, helm lint, promtool, and the envtest suites on the real control plane.
	$(GO) test ./... -count=1 -timeout 30m

##@ Build

.PHONY: build
build: ## Build bin/keysmith and the kubectl plugin bin/kubectl-apikey (put bin/ on PATH for `kubectl apikey`).
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/keysmith ./cmd/keysmith
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/kubectl-apikey ./cmd/kubectl-apikey
	install -m 0755 dist/krew/kubectl_complete-apikey $(BIN)/kubectl_complete-apikey

.PHONY: run
run: ## Run the manager against the cluster in KUBECONFIG.
	$(GO) run ./cmd/keysmith manager --leader-elect=false

.PHONY: dev
dev: controlplane build ## Run keysmith on an embedded local control plane with the samples applied.
	CGO_ENABLED=0 $(GO) build -trimpath -tags dev -o $(BIN)/keysmith-dev ./cmd/keysmith
	$(BIN)/keysmith-dev dev --assets $(BIN) --samples config/samples

.PHONY: docker-build
docker-build: ## Build the container image (needs a Docker engine).
	docker build -t $(IMG) .

##@ Deployment

.PHONY: install
install: manifests ## Install the CRDs into the cluster in KUBECONFIG.
	$(KUSTOMIZE) build config/crd | $(KUBECTL) apply --server-side -f -

.PHONY: uninstall
uninstall: ## Remove the CRDs (and every ApiKey) from the cluster.
	$(KUSTOMIZE) build config/crd | $(KUBECTL) delete --ignore-not-found -f -

.PHONY: deploy
deploy: manifests ## Deploy keysmith to the cluster in KUBECONFIG (image IMG).
	cd config/manager && $(KUSTOMIZE) edit set image keysmith=$(IMG)
	$(KUSTOMIZE) build config/default | $(KUBECTL) apply --server-side -f -

.PHONY: undeploy
undeploy: ## Remove keysmith from the cluster.
	$(KUSTOMIZE) build config/default | $(KUBECTL) delete --ignore-not-found -f -

.PHONY: help
help:
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*?##/ { printf "  %-18s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

##@ Evidence

.PHONY: bench
bench: controlplane build ## Benchmarks on the local control plane; prints the figures and writes bin/bench/*.json.
	$(GO) test ./internal/keys ./internal/verify -run '^$$' -bench . -benchmem
	$(GO) run ./test/bench

FUZZTIME ?= 10s
.PHONY: chaos
chaos: controlplane build ## Fault suite: manager and verifier as processes, kill -9 loop, failover, API server restart, conflict storm, tampering; writes docs/reliability.md.
	$(GO) run ./test/chaos $(CHAOS_FLAGS)

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME (CI runs a short round).
	$(GO) test ./internal/keys -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/rotation -run '^$$' -fuzz '^FuzzParseRevokeRequest$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/verify -run '^$$' -fuzz '^FuzzAuthzHeaders$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/verify -run '^$$' -fuzz '^FuzzVerifyBody$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/verify -run '^$$' -fuzz '^FuzzScopeShape$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/verify -run '^$$' -fuzz '^FuzzConstraints$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/verify -run '^$$' -fuzz '^FuzzRedactKeys$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/scan -run '^$$' -fuzz '^FuzzFind$$' -fuzztime $(FUZZTIME)

.PHONY: vulncheck
vulncheck: ## govulncheck over ./... against the offline database pinned in hack/vulndb (fails on reachable vulnerabilities).
	hack/vulncheck.sh
