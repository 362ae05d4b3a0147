#!/usr/bin/env bash
# Measures one daemon's resident memory and CPU over an idle window (default
# 60 s) while it has 10 peers, next to a lone daemon in the same run as the
# baseline (same binary, same machine, same window).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=./bin/aixblock
peers=${PEERS:-10}
idle=${IDLE_SECONDS:-60}
dir=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait; rm -rf "$dir"' EXIT

start() { # start NAME NETWORK [BOOTSTRAP]
	local repo="$dir/$1"
	"$bin" --repo "$repo" init --network "$2" >/dev/null
	local args=(--repo "$repo" daemon --listen /ip4/127.0.0.1/tcp/0 --api 127.0.0.1:0 --gateway 127.0.0.1:0 --mdns=false --nat=false)
	[ -n "${3:-}" ] && args+=(--bootstrap "$3")
	"$bin" "${args[@]}" 2>"$repo.log" &
	pids+=($!)
	for _ in $(seq 1 200); do [ -f "$repo/api" ] && return; sleep 0.05; done
	echo "$1 did not start" >&2; cat "$repo.log" >&2; exit 1
}
addr() { "$bin" --repo "$dir/$1" id --json | sed -n 's/^ *"\(\/ip4\/127.0.0.1\/tcp\/[^"]*\)".*/\1/p' | head -n1; }
pid() { cat "$dir/$1/repo.lock"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

start measured idle
first=$(addr measured)
for i in $(seq 1 "$peers"); do start "peer$i" idle "$first"; done
start lone idle-baseline
for _ in $(seq 1 100); do
	n=$("$bin" --repo "$dir/measured" status --json | sed -n 's/.*"peers": \([0-9]*\).*/\1/p')
	[ "$n" -ge "$peers" ] && break
	sleep 0.1
done
echo "measured daemon has $n peers; idling ${idle}s..."

m=$(pid measured) l=$(pid lone)
m0=$(cpu_ticks "$m") l0=$(cpu_ticks "$l") t0=$(date +%s.%N)
sleep "$idle"
m1=$(cpu_ticks "$m") l1=$(cpu_ticks "$l") t1=$(date +%s.%N)
hz=$(getconf CLK_TCK)
awk -v m0="$m0" -v m1="$m1" -v l0="$l0" -v l1="$l1" -v t0="$t0" -v t1="$t1" -v hz="$hz" \
	-v mr="$(rss_kib "$m")" -v lr="$(rss_kib "$l")" -v n="$n" 'BEGIN {
	w = t1 - t0
	mc = (m1 - m0) / hz / w * 100; lc = (l1 - l0) / hz / w * 100
	printf "idle %.0fs        rss_MiB  cpu_%%\n", w
	printf "with %2d peers     %7.1f  %5.2f\n", n, mr / 1024, mc
	printf "lone (baseline)   %7.1f  %5.2f\n", lr / 1024, lc
	printf "ratio             %7.2f  %5.2f\n", mr / lr, (lc > 0 ? mc / lc : 0)
}'
