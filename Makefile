# pushgw — see README.md. Every target that needs Redis/MariaDB/etcd goes
# through scripts/deps.sh, which installs and starts what is missing.
SHELL := /bin/bash
GO    ?= go
BIN   ?= bin
SERVICES := dispatcher room register saver center coordinator

.PHONY: all build run stop test faults proto lint fuzz deps clean

all: build

build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./services/... ./cmd/... ./loadtest/cmd/...

deps:
	@bash scripts/deps.sh

run: deps build
	@bash scripts/run.sh start

stop:
	@bash scripts/run.sh stop

test: deps
	@bash scripts/test.sh

# The full fault-injection run (test/faults, docs/RELIABILITY.md): services
# built without -race, JSON result on stdout and in FAULTS_OUT.
FAULTS_OUT ?= .faults/result.json
faults: deps
	@mkdir -p $(dir $(FAULTS_OUT))
	PUSHGW_TEST_RACE=0 $(GO) test -count=1 -timeout 15m -run '^TestFaults$$' -v ./test/faults \
	  -args -faults.schedule=full -faults.out=$(abspath $(FAULTS_OUT))

proto:
	@command -v protoc >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get update -qq && apt-get install -y -qq protobuf-compiler; }
	PATH="$$(dirname $$($(GO) tool -n protoc-gen-go)):$$(dirname $$($(GO) tool -n protoc-gen-go-grpc)):$$PATH" \
	protoc -I proto \
	  --go_out=. --go_opt=module=github.com/pushgw/pushgw \
	  --go-grpc_out=. --go-grpc_opt=module=github.com/pushgw/pushgw \
	  $$(find proto -name '*.proto')

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...

# Each fuzzer runs FUZZTIME; seed corpora live in each package's testdata/fuzz/.
FUZZTIME ?= 20s
FUZZ_TARGETS := ./pkg/protocol:FuzzDecode ./pkg/protocol:FuzzReadFrame ./pkg/protocol:FuzzDecodeBody ./pkg/token:FuzzVerify \
	./services/center:FuzzPushBody ./services/center:FuzzMultiBody ./services/coordinator:FuzzReplyPayload ./pkg/sdk:FuzzParseEndpoints

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; name=$${t##*:}; \
	  echo "fuzz $$pkg $$name ($(FUZZTIME))"; \
	  $(GO) test $$pkg -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME); \
	done

clean:
	rm -rf $(BIN)
