#!/usr/bin/env bash
# Starts a dev chain and N daemons (default 3) on loopback, each with its own
# repo under .testnet/ and a funded dev account as its wallet, all
# bootstrapped from the first. Ctrl-C stops them all.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-3}
bin=./bin/aixblock
net=${AIXBLOCK_NETWORK:-local}
dir=.testnet
pids=()

stop() {
	trap - INT TERM EXIT
	echo
	echo "stopping the dev chain and the daemons..."
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	wait
	echo "stopped; repos kept in $dir/ (make clean removes them)"
}
trap stop INT TERM EXIT

mkdir -p "$dir"
chainfile="$dir/devchain.json"
rm -f "$chainfile"
"$bin" devchain --http 127.0.0.1:0 --accounts $((n + 1)) --out "$chainfile" --json >/dev/null 2>"$dir/devchain.log" &
pids+=($!)
for _ in $(seq 1 200); do [ -s "$chainfile" ] && break; sleep 0.05; done
if [ ! -s "$chainfile" ]; then
	echo "the dev chain did not start; its log:" >&2
	cat "$dir/devchain.log" >&2
	exit 1
fi
first=""
for i in $(seq 1 "$n"); do
	repo="$dir/node$i"
	if [ ! -f "$repo/config.json" ]; then
		# Dev account i: its key is in the chain file (never use it elsewhere).
		sed -n 's/.*"private_key": "\(.*\)".*/\1/p' "$chainfile" | sed -n "$((i + 1))p" >"$dir/node$i.key"
		# node1 rents out mock H100s, node2 mock A100s; the rest only buy.
		gpus=()
		case $i in
		1) gpus=(--gpu-mock dgxh100 --price nvidia-h100-80gb=2) ;;
		2) gpus=(--gpu-mock dgxa100 --price nvidia-a100-40gb=1) ;;
		esac
		"$bin" --repo "$repo" init --network "$net" --devchain "$chainfile" --wallet-key "$dir/node$i.key" "${gpus[@]}" >/dev/null
	fi
	rm -f "$repo/api"
	args=(--repo "$repo" daemon --listen /ip4/127.0.0.1/tcp/0 --listen /ip4/127.0.0.1/udp/0/quic-v1
		--api 127.0.0.1:0 --gateway 127.0.0.1:0 --mdns=false --nat=false --network "$net" --devchain "$chainfile" --voucher-interval 2s)
	[ -n "$first" ] && args+=(--bootstrap "$first")
	"$bin" "${args[@]}" 2>"$dir/node$i.log" &
	pids+=($!)
	for _ in $(seq 1 200); do [ -f "$repo/api" ] && break; sleep 0.05; done
	if [ ! -f "$repo/api" ]; then
		echo "node$i did not start; its log:" >&2
		cat "$dir/node$i.log" >&2
		exit 1
	fi
	if [ -z "$first" ]; then
		first=$("$bin" --repo "$repo" id --json | sed -n 's/^ *"\(\/ip4\/127.0.0.1\/tcp\/[^"]*\)".*/\1/p' | head -n1)
	fi
done

sleep 1
echo "dev chain at $(sed -n 's/.*"rpc_url": "\(.*\)".*/\1/p' "$chainfile") (details in $chainfile)"
echo "$n daemons running on network '$net' (logs in $dir/nodeN.log):"
for i in $(seq 1 "$n"); do
	repo="$dir/node$i"
	printf '  node%s  peer %s  api %s  peers %s  wallet %s\n' "$i" \
		"$("$bin" --repo "$repo" --json id | sed -n 's/.*"peer_id": "\(.*\)".*/\1/p')" \
		"$(cat "$repo/api")" \
		"$("$bin" --repo "$repo" --json status | sed -n 's/.*"peers": \([0-9]*\).*/\1/p')" \
		"$("$bin" --repo "$repo" wallet address)"
done

