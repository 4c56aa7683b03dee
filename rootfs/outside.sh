#!/bin/bash
# Runs an outside hook command with the host read-only except the paths it
# was given. builder starts this script in a new mount namespace; nothing
# done here is visible on the host.
#   outside.sh [-w WRITABLE]... [-r READ_ONLY]... [-t ROOT AT]
#              [-b SOURCE DEST]... [-p ROOT] [-M] -- COMMAND...
# READ_ONLY paths are inside a WRITABLE one but must stay read-only (the
# container store inside the image cache). -t shows the target root ROOT
# at AT too (DIB's $TMP_BUILD_DIR/mnt, a path some elements take apart).
# -b re-creates a bind mount an
# earlier outside hook made into the target. -p gives ROOT the /proc, /sys
# and /dev DIB mounts into the target. -M writes this namespace's mount
# table to file descriptor 3 when the command has ended, so builder can
# carry the hooks' own mounts to later phases.
set -eu
writable=()
readonly_paths=()
bind_src=()
bind_dst=()
pseudo_root=""
report_mounts=""
target_root=""
target_at=""
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    case $1 in
        -w) writable+=("$2"); shift 2 ;;
        -r) readonly_paths+=("$2"); shift 2 ;;
        -b) bind_src+=("$2"); bind_dst+=("$3"); shift 3 ;;
        -p) pseudo_root=$2; shift 2 ;;
        -t) target_root=$2; target_at=$3; shift 3 ;;
        -M) report_mounts=1; shift ;;
        *) echo "outside.sh: bad argument $1" >&2; exit 2 ;;
    esac
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
if [ -n "$target_at" ]; then
    mkdir -p "$target_at"
    mount --rbind "$target_root" "$target_at"
fi
# The kernel filesystems DIB mounts into the target after root.d: the
# host's /proc, a read-only /sys, and a /dev holding only the usual device
# nodes (a bind of the host's whole /dev would let a careless "rm -rf" in
# the target reach the host's devices).
pseudo() {
    local root=$1 n
    if [ -d "$root/proc" ]; then
        mount --rbind /proc "$root/proc" || return 1
    fi
    if [ -d "$root/sys" ]; then
        mount --rbind /sys "$root/sys" || return 1
        mount -o remount,bind,ro "$root/sys" 2>/dev/null
    fi
    if [ -d "$root/dev" ]; then
        mount -t tmpfs -o mode=755,nosuid builder-dev "$root/dev" || return 1
        for n in null zero full random urandom tty; do
            [ -e "/dev/$n" ] || continue
            : > "$root/dev/$n" && mount --bind "/dev/$n" "$root/dev/$n" || return 1
        done
        mkdir -p "$root/dev/pts" "$root/dev/shm" || return 1
        mount --rbind /dev/pts "$root/dev/pts" 2>/dev/null
        ln -s pts/ptmx "$root/dev/ptmx" && ln -s /proc/self/fd "$root/dev/fd"
    fi
}
if [ -n "$pseudo_root" ]; then
    if ! pseudo "$pseudo_root" 2>/dev/null; then
        echo "builder: note: /proc, /sys or /dev could not be mounted in the target for this outside phase" >&2
    fi
fi
# Bind mounts earlier outside hooks made into the target (DIB keeps them
# for the rest of the build).
for i in "${!bind_src[@]}"; do
    mkdir -p "${bind_dst[i]}"
    mount --rbind "${bind_src[i]}" "${bind_dst[i]}"
done
# The working directory was entered before the mounts above: enter it again
# through them, or writes there would meet the read-only remount.
cd "$PWD"
if [ -z "$report_mounts" ]; then
    exec "$@"
fi
rc=0
"$@" 3>&- || rc=$?
cat /proc/self/mountinfo >&3
exit "$rc"
