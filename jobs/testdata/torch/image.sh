#!/usr/bin/env bash
# Builds aixblock-test/torch:latest: a Debian root with python3-torch (CPU),
# made by debootstrap from this machine's own apt mirror and docker
# import-ed (no registry). Cached by tag: a second run does nothing.
set -euo pipefail
tag=${1:-aixblock-test/torch:latest}
if docker image inspect "$tag" >/dev/null 2>&1; then
	echo "image $tag: cached"
	exit 0
fi
if ! command -v debootstrap >/dev/null; then
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi
# The mirror and suite this machine's apt already uses.
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
if [ -z "$mirror" ]; then
	mirror=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list)
fi
suite=$(. /etc/os-release && echo "$VERSION_CODENAME")
root=$(mktemp -d /var/tmp/aixblock-torch.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "debootstrap $suite with python3-torch (a few minutes)..."
start=$(date +%s)
debootstrap --variant=minbase --include=python3-torch "$suite" "$root" "$mirror" >"$root.log" 2>&1 || {
	tail -20 "$root.log"
	exit 1
}
rm -f "$root.log"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | docker import -c 'ENV PYTHONUNBUFFERED=1' - "$tag" >/dev/null
echo "image $tag: built in $(($(date +%s) - start)) s, $(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.2f GB", $1/1e9}')"
