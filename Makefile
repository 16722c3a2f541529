# pushgw — see README.md. Every target that needs Redis/MariaDB/etcd goes
# through scripts/deps.sh, which installs and starts what is missing.
SHELL := /bin/bash
GO    ?= go
BIN   ?= bin
SERVICES := dispatcher room register saver center coordinator

.PHONY: all build run stop test faults proto lint fuzz deps clean bench
.PHONY: test-redis-cluster redis-cluster redis-cluster-stop etcd-cluster etcd-cluster-stop

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

# The Redis-heavy integration tests again, each cluster on a private
# 3-master Redis Cluster (internal/redistest.StartCluster) instead of one
# redis-server: sessions, inboxes, redelivery and backlog pulls. Services
# are built without -race here: `make test` already ran these tests on
# race-built services, and this run is about Redis Cluster semantics
# (PUSHGW_TEST_RACE=1 to build them with -race anyway).
REDIS_CLUSTER_TESTS := ^(TestDelivery|TestRedisDataLoss|TestRedeliveryToConnectedClient|TestSessions|TestBacklogLargerThanAPage|TestPendingPullRetriedAfterSaverOutage)$$
test-redis-cluster: deps
	PUSHGW_TEST_REDIS_CLUSTER=1 PUSHGW_TEST_RACE=$${PUSHGW_TEST_RACE:-0} $(GO) test -count=1 -timeout 15m -run '$(REDIS_CLUSTER_TESTS)' ./test/

# Local multi-node engines for trying pushgw on them by hand (docs/OPERATIONS.md).
redis-cluster:
	@bash scripts/redis-cluster.sh start
redis-cluster-stop:
	@bash scripts/redis-cluster.sh stop
etcd-cluster:
	@bash scripts/etcd-cluster.sh start
etcd-cluster-stop:
	@bash scripts/etcd-cluster.sh stop

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
	@bash scripts/bigfiles.sh

# Each fuzzer runs FUZZTIME; seed corpora live in each package's testdata/fuzz/.
FUZZTIME ?= 20s
FUZZ_TARGETS := ./pkg/protocol:FuzzDecode ./pkg/protocol:FuzzReadFrame ./pkg/protocol:FuzzDecodeBody ./pkg/token:FuzzVerify \
	./services/center:FuzzPushBody ./services/center:FuzzMultiBody ./services/center:FuzzDecodeStrict ./services/coordinator:FuzzReplyPayload ./pkg/sdk:FuzzParseEndpoints \
	./services/center:FuzzTagBody \
	./services/center:FuzzBroadcastBody \
	./services/dispatcher:FuzzPeerRooms \
	./pkg/webhooksig:FuzzVerify
# Transactional push (issue 9): the POST /v1/tx body and check-back answer, the check-back receiver.
FUZZ_TARGETS += ./services/center:FuzzTxBody ./pkg/txcheck:FuzzReadVerified
# The load generator's HTTP/1.1 response parser (pushload -http-client lean).
FUZZ_TARGETS += ./loadtest/cmd/pushload:FuzzReadResponse

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; name=$${t##*:}; \
	  echo "fuzz $$pkg $$name ($(FUZZTIME))"; \
	  $(GO) test $$pkg -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME); \
	done

clean:
	rm -rf $(BIN)

# Benchmarks (loadtest/README.md, docs/BENCHMARKS.md); never part of `make test`.
# make bench SCENARIO=idle|connect|unicast|churn|box|broadcast [BENCH_ARGS='-conns 5000 ...']
# starts its own cluster (private redis-server, ports 17000-19999, etcd prefix
# /pushgw/bench-*/, MySQL database pushgw_bench_*), runs each room engine, writes
# JSON and PNG under loadtest/results/<UTC date>/ and stops by itself.
SCENARIO ?= idle
BENCH_ARGS ?=
bench: deps build
	$(BIN)/pushload bench -scenario $(SCENARIO) -bin $(BIN) $(BENCH_ARGS)
