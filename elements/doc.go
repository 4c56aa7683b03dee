// Package elements implements diskimage-builder's element model for builder:
// finding elements on ELEMENTS_PATH and in the embedded library, resolving
// element-deps/element-provides exactly as DIB's element_dependencies.py does,
// merging the elements' hook directories into one tree the way DIB's
// generate_hooks does, ordering hooks like dib-run-parts, and reading the
// declarative package-installs and pkg-map files.
//
// Existing DIB elements must work unmodified, so DIB's behaviour is the
// specification. Where this package deliberately differs, it is to turn a
// silent surprise into an error or to make a result deterministic:
//
//   - Resolve de-duplicates the requested names (DIB fails "ubuntu ubuntu" with
//     "operating-system: already provided by ['ubuntu']") and walks element-deps
//     in sorted order (DIB walks a Python set, whose order changes per run).
//   - Directories whose name starts with "." inside an ELEMENTS_PATH entry are
//     not elements (DIB would offer ".git" as an element).
//   - Two entries of one ELEMENTS_PATH directory that resolve to the same
//     element name (a symlink and a directory) are an error instead of
//     "last listed wins".
//   - BuildTree fails on any file collision, also deeper than the first level
//     (static/etc/x from two elements), where DIB's `cp -a` silently lets the
//     element that happens to come last in a bash hash order win.
//   - Entries whose name starts with "." at the top of an element are not
//     copied into the hooks tree (DIB copies hidden top-level files and
//     directories; inside phase directories it already skips them).
//   - Tree.Hooks leaves out block-device.d (builder warns instead of running
//     the legacy phase); a hook symlink that dangles is an error rather than
//     silently skipped.
//   - package-installs files are stricter: unknown keys, duplicate keys, a phase
//     without a runner, "uninstall: false" (DIB treats the mere key as true) and
//     non-mapping values are errors. Arch lists are split on commas and each
//     item trimmed, so "ppc64, ppc64le" matches ppc64le (DIB's lazy map() never
//     strips). Only the package-installs file of the element that won on
//     ELEMENTS_PATH is read (DIB's squash script reads the file of every entry
//     holding a directory of that name, ignoring overrides, and misses a
//     symlinked element whose link name differs). "Install beats
//     uninstall" only counts entries that passed their filters (DIB lets a plain
//     install excluded by arch/when still cancel another element's uninstall).
//   - A deprecated package-installs-<element> line "-pkg" is reported as an
//     install plus an uninstall, which is what DIB's scripts do (the README
//     promises only the removal), and such entries take part in "install
//     beats uninstall" (DIB runs them separately).
//   - pkg-map files with unknown top-level keys or non-string values are
//     errors. A release "N-stream" uses the release key "N-stream" if the map
//     has one, else "N" (DIB maps only 8-stream to 8, and looks other
//     releases up verbatim).
//   - DefaultBlockDevice compares ARCH with arm64/aarch64 exactly; DIB's
//     unanchored regex also matches "arm" or an empty ARCH.
package elements
