package assemble

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// lvmConfig makes the lvm tools work on this build's loop devices only,
// without touching the host: no activation (so no device-mapper, which
// this kernel lacks, and no /dev/mapper nodes to clean up), no udev, no
// metadata backups or archives in the host's /etc/lvm (they would be named
// after the image's volume group and could overwrite the host's), no
// devices file, no hints.
const lvmConfig = `global { activation = 0 use_lvmpolld = 0 }
activation { udev_sync = 0 udev_rules = 0 monitoring = 0 }
devices { obtain_device_list_from_udev = 0 use_devicesfile = 0 scan_lvs = 0 hints = "none" md_component_detection = 0 multipath_component_detection = 0 }
backup { backup = 0 archive = 0 }`

// lvmCommands are DIB's pvcreate, vgcreate and lvcreate calls for the
// layout's LVM section, given the device of each physical volume's
// partition: "pvcreate DEV OPTIONS", "vgcreate VG DEVS... OPTIONS",
// "lvcreate --name LV (-L <bytes>B | -l EXTENTS) OPTIONS VG", with sizes
// floored to 4 MiB as DIB does.
func lvmCommands(l *LVM, partDev map[string]string) [][]string {
	var cmds [][]string
	pvDev := map[string]string{}
	for _, pv := range l.PVs {
		dev := partDev[pv.Base]
		pvDev[pv.Name] = dev
		cmds = append(cmds, append([]string{"pvcreate", dev}, pv.Options...))
	}
	for _, vg := range l.VGs {
		c := []string{"vgcreate", vg.Name}
		for _, pv := range vg.Base {
			c = append(c, pvDev[pv])
		}
		cmds = append(cmds, append(c, vg.Options...))
	}
	for _, lv := range l.LVs {
		c := []string{"lvcreate", "--name", lv.Name}
		if lv.Extents == "" {
			c = append(c, "-L", fmt.Sprintf("%dB", lv.Size.Bytes/(4*MiB)*(4*MiB)))
		} else {
			c = append(c, "-l", lv.Extents)
		}
		c = append(c, lv.Options...)
		cmds = append(cmds, append(c, lv.Base))
	}
	return cmds
}

// createLVM writes the layout's LVM metadata with the lvm tools, on a loop
// device over each physical volume's partition, and reads back where
// lvcreate put each logical volume, so that the filesystems on them are
// then made at their offsets in the image like any other. Nothing is
// activated: the volumes never appear as devices on the build host.
func createLVM(ctx context.Context, d *Disk, img string, plans []FSPlan) (err error) {
	l := d.Layout.LVM
	partDev := map[string]string{}
	devPart := map[string]Partition{}
	var devs []string
	defer func() {
		cctx, cancel := cleanupContext(ctx)
		defer cancel()
		for _, dev := range devs {
			removeHolders(cctx, dev)
			if _, derr := run(cctx, "losetup", "-d", dev); derr != nil && err == nil {
				err = fmt.Errorf("detach %s: %w", dev, derr)
			}
		}
	}()
	for _, pv := range l.PVs {
		var part *Partition
		for i := range d.Table.Partitions {
			if d.Table.Partitions[i].Name == pv.Base {
				part = &d.Table.Partitions[i]
			}
		}
		if part == nil {
			return fmt.Errorf("pv %s: partition %s is not in the table", pv.Name, pv.Base)
		}
		dev, err := attachLoop(ctx, img, part.StartBytes, part.SizeBytes)
		if err != nil {
			return err
		}
		devs = append(devs, dev)
		partDev[pv.Base], devPart[dev] = dev, *part
	}
	common := []string{"--config", lvmConfig, "--devices", strings.Join(devs, ",")}
	lvm := func(c []string) error {
		args := append([]string{c[0]}, common...)
		if _, err := run(ctx, "lvm", append(args, c[1:]...)...); err != nil {
			return fmt.Errorf("LVM: %w", err)
		}
		return nil
	}
	for _, c := range lvmCommands(l, partDev) {
		switch c[0] {
		case "vgcreate":
			// No auto-activation while the volume group is on this
			// host: a udev that activates volume groups would otherwise
			// take the loop devices. It is turned back on below, for the
			// image's own boots.
			c = append(c, "--setautoactivation", "n")
		case "lvcreate":
			// -an: never activated here; -Zn -Wn: lvcreate cannot zero
			// an inactive volume, and mkfs writes its start anyway.
			c = append(c[:len(c)-1], "-an", "-Zn", "-Wn", c[len(c)-1])
		}
		if err := lvm(c); err != nil {
			return err
		}
	}
	for _, vg := range l.VGs {
		if err := lvm([]string{"vgchange", "--setautoactivation", "y", vg.Name}); err != nil {
			return err
		}
	}
	exts, err := lvExtents(ctx, common, devPart)
	if err != nil {
		return err
	}
	for i := range plans {
		p := &plans[i]
		if !p.isLV {
			continue
		}
		e, ok := exts[p.Volume]
		if !ok {
			return fmt.Errorf("lvs does not list logical volume %s", p.Volume)
		}
		var size int64
		for _, x := range e {
			size += x.size
		}
		if size < p.SizeBytes {
			return fmt.Errorf("logical volume %s is %s, planned %s", p.Volume, humanBytes(size), humanBytes(p.SizeBytes))
		}
		p.extents, p.SizeBytes, p.OffsetBytes = e, size, -1
		if len(e) == 1 {
			p.OffsetBytes = e[0].off
		}
	}
	return nil
}

