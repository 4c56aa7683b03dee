#!/bin/bash
# Sets up what is missing, then runs every test: formatting, vet,
# staticcheck, go.mod tidiness, unit tests, and the end-to-end tests that
# build and boot images (root). Ends with the counts of tests run, skipped
# (with reasons) and failed. With BUILDER_TEST_STRICT=1 (.ci/run sets it)
# a missing prerequisite fails its test instead of skipping it.
set -euo pipefail
cd "$(dirname "$0")/.."
# Test-only tools: a local OCI registry and skopeo (base images from a
# registry), podman (builds in an unprivileged container), rpm, dnf,
# zypper and createrepo-c (the rpm family's install-packages against a
# local repository), diskimage-builder itself (its library is builder's
# fallback and the tests compare with it), python3-yaml (svc-map's merge,
# checked on the host), cpio (the ramdisk test reads initramfs archives with it).
BUILDER_SETUP_EXTRA="docker-registry skopeo podman rpm dnf zypper createrepo-c python3-diskimage-builder python3-yaml cpio faketime" hack/setup.sh
# Only tests/glance needs the OpenStack services' packages: they install
# while the other tests run, and tests/glance runs last.
svc_log=$(mktemp /tmp/builder-ci-services-install.XXXXXX)
svc_rc=$svc_log.rc
# An early failure waits for the install rather than cutting dpkg short.
trap 'wait; rm -f "$svc_log" "$svc_rc"' EXIT
(
    rc=0
    hack/ci-services.sh install >"$svc_log" 2>&1 || rc=$?
    echo "$rc" >"$svc_rc.tmp" && mv "$svc_rc.tmp" "$svc_rc"
) &
export PATH=/usr/local/go/bin:$PATH
export BUILDER_BIN=$PWD/bin/builder
echo "test: gofmt, go vet, go mod tidy, staticcheck"
bad=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$bad" ]; then
    echo "gofmt would change: $bad" >&2
    exit 1
fi
go vet ./...
if ! go mod tidy -diff >/dev/null; then
    echo "go.mod/go.sum are not tidy: run go mod tidy" >&2
    go mod tidy -diff >&2 || true
    exit 1
fi
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
echo "test: fuzzing the parsers of users' files, 12 s each"
# Go's native fuzzing (the seed corpora also run with the unit tests). A
# crash stops here; its input is saved in the package's testdata/fuzz/
# and becomes a seed once committed with the fix.
for target in elements:FuzzParsePackageInstalls elements:FuzzParsePkgMap elements:FuzzParseNameList \
    assemble:FuzzParseBlockDeviceConfig pipeline:FuzzParse; do
    go test "./${target%%:*}" -run '^$' -fuzz "^${target#*:}\$" -fuzztime 12s -fuzzminimizetime 2s
done
echo "test: go test ./... (unit and end-to-end)"
# One package at a time: the end-to-end tests boot VMs under software
# emulation and run in two lanes of their own (tests/e2e/main_test.go).
{
    # A failure here is counted from its events; tests/glance runs anyway.
    go test -json -p 1 -timeout 85m -count=1 "$@" $(go list ./... | grep -v '/tests/glance$') || true
    while [ ! -e "$svc_rc" ]; do sleep 2; done
    if [ "$(cat "$svc_rc")" != 0 ]; then
        echo "hack/ci-services.sh install failed; tests/glance will miss Glance:" >&2
        cat "$svc_log" >&2
    fi
    go test -json -p 1 -timeout 85m -count=1 "$@" ./tests/glance
} | go run ./hack/testsummary
