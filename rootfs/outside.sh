#!/bin/bash
# Runs an outside hook command with the host read-only except the paths it
# was given. builder starts this script in a new mount namespace; nothing
# done here is visible on the host.
#   outside.sh [-w WRITABLE]... [-r READ_ONLY]... -- COMMAND...
# READ_ONLY paths are inside a WRITABLE one but must stay read-only (the
# container store inside the image cache).
set -eu
writable=()
readonly_paths=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    case $1 in
        -w) writable+=("$2") ;;
        -r) readonly_paths+=("$2") ;;
        *) echo "outside.sh: bad argument $1" >&2; exit 2 ;;
    esac
    shift 2
done
shift
# mountinfo, children before parents (tac would need a writable /tmp).
mountpoints() {
    local lines i
    mapfile -t lines < /proc/self/mountinfo
    for ((i = ${#lines[@]} - 1; i >= 0; i--)); do
        printf '%s\n' "${lines[i]}"
    done
}
# Keep our mount changes to ourselves.
mount --make-rprivate /
under_writable() {
    local w
    for w in "${writable[@]}"; do
        case $1 in
            "$w"|"$w"/*) return 0 ;;
        esac
    done
    return 1
}
# Every mount read-only, except the kernel's pseudo filesystems and mounts
# at or under a writable path (the target root is one).
declare -A mounted=()
while read -r _ _ _ _ mp _; do
    mp=$(printf '%b' "${mp//\\/\\0}")  # mountinfo escapes spaces as \040
    mounted[$mp]=1
    case $mp in
        /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue ;;
    esac
    under_writable "$mp" && continue
    mount -o remount,bind,ro "$mp" 2>/dev/null || true
done < <(mountpoints)
# Writable directories become read-write mounts. --rbind carries the mounts
# below them (the target root may sit inside the image cache).
for p in "${writable[@]}"; do
    [ -e "$p" ] || continue
    [ -n "${mounted[$p]:-}" ] && continue
    mount --rbind "$p" "$p"
    mount -o remount,bind,rw "$p"
done
# And read-only again what must stay so inside them, with every mount
# below it, except a writable path within (the target root).
for p in "${readonly_paths[@]}"; do
    [ -e "$p" ] || continue
    mount --rbind "$p" "$p"
    mount -o remount,bind,ro "$p"
done
protected() {
    local r w
    for r in "${readonly_paths[@]}"; do
        case $1 in
            "$r"/*) ;;
            *) continue ;;
        esac
        for w in "${writable[@]}"; do
            case $w in
                "$r"/*) case $1 in "$w"|"$w"/*) return 1 ;; esac ;;
            esac
        done
        return 0
    done
    return 1
}
while read -r _ _ _ _ mp _; do
    mp=$(printf '%b' "${mp//\\/\\0}")
    protected "$mp" && mount -o remount,bind,ro "$mp" 2>/dev/null || true
done < <(mountpoints)
exec "$@"
