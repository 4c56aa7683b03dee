#!/bin/bash
# The Kubernetes end-to-end test: builder's pipeline as an Indexed Job on a
# real one-node Kubernetes v1.34 started on 127.0.0.1 (hack/k8s/cluster.sh),
# with a local registry as the shared step cache and Glance behind Keystone.
# Kept out of hack/test.sh for CI's time budget: on a fresh machine the
# cluster binaries alone take about 10 minutes to build (cached under the
# test cache afterwards; the test itself takes about 8 minutes). Run it as
# root after hack/setup.sh, by hand or in a nightly job.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
hack/ci-services.sh install
exec go test -tags k8se2e ./tests/k8s -count=1 -v -timeout 90m "$@"