// lvExtents asks lvs where each logical volume's extents are, and turns
// them into byte ranges of the image: partition start + the physical
// volume's first extent + extent number * extent size.
func lvExtents(ctx context.Context, common []string, devPart map[string]Partition) (map[string][]extent, error) {
	pvOut, err := run(ctx, "lvm", append(append([]string{"pvs"}, common...), "--reportformat", "json", "--units", "b", "--nosuffix", "-o", "pv_name,pe_start")...)
	if err != nil {
		return nil, fmt.Errorf("LVM: %w", err)
	}
	var pvs struct {
		Report []struct {
			PV []struct {
				Name    string `json:"pv_name"`
				PEStart string `json:"pe_start"`
			} `json:"pv"`
		} `json:"report"`
	}
	if err := json.Unmarshal(pvOut, &pvs); err != nil || len(pvs.Report) == 0 {
		return nil, fmt.Errorf("LVM: cannot read pvs' report: %v", err)
	}
	peStart := map[string]int64{}
	for _, pv := range pvs.Report[0].PV {
		n, err := strconv.ParseInt(pv.PEStart, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("LVM: pvs pe_start %q", pv.PEStart)
		}
		peStart[pv.Name] = n
	}
	lvOut, err := run(ctx, "lvm", append(append([]string{"lvs"}, common...), "--segments", "--reportformat", "json", "--units", "b", "--nosuffix",
		"-o", "lv_name,segtype,seg_pe_ranges,vg_extent_size")...)
	if err != nil {
		return nil, fmt.Errorf("LVM: %w", err)
	}
	var lvs struct {
		Report []struct {
			Seg []struct {
				LV       string `json:"lv_name"`
				Type     string `json:"segtype"`
				PERanges string `json:"seg_pe_ranges"`
				Extent   string `json:"vg_extent_size"`
			} `json:"seg"`
		} `json:"report"`
	}
	if err := json.Unmarshal(lvOut, &lvs); err != nil || len(lvs.Report) == 0 {
		return nil, fmt.Errorf("LVM: cannot read lvs' report: %v", err)
	}
	out := map[string][]extent{}
	for _, s := range lvs.Report[0].Seg {
		if s.Type != "linear" {
			return nil, fmt.Errorf("logical volume %s has a %s segment: builder writes linear volumes only (lvcreate options that stripe or mirror are not supported)", s.LV, s.Type)
		}
		ext, err := strconv.ParseInt(s.Extent, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("LVM: extent size %q", s.Extent)
		}
		for _, r := range strings.Fields(s.PERanges) {
			dev, span, ok := strings.Cut(r, ":")
			a, b, ok2 := strings.Cut(span, "-")
			first, err1 := strconv.ParseInt(a, 10, 64)
			last, err2 := strconv.ParseInt(b, 10, 64)
			part, known := devPart[dev]
			if !ok || !ok2 || errors.Join(err1, err2) != nil || !known {
				return nil, fmt.Errorf("LVM: cannot read the extent range %q of %s", r, s.LV)
			}
			e := extent{off: part.StartBytes + peStart[dev] + first*ext, size: (last - first + 1) * ext}
			if n := len(out[s.LV]); n > 0 && out[s.LV][n-1].off+out[s.LV][n-1].size == e.off {
				out[s.LV][n-1].size += e.size
				continue
			}
			out[s.LV] = append(out[s.LV], e)
		}
	}
	return out, nil
}
