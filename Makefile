# The aixblock node. `make run` starts a local network, `make test` tests it.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/aixblock/aixblock/node.Version=$(VERSION)
# go-nvml's headers carry deprecation warnings that are not ours to fix.
export CGO_CFLAGS := -Wno-deprecated-declarations

.PHONY: hooks build test test-short test-race e2e-chain fuzz run bench bench-gossip bench-services bench-idle bench-gpu bench-transfer bench-transfer-daemons gpu-check gpu-check-real lint clean contracts contracts-check bench-gas bench-market bench-scale bench-scale-real bench-jobs bench-e2e bench-verify bench-ddp e2e-torch job-image bench-wan

# -trimpath keeps the checkout's path out of the binary and out of the
# build cache's keys, so a second checkout (the README test's) reuses the
# cache instead of compiling everything again.
build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/aixblock ./cmd/aixblock

# Test artifacts (the dashboard's screenshots) land under artifacts/.
test:
	mkdir -p artifacts
	$(GO) test -count=1 -timeout 25m -artifacts -outputdir $(CURDIR)/artifacts ./...

# A quick loop while editing: the long tests skip themselves under -short.
test-short:
	$(GO) test -short -count=1 ./...

# The money path under the race detector: the chain, the market, the
# deals being executed and paid, and the daemon that wires them. Their
# goroutines share channels, vouchers and records, where a race pays
# the wrong amount instead of crashing.
test-race:
	$(GO) test -race -count=1 -p 1 -timeout 20m ./chain/ ./market/ ./node/lease/ ./node/