# Money on the dev chain: node1 opens a channel to node2, signs a voucher,
# node2 redeems it.
if [ "$n" -ge 2 ]; then
	payee=$("$bin" --repo "$dir/node2" wallet address)
	echo
	echo "node1 deposits 10 tUSD into a channel to node2, vouches 2.5, node2 redeems:"
	"$bin" --repo "$dir/node1" wallet deposit "$payee" 10 | sed 's/^/  /'
	"$bin" --repo "$dir/node1" wallet voucher "$payee" 2.5 -o "$dir/voucher.json"
	"$bin" --repo "$dir/node2" wallet redeem "$dir/voucher.json" | sed 's/^/  /'
	"$bin" --repo "$dir/node2" wallet channels | sed 's/^/  /'
fi

# A job in a locked-down container, when a Docker engine answers.
if docker info >/dev/null 2>&1 && make -s job-image >/dev/null 2>&1; then
	echo
	echo "node1 runs a job in a container (jobs/examples/hello.yaml):"
	id=$("$bin" --repo "$dir/node1" job submit jobs/examples/hello.yaml --local)
	"$bin" --repo "$dir/node1" job logs -f "$id" | sed 's/^/  /'
	"$bin" --repo "$dir/node1" job status "$id" | sed -n 's/^\(state\|exit_code\|result_cid\).*/  &/p'
else
	echo
	echo "(no Docker engine answers: skipping the job demo; see README, Jobs)"
fi

# The whole path: the last node runs a job through the market; node1's
# H100s run it; the requester's daemon pays by vouchers; node1 redeems.
if [ "$n" -ge 3 ] && docker info >/dev/null 2>&1; then
	echo
	echo "node$n runs a job through the market (2 tUSD per GPU-hour at most 5):"
	before=$("$bin" --repo "$dir/node1" wallet balance --json | sed -n 's/.*"token_balance_units": "\(.*\)".*/\1/p')
	"$bin" --repo "$dir/node$n" job run --gpus 1 --gpu-class nvidia-h100-80gb --max-price 5 \
		aixblock-test/jobprog:latest -- sleep 3s 2>&1 | sed 's/^/  /'
	sleep 2.5 # the final voucher goes out at the next 2 s tick
	"$bin" --repo "$dir/node1" wallet redeem | sed 's/^/  node1 /'
	after=$("$bin" --repo "$dir/node1" wallet balance --json | sed -n 's/.*"token_balance_units": "\(.*\)".*/\1/p')
	echo "  node1's tUSD: $before before, $after after"
fi

# The market alone: the last node finds the H100 provider and agrees a deal.
if [ "$n" -ge 3 ]; then
	echo
	echo "node$n looks for H100s and agrees a deal for 2 of them:"
	for _ in $(seq 1 50); do
		"$bin" --repo "$dir/node$n" market providers --gpu nvidia-h100-80gb | grep -q nvidia-h100 && break
		sleep 0.2
	done
	"$bin" --repo "$dir/node$n" market providers --gpu nvidia-h100-80gb | sed 's/^/  /'
	"$bin" --repo "$dir/node$n" market offer --gpus 2 --gpu-class nvidia-h100-80gb --max-price 5 | sed 's/^/  /'
fi
cat <<MSG

Reach them with the CLI, e.g.:
  $bin --repo $dir/node1 peers
  $bin --repo $dir/node2 status --json
  curl -H "Authorization: Bearer \$(cat $dir/node1/api.token)" \$(cat $dir/node1/api)/v1/status
  cid=\$($bin --repo $dir/node1 data add --pin README.md); $bin --repo $dir/node3 data cat \$cid
  $bin --repo $dir/node1 wallet balance
  $bin --repo $dir/node1 wallet channels
  $bin --repo $dir/node3 market providers
  $bin --repo $dir/node1 market deals
Bootstrap address of node1: $first
Press Ctrl-C to stop.
MSG
wait
