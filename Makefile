# The one entry point for building, testing and running Agate. `make help` lists the targets.
SHELL := /bin/bash
GO    ?= go
BUF   := $(GO) tool -modfile=tools.mod buf
DB    ?=
TESTFLAGS ?= -shuffle=on -timeout=20m

.DEFAULT_GOAL := help
.PHONY: help generate generate-check lint breaking test test-unit fuzz run build bench tools image test-deploy

help: ## List the targets.
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

generate: ## Regenerate gen/ from proto/ with buf (local plugins only).
	$(BUF) generate

generate-check: generate ## Fail if regenerating changes anything in gen/.
	@git add -N gen >/dev/null 2>&1 || true
	@git diff --exit-code --stat -- gen || { echo "gen/ is stale: run 'make generate' and commit"; exit 1; }

lint: ## buf lint, buf format, gofmt and go vet.
	$(BUF) lint
	$(BUF) format --diff --exit-code
	@out=$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go' | grep -v '^gen/')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

breaking: ## buf breaking against the previous commit of main (needs full history).
	@if git rev-parse -q --verify main~1 >/dev/null; then \
	  $(BUF) breaking --against '.git#branch=main,ref=HEAD~1,subdir=.' && echo "no breaking change against main~1"; \
	else echo "no previous commit on main: nothing to compare"; fi

test: ## Run every test (starts a throwaway PostgreSQL unless AGATE_TEST_POSTGRES_URL is set).
	$(GO) test -race $(TESTFLAGS) ./...
	cd bench && $(GO) test -race $(TESTFLAGS) ./...   # the load harness's report and pipeline driver
	$(MAKE) --no-print-directory test-deploy

fuzz: ## Longer fuzzing campaigns: policy parser and evaluator, JCS, evidence chains and hash form (FUZZTIME each, default 30s).
	@for t in FuzzParse FuzzEvaluate; do $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $${FUZZTIME:-30s} ./decision/ || exit 1; done
	$(GO) test -run '^$$' -fuzz '^FuzzTransform$$' -fuzztime $${FUZZTIME:-30s} ./canonical/
	@for t in FuzzVerifyChain FuzzHashForm; do $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $${FUZZTIME:-30s} ./evidence/ || exit 1; done
	$(GO) test -run '^$$' -fuzz '^FuzzKey$$' -fuzztime $${FUZZTIME:-30s} ./identity/

build: ## Build bin/agate.
	@[ -x bin/agate ] || echo "building bin/agate: the first build downloads modules and compiles for a few minutes"
	$(GO) build -buildvcs=auto -o bin/agate ./cmd/agate

run: build ## Start the server on embedded SQLite with the example policy and dev tokens.
	./bin/agate serve --policy examples/policy.yaml --tokens examples/tokens.yaml

IMAGE_LICENSE ?= NOASSERTION

image: ## Build the static dist/agate and its container image: dist/agate-image/ (OCI layout) and dist/agate-image.tar (docker load); no container engine needed.
	@echo "building a static dist/agate (CGO_ENABLED=0; the first build compiles for a few minutes)"
	CGO_ENABLED=0 GOOS=linux $(GO) build -trimpath -buildvcs=auto -ldflags='-s -w' -o dist/agate ./cmd/agate
	cd deploy/image && $(GO) run . --binary $(CURDIR)/dist/agate --out $(CURDIR)/dist --license '$(IMAGE_LICENSE)'
	cd deploy/image && AGATE_IMAGE_DIR=$(CURDIR)/dist $(GO) test -count=1 -run '^TestBuiltImage$$' .   # reads the image back: user, no shell, entrypoint, labels, files

test-deploy: ## Tests of the image builder (deploy/image) and the Helm chart (deploy/helm/test), each its own module.
	cd deploy/image && $(GO) test -race $(TESTFLAGS) ./...
	cd deploy/helm/test && $(GO) test $(TESTFLAGS) ./...   # no -race: it would recompile the Helm SDK for little gain

tools: ## Build the pinned grpcurl and buf once, so their first use is not a long silent compile.
	@echo "building the pinned grpcurl and buf (a few minutes the first time)"
	$(GO) tool -modfile=tools.mod grpcurl -version
	$(BUF) --version

bench: ## Go benchmarks (engine, job hash, storage).
	$(GO) test -run '^$$' -bench . -benchmem ./...

.PHONY: bench-load bench-peers bench-dbwork

bench-load: ## Load harness: ghz, the approval pipeline and pgbench on SQLite and PostgreSQL (≈5 min).
	bash bench/load.sh

bench-dbwork: ## Database work per call on PostgreSQL: statements, rows, index entries, bytes, WAL (≈1 min, light).
	bash bench/dbwork.sh

bench-peers: ## Agate beside OPA: engine benchmarks and Evaluate against OPA's REST server (not in CI).
	bash bench/peers.sh
