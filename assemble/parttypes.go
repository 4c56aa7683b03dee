package assemble

import (
	"fmt"
	"strconv"
	"strings"
)

// More GPT partition type GUIDs (upper-case canonical form).
const (
	LinuxLVM  = "E6D6D379-F507-44C2-A23C-238F2A3DF928"
	LinuxSwap = "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"
)

// sgdiskTypeCodes maps the gdisk/sgdisk type codes DIB configs use (and
// their neighbours) to GPT type GUIDs, as gdisk's parttypes table does.
var sgdiskTypeCodes = map[string]string{
	"0700": "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7", // Microsoft basic data
	"0C01": "E3C9E316-0B5C-4DB8-817D-F92DF00215AE", // Microsoft reserved
	"2700": "DE94BBA4-06D1-4D40-A16A-BFD50179D6AC", // Windows recovery
	"4100": "9E1A2D38-C612-4316-AA26-8B49521E5A8B", // PowerPC PReP boot
	"8200": LinuxSwap,
	"8300": LinuxFilesystem,
	"8301": "8DA63339-0007-60C0-C436-083AC8230908", // Linux reserved
	"8302": "933AC7E1-2EB4-4F13-B844-0E14E2AEF915", // Linux /home
	"8303": "44479540-F297-41B2-9AF7-D131D5F0458A", // Linux x86 root
	"8304": LinuxRootX86_64,
	"8305": "B921B045-1DF0-41C3-AF44-4C6F280D3FAE", // Linux ARM64 root
	"8306": "3B8F8425-20E0-4F3B-907F-1A25A76F98E8", // Linux /srv
	"8307": "69DAD710-2CE4-4E3C-B16C-21A1D49ABED3", // Linux ARM32 root
	"8308": "7FFEC5C9-2D00-49B7-8941-3EA10A5586B7", // Linux dm-crypt
	"8309": "CA7D7CCB-63ED-4C53-861C-1742536059CC", // Linux LUKS
	"8310": "4D21B016-B534-45C2-A9FB-5C16E091FD2D", // Linux /var
	"8311": "7EC6F557-3BC5-4ACA-B293-16EF5DF639D1", // Linux /var/tmp
	"8E00": LinuxLVM,
	"EA00": "BC13C2FF-59E6-4262-A352-B275FD6F7172", // XBOOTLDR (/boot)
	"EF00": ESP,
	"EF01": "024DEE41-33E7-11D3-9D69-0008C781F39F", // MBR partition scheme
	"EF02": BIOSBoot,
	"FD00": "A19D880F-05FC-4D3B-A006-743F0F84911E", // Linux RAID
}

// resolvePartitionType sets MBRType or TypeGUID from ps.Type, with DIB's
// defaults (0x83, 8300). A GPT type is a 4-digit sgdisk code or a GUID;
// an MBR type is a hex number. An MBR type too large for a byte ("EF00" on
// an MBR table) is kept as MBRType 0 and refused when the table is
// planned, because DIB accepts it until it writes the table.
func resolvePartitionType(kind TableKind, ps *PartitionSpec) error {
	t := strings.TrimSpace(ps.Type)
	switch kind {
	case MBR:
		if t == "" {
			ps.MBRType = MBRLinux
			return nil
		}
		v, err := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(t), "0x"), 16, 32)
		if err != nil {
			return fmt.Errorf("MBR type %q is not a hex number such as 0x83", ps.Type)
		}
		if v > 0 && v <= 0xFF {
			ps.MBRType = byte(v)
		}
		return nil
	case GPT:
		if t == "" {
			ps.TypeGUID = LinuxFilesystem
			return nil
		}
		if _, err := parseGUID(t); err == nil {
			ps.TypeGUID = strings.ToUpper(t)
			return nil
		}
		code := strings.ToUpper(strings.TrimPrefix(strings.ToLower(t), "0x"))
		if len(code) < 4 {
			code = strings.Repeat("0", 4-len(code)) + code
		}
		if g, ok := sgdiskTypeCodes[code]; ok {
			ps.TypeGUID = g
			return nil
		}
		return fmt.Errorf("GPT type %q is not an sgdisk code builder knows (EF00, EF02, 8300, 8304, 8E00, 8200, ...) nor a GUID", ps.Type)
	}
	return fmt.Errorf("unknown partition table %q", kind)
}

// mbrTypeName names an MBR type for messages.
func mbrTypeName(t string) string {
	if t == "" {
		return "0x83"
	}
	return t
}
