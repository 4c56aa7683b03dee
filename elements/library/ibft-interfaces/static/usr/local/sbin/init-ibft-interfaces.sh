#!/bin/bash
# Configure the network interfaces of the firmware's iSCSI Boot Firmware
# Table, if it has one (builder's ibft-interfaces element).
set -eu
set -o pipefail

if ! command -v iscsistart >/dev/null 2>&1; then
    echo "init-ibft-interfaces: iscsistart not found (open-iscsi); iBFT interfaces not configured" >&2
    exit 1
fi
# -f prints the firmware's boot targets and fails when there is no iBFT.
if ! iscsistart -f >/dev/null 2>&1; then
    echo "init-ibft-interfaces: no iBFT; nothing to configure"
    exit 0
fi
if ! iscsistart -N; then
    echo "init-ibft-interfaces: iscsistart -N could not configure the iBFT interfaces" >&2
    exit 1
fi
# The new devices' udev events must be done before network-online.target.
udevadm settle
echo "init-ibft-interfaces: iBFT interfaces configured"
