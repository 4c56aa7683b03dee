#!/bin/bash
# Sets up what is missing, then runs every test: vet, unit tests, and the
# end-to-end tests that build and boot images (root, 20-40 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
# Test-only tools: a local OCI registry and skopeo (base images from a
# registry), Glance and Keystone (publishing), rpm, dnf, zypper and
# createrepo-c (the rpm family's install-packages against a local repository).
BUILDER_SETUP_EXTRA="docker-registry skopeo podman rpm dnf zypper createrepo-c" hack/setup.sh
hack/ci-services.sh install
export PATH=/usr/local/go/bin:$PATH
export BUILDER_BIN=$PWD/bin/builder
echo "test: gofmt and go vet"
bad=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$bad" ]; then
    echo "gofmt would change: $bad" >&2
    exit 1
fi
go vet ./...
echo "test: go test ./... (unit and end-to-end)"
# One package at a time: the end-to-end tests boot VMs under software
# emulation and want both cores.
go test -p 1 -timeout 80m -count=1 "$@" ./...
