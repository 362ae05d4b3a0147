#!/usr/bin/env bash
# make run: set-up, a four-node testnet, and one job end to end from node0:
# found in the market, paid through the escrow, results fetched by CID.
# The testnet keeps running; `./bin/aixblock testnet down` stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=./bin/aixblock
dir=.testnet

./testnet/ensure-docker.sh
make -s job-image >/dev/null
"$bin" testnet down --dir "$dir" >/dev/null 2>&1 || true
"$bin" testnet up --dir "$dir"

echo
echo "node0 runs a job through the market (at most 5 tUSD per GPU-hour):"
declare -A before
for i in 1 2 3; do
	before[$i]=$("$bin" --repo "$dir/node$i" wallet balance --json | sed -n 's/.*"token_balance_units": "\(.*\)".*/\1/p')
done
out=$("$bin" --repo "$dir/node0" job run --gpus 1 --max-price 5 --output /outputs/hello.txt \
	aixblock-test/jobprog:latest -- greet "hello from a provider" 2>&1)
echo "$out" | sed 's/^/  /'
id=$(echo "$out" | sed -n 's/^job \([0-9a-f]*\)$/\1/p' | head -n1)
"$bin" --repo "$dir/node0" job status "$id" | sed -n 's/^\(state\|provider\|result_cid\).*/  &/p'
rm -rf "$dir/results"
"$bin" --repo "$dir/node0" job results "$id" -o "$dir/results" >/dev/null
echo "  results in $dir/results: $(cat "$dir/results/hello.txt")"
sleep 2.5 # the final voucher goes out at the next 2 s tick
for i in 1 2 3; do
	paid=$("$bin" --repo "$dir/node$i" wallet redeem --json | sed -n 's/.*"paid_units": "\(.*\)".*/\1/p')
	if [ -n "$paid" ] && [ "$paid" != 0 ]; then
		after=$("$bin" --repo "$dir/node$i" wallet balance --json | sed -n 's/.*"token_balance_units": "\(.*\)".*/\1/p')
		echo "  node$i ran it and redeemed $paid tUSD: its tUSD went from ${before[$i]} to $after"
	fi
done

echo
echo "node0 challenged each provider it found (proof of GPU: a matrix product run as a job on"
echo "the GPUs advertised, checked by Freivalds and Merkle openings; mock GPUs verify as mock):"
"$bin" --repo "$dir/node0" market providers --wait-verified 3 --wait-for 90s | sed 's/^/  /'

cat <<MSG

The testnet keeps running. Try:
  $bin --repo $dir/node0 job run --gpus 1 --max-price 5 aixblock-test/jobprog:latest -- echo hi
  $bin --repo $dir/node0 job submit jobs/examples/hello.yaml --local
  $bin --repo $dir/node0 market providers
  $bin --repo $dir/node1 wallet channels
  $bin testnet status
  $bin --repo $dir/node3 dashboard --open      (the web dashboard; prints the link without --open)
Stop it with:
  $bin testnet down        (add --purge to delete $dir)
MSG
