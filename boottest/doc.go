// Package boottest boots a disk image under QEMU and decides from the serial
// console whether it really came up: a login prompt, cloud-init finished
// (when the image has cloud-init), and a probe run inside the guest that
// reports the kernel command line, the root filesystem and disk sizes, the
// test user and the failed systemd units.
//
// The image is never written: QEMU boots a throw-away qcow2 overlay backed by
// it, larger than the image so that growing the root filesystem can be
// checked. A NoCloud seed (a small FAT image labelled CIDATA, made with
// mkfs.vfat and mtools, so genisoimage is not needed) carries the user-data.
//
// KVM is tried first when it looks usable, but some hosts expose a /dev/kvm
// that cannot run guests (nested PVM: SeaBIOS prints its banner and the
// guest then stalls, UEFI dies with "KVM internal error"). Run watches the
// console for the kernel and falls back to TCG when it does not appear in
// time, and caches that verdict so later runs skip the probe.
//
// Every QEMU runs in its own process group with a parent-death signal, is
// killed on every exit path, and a final scan of /proc makes sure nothing
// that refers to the run directory is left running.
package boottest
