#!/usr/bin/env bash
# One challenge on this machine's NVIDIA GPUs, verified, with its
# throughput against the class's envelope:
#   gpu/challenge/nvidia/calibrate.sh CLASS [GPUS] [PRECISION]
# e.g. calibrate.sh nvidia-h100-80gb 1 fp16. Needs Go, Docker with the
# NVIDIA container toolkit, and the GPUs; the first run builds the image.
# The verifier recomputes the 40 opened rows on the CPU: a minute or two
# at the n an 80 GB card fills.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
class=${1:?usage: calibrate.sh CLASS [GPUS] [PRECISION]}
gpus=${2:-$(nvidia-smi -L | wc -l)}
precision=${3:-fp16}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$repo" && CGO_ENABLED=0 go build -o "$work/challenge" ./gpu/challenge/cmd/challenge)
docker build -q -t aixblock/challenge-nvidia "$here" >/dev/null

plan=$("$work/challenge" plan -class "$class" -gpus "$gpus" -precision "$precision")
echo "plan: $plan"
n=$(sed -n 's/.*"n":\([0-9]*\).*/\1/p' <<<"$plan")
seed=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
mkdir -m 777 "$work/out"
start=$(date +%s%N)
# C stays on the GPUs' host only as its hashes (CHALLENGE_ROWS=0): the
# verifier's opened rows are recomputed.
docker run --rm --gpus "\"device=$(seq -s, 0 $((gpus - 1)))\"" \
	-e CHALLENGE_SEED="$seed" -e CHALLENGE_N="$n" -e CHALLENGE_GPUS="$gpus" \
	-e CHALLENGE_PRECISION="$precision" -e CHALLENGE_ROWS=0 \
	-v "$work/out:/outputs" aixblock/challenge-nvidia | sed 's/^/run: /'
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
echo "elapsed: ${elapsed_ms} ms, seed to root.hex on this clock"
"$work/challenge" check -dir "$work/out" -seed "$seed" -n "$n" -gpus "$gpus" -precision "$precision" \
	-class "$class" -elapsed "${elapsed_ms}ms" | sed 's/^/check: /'
