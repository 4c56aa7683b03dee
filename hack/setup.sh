#!/bin/bash
# Installs what builder needs on Debian 12 (only what is missing) and builds
# bin/builder. Safe to run again. Needs root or sudo for apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH=/usr/local/go/bin:$PATH
# The C libraries buildah links against, and the tools builder runs.
mapfile -t packages < <(cat hack/packages-build.txt hack/packages-runtime.txt | sed -e 's/#.*//' -e '/^[[:space:]]*$/d')
extra=${BUILDER_SETUP_EXTRA:-}
# shellcheck disable=SC2206
packages+=($extra)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    if [ "$(id -u)" != 0 ]; then
        sudo=sudo
    fi
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get -o DPkg::Lock::Timeout=600 update -q
    $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}"
fi

if ! command -v go >/dev/null; then
    echo "setup: Go is not installed: install Go 1.26 or newer to /usr/local/go (https://go.dev/dl/)" >&2
    exit 1
fi
mkdir -p bin
echo "setup: building bin/builder"
go build -o bin/builder ./cmd/builder
echo "setup: ready: $(pwd)/bin/builder"
