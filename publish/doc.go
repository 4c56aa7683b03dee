// Package publish puts a disk image into OpenStack Glance under a public
// name, safely, and keeps the older versions in order.
//
// The steps, each one Glance call that leaves a usable image under the
// name:
//
//  1. Connect: credentials the OpenStack way (OS_* variables or clouds.yaml),
//     through gophercloud. A Redactor keeps every secret out of the output.
//  2. Inspect the local file: its real format (qemu-img, never the file
//     name), qemu-img check, the partition table (UEFI-only disks get
//     hw_firmware_type=uefi), os-release from the root filesystem (read
//     with debugfs, nothing is mounted), and its hashes.
//  3. Upload under a temporary private name, wait until active, compare
//     Glance's recorded hash (os_hash_value, else the md5 checksum) and
//     size with the file, set the properties: state "verified".
//     With Request.SmokeTest the upload, still private, then boots as a
//     server in the cloud's Nova: ACTIVE and a console log that shows the
//     guest up, then the server is deleted; a failure removes the upload
//     and nothing is promoted.
//  4. Promote: one PATCH gives the new image the name, the visibility and
//     state "current". The old images still have the name at that moment.
//  5. Rotate: the old images become private (or get their date in their
//     name), state "previous"; then versions beyond the keep count are
//     deleted oldest first, never a protected one, never the new one.
//
// The state lives in the images' builder_* properties, so any later run
// (of the same name, on any host) can tell what a run that died left: an
// unfinished upload is deleted, a verified upload of the same file is
// promoted instead of uploaded again, a promotion whose rotation did not
// happen is finished. A rerun over a finished publish changes nothing.
// CleanupOrphans removes, across names, the temporary uploads and
// smoke-test servers of runs that died, once older than a bound.
package publish
