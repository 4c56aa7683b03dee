package imagebuild

import (
	"strings"
	"testing"
)

// DIB's bootloader variables shape the kernel command line, the serial
// console and the menu timeout.
func TestBootloaderVariables(t *testing.T) {
	defaults := map[string]string{
		"DIB_BOOTLOADER_DEFAULT_CMDLINE":    "nofb nomodeset gfxpayload=text",
		"DIB_BOOTLOADER_SERIAL_CONSOLE":     "ttyS0,115200",
		"DIB_BOOTLOADER_USE_SERIAL_CONSOLE": "True",
		"DIB_BOOTLOADER_VIRTUAL_TERMINAL":   "tty0",
		"DIB_NO_TIMER_CHECK":                "True",
		"DIB_GRUB_TIMEOUT":                  "5",
	}
	if got := kernelCmdline(defaults); got != "ro console=tty0 console=ttyS0,115200 no_timer_check nofb nomodeset gfxpayload=text" {
		t.Errorf("default cmdline %q", got)
	}
	if got := serialCommand(defaults); got != "serial --speed=115200 --unit=0 --word=8 --parity=no --stop=1" {
		t.Errorf("serial %q", got)
	}
	custom := copyEnv(defaults)
	custom["DIB_BOOTLOADER_DEFAULT_CMDLINE"] = "quiet splash"
	custom["DIB_BOOTLOADER_SERIAL_CONSOLE"] = "ttyS1,9600"
	custom["DIB_BOOTLOADER_VIRTUAL_TERMINAL"] = ""
	custom["DIB_NO_TIMER_CHECK"] = "False"
	custom["DIB_GRUB_TIMEOUT"] = "0"
	if got := kernelCmdline(custom); got != "ro console=ttyS1,9600 quiet splash" {
		t.Errorf("custom cmdline %q", got)
	}
	if got := serialCommand(custom); !strings.Contains(got, "--speed=9600") {
		t.Errorf("serial %q", got)
	}
	if grubTimeout(custom) != 0 || grubTimeout(map[string]string{}) != 5 {
		t.Errorf("timeout")
	}
	custom["DIB_BOOTLOADER_USE_SERIAL_CONSOLE"] = "False"
	if got := kernelCmdline(custom); strings.Contains(got, "ttyS1") || serialCommand(custom) != "" {
		t.Errorf("serial console off, still %q / %q", got, serialCommand(custom))
	}
}

func TestVersionOrder(t *testing.T) {
	if !versionLess("/boot/vmlinuz-6.1.0-9-amd64", "/boot/vmlinuz-6.1.0-10-amd64") {
		t.Errorf("6.1.0-9 should sort before 6.1.0-10")
	}
}
