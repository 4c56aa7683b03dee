#!/bin/bash
# Builds the same image twice, with different caches and temp dirs (the
# second under a clock two days ahead when faketime is installed: it reaches
# the host tools builder runs, mkfs, mtools, qemu-img, tar), and compares the
# raw, qcow2 and tar outputs byte for byte. When they differ it names the
# files that differ, from the two tar outputs.
# Usage: hack/reprotest.sh [ELEMENT...]      (default: debian vm; root)
set -euo pipefail
cd "$(dirname "$0")/.."
elements=("$@")
[ ${#elements[@]} -gt 0 ] || elements=(debian vm)
bin=${BUILDER:-$PWD/bin/builder}
[ -x "$bin" ] || go build -o "$bin" ./cmd/builder
work=$(mktemp -d /var/tmp/builder-reprotest.XXXXXX)
trap 'rm -rf "$work"' EXIT
clock=()
if command -v faketime >/dev/null; then
    clock=(env NO_FAKE_STAT=1 faketime -f +2d)
else
    echo "reprotest: faketime is not installed (apt-get install faketime): the second build runs on the real clock" >&2
fi
for n in 1 2; do
    mkdir -p "$work/$n/out" "$work/$n/tmp"
    types=raw,qcow2,tar
    run=("$bin" image "${elements[@]}" -t "$types" -o "$work/$n/out/image" --image-cache "$work/$n/cache")
    [ "$n" = 2 ] && run=("${clock[@]}" "${run[@]}")
    echo "reprotest: build $n: ${elements[*]}"
    if ! TMP_DIR=$work/$n/tmp "${run[@]}" > "$work/$n/log" 2>&1; then
        tail -30 "$work/$n/log"
        echo "reprotest: build $n failed" >&2
        exit 2
    fi
done
status=0
for ext in raw qcow2 tar; do
    a=$(sha256sum < "$work/1/out/image.$ext" | cut -d' ' -f1)
    b=$(sha256sum < "$work/2/out/image.$ext" | cut -d' ' -f1)
    if [ "$a" = "$b" ]; then
        echo "reprotest: image.$ext identical ($a)"
    else
        echo "reprotest: image.$ext differs ($a, $b)"
        status=1
    fi
done
if [ "$status" != 0 ]; then
    python3 - "$work/1/out/image.tar" "$work/2/out/image.tar" <<'PY'
import hashlib, sys, tarfile
def listing(path):
    out = {}
    with tarfile.open(path) as t:
        for m in t:
            digest = hashlib.sha256(t.extractfile(m).read()).hexdigest()[:16] if m.isfile() else ""
            out[m.name] = (m.type, oct(m.mode), m.uid, m.gid, int(m.mtime), m.linkname, m.size, digest)
    return out
a, b = listing(sys.argv[1]), listing(sys.argv[2])
diffs = sorted(n for n in set(a) | set(b) if a.get(n) != b.get(n))
for n in diffs[:200]:
    print(f"  {n}: {a.get(n)} != {b.get(n)}")
print(f"reprotest: {len(diffs)} files differ")
PY
fi
exit $status
