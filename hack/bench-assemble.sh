#!/bin/bash
# Assembly throughput: root filesystem bytes per second from builder's built
# tree to the final qcow2 (disk assembly + zstd conversion), against
# `tar -cf - TREE | cat` on the same tree and DIB's assembly of the same
# image (block device creation, copy into the loop-mounted filesystem,
# finalise, unmount, qemu-img convert).
# Usage: hack/bench-assemble.sh [DIB_LOG]  (root; DIB_LOG: a log of
# run-dib.sh ... vm debian-minimal, e.g. from hack/bench-vs-dib.sh; without
# it DIB is run once here.) Best of 3 for builder and tar.
set -euo pipefail
cd "$(dirname "$0")/.."
hack/setup.sh >/dev/null
bin=$PWD/bin/builder
work=$(mktemp -d /var/tmp/builder-bench-asm.XXXXXX)
trap 'rm -rf "$work"' EXIT
cache=${BENCH_CACHE:-/var/tmp/builder-bench-cache}
elements="debian-minimal vm"

# The tree builder assembles (steps cached after the first run).
# shellcheck disable=SC2086
"$bin" image $elements -t tar -o "$work/tree" --image-cache "$cache" >/dev/null
mkdir "$work/rootfs"
tar --numeric-owner --xattrs --xattrs-include='*' -xpf "$work/tree.tar" -C "$work/rootfs"
rm "$work/tree.tar"
bytes=$(du -sb --apparent-size "$work/rootfs" | cut -f1)
files=$(find "$work/rootfs" | wc -l)

best() { sort -n | head -1; }
tarsecs=$(for i in 1 2 3; do
    sync; s=$(date +%s%N); tar -cf - -C "$work/rootfs" . | cat >/dev/null; e=$(date +%s%N)
    awk -v a="$s" -v b="$e" 'BEGIN{printf "%.2f\n", (b-a)/1e9}'
done | best)

asm=()
for i in 1 2 3; do
    # shellcheck disable=SC2086
    out=$(OVERWRITE_OLD_IMAGE=1 "$bin" image $elements -o "$work/img" --image-cache "$cache")
    a=$(awk '$1=="assemble" && NF==2 {print $2}' <<<"$out" | tail -1)
    c=$(awk '$1=="write" && $2=="qcow2" && NF==3 {print $3}' <<<"$out" | tail -1)
    asm+=("$(awk -v a="$a" -v c="$c" 'BEGIN{printf "%.2f %s %s", a+c, a, c}')")
done
read -r total disk conv < <(printf '%s\n' "${asm[@]}" | sort -n | head -1)
qsize=$(stat -c %s "$work/img.qcow2")

if [ $# -ge 1 ]; then
    dib_log=$1
else
    dib_log=$work/dib.log
    DIB_IMAGE_CACHE=$work/dibcache TMP_DIR=$work/dibtmp \
        "$(cd .. && pwd)/shared/tools/dib-baseline/run-dib.sh" "$work/dib" -t qcow2 vm debian-minimal >"$dib_log" 2>&1
fi
ts() { grep -m1 "$1" "$dib_log" | awk '{print $2}'; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{split(a,x,":"); split(b,y,":"); printf "%.1f", (y[1]*3600+y[2]*60+y[3])-(x[1]*3600+x[2]*60+x[3])}'; }
dib_total=$(secs "$(ts 'create() called')" "$(ts 'Image file .* created')")
dib_conv=$(secs "$(ts 'Converting image using qemu-img')" "$(ts 'Image file .* created')")

mbps() { awk -v b="$bytes" -v s="$1" 'BEGIN{printf "%.0f", b/1048576/s}'; }
{
    echo "# assembly throughput, $(date -u +%F), $(nproc) cores; tree: $bytes bytes, $files entries"
    printf '%-52s %8s %8s\n' "" seconds "MiB/s"
    printf '%-52s %8s %8s\n' "tar -cf - TREE | cat (floor)" "$tarsecs" "$(mbps "$tarsecs")"
    printf '%-52s %8s %8s\n' "builder: disk (GPT, ext4, ESP, GRUB) + zstd qcow2" "$total" "$(mbps "$total")"
    printf '%-52s %8s %8s\n' "  of which disk assembly" "$disk" "$(mbps "$disk")"
    printf '%-52s %8s %8s\n' "  of which qcow2 conversion ($qsize bytes)" "$conv" ""
    printf '%-52s %8s %8s\n' "DIB: loop, mkfs, cp, finalise, umount, qemu-img" "$dib_total" "$(mbps "$dib_total")"
    printf '%-52s %8s %8s\n' "  of which qemu-img convert (zlib)" "$dib_conv" ""
}
