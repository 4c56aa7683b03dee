#!/bin/bash
# Side-by-side build times of builder and diskimage-builder on this machine,
# for the same image (`vm debian-minimal`): builder cold (empty cache), builder
# warm (nothing changed; and into a new output directory), builder with one
# late hook changed, a cold runner
# (empty store) with a warm registry cache (a local docker-registry), and
# DIB cold.
# Usage: hack/bench-vs-dib.sh [RESULTS_DIR]   (root; DIB from ../shared/tools)
# Run it on a quiet machine: every figure is wall-clock time.
set -euo pipefail
cd "$(dirname "$0")/.."
results=${1:-/var/tmp/builder-bench}
dib_runner=${DIB_RUNNER:-$(cd .. && pwd)/shared/tools/dib-baseline/run-dib.sh}
mkdir -p "$results"
hack/setup.sh >/dev/null
if ! command -v disk-image-create >/dev/null; then
    apt-get install -y -q --no-install-recommends python3-diskimage-builder >/dev/null
fi
bin=$PWD/bin/builder
work=$(mktemp -d /var/tmp/builder-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
elements=${BENCH_ELEMENTS:-debian-minimal vm}


# settle: a cold run starts on a quiet filesystem. On an ext4 without a
# journal (this machine's root), creating files within minutes of a large
# deletion (an earlier test's, the last run's clean-up) costs the kernel a
# scan of the recently deleted inodes per file: up to 10x the time to
# unpack a tree. Both tools' cold runs get the same quiet start.
settle() {
    sync
    sleep "${BENCH_SETTLE_SECONDS:-70}"
}

timeit() { # label, command...
    local label=$1; shift
    local start end
    start=$(date +%s%N)
    "$@" > "$results/$label.log" 2>&1
    end=$(date +%s%N)
    awk -v a="$start" -v b="$end" 'BEGIN{printf "%.1f", (b-a)/1e9}'
}

cache=$work/cache
# A user element with a late (finalise.d) hook, changed before the third run.
mkdir -p "$work/el/late-change/finalise.d"
late_hook=$work/el/late-change/finalise.d/60-late
printf '#!/bin/bash\necho one > /etc/late-change\n' > "$late_hook"
chmod +x "$late_hook"
export ELEMENTS_PATH=$work/el
settle
# shellcheck disable=SC2086
cold=$(timeit builder-cold "$bin" image $elements late-change -o "$work/b" --image-cache "$cache")
# shellcheck disable=SC2086
warm=$(timeit builder-warm env OVERWRITE_OLD_IMAGE=1 "$bin" image $elements late-change -o "$work/b" --image-cache "$cache")
# Nothing changed, the outputs go to a new directory (a CI job's fresh
# workspace with a kept cache).
mkdir -p "$work/fresh"
# shellcheck disable=SC2086
warmnew=$(timeit builder-warm-new-dir "$bin" image $elements late-change -o "$work/fresh/b" --image-cache "$cache")
printf '#!/bin/bash\necho two > /etc/late-change\n' > "$late_hook"
# shellcheck disable=SC2086
late=$(timeit builder-late env OVERWRITE_OLD_IMAGE=1 "$bin" image $elements late-change -o "$work/b" --image-cache "$cache")
# The registry cache: the warm store pushes every step to a local registry,
# then a runner with an empty store builds the same image from it.
regport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$work/registry"
printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: 127.0.0.1:%s\n' \
    "$work/registry/data" "$regport" > "$work/registry/config.yml"
docker-registry serve "$work/registry/config.yml" > "$work/registry/log" 2>&1 &
regpid=$!
trap 'kill $regpid 2>/dev/null; rm -rf "$work"' EXIT
printf '[[registry]]\nlocation = "127.0.0.1:%s"\ninsecure = true\n' "$regport" > "$work/registry/registries.conf"
export CONTAINERS_REGISTRIES_CONF=$work/registry/registries.conf
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$regport/v2/" >/dev/null && break; sleep 0.2; done
# shellcheck disable=SC2086
push=$(timeit builder-push env OVERWRITE_OLD_IMAGE=1 "$bin" image $elements late-change -o "$work/b" --image-cache "$cache" --cache-to "127.0.0.1:$regport/bench")
mkdir -p "$work/runner"
# shellcheck disable=SC2086
regrun=$(timeit builder-registry-runner "$bin" image $elements late-change -o "$work/runner/b" --image-cache "$work/cache-runner" --cache-from "127.0.0.1:$regport/bench")
unset ELEMENTS_PATH CONTAINERS_REGISTRIES_CONF
bsize=$(stat -c %s "$work/b.qcow2")
bvsize=$(qemu-img info --output=json "$work/b.qcow2" | awk -F'[:,]' '/"virtual-size"/{print $2; exit}')

dibcache=$work/dib-cache
settle
# shellcheck disable=SC2086
dib=$(timeit dib-cold env DIB_IMAGE_CACHE="$dibcache" TMP_DIR="$work/dibtmp" "$dib_runner" "$work/d" -t qcow2 $elements)
dsize=$(stat -c %s "$work/d.qcow2")
dvsize=$(qemu-img info --output=json "$work/d.qcow2" | awk -F'[:,]' '/"virtual-size"/{print $2; exit}')

{
    echo "# builder vs diskimage-builder, $(date -u +%F), $(nproc) cores, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "elements: $elements"
    printf '%-28s %10s %14s %14s\n' run seconds "qcow2 bytes" "virtual bytes"
    printf '%-28s %10s %14s %14s\n' "builder cold" "$cold" "$bsize" "$bvsize"
    printf '%-28s %10s\n' "builder warm (no change)" "$warm"
    printf '%-28s %10s\n' "builder warm, new -o dir" "$warmnew"
    printf '%-28s %10s\n' "builder late hook changed" "$late"
    printf '%-28s %10s\n' "builder push to registry" "$push"
    printf '%-28s %10s\n' "cold runner, warm registry" "$regrun"
    printf '%-28s %10s %14s %14s\n' "DIB cold" "$dib" "$dsize" "$dvsize"
    awk -v c="$cold" -v d="$dib" 'BEGIN{printf "builder cold / DIB cold = %.2f\n", c/d}'
} | tee "$results/summary.txt"
