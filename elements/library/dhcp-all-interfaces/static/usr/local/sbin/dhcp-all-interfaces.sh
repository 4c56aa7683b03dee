#!/bin/bash
# dhcp-all-interfaces.sh [IFACE]: give IFACE (default: every interface)
# a DHCP configuration unless it already has one (builder's
# dhcp-all-interfaces element; run by dhcp-interface@IFACE.service, which
# udev starts for each interface that appears).
# dhcp-all-interfaces.sh --up IFACE: bring IFACE up if it is configured.
set -eu
set -o pipefail
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

DHCP_TIMEOUT=30
[ ! -r /etc/dhcp-all-interfaces.conf ] || . /etc/dhcp-all-interfaces.conf
ENI=/etc/network/interfaces

if [ -d /etc/network ]; then
    conf_type=eni
elif [ -d /etc/sysconfig/network-scripts ]; then
    conf_type=rhel
    scripts=/etc/sysconfig/network-scripts
elif [ -d /etc/sysconfig/network ]; then
    conf_type=suse
    scripts=/etc/sysconfig/network
else
    echo "dhcp-all-interfaces: no /etc/network, /etc/sysconfig/network-scripts or /etc/sysconfig/network: unknown network configuration" >&2
    exit 1
fi

log() { echo "dhcp-all-interfaces: $*"; }

has_config() {
    if [ "$conf_type" = eni ]; then
        # ifquery prints the interface's options, nothing when unknown.
        [ -n "$(ifquery "$1" 2>/dev/null)" ]
    else
        [ -f "$scripts/ifcfg-$1" ]
    fi
}

# A VLAN interface "parent.ID" copies its parent's (permanent) address.
is_vlan() {
    local parent=${1%%.*}
    [ "$parent" != "$1" ] || return 1
    [ "$(cat "/sys/class/net/$1/addr_assign_type" 2>/dev/null)" = 2 ] || return 1
    [ "$(cat "/sys/class/net/$parent/addr_assign_type" 2>/dev/null)" = 0 ]
}

# ipv6_mode IFACE: stateful, stateless, slaac, or none, from a router
# advertisement (rdisc6, from ndisc6), within DHCP_TIMEOUT seconds.
ipv6_mode() {
    local ra rc tries
    command -v rdisc6 >/dev/null 2>&1 || { echo none; return; }
    for ((tries = DHCP_TIMEOUT; tries > 0; tries--)); do
        rc=0
        ra=$(rdisc6 --retry 3 --single "$1" 2>/dev/null) || rc=$?
        case $rc in
            0)
                if echo "$ra" | grep -q 'Stateful address conf\..*Yes'; then
                    echo stateful
                elif echo "$ra" | grep -q 'Stateful other conf\..*Yes'; then
                    echo stateless
                else
                    echo slaac
                fi
                return
                ;;
            1) sleep 1 ;; # no link-local address yet
            *) break ;;   # no router answered
        esac
    done
    echo none
}

write_config() {
    local iface=$1 v6=$2 type
    case $conf_type in
        eni)
            {
                printf 'auto %s\niface %s inet dhcp\n' "$iface" "$iface"
                case $v6 in
                    stateful) printf 'iface %s inet6 dhcp\n' "$iface" ;;
                    stateless) printf 'iface %s inet6 auto\n\tdhcp 1\n' "$iface" ;;
                    slaac) printf 'iface %s inet6 auto\n\tdhcp 0\n' "$iface" ;;
                esac
                printf '\n'
            } >> "$ENI"
            ;;
        rhel)
            type=Ethernet
            [ "$(cat "/sys/class/net/$iface/type")" != 32 ] || type=InfiniBand
            {
                printf 'DEVICE="%s"\nBOOTPROTO="dhcp"\nONBOOT="yes"\n' "$iface"
                if is_vlan "$iface"; then
                    printf 'VLAN="yes"\n'
                else
                    printf 'TYPE="%s"\n' "$type"
                fi
                [ "$type" != InfiniBand ] || printf 'CONNECTED_MODE="no"\n'
                case $v6 in
                    stateful) printf 'IPV6INIT="yes"\nIPV6_FORCE_ACCEPT_RA="yes"\nDHCPV6C="yes"\n' ;;
                    stateless) printf 'IPV6INIT="yes"\nIPV6_AUTOCONF="yes"\nDHCPV6C="yes"\nDHCPV6C_OPTIONS="-S"\n' ;;
                    slaac) printf 'IPV6INIT="yes"\nIPV6_AUTOCONF="yes"\n' ;;
                esac
            } > "$scripts/ifcfg-$iface"
            ;;
        suse)
            printf 'BOOTPROTO="dhcp"\nSTARTMODE="auto"\n' > "$scripts/ifcfg-$iface"
            ;;
    esac
    log "$iface: DHCP configured (IPv6: $v6)"
}

inspect() {
    local iface=$1 link=0 tries
    [ -e "/sys/class/net/$iface" ] || { log "$iface: no such interface"; return 0; }
    if has_config "$iface"; then
        log "$iface: already configured, left alone"
        return 0
    fi
    # Only real hardware (a permanent address) and VLANs on it; bridges,
    # bonds, veth and the like have generated addresses.
    if [ "$(cat "/sys/class/net/$iface/addr_assign_type")" != 0 ] && ! is_vlan "$iface"; then
        log "$iface: generated MAC address, skipped"
        return 0
    fi
    for ((tries = DHCP_TIMEOUT; tries > 0; tries--)); do
        ip link set dev "$iface" up >/dev/null 2>&1 || true
        link=$(cat "/sys/class/net/$iface/carrier" 2>/dev/null || echo 0)
        [ "$link" != 1 ] || break
        sleep 1
    done
    if [ "$link" != 1 ]; then
        log "$iface: no link within ${DHCP_TIMEOUT}s, skipped"
        return 0
    fi
    write_config "$iface" "$(ipv6_mode "$iface")"
}

if [ "${1:-}" = --up ]; then
    iface=${2:?usage: dhcp-all-interfaces.sh --up IFACE}
    if has_config "$iface"; then
        exec ifup "$iface"
    fi
    log "$iface: not configured, not brought up"
    exit 0
fi

# Interfaces appear together at boot: one at a time, so that appends to
# /etc/network/interfaces never interleave.
if [ "$conf_type" = eni ] && [ -z "${DHCP_ALL_INTERFACES_LOCKED:-}" ]; then
    DHCP_ALL_INTERFACES_LOCKED=1 exec flock -x "$ENI" "$0" "$@"
fi
if [ -n "${1:-}" ]; then
    inspect "$1"
else
    for path in /sys/class/net/*; do
        iface=${path##*/}
        [ "$iface" != lo ] || continue
        inspect "$iface"
    done
fi