# Every fuzz target in the repo for FUZZTIME each, one after another
# (`go test -fuzz` takes one target at a time). They are found by name,
# so a new one is fuzzed without an edit here; a crash stops the loop
# and its input lands in the package's testdata/fuzz/, where plain
# `go test` replays it from then on.
FUZZTIME ?= 30s
fuzz:
	@set -e; grep -rno --include='*_test.go' --exclude-dir=node_modules --exclude-dir=.git '^func Fuzz[A-Za-z0-9_]*' . | sort | \
	while IFS=: read -r file _ fn; do \
		name=$${fn#func }; dir=$$(dirname "$$file"); \
		echo "== $$name ($$dir, $(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) "$$dir/" </dev/null; \
	done

# Set-up (Docker), a four-node testnet, and one job end to end from node0;
# the testnet keeps running (./bin/aixblock testnet down stops it).
run: build
	./testnet/run.sh

# Figures for the closing notes: gossip delivery and DHT lookups at several
# sizes, then a daemon's memory and CPU when idle with 10 peers.
bench: bench-gpu bench-transfer bench-gossip bench-idle bench-gas bench-market bench-jobs bench-e2e

# One run: get to a file, bitswap alone, a raw TCP copy and a libp2p stream
# copy over the same hosts, as MiB/s and ratios of TCP; data add against Go
# reading and SHA-256 hashing the file; writing the file once, cached and
# direct, as the disk's floor (AIXBLOCK_BENCH_MIB=N for another size).
bench-transfer:
	$(GO) test -run '^$$' -bench Transfer -benchtime 1x -timeout 30m ./p2p/content/

# data get between two daemons against a raw TCP copy and Kubo (built once
# from its Go module into .testnet/), 256 MiB, 3 rounds, ratios and spread.
bench-transfer-daemons: build
	./testnet/transfer.sh

# Requests/s and p50/p99 through a port forward over libp2p vs direct, and the first byte's setup time, as ratios.
bench-services:
	$(GO) test -run '^$$' -bench BenchmarkForward -benchtime 3000x ./p2p/overlay/

bench-gpu:
	$(GO) test -run '^$$' -bench . -benchtime 2s ./gpu/

# The compute challenge on this CPU: the prover's and the verifier's
# times at the testnet's n and at 1024 (AIXBLOCK_BENCH_N=N adds one),
# the verifier's share of the work measured and counted, the
# false-accept bounds, and each GPU class's n and time window.
bench-challenge:
	$(GO) test -v -run '^$$' -bench Challenge -benchtime 3x -timeout 30m ./gpu/challenge/

# The inventory and one health pass with the real NVML library (on a GPU machine).
gpu-check: build
	./bin/aixblock gpu check

# On a host with an NVIDIA driver: the Manager against real NVML, with
# nvidia-smi as the witness.
gpu-check-real:
	AIXBLOCK_REAL_NVML=1 $(GO) test -count=1 -run TestRealNVML -v ./gpu/

bench-gossip:
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./p2p/

bench-idle: build
	./testnet/idle.sh

# gofmt, a tidy go.mod and go.sum, go vet and staticcheck (pinned by
# go.mod's tool line; a staticcheck.conf beside a package says which checks
# are off there, and why). `go mod tidy -diff` changes nothing: it prints
# what tidying would change and fails if that is anything.
lint:
	@out=$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt wants to change:"; echo "$$out"; exit 1; fi
	@$(GO) mod tidy -diff || { echo "go.mod or go.sum is not tidy (above, what go mod tidy would change): run go mod tidy"; exit 1; }
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

# The repo's git hooks (.githooks): commit subjects under 72 characters.
hooks:
	git config core.hooksPath .githooks

clean:
	rm -rf bin .testnet

# Solidity -> contracts/artifacts (pinned solc from contracts/package.json)
# -> Go bindings (abigen v2). Commit all three.
contracts:
	cd contracts && npm ci --no-audit --no-fund && node compile.js
	$(GO) run ./contracts/cmd/bindgen

# Fails when a fresh compile differs from the committed artifacts.
contracts-check:
	cd contracts && npm ci --no-audit --no-fund && node compile.js --check

# geth from the go-ethereum module go.mod pins, for the real-client chain
# tests: built once per machine and version into
# $(go env GOCACHE)/../aixblock-geth/<version>/geth (minutes), then found
# there; prints its path. AIXBLOCK_GETH=/path/to/geth uses another.
.PHONY: geth
geth:
	$(GO) run ./chain/gethtest/cmd/buildgeth

# Gas per escrow operation and per job on the simulated backend, compared
# with chain/testdata/gas.json; UPDATE=1 rewrites the snapshot.
bench-gas:
	$(GO) test -count=1 -run TestGasSnapshot -v ./chain/ $(if $(UPDATE),-update-gas)

# Offer to signed deal, p50/p99 and messages per deal, on 10 and 50 daemons
# on loopback and 50 and 500 peers on a mocknet with 10 ms links.
bench-market:
	$(GO) test -run '^$$' -bench Deal -benchtime 1x -timeout 30m ./market/

# The market, DHT and gossip of N simulated nodes in virtual time, at
# each size of SCALE_NODES, then under SCALE_CHURN (a share per hour,
# 0.1) after SCALE_CHURN_MINUTES (20) of it; SCALE_NAT (0.2),
# SCALE_LOSS (0, full tier only), SCALE_PROVIDERS (the providers' share,
# 0.1) and SCALE_RTT (a factor on every link's round trip, 1) shape the
# network; SCALE_DEALS (300) deals are made, one every
# SCALE_DEAL_EVERY_MS (500; 0 makes them all at once, as
# bench-scale-real does). SCALE_PROC_MS (0) charges each market request
# that much of its handler's CPU, light tier only, queued on the node's
# own CPU or, with SCALE_CORES, on that many shared by every node (one
# machine's, as bench-scale-real's daemons share): bench-scale-real's
# cpu-ms/deal over the market messages per deal sets it. Two tiers
# (SCALE_TIER=full, light or both): the full tier runs every node as a
# whole libp2p host on a mocknet in a synctest bubble (about 9 MiB a node
# at 100, 17 MiB at 300), at sizes up to SCALE_FULL_MAX (300); the light
# tier is a discrete-event model of the same protocols, at every size.
SCALE_NODES ?= 100,1000,10000
SCALE_TIER ?= both
bench-scale:
	SCALE_NODES=$(SCALE_NODES) SCALE_TIER=$(SCALE_TIER) $(GO) test -count=1 -run '^TestScale$$' -v -timeout 6h ./market/sim/

# REAL_NODES (50) real daemons on loopback and one dev chain, a fifth of
# them CPU providers, the rest each submitting one tiny job at once:
# offer to deal and submit to completed p50/p99, jobs per second, and
# each daemon's memory, the CPU they and the chain spent per deal and at
# rest, and the load average, to hold against bench-scale at the same
# size (needs a Docker engine; minutes). AIXBLOCK_BENCH_PHASES=1 runs the
# daemons at debug level and gives each phase of a deal, p50/p99.
REAL_NODES ?= 50
bench-scale-real:
	AIXBLOCK_REAL_NODES=$(REAL_NODES) $(GO) test -run '^$$' -bench ScaleReal -benchtime 1x -v -timeout 60m ./cmd/aixblock/

# job run --local against docker run --rm of the same scratch image, and a
# burst of 50 jobs (needs a Docker engine).
bench-jobs:
	$(GO) test -run '^$$' -bench Jobs -benchtime 1x -timeout 30m ./cmd/aixblock/

# Real PyTorch: a 2-node gloo DDP job and the DiLoCo example (as a plain
# distributed job) across two providers, and the elastic example on 3 of 4
# providers through the SIGKILL of one, on an image built once with
# debootstrap (python3-torch) and docker import.
e2e-torch:
	AIXBLOCK_E2E_TORCH=1 AIXBLOCK_REQUIRE_DOCKER=1 $(GO) test -run TestTorch -count=1 -v -timeout 30m ./cmd/aixblock/

# The job network against plain TCP between the same two namespaces (a
# copy and the workload's all-reduce, unshaped and at 10 and 1 Gbit/s),
# then the gang start on a testnet of 2 and 3 providers (needs root,
# iproute2 and a Docker engine). AIXBLOCK_BENCH_PROFILE=DIR writes the
# job network daemons' CPU profiles there; AIXBLOCK_BENCH_SYSCALLS=1
# counts their system calls per MiB of the copy (perf).
bench-ddp:
	$(GO) test -run '^$$' -bench JobNetLink -benchtime 3x -timeout 10m ./p2p/overlay/
	$(GO) test -run '^$$' -bench GangStart -benchtime 1x -timeout 10m ./cmd/aixblock/

# Training across a WAN: plain DDP against DiLoCo in 16 and 8 bits, two
# ranks in network namespaces whose links tc netem shapes to 50 ms round
# trip and 100 Mbit/s: time and bytes sent per step, compute utilisation,
# held-out loss after the same samples (needs root, iproute2 and
# python3-torch; AIXBLOCK_WAN_STEPS=N inner steps per rank, 300).
bench-wan:
	AIXBLOCK_REQUIRE_TORCH=1 $(GO) test -run '^$$' -bench WAN -benchtime 1x -v -timeout 30m ./jobs/

# Money on real chains, minutes each: market jobs on a geth built from
# the pinned module (1 s blocks with a 60 s RPC outage; 12 s blocks with 2
# confirmations), a dev chain's RPC gone mid-job, a 2-minute prepay
# through a 30 s absence (needs a Docker engine; make geth first).
e2e-chain:
	AIXBLOCK_E2E_CHAIN=1 AIXBLOCK_REQUIRE_DOCKER=1 $(GO) test -run 'TestJobThroughRPCOutage|TestMarketOnGeth|TestConfirmationsOnGeth|TestPrepayFlag' -count=1 -v -timeout 20m ./cmd/aixblock/

# The test workload as a FROM-scratch image (aixblock-test/jobprog:latest),
# for jobs/examples/hello.yaml and make run; needs a Docker engine. The
# tests build it the same way (jobs/jobstest).
job-image:
	$(GO) run ./jobs/jobstest/cmd/jobimage

# Twenty tiny jobs from node0 of a four-node testnet, submit to running and
# to results, against docker run --rm (needs a Docker engine).
bench-e2e:
	$(GO) test -run '^$$' -bench 'E2E|GangStart' -benchtime 1x -timeout 30m ./cmd/aixblock/

bench-verify:
	$(GO) test -run '^$$' -bench 'Verify' -benchtime 1x -timeout 30m ./cmd/aixblock/
