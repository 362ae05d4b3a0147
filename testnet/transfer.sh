#!/usr/bin/env bash
# data get between two daemons on loopback, next to its baselines in the
# same run: a raw TCP copy of the same file (testnet/tcpcopy) and Kubo
# between two of its own daemons (ipfs add, then ipfs get on the other;
# Kubo's defaults). Each round starts from an empty receiver (gc), gets the
# file to disk and checks its SHA-256. Prints each round and the median
# ratios.
#
# Kubo is built once from its Go module (KUBO_VERSION, default v0.42.0)
# into .testnet/, or taken from KUBO=path. SIZE_MIB (default 256) and
# ROUNDS (default 3) change the run; AIXBLOCK_BIN another build of ours.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${AIXBLOCK_BIN:-./bin/aixblock}
size=${SIZE_MIB:-256}
rounds=${ROUNDS:-3}
kubo_version=${KUBO_VERSION:-v0.42.0}
kubo=${KUBO:-.testnet/kubo-$kubo_version/ipfs}

if [ ! -x "$kubo" ]; then
	echo "building Kubo $kubo_version from its Go module (once; several minutes)..."
	src=$(go mod download -json "github.com/ipfs/kubo@$kubo_version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
	[ -n "$src" ] || { echo "could not download github.com/ipfs/kubo@$kubo_version" >&2; exit 1; }
	# Its go.mod has exclude directives, which `go install pkg@version`
	# refuses: build it as the main module, from a writable copy.
	tmp=$(mktemp -d)
	cp -r "$src" "$tmp/kubo" && chmod -R u+w "$tmp/kubo"
	mkdir -p "$(dirname "$kubo")"
	(cd "$tmp/kubo" && go build -trimpath -o "$OLDPWD/$kubo" ./cmd/ipfs)
	rm -rf "$tmp"
fi
go build -o .testnet/tcpcopy ./testnet/tcpcopy

dir=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT

file="$dir/payload"
head -c "$((size << 20))" /dev/urandom >"$file"
want=$(sha256sum "$file" | cut -d' ' -f1)

wait_file() { for _ in $(seq 1 400); do [ -f "$1" ] && return; sleep 0.05; done; echo "$2 did not start" >&2; cat "$3" >&2; exit 1; }

# Ours: two daemons, b bootstrapped to a.
ours() { # ours NAME [BOOTSTRAP]
	local repo="$dir/$1"
	"$bin" --repo "$repo" init --network transfer >/dev/null
	local args=(--repo "$repo" daemon --listen /ip4/127.0.0.1/tcp/0 --api 127.0.0.1:0 --gateway 127.0.0.1:0 --mdns=false --nat=false)
	[ -n "${2:-}" ] && args+=(--bootstrap "$2")
	"$bin" "${args[@]}" 2>"$repo.log" &
	pids+=($!)
	wait_file "$repo/api" "$1" "$repo.log"
}
ours a
a_addr=$("$bin" --repo "$dir/a" id --json | sed -n 's/^ *"\(\/ip4\/127.0.0.1\/tcp\/[^"]*\)".*/\1/p' | head -n1)
ours b "$a_addr"
cid=$("$bin" --repo "$dir/a" data add -q "$file" 2>/dev/null | tail -n1)

# Kubo: two daemons of its own, connected directly.
kubo_start() { # kubo_start NAME
	local repo="$dir/kubo-$1"
	IPFS_PATH=$repo "$kubo" init --profile test >/dev/null
	IPFS_PATH=$repo "$kubo" daemon --offline=false >"$repo.log" 2>&1 &
	pids+=($!)
	wait_file "$repo/api" "kubo $1" "$repo.log"
}
kubo_start a
kubo_start b
ka=$(IPFS_PATH=$dir/kubo-a "$kubo" id -f '<addrs>' | grep '/ip4/127.0.0.1/tcp/' | head -n1)
kid=$(IPFS_PATH=$dir/kubo-a "$kubo" id -f '<id>')
IPFS_PATH=$dir/kubo-b "$kubo" swarm connect "$ka/p2p/$kid" >/dev/null
kcid=$(IPFS_PATH=$dir/kubo-a "$kubo" add -Q "$file")

now() { date +%s.%N; }
rate() { awk -v s="$size" -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", s / (b - a) }'; }
check() { # check FILE WHAT
	[ "$(sha256sum "$1" | cut -d' ' -f1)" = "$want" ] || { echo "$2: the file got differs" >&2; exit 1; }
	rm -f "$1"
}

printf "%-6s %10s %10s %10s %9s %9s\n" round tcp_MiB/s ours_MiB/s kubo_MiB/s ours/tcp ours/kubo
results=()
for r in $(seq 1 "$rounds"); do
	tcp=$(.testnet/tcpcopy "$file")

	"$bin" --repo "$dir/b" data gc >/dev/null
	t0=$(now)
	"$bin" --repo "$dir/b" data get -q "$cid" -o "$dir/ours.out" >/dev/null
	t1=$(now)
	check "$dir/ours.out" ours
	o=$(rate "$t0" "$t1")

	IPFS_PATH=$dir/kubo-b "$kubo" repo gc >/dev/null
	t0=$(now)
	IPFS_PATH=$dir/kubo-b "$kubo" get -o "$dir/kubo.out" "$kcid" >/dev/null 2>&1
	t1=$(now)
	check "$dir/kubo.out" kubo
	k=$(rate "$t0" "$t1")

	line=$(awk -v r="$r" -v t="$tcp" -v o="$o" -v k="$k" 'BEGIN { printf "%-6s %10.1f %10.1f %10.1f %9.2f %9.2f", r, t, o, k, o / t, o / k }')
	echo "$line"
	results+=("$line")
done
# The median of each ratio over the rounds, with its spread.
col() { printf '%s\n' "${results[@]}" | awk -v c="$1" '{ print $c }' | sort -g; }
spread() { col "$1" | awk '{ v[NR] = $1 } END { printf "%.2f (min %.2f, max %.2f)", v[int((NR + 1) / 2)], v[1], v[NR] }'; }
echo "median ours/tcp $(spread 5)  ours/kubo $(spread 6)"
