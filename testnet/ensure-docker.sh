#!/usr/bin/env bash
# Makes sure a Docker engine answers: installs Debian's docker.io and starts
# dockerd when it can (as root), and says clearly what to do when it cannot.
set -uo pipefail
docker info >/dev/null 2>&1 && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "No Docker engine answers, and installing one needs root." >&2
	echo "Run: sudo apt-get install -y docker.io && sudo systemctl start docker (and add yourself to the docker group), then make run again." >&2
	exit 1
fi
if ! command -v dockerd >/dev/null; then
	echo "installing docker.io..." >&2
	apt-get update -qq && apt-get install -y -qq docker.io >/dev/null || { echo "could not install docker.io" >&2; exit 1; }
fi
echo "starting dockerd..." >&2
(dockerd >/tmp/aixblock-dockerd.log 2>&1 &)
for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && exit 0; sleep 1; done
echo "dockerd did not start; its log:" >&2
tail -20 /tmp/aixblock-dockerd.log >&2
exit 1
