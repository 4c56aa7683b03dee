#!/bin/bash
# Runs an outside hook command with the host read-only except the paths it
# was given. builder starts this script in a new mount namespace; nothing
# done here is visible on the host.
#   outside.sh WRITABLE_PATH... -- COMMAND...
set -eu
writable=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    writable+=("$1")
    shift
done
shift
# Keep our mount changes to ourselves.
mount --make-rprivate /
# Every mount read-only (the kernel's pseudo filesystems stay as they are).
while read -r _ _ _ _ mp _; do
    mp=$(printf '%b' "${mp//\\/\\0}")  # mountinfo escapes spaces as \040
    case $mp in
        /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue ;;
    esac
    mount -o remount,bind,ro "$mp" 2>/dev/null || true
done < <(tac /proc/self/mountinfo)
# Then what the hook may write.
for p in "${writable[@]}"; do
    [ -e "$p" ] || continue
    mount --bind "$p" "$p"
    mount -o remount,bind,rw "$p"
done
exec "$@"
