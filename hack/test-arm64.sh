#!/bin/bash
# The arm64 end-to-end tests: `builder image -a arm64 debian vm` and its boot
# test, both emulated on an amd64 host, rootless and in an unprivileged
# container too. Too slow for hack/test.sh (see the
# times in tests/e2e/arm64_test.go); run it by hand or in a nightly job, as
# root, after hack/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
exec go test -tags arm64e2e ./tests/e2e -run TestArm64 -count=1 -v -timeout 150m "$@"
