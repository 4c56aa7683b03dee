#!/bin/bash
# builder's dib-run-parts: runs one phase's hooks the way diskimage-builder's
# dib-run-parts does (environment.d sourced first, in byte order; scripts in
# the order given, or in DIB's order when none are given), and prints a
# marker line around each script so builder can time and attribute it.
set -eu
set -o pipefail
dir=${1:?usage: dib-run-parts DIR [SCRIPT...]}
shift
mark=${BUILDER_HOOK_MARK:-}
# Only builder's own run marks its hooks: a hook's own dib-run-parts must not.
unset BUILDER_HOOK_MARK
say() {
    if [ -n "$mark" ]; then
        printf '\n%s %s\n' "$mark" "$*"
    fi
}
envdir=$dir/../environment.d
if [ -d "$envdir" ]; then
    for f in $(cd "$envdir" && LC_ALL=C ls); do
        case $f in
            *[!0-9A-Za-z_.-]*) continue ;;
        esac
        [ -f "$envdir/$f" ] || continue
        say env "$f"
        # shellcheck disable=SC1090
        source "$envdir/$f"
    done
fi
if [ $# -eq 0 ] && [ -d "$dir" ]; then
    mapfile -t scripts < <(find "$dir" -maxdepth 1 -xtype f -executable -printf '%f\n' |
        grep -E '^[0-9A-Za-z_-]+$' | LC_ALL=C sort -n)
else
    scripts=("$@")
fi
for s in "${scripts[@]}"; do
    say start "$s"
    rc=0
    "$dir/$s" || rc=$?
    say end "$s" "$rc"
    if [ "$rc" -ne 0 ]; then
        exit "$rc"
    fi
done
