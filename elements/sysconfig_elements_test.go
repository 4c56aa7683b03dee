package elements

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// Unit tests of the system-configuration elements (dhcp-all-interfaces,
// simple-init, timezone, hwclock, sysctl, modprobe, disable-nouveau,
// iscsi-boot, local-config, cloud-init, stable-interface-names): their
// scripts run against a temporary root (BUILDER_TARGET_ROOT), above all for
// the rpm families, which no build here can reach.

// writeFiles creates files below root (parents included).
func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, data := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return string(data)
}

// runScriptErr runs a library script like runScript and returns its
// combined output and whether it failed.
func runScriptErr(t *testing.T, bin string, env []string, script string, args ...string) (string, bool) {
	t.Helper()
	cmd := exec.Command("/bin/bash", append([]string{filepath.Join("library", script)}, args...)...)
	cmd.Env = append([]string{"PATH=" + bin + ":/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + t.TempDir()}, env...)
	out, err := cmd.CombinedOutput()
	return string(out), err != nil
}

const simpleInitScript = "library/simple-init/static/usr/local/sbin/simple-init"

// simpleInit runs builder's boot-time simple-init with python3 against a
// temporary root, a config drive directory (or none) and a fake
// /sys/class/net.
func simpleInit(t *testing.T, root, drive, sysNet string, args ...string) string {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Fatalf("python3 is needed to test simple-init (apt-get install python3): %v", err)
	}
	a := []string{simpleInitScript, "--root", root, "--sys-class-net", sysNet}
	if drive != "" {
		a = append(a, "--config-drive", drive)
	}
	cmd := exec.Command(py, append(a, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("simple-init %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// sysClassNet fakes /sys/class/net: name -> "MAC assign-type".
func sysClassNet(t *testing.T, ifaces map[string]string) string {
	dir := t.TempDir()
	for name, v := range ifaces {
		f := strings.Fields(v)
		writeFiles(t, dir, map[string]string{name + "/address": f[0] + "\n", name + "/addr_assign_type": f[1] + "\n"})
	}
	return dir
}

const networkData = `{
  "links": [
    {"id": "tap-a", "type": "phy", "ethernet_mac_address": "FA:16:3E:00:00:0A", "mtu": 1450},
    {"id": "tap-b", "type": "ovs", "ethernet_mac_address": "fa:16:3e:00:00:0b"},
    {"id": "vlan-a", "type": "vlan", "vlan_link": "tap-a", "vlan_id": 100, "vlan_mac_address": "fa:16:3e:00:00:0a"},
    {"id": "bond0", "type": "bond", "bond_links": ["tap-b"]}
  ],
  "networks": [
    {"id": "n1", "link": "tap-a", "type": "ipv4", "ip_address": "192.0.2.10", "netmask": "255.255.255.0",
     "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "192.0.2.1"},
                {"network": "10.0.0.0", "netmask": "255.0.0.0", "gateway": "192.0.2.254"}]},
    {"id": "n2", "link": "tap-a", "type": "ipv6", "ip_address": "2001:db8::10/64",
     "routes": [{"network": "::", "netmask": "::", "gateway": "2001:db8::1"}]},
    {"id": "n3", "link": "tap-b", "type": "ipv4_dhcp"},
    {"id": "n4", "link": "vlan-a", "type": "ipv4", "ip_address": "198.51.100.5", "netmask": "255.255.255.128"}
  ],
  "services": [{"type": "dns", "address": "192.0.2.53"}, {"type": "dns", "address": "192.0.2.54"}]
}`

const metaData = `{"hostname": "vm1.example.org", "name": "vm1",
  "public_keys": {"mykey": "ssh-ed25519 AAAAkey1 me@example"},
  "keys": [{"name": "mykey", "type": "ssh", "data": "ssh-ed25519 AAAAkey1 me@example"},
           {"name": "other", "type": "ssh", "data": "ssh-rsa AAAAkey2 other@example"}]}`

func configDrive(t *testing.T) string {
	d := t.TempDir()
	writeFiles(t, d, map[string]string{
		"openstack/latest/network_data.json": networkData,
		"openstack/latest/meta_data.json":    metaData,
	})
	return d
}

// The interfaces of the tests: two NICs the drive describes, one it does
// not (DHCP fallback), a veth with a generated address (never touched).
func testNICs(t *testing.T) string {
	return sysClassNet(t, map[string]string{
		"ens3":  "fa:16:3e:00:00:0a 0",
		"ens4":  "fa:16:3e:00:00:0b 0",
		"ens5":  "52:54:00:12:34:56 0",
		"veth0": "ce:11:22:33:44:55 3",
		"lo":    "00:00:00:00:00:00 0",
	})
}

const mark = "# Written by simple-init at boot; rewritten at every boot.\n"

// simple-init with ifupdown (Debian): the exact interfaces file, DNS,
// the keys of root, the host name; a second boot changes nothing.
func TestSimpleInitENI(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"etc/passwd":                "root:x:0:0:root:/root:/bin/bash\ndebian:x:1000:1000::/home/debian:/bin/bash\n",
		"etc/hosts":                 "127.0.0.1 localhost\n127.0.1.1 debian\n",
		"root/.ssh/authorized_keys": "ssh-rsa AAAAkey2 other@example\n",
	})
	drive, nics := configDrive(t), testNICs(t)
	out := simpleInit(t, root, drive, nics, "--renderer", "eni")
	want := mark + `
auto ens3
iface ens3 inet static
    address 192.0.2.10/24
    gateway 192.0.2.1
    mtu 1450
    post-up ip route add 10.0.0.0/8 via 192.0.2.254 dev ens3 || true
iface ens3 inet6 static
    address 2001:db8::10/64
    gateway 2001:db8::1

auto ens4
iface ens4 inet dhcp

auto ens3.100
iface ens3.100 inet static
    address 198.51.100.5/25
    vlan-raw-device ens3

auto ens5
iface ens5 inet dhcp
`
	if got := readFile(t, filepath.Join(root, "etc/network/interfaces.d/simple-init")); got != want {
		t.Errorf("interfaces.d/simple-init:\n%s\nwant\n%s", got, want)
	}
	if got := readFile(t, filepath.Join(root, "etc/resolv.conf")); got != mark+"nameserver 192.0.2.53\nnameserver 192.0.2.54\n" {
		t.Errorf("resolv.conf:\n%s", got)
	}
	// The key already there is not added twice.
	if got := readFile(t, filepath.Join(root, "root/.ssh/authorized_keys")); got != "ssh-rsa AAAAkey2 other@example\nssh-ed25519 AAAAkey1 me@example\n" {
		t.Errorf("root's authorized_keys:\n%s", got)
	}
	if st, _ := os.Stat(filepath.Join(root, "root/.ssh/authorized_keys")); st.Mode().Perm() != 0o600 {
		t.Errorf("authorized_keys mode %v", st.Mode().Perm())
	}
	if _, err := os.Stat(filepath.Join(root, "home/debian/.ssh")); err == nil {
		t.Errorf("keys given to debian, not in key_users")
	}
	if got := readFile(t, filepath.Join(root, "etc/hostname")); got != "vm1\n" {
		t.Errorf("hostname %q", got)
	}
	if got := readFile(t, filepath.Join(root, "etc/hosts")); got != "127.0.1.1 vm1.example.org vm1\n127.0.0.1 localhost\n" {
		t.Errorf("hosts:\n%s", got)
	}
	for _, w := range []string{"link bond0: bonds are not supported", "ens5: IPv4 DHCP (eni)", "2 key(s) for root (1 new)"} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	// The next boot: same result.
	simpleInit(t, root, drive, nics, "--renderer", "eni")
	if got := readFile(t, filepath.Join(root, "etc/network/interfaces.d/simple-init")); got != want {
		t.Errorf("second boot changed the file:\n%s", got)
	}
	if got := readFile(t, filepath.Join(root, "root/.ssh/authorized_keys")); strings.Count(got, "\n") != 2 {
		t.Errorf("second boot duplicated keys:\n%s", got)
	}
}

// Without a config drive every real NIC gets DHCP (the veth does not);
// with the fallback off, nothing is configured. The renderer and the key
// users come from /etc/simple-init.conf as the build writes it.
func TestSimpleInitFallback(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{"etc/simple-init.conf": "renderer=eni\ndhcp_fallback=1\nkey_users=root\n"})
	nics := testNICs(t)
	simpleInit(t, root, t.TempDir(), nics)
	want := mark + "\nauto ens3\niface ens3 inet dhcp\n\nauto ens4\niface ens4 inet dhcp\n\nauto ens5\niface ens5 inet dhcp\n"
	if got := readFile(t, filepath.Join(root, "etc/network/interfaces.d/simple-init")); got != want {
		t.Errorf("fallback:\n%s\nwant\n%s", got, want)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/resolv.conf")); err == nil {
		t.Errorf("resolv.conf written without DNS servers")
	}
	writeFiles(t, root, map[string]string{"etc/simple-init.conf": "renderer=eni\ndhcp_fallback=0\n"})
	out := simpleInit(t, root, t.TempDir(), nics)
	if got := readFile(t, filepath.Join(root, "etc/network/interfaces.d/simple-init")); got != mark {
		t.Errorf("without fallback:\n%s", got)
	}
	if !strings.Contains(out, "no interface to configure") {
		t.Errorf("output: %s", out)
	}
}

// The other renderers: NetworkManager keyfiles (rpm default), systemd-networkd,
// ifcfg for RHEL and SUSE. Stale files of an earlier boot go, others stay.
func TestSimpleInitRenderers(t *testing.T) {
	drive, nics := configDrive(t), testNICs(t)
	cases := []struct {
		renderer string
		files    map[string]string // path -> exact content
		absent   []string
	}{
		{"nm", map[string]string{
			"etc/NetworkManager/system-connections/simple-init-ens3.nmconnection": mark + "[connection]\nid=simple-init-ens3\nuuid=" + "@UUID@" +
				"\ntype=ethernet\ninterface-name=ens3\nautoconnect=true\n\n[ethernet]\nmtu=1450\n\n[ipv4]\nmethod=manual\naddress1=192.0.2.10/24,192.0.2.1\n" +
				"dns=192.0.2.53;192.0.2.54;\nroute1=10.0.0.0/8,192.0.2.254\n\n[ipv6]\nmethod=manual\naddress1=2001:db8::10/64,2001:db8::1\n",
			"etc/NetworkManager/system-connections/simple-init-ens3.100.nmconnection": mark + "[connection]\nid=simple-init-ens3.100\nuuid=@UUID@\ntype=vlan\n" +
				"interface-name=ens3.100\nautoconnect=true\n\n[vlan]\nparent=ens3\nid=100\n\n[ipv4]\nmethod=manual\naddress1=198.51.100.5/25\ndns=192.0.2.53;192.0.2.54;\n\n[ipv6]\nmethod=ignore\n",
			"etc/NetworkManager/system-connections/simple-init-ens5.nmconnection": mark + "[connection]\nid=simple-init-ens5\nuuid=@UUID@\ntype=ethernet\n" +
				"interface-name=ens5\nautoconnect=true\n\n[ethernet]\n\n[ipv4]\nmethod=auto\n\n[ipv6]\nmethod=ignore\n",
		}, []string{"etc/NetworkManager/system-connections/simple-init-eth9.nmconnection"}},
		{"networkd", map[string]string{
			"etc/systemd/network/50-simple-init-ens3.network": mark + "[Match]\nName=ens3\n\n[Network]\nDHCP=no\nIPv6AcceptRA=no\nAddress=192.0.2.10/24\n" +
				"Address=2001:db8::10/64\nGateway=192.0.2.1\nGateway=2001:db8::1\nDNS=192.0.2.53\nDNS=192.0.2.54\nVLAN=ens3.100\n\n[Link]\nMTUBytes=1450\n\n" +
				"[Route]\nDestination=10.0.0.0/8\nGateway=192.0.2.254\n",
			"etc/systemd/network/50-simple-init-ens3.100.netdev": mark + "[NetDev]\nName=ens3.100\nKind=vlan\n\n[VLAN]\nId=100\n",
			"etc/systemd/network/50-simple-init-ens4.network":    mark + "[Match]\nName=ens4\n\n[Network]\nDHCP=ipv4\nIPv6AcceptRA=no\n",
		}, []string{"etc/systemd/network/50-simple-init-eth9.network"}},
		{"ifcfg-rh", map[string]string{
			"etc/sysconfig/network-scripts/ifcfg-ens3": mark + "DEVICE=\"ens3\"\nONBOOT=\"yes\"\nBOOTPROTO=\"none\"\nTYPE=\"Ethernet\"\nIPADDR=\"192.0.2.10\"\n" +
				"PREFIX=\"24\"\nGATEWAY=\"192.0.2.1\"\nDNS1=\"192.0.2.53\"\nDNS2=\"192.0.2.54\"\nIPV6INIT=\"yes\"\nIPV6ADDR=\"2001:db8::10/64\"\n" +
				"IPV6_DEFAULTGW=\"2001:db8::1\"\nMTU=\"1450\"\n",
			"etc/sysconfig/network-scripts/route-ens3":     mark + "10.0.0.0/8 via 192.0.2.254 dev ens3\n",
			"etc/sysconfig/network-scripts/ifcfg-ens3.100": mark + "DEVICE=\"ens3.100\"\nONBOOT=\"yes\"\nBOOTPROTO=\"none\"\nVLAN=\"yes\"\nPHYSDEV=\"ens3\"\nIPADDR=\"198.51.100.5\"\nPREFIX=\"25\"\nDNS1=\"192.0.2.53\"\nDNS2=\"192.0.2.54\"\n",
			"etc/sysconfig/network-scripts/ifcfg-ens5":     mark + "DEVICE=\"ens5\"\nONBOOT=\"yes\"\nBOOTPROTO=\"dhcp\"\nTYPE=\"Ethernet\"\n",
		}, []string{"etc/sysconfig/network-scripts/ifcfg-eth9"}},
		{"ifcfg-suse", map[string]string{
			"etc/sysconfig/network/ifcfg-ens3":     mark + "STARTMODE='auto'\nBOOTPROTO='static'\nIPADDR='192.0.2.10/24'\nIPADDR_1='2001:db8::10/64'\nMTU='1450'\n",
			"etc/sysconfig/network/ifroute-ens3":   mark + "default 192.0.2.1 - ens3\ndefault 2001:db8::1 - ens3\n10.0.0.0/8 192.0.2.254 - ens3\n",
			"etc/sysconfig/network/ifcfg-ens3.100": mark + "STARTMODE='auto'\nBOOTPROTO='static'\nIPADDR='198.51.100.5/25'\nETHERDEVICE='ens3'\nVLAN_ID='100'\n",
			"etc/sysconfig/network/ifcfg-ens4":     mark + "STARTMODE='auto'\nBOOTPROTO='dhcp4'\n",
		}, []string{"etc/sysconfig/network/ifcfg-eth9"}},
	}
	for _, c := range cases {
		t.Run(c.renderer, func(t *testing.T) {
			root := t.TempDir()
			// An earlier boot's file for a NIC that is gone, and a file
			// simple-init did not write.
			stale := map[string]string{}
			for _, a := range c.absent {
				stale[a] = mark + "old\n"
			}
			foreign := filepath.Join(filepath.Dir(c.absent[0]), "admin-made")
			stale[foreign] = "mine\n"
			writeFiles(t, root, stale)
			simpleInit(t, root, drive, nics, "--renderer", c.renderer)
			for p, want := range c.files {
				got := readFile(t, filepath.Join(root, p))
				if strings.Contains(want, "@UUID@") {
					// A stable UUID per interface name: check its shape.
					i := strings.Index(got, "uuid=")
					if i < 0 || len(got) < i+41 || got[i+5+14] != '5' {
						t.Errorf("%s: no version-5 style uuid:\n%s", p, got)
						continue
					}
					got = got[:i+5] + "@UUID@" + got[i+41:]
				}
				if got != want {
					t.Errorf("%s:\n%s\nwant\n%s", p, got, want)
				}
			}
			for _, p := range c.absent {
				if _, err := os.Stat(filepath.Join(root, p)); err == nil {
					t.Errorf("%s of an earlier boot was not removed", p)
				}
			}
			if readFile(t, filepath.Join(root, foreign)) != "mine\n" {
				t.Errorf("a file simple-init did not write was touched")
			}
			if c.renderer == "nm" {
				st, _ := os.Stat(filepath.Join(root, "etc/NetworkManager/system-connections/simple-init-ens3.nmconnection"))
				if st.Mode().Perm() != 0o600 {
					t.Errorf("keyfile mode %v (NetworkManager ignores keyfiles others can read)", st.Mode().Perm())
				}
			}
		})
	}
}

// simple-init's build-time hook: the renderer per distribution and
// variables, and DIB's NetworkManager rules.
func TestSimpleInitBuildConfig(t *testing.T) {
	bin := libBin(t, nil)
	cases := []struct {
		env  []string
		want string
	}{
		{[]string{"DISTRO_NAME=debian", "DIB_SIMPLE_INIT_NETWORKMANAGER=0"}, "renderer=eni\ndhcp_fallback=1\nkey_users=root\n"},
		{[]string{"DISTRO_NAME=centos", "DIB_SIMPLE_INIT_NETWORKMANAGER=1", "DIB_SIMPLE_INIT_NO_DHCP_FALLBACK=1"}, "renderer=nm\ndhcp_fallback=0\nkey_users=root\n"},
		{[]string{"DISTRO_NAME=centos", "DIB_RELEASE=7", "DIB_SIMPLE_INIT_NETWORKMANAGER=0"}, "renderer=ifcfg-rh\n"},
		{[]string{"DISTRO_NAME=opensuse", "DIB_SIMPLE_INIT_NETWORKMANAGER=0", "DIB_SIMPLE_INIT_KEY_USERS=root opensuse"}, "renderer=ifcfg-suse\ndhcp_fallback=1\nkey_users=root opensuse\n"},
		{[]string{"DISTRO_NAME=debian", "DIB_SIMPLE_INIT_NETWORKMANAGER=0", "DIB_SIMPLE_INIT_RENDERER=networkd"}, "renderer=networkd\n"},
	}
	for _, c := range cases {
		root := t.TempDir()
		runScript(t, bin, append(c.env, "BUILDER_TARGET_ROOT="+root), "simple-init/install.d/50-simple-init")
		got := readFile(t, filepath.Join(root, "etc/simple-init.conf"))
		if !strings.Contains(got, c.want) {
			t.Errorf("%v: simple-init.conf\n%s\nwant %q", c.env, got, c.want)
		}
		if readFile(t, filepath.Join(root, "etc/modules-load.d/simple-init-8021q.conf")) != "8021q\n" {
			t.Errorf("8021q not loaded at boot")
		}
	}
	if out, failed := runScriptErr(t, bin, []string{"BUILDER_TARGET_ROOT=" + t.TempDir(), "DISTRO_NAME=debian",
		"DIB_SIMPLE_INIT_NETWORKMANAGER=0", "DIB_INSTALLTYPE_simple_init=repo"}, "simple-init/install.d/50-simple-init"); !failed || !strings.Contains(out, "repo is not supported") {
		t.Errorf("install type repo: failed=%v %s", failed, out)
	}
	// environment.d: the default per distribution, and DIB's refusal.
	env := func(vars ...string) (string, bool) {
		cmd := exec.Command("/bin/bash", "-c", `set -e; . library/simple-init/environment.d/15-simple-init-networkmanager.bash; echo "$DIB_SIMPLE_INIT_NETWORKMANAGER"`)
		cmd.Env = append([]string{"PATH=/usr/bin:/bin"}, vars...)
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err != nil
	}
	for _, c := range []struct {
		vars   []string
		want   string
		failed bool
	}{
		{[]string{"DISTRO_NAME=debian", "DIB_RELEASE=bookworm"}, "0", false},
		{[]string{"DISTRO_NAME=rocky", "DIB_RELEASE=9"}, "1", false},
		{[]string{"DISTRO_NAME=centos", "DIB_RELEASE=7", "DIB_SIMPLE_INIT_NETWORKMANAGER=0"}, "0", false},
		{[]string{"DISTRO_NAME=rocky", "DIB_RELEASE=9", "DIB_SIMPLE_INIT_NETWORKMANAGER=0"}, "", true},
		{[]string{"DISTRO_NAME=fedora", "DIB_RELEASE=41", "DIB_SIMPLE_INIT_NETWORKMANAGER=0"}, "", true},
	} {
		got, failed := env(c.vars...)
		if failed != c.failed || (!failed && got != c.want) {
			t.Errorf("%v: %q failed=%v", c.vars, got, failed)
		}
	}
}

// dhcp-all-interfaces on rpm distributions: NetworkManager's settings and
// DHCP client per release, dhclient's timeout, the udev-started unit, and
// the base image's interfaces removed.
func TestDhcpAllInterfacesRPM(t *testing.T) {
	bin := libBin(t, nil)
	setup := func() string {
		root := t.TempDir()
		writeFiles(t, root, map[string]string{
			"etc/redhat-release":                              "CentOS Stream release 9\n",
			"etc/NetworkManager/NetworkManager.conf":          "[main]\n",
			"etc/dhcp/dhclient.conf":                          "timeout 300;\nretry 60;\nrequest subnet-mask;\n",
			"etc/sysconfig/network-scripts/ifcfg-eth0":        "DEVICE=eth0\n",
			"etc/sysconfig/network-scripts/ifcfg-lo":          "DEVICE=lo\n",
			"etc/sysconfig/network-scripts/network-functions": "#\n",
		})
		return root
	}
	for _, c := range []struct{ release, client string }{{"8", "dhclient"}, {"8-stream", "dhclient"}, {"9-stream", "internal"}, {"10-stream", "dhcpcd"}} {
		root := setup()
		runScript(t, bin, []string{"BUILDER_TARGET_ROOT=" + root, "DISTRO_NAME=centos", "DIB_RELEASE=" + c.release,
			"DIB_INIT_SYSTEM=systemd", "DIB_DHCP_TIMEOUT=45"}, "dhcp-all-interfaces/install.d/50-dhcp-all-interfaces")
		nm := readFile(t, filepath.Join(root, "etc/NetworkManager/conf.d/00-main.conf"))
		for _, w := range []string{"\n[main]\nignore-carrier=*\ndhcp=" + c.client + "\n", "\nautoconnect-retries=-1\nipv4.dhcp-timeout=45\nipv6.dhcp-timeout=45\n"} {
			if !strings.Contains(nm, w) {
				t.Errorf("%s: 00-main.conf lacks %q:\n%s", c.release, w, nm)
			}
		}
		if c.release != "8" {
			continue
		}
		unit := readFile(t, filepath.Join(root, "usr/lib/systemd/system/dhcp-interface@.service"))
		for _, w := range []string{"\nExecStartPre=/usr/local/sbin/dhcp-all-interfaces.sh %i\n", "\nExecStart=/usr/local/sbin/dhcp-all-interfaces.sh --up %i\n",
			"\nTimeoutStartSec=90s\n", "\nConditionPathExists=!/etc/sysconfig/network-scripts/ifcfg-%i\n", "\nBefore=network-online.target\n"} {
			if !strings.Contains(unit, w) {
				t.Errorf("unit lacks %q:\n%s", w, unit)
			}
		}
		rule := readFile(t, filepath.Join(root, "etc/udev/rules.d/99-dhcp-all-interfaces.rules"))
		if !strings.Contains(rule, `ENV{SYSTEMD_WANTS}+="dhcp-interface@$name.service"`) || !strings.Contains(rule, `KERNEL!="lo"`) {
			t.Errorf("udev rule:\n%s", rule)
		}
		if got := readFile(t, filepath.Join(root, "etc/dhcp-all-interfaces.conf")); got != "DHCP_TIMEOUT=45\n" {
			t.Errorf("dhcp-all-interfaces.conf %q", got)
		}
		dh := readFile(t, filepath.Join(root, "etc/dhcp/dhclient.conf"))
		if strings.Contains(dh, "timeout 300;") || !strings.Contains(dh, "\ntimeout 45;\n") || strings.Contains(dh, "\nretry 60;") || !strings.Contains(dh, "request subnet-mask;") {
			t.Errorf("dhclient.conf:\n%s", dh)
		}
		runScript(t, bin, []string{"BUILDER_TARGET_ROOT=" + root, "DISTRO_NAME=centos"}, "dhcp-all-interfaces/install.d/60-remove-cloud-image-interfaces")
		left, _ := filepath.Glob(filepath.Join(root, "etc/sysconfig/network-scripts/*"))
		var names []string
		for _, l := range left {
			names = append(names, filepath.Base(l))
		}
		sort.Strings(names)
		if strings.Join(names, " ") != "ifcfg-lo network-functions" {
			t.Errorf("network-scripts after cleanup: %v", names)
		}
	}
	// DIB_DHCP_CLIENT wins; DIB_DHCP_NETWORK_MANAGER_AUTO=true leaves it to NetworkManager.
	root := setup()
	runScript(t, bin, []string{"BUILDER_TARGET_ROOT=" + root, "DISTRO_NAME=rocky", "DIB_RELEASE=9", "DIB_INIT_SYSTEM=systemd",
		"DIB_DHCP_CLIENT=dhclient", "DIB_DHCP_NETWORK_MANAGER_AUTO=true"}, "dhcp-all-interfaces/install.d/50-dhcp-all-interfaces")
	if nm := readFile(t, filepath.Join(root, "etc/NetworkManager/conf.d/00-main.conf")); !strings.Contains(nm, "\ndhcp=dhclient\n") || !strings.Contains(nm, "dhcp-timeout=30\n") {
		t.Errorf("00-main.conf:\n%s", nm)
	}
	for _, p := range []string{"usr/lib/systemd/system/dhcp-interface@.service", "etc/udev/rules.d/99-dhcp-all-interfaces.rules", "etc/dhcp-all-interfaces.conf"} {
		if _, err := os.Stat(filepath.Join(root, p)); err == nil {
			t.Errorf("%s written with DIB_DHCP_NETWORK_MANAGER_AUTO=true", p)
		}
	}
	if out, failed := runScriptErr(t, bin, []string{"BUILDER_TARGET_ROOT=" + root, "DIB_INIT_SYSTEM=systemd", "DIB_DHCP_TIMEOUT=soon"},
		"dhcp-all-interfaces/install.d/50-dhcp-all-interfaces"); !failed || !strings.Contains(out, "DIB_DHCP_TIMEOUT=soon") {
		t.Errorf("bad timeout accepted: %s", out)
	}
}

// timezone: the link, /etc/timezone only on Debian, and a clear error for
// a zone that does not exist.
func TestTimezone(t *testing.T) {
	bin := libBin(t, nil)
	zones := map[string]string{"usr/share/zoneinfo/UTC": "TZif", "usr/share/zoneinfo/Europe/Berlin": "TZif", "etc/.keep": ""}
	for _, c := range []struct {
		distro, tz, timezone string
	}{{"debian", "", "UTC\n"}, {"debian", "Europe/Berlin", "Europe/Berlin\n"}, {"centos", "Europe/Berlin", ""}, {"opensuse", "", ""}} {
		root := t.TempDir()
		writeFiles(t, root, zones)
		env := []string{"BUILDER_TARGET_ROOT=" + root, "DISTRO_NAME=" + c.distro}
		if c.tz != "" {
			env = append(env, "DIB_TIMEZONE="+c.tz)
		}
		runScript(t, bin, env, "timezone/install.d/60-timezone")
		want := "/usr/share/zoneinfo/" + map[bool]string{true: "UTC", false: c.tz}[c.tz == ""]
		if got, _ := os.Readlink(filepath.Join(root, "etc/localtime")); got != want {
			t.Errorf("%s %s: /etc/localtime -> %q, want %q", c.distro, c.tz, got, want)
		}
		data, err := os.ReadFile(filepath.Join(root, "etc/timezone"))
		if c.timezone == "" && err == nil {
			t.Errorf("%s: /etc/timezone written", c.distro)
		}
		if c.timezone != "" && string(data) != c.timezone {
			t.Errorf("%s: /etc/timezone %q", c.distro, data)
		}
	}
	for _, bad := range []string{"Mars/Base", "Europe", "../../etc/passwd", "/usr/share/zoneinfo/UTC"} {
		root := t.TempDir()
		writeFiles(t, root, zones)
		out, failed := runScriptErr(t, bin, []string{"BUILDER_TARGET_ROOT=" + root, "DISTRO_NAME=debian", "DIB_TIMEZONE=" + bad}, "timezone/install.d/60-timezone")
		if !failed || !strings.Contains(out, bad) {
			t.Errorf("DIB_TIMEZONE=%s: failed=%v, message %q does not name it", bad, failed, out)
		}
		if _, err := os.Lstat(filepath.Join(root, "etc/localtime")); err == nil {
			t.Errorf("DIB_TIMEZONE=%s: /etc/localtime written anyway", bad)
		}
	}
}

// hwclock: /etc/adjtime's third line, drift lines kept, bad values refused.
func TestHwclock(t *testing.T) {
	bin := libBin(t, nil)
	root := t.TempDir()
	runScript(t, bin, []string{"BUILDER_TARGET_ROOT=" + root}, "hwclock/install.d/60-hwclock")
	if got := readFile(t, filepath.Join(root, "etc/adjtime")); got != "0.0 0 0.0\n0\nUTC\n" {
		t.Errorf("default adjtime %q", got)
	}
	writeFiles(t, root, map[string]string{"etc/adjtime": "0.013 1700000000 0.000000\n1700000000\nUTC\n"})
	runScript(t, bin, []string{"BUILDER_TARGET_ROOT=" + root, "DIB_HWCLOCK=local"}, "hwclock/install.d/60-hwclock")
	if got := readFile(t, filepath.Join(root, "etc/adjtime")); got != "0.013 1700000000 0.000000\n1700000000\nLOCAL\n" {
		t.Errorf("LOCAL adjtime %q", got)
	}
	if out, failed := runScriptErr(t, bin, []string{"BUILDER_TARGET_ROOT=" + root, "DIB_HWCLOCK=GMT"}, "hwclock/install.d/60-hwclock"); !failed || !strings.Contains(out, "DIB_HWCLOCK=GMT") {
		t.Errorf("DIB_HWCLOCK=GMT: failed=%v %s", failed, out)
	}
}

// sysctl-set-value and sysctl-write-value: DIB's file, the same value
// again, a conflicting value, an unknown key.
func TestSysctlValues(t *testing.T) {
	bin := t.TempDir()
	for _, n := range []string{"sysctl-set-value", "sysctl-write-value"} {
		abs, _ := filepath.Abs(filepath.Join("library/sysctl/bin", n))
		os.Symlink(abs, filepath.Join(bin, n))
	}
	root := t.TempDir()
	env := []string{"BUILDER_TARGET_ROOT=" + root}
	runScript(t, bin, env, "sysctl/bin/sysctl-set-value", "net.ipv4.ip_forward", "1")
	if got := readFile(t, filepath.Join(root, "etc/sysctl.d/net.ipv4.ip_forward.conf")); got != "# Set at build time by the sysctl element.\nnet.ipv4.ip_forward = 1\n" {
		t.Errorf("set-value file %q", got)
	}
	runScript(t, bin, env, "sysctl/bin/sysctl-set-value", "net.ipv4.ip_forward", "1")
	if out, failed := runScriptErr(t, bin, env, "sysctl/bin/sysctl-set-value", "net.ipv4.ip_forward", "10"); !failed || !strings.Contains(out, "is already set to another value") {
		t.Errorf("conflict (1 vs 10) not refused: %s", out)
	}
	if out, failed := runScriptErr(t, bin, env, "sysctl/bin/sysctl-set-value", "net.ipv4.no_such_key", "1"); !failed || !strings.Contains(out, "Invalid sysctl key: net.ipv4.no_such_key") {
		t.Errorf("unknown key accepted: %s", out)
	}
	runScript(t, bin, env, "sysctl/bin/sysctl-write-value", "net.ipv4.no_such_key", "1", "a module's key")
	if got := readFile(t, filepath.Join(root, "etc/sysctl.d/net.ipv4.no_such_key.conf")); got != "# a module's key\nnet.ipv4.no_such_key = 1\n" {
		t.Errorf("write-value file %q", got)
	}
	if _, failed := runScriptErr(t, bin, env, "sysctl/bin/sysctl-write-value", "vm.swappiness"); !failed {
		t.Errorf("no value accepted")
	}
}

// modprobe and disable-nouveau: the elements' modprobe.d files (only
// *.conf), DIB_MODPROBE_BLACKLIST without duplicates, and the dracut file
// only where dracut makes the initramfs.
func TestModprobeAndNouveau(t *testing.T) {
	bin := libBin(t, nil)
	hooks := t.TempDir()
	writeFiles(t, hooks, map[string]string{
		"modprobe.d/disable-nouveau.conf":    readFile(t, "library/disable-nouveau/modprobe.d/disable-nouveau.conf"),
		"modprobe.d/README":                  "not a conf\n",
		"dracut.conf.d/disable-nouveau.conf": readFile(t, "library/disable-nouveau/dracut.conf.d/disable-nouveau.conf"),
	})
	root := t.TempDir()
	env := []string{"BUILDER_TARGET_ROOT=" + root, "TMP_HOOKS_PATH=" + hooks, "DIB_MODPROBE_BLACKLIST=igb  floppy"}
	runScript(t, bin, env, "modprobe/pre-install.d/05-modprobe-conf")
	runScript(t, bin, env, "modprobe/install.d/80-modprobe-blacklist")
	runScript(t, bin, env, "modprobe/install.d/80-modprobe-blacklist")
	if got := readFile(t, filepath.Join(root, "etc/modprobe.d/disable-nouveau.conf")); !strings.Contains(got, "\nblacklist nouveau\noptions nouveau modeset=0\n") {
		t.Errorf("disable-nouveau.conf %q", got)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/modprobe.d/README")); err == nil {
		t.Errorf("a file that is not *.conf was copied")
	}
	if got := readFile(t, filepath.Join(root, "etc/modprobe.d/blacklist.conf")); got != "blacklist igb\nblacklist floppy\n" {
		t.Errorf("blacklist.conf %q", got)
	}
	// Debian-like tree: no dracut file; rpm tree: one.
	runScript(t, bin, env, "disable-nouveau/install.d/50-disable-nouveau-dracut")
	if _, err := os.Stat(filepath.Join(root, "etc/dracut.conf.d")); err == nil {
		t.Errorf("dracut configuration written without dracut")
	}
	rpmRoot := t.TempDir()
	writeFiles(t, rpmRoot, map[string]string{"etc/dracut.conf.d/90-builder-vm.conf": "hostonly=\"no\"\n"})
	runScript(t, bin, []string{"BUILDER_TARGET_ROOT=" + rpmRoot, "TMP_HOOKS_PATH=" + hooks}, "disable-nouveau/install.d/50-disable-nouveau-dracut")
	if got := readFile(t, filepath.Join(rpmRoot, "etc/dracut.conf.d/disable-nouveau.conf")); !strings.Contains(got, `omit_drivers+=" nouveau "`) {
		t.Errorf("dracut disable-nouveau.conf %q", got)
	}
}

// iscsi-boot: ISCSI_AUTO for initramfs-tools, dracut modules and the
// kernel command line for rpm distributions.
func TestIscsiBoot(t *testing.T) {
	bin := libBin(t, nil)
	deb := t.TempDir()
	runScript(t, bin, []string{"BUILDER_TARGET_ROOT=" + deb, "DISTRO_NAME=debian"}, "iscsi-boot/install.d/70-iscsi-boot")
	if got := readFile(t, filepath.Join(deb, "etc/iscsi/iscsi.initramfs")); got != "ISCSI_AUTO=true\n" {
		t.Errorf("iscsi.initramfs %q", got)
	}
	rpm := t.TempDir()
	runScript(t, bin, []string{"BUILDER_TARGET_ROOT=" + rpm, "DISTRO_NAME=rocky"}, "iscsi-boot/install.d/70-iscsi-boot")
	if got := readFile(t, filepath.Join(rpm, "etc/dracut.conf.d/iscsi-boot.conf")); !strings.Contains(got, `add_dracutmodules+=" network iscsi "`) {
		t.Errorf("dracut iscsi-boot.conf %q", got)
	}
	if _, err := os.Stat(filepath.Join(rpm, "etc/iscsi/iscsi.initramfs")); err == nil {
		t.Errorf("iscsi.initramfs on rpm")
	}
	// The command line, after bootloader's default, once even when the
	// environment is sourced again; untouched on Debian.
	cmdline := func(distro string) string {
		cmd := exec.Command("/bin/bash", "-c", `set -e
. library/bootloader/environment.d/10-bootloader-default-cmdline.bash
. library/iscsi-boot/environment.d/60-iscsi-boot.bash
. library/iscsi-boot/environment.d/60-iscsi-boot.bash
echo "$DIB_BOOTLOADER_DEFAULT_CMDLINE"`)
		cmd.Env = []string{"PATH=/usr/bin:/bin", "DISTRO_NAME=" + distro}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v %s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := cmdline("centos"); got != "nofb nomodeset gfxpayload=text rd.iscsi.firmware=1" {
		t.Errorf("centos cmdline %q", got)
	}
	if got := cmdline("debian"); got != "nofb nomodeset gfxpayload=text" {
		t.Errorf("debian cmdline %q", got)
	}
}

// local-config: the proxies for apt, yum and zypper (with DIB's
// 192.0.2.1), and the building user's keys for another user.
func TestLocalConfig(t *testing.T) {
	bin := libBin(t, nil)
	proxies := []string{"http_proxy=http://proxy.local:3128", "https_proxy=http://proxy.local:3129", "no_proxy=localhost,.corp"}
	apt := t.TempDir()
	writeFiles(t, apt, map[string]string{"etc/apt/apt.conf.d/.keep": ""})
	runScript(t, bin, append(proxies, "BUILDER_TARGET_ROOT="+apt), "local-config/pre-install.d/02-local-config-proxy")
	for f, want := range map[string]string{
		"02-use-http-proxy":  "Acquire::http::Proxy \"http://proxy.local:3128\";\n",
		"02-use-https-proxy": "Acquire::https::Proxy \"http://proxy.local:3129\";\n",
		"02-no-proxy":        "Acquire::http::Proxy::localhost \"DIRECT\";\nAcquire::http::Proxy::.corp \"DIRECT\";\nAcquire::http::Proxy::192.0.2.1 \"DIRECT\";\n",
	} {
		if got := readFile(t, filepath.Join(apt, "etc/apt/apt.conf.d", f)); got != want {
			t.Errorf("%s: %q, want %q", f, got, want)
		}
	}
	yum := t.TempDir()
	writeFiles(t, yum, map[string]string{"etc/yum.conf": "[main]\ngpgcheck=1\n"})
	runScript(t, bin, append(proxies, "BUILDER_TARGET_ROOT="+yum), "local-config/pre-install.d/02-local-config-proxy")
	runScript(t, bin, append(proxies, "BUILDER_TARGET_ROOT="+yum), "local-config/pre-install.d/02-local-config-proxy")
	if got := readFile(t, filepath.Join(yum, "etc/yum.conf")); got != "[main]\nproxy=http://proxy.local:3128\ngpgcheck=1\n" {
		t.Errorf("yum.conf %q", got)
	}
	zyp := t.TempDir()
	writeFiles(t, zyp, map[string]string{"etc/zypp/zypp.conf": "", "etc/sysconfig/proxy": "PROXY_ENABLED=\"no\"\nHTTP_PROXY=\"\"\nHTTPS_PROXY=\"\"\nNO_PROXY=\"localhost, 127.0.0.1\"\n"})
	runScript(t, bin, append(proxies, "BUILDER_TARGET_ROOT="+zyp), "local-config/pre-install.d/02-local-config-proxy")
	if got := readFile(t, filepath.Join(zyp, "etc/sysconfig/proxy")); got != "PROXY_ENABLED=\"yes\"\nHTTP_PROXY=\"http://proxy.local:3128\"\nHTTPS_PROXY=\"http://proxy.local:3129\"\nNO_PROXY=\"localhost,.corp,192.0.2.1\"\n" {
		t.Errorf("sysconfig/proxy %q", got)
	}

	// Keys: extra-data.d copies from BUILDER_USER_HOME, install.d appends.
	home, hooks, root := t.TempDir(), t.TempDir(), t.TempDir()
	writeFiles(t, home, map[string]string{".ssh/authorized_keys": "ssh-ed25519 AAAAlocal me@host\n"})
	writeFiles(t, root, map[string]string{"home/stack/.ssh/authorized_keys": "ssh-rsa AAAAold old@host\n"})
	runScript(t, bin, []string{"TMP_HOOKS_PATH=" + hooks, "BUILDER_USER_HOME=" + home}, "local-config/extra-data.d/62-local-config-ssh-key")
	runScript(t, bin, []string{"TMP_HOOKS_PATH=" + hooks, "BUILDER_TARGET_ROOT=" + root, "DIB_LOCAL_CONFIG_USERNAME=stack"}, "local-config/install.d/62-local-config-ssh-key")
	if got := readFile(t, filepath.Join(root, "home/stack/.ssh/authorized_keys")); got != "ssh-rsa AAAAold old@host\nssh-ed25519 AAAAlocal me@host\n" {
		t.Errorf("stack's authorized_keys %q", got)
	}
	// No authorized_keys at home: nothing is copied, nothing installed.
	hooks2, root2 := t.TempDir(), t.TempDir()
	runScript(t, bin, []string{"TMP_HOOKS_PATH=" + hooks2, "BUILDER_USER_HOME=" + t.TempDir()}, "local-config/extra-data.d/62-local-config-ssh-key")
	runScript(t, bin, []string{"TMP_HOOKS_PATH=" + hooks2, "BUILDER_TARGET_ROOT=" + root2}, "local-config/install.d/62-local-config-ssh-key")
	if _, err := os.Stat(filepath.Join(root2, "root/.ssh")); err == nil {
		t.Errorf("/root/.ssh created without keys")
	}
}

// cloud-init's configuration edits and stable-interface-names' cleanup,
// on sample trees.
func TestCloudInitAndInterfaceNames(t *testing.T) {
	bin := libBin(t, nil)
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"etc/cloud/cloud.cfg":                             "users:\n - default\nssh_pwauth:   false\nssh_genkeytypes: [rsa]\n",
		"etc/ssh/sshd_config.d/50-builder-hardening.conf": "PasswordAuthentication no\nPermitRootLogin prohibit-password\n",
	})
	env := []string{"BUILDER_TARGET_ROOT=" + root}
	runScript(t, bin, env, "cloud-init/post-install.d/23-cloud-init-ssh-genkeytypes")
	runScript(t, bin, env, "cloud-init/post-install.d/85-cloud-init-allow-password-auth")
	if got := readFile(t, filepath.Join(root, "etc/cloud/cloud.cfg")); got != "users:\n - default\nssh_pwauth:   false\nssh_genkeytypes: ['rsa', 'ecdsa', 'ed25519']\n" {
		t.Errorf("cloud.cfg without DIB_CLOUD_INIT_ALLOW_SSH_PWAUTH:\n%s", got)
	}
	runScript(t, bin, append(env, "DIB_CLOUD_INIT_ALLOW_SSH_PWAUTH=1"), "cloud-init/post-install.d/85-cloud-init-allow-password-auth")
	if got := readFile(t, filepath.Join(root, "etc/cloud/cloud.cfg")); !strings.Contains(got, "\nssh_pwauth: true\n") {
		t.Errorf("ssh_pwauth not turned on:\n%s", got)
	}
	if got := readFile(t, filepath.Join(root, "etc/ssh/sshd_config.d/50-builder-hardening.conf")); got != "PermitRootLogin prohibit-password\n" {
		t.Errorf("hardening %q", got)
	}
	// Debian after bookworm renders for networkd; bookworm and rpm do not.
	for _, c := range []struct {
		distro, release string
		want            bool
	}{{"debian", "trixie", true}, {"debian", "bookworm", false}, {"centos", "9-stream", false}} {
		r := t.TempDir()
		runScript(t, bin, []string{"BUILDER_TARGET_ROOT=" + r, "DISTRO_NAME=" + c.distro, "DIB_RELEASE=" + c.release}, "cloud-init/post-install.d/22-cloud-init-networkd")
		_, err := os.Stat(filepath.Join(r, "etc/cloud/cloud.cfg.d/02_cloud_init_networkd.cfg"))
		if (err == nil) != c.want {
			t.Errorf("%s %s: networkd renderer written: %v", c.distro, c.release, err == nil)
		}
	}

	names := t.TempDir()
	writeFiles(t, names, map[string]string{"etc/udev/rules.d/70-keep.rules": "x\n"})
	for _, l := range []string{"etc/udev/rules.d/80-net-name-slot.rules", "etc/udev/rules.d/80-net-setup-link.rules", "etc/systemd/network/99-default.link"} {
		os.MkdirAll(filepath.Dir(filepath.Join(names, l)), 0o755)
		os.Symlink("/dev/null", filepath.Join(names, l))
	}
	runScript(t, bin, []string{"BUILDER_TARGET_ROOT=" + names}, "stable-interface-names/install.d/02-stable-interface-names")
	for _, l := range []string{"etc/udev/rules.d/80-net-name-slot.rules", "etc/udev/rules.d/80-net-setup-link.rules", "etc/systemd/network/99-default.link"} {
		if _, err := os.Lstat(filepath.Join(names, l)); err == nil {
			t.Errorf("%s still masks interface naming", l)
		}
	}
	if _, err := os.Stat(filepath.Join(names, "etc/udev/rules.d/70-keep.rules")); err != nil {
		t.Errorf("an unrelated rule was removed")
	}
	// The package maps: biosdevname only where it exists, open-iscsi's names.
	for _, c := range []struct{ element, pkg, distro, want string }{
		{"stable-interface-names", "biosdevname", "debian", ""},
		{"stable-interface-names", "biosdevname", "centos", "biosdevname"},
		{"iscsi-boot", "open-iscsi", "rocky", "iscsi-initiator-utils"},
		{"ibft-interfaces", "open-iscsi", "debian", "open-iscsi"},
		{"dhcp-all-interfaces", "dhcp-client", "almalinux", "dhclient"},
		{"simple-init", "NetworkManager", "debian", "network-manager"},
	} {
		data, err := os.ReadFile(filepath.Join("library", c.element, "pkg-map"))
		if err != nil {
			t.Fatal(err)
		}
		m, err := ParsePkgMap(c.element, "pkg-map", data)
		if err != nil {
			t.Fatalf("%s pkg-map: %v", c.element, err)
		}
		got, ok := m.Lookup(c.pkg, c.distro, "9")
		if !ok {
			got = []string{c.pkg}
		}
		if strings.Join(got, " ") != c.want {
			t.Errorf("%s: %s on %s -> %v, want %q", c.element, c.pkg, c.distro, got, c.want)
		}
	}
}
