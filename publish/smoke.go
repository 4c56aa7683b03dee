package publish

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/flavors"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
)

// SmokeTest boots the uploaded image, still private under its temporary
// name, as a server in the cloud's Nova before it is promoted: the server
// must become ACTIVE and its console log must show that the guest came up.
// The server is deleted either way. A failure blocks the promotion and
// removes the upload.
type SmokeTest struct {
	// Flavor is the flavor's name or ID. Default: the smallest flavor
	// (RAM, then disk, then vCPUs) whose disk holds the image's min_disk
	// and whose RAM its min_ram.
	Flavor string `json:"flavor,omitempty"`
	// Network is a network ID to attach the server to. Default none: the
	// guest boots from a config drive, which needs no network.
	Network string `json:"network,omitempty"`
	// Console are regular expressions; the guest came up when its console
	// log matches one of them. Default DefaultConsolePatterns.
	Console []string `json:"console,omitempty"`
	// Timeout bounds the wait for ACTIVE and then for the console
	// (default 15 min: a cloud without KVM boots slowly).
	Timeout time.Duration `json:"timeout,omitempty"`
}

// DefaultConsolePatterns say that a guest came up: a login prompt on the
// serial console, cloud-init's final message, or the readiness line of
// builder's ramdisks.
var DefaultConsolePatterns = []string{`login: *$`, `Cloud-init v\. \S+ finished`, `builder-ramdisk: ready`}

// Smoke-test servers carry this name prefix and their run in metadata, so
// that --cleanup-orphans finds exactly the ones builder made.
const (
	SmokeServerPrefix = "builder-smoke-"
	MetaSmoke         = "builder_smoke_test" // the public name under test
	PropSmoke         = "builder_smoke_test" // on the image: when and how it passed
)

// computeMicroversion: 2.37 lets a server have no network ("none").
const computeMicroversion = "2.37"

// check validates the smoke test's settings and fills in the defaults.
func (s *SmokeTest) check() error {
	if len(s.Console) == 0 {
		s.Console = DefaultConsolePatterns
	}
	for _, p := range s.Console {
		if _, err := regexp.Compile("(?m)" + p); err != nil {
			return fmt.Errorf("smoke test console pattern %q: %w", p, err)
		}
	}
	if s.Timeout <= 0 {
		s.Timeout = 15 * time.Minute
	}
	return nil
}

// SmokeResult is what the smoke test saw.
type SmokeResult struct {
	ServerID string  `json:"server_id"`
	Server   string  `json:"server"`
	Flavor   string  `json:"flavor"`
	Status   string  `json:"status"`
	Matched  string  `json:"console_matched,omitempty"`
	Seconds  float64 `json:"seconds"`
	Deleted  bool    `json:"deleted"`
}

// compute is the cloud's Nova, from the catalog.
func (c *Cloud) compute() (*gophercloud.ServiceClient, error) {
	if err := c.RequireCompute(); err != nil {
		return nil, err
	}
	cc, err := openstack.NewComputeV2(c.provider, c.endpoint)
	if err != nil {
		return nil, err
	}
	cc.Microversion = computeMicroversion
	return cc, nil
}

// smokeTest boots img as a server and waits until it is ACTIVE and its
// console shows the guest up, then deletes it. The error says what Nova
// or the console showed.
func (p *publisher) smokeTest(ctx context.Context, img *images.Image) (*SmokeResult, error) {
	st := p.req.SmokeTest
	cc, err := p.c.compute()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	fl, err := p.c.pickFlavor(ctx, cc, st.Flavor, img)
	if err != nil {
		return nil, err
	}
	res := &SmokeResult{Server: SmokeServerPrefix + p.run, Flavor: fl.Name}
	configDrive := true
	opts := servers.CreateOpts{
		Name:        res.Server,
		ImageRef:    img.ID,
		FlavorRef:   fl.ID,
		Networks:    "none",
		ConfigDrive: &configDrive,
		Metadata: map[string]string{
			MetaSmoke: p.req.Name,
			PropRun:   p.run,
			PropHost:  p.req.Host,
		},
	}
	if st.Network != "" {
		opts.Networks = []servers.Network{{UUID: st.Network}}
	}
	p.say("smoke test: booting %s (flavor %s) as server %q in %s", img.ID, fl.Name, res.Server, p.c.Label)
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	srv, err := servers.Create(cctx, cc, opts, nil).Extract()
	cancel()
	if err != nil {
		return res, fmt.Errorf("smoke test: Nova refused the server: %w", p.c.computeError(err))
	}
	res.ServerID = srv.ID
	defer func() {
		// Ctrl-C or a failure: the server goes all the same, on a context
		// of its own.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Minute)
		defer cancel()
		if derr := p.c.deleteServer(dctx, cc, srv.ID); derr != nil {
			w := fmt.Sprintf("smoke test: deleting server %s failed (%v): builder publish --cleanup-orphans removes it later", srv.ID, derr)
			p.res.Warnings = append(p.res.Warnings, w)
			p.say("warning: %s", w)
			return
		}
		res.Deleted = true
		p.say("smoke test: deleted server %s", srv.ID)
	}()

	deadline := start.Add(st.Timeout)
	for {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		s, err := servers.Get(cctx, cc, srv.ID).Extract()
		cancel()
		if err != nil {
			return res, fmt.Errorf("smoke test: server %s: %w", srv.ID, p.c.computeError(err))
		}
		res.Status = s.Status
		if s.Status == "ACTIVE" {
			break
		}
		if s.Status == "ERROR" {
			msg := s.Fault.Message
			if msg == "" {
				msg = "no fault recorded"
			}
			return res, fmt.Errorf("smoke test: server %s went to ERROR: %s (Nova could not boot the image with flavor %s)", srv.ID, msg, fl.Name)
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("smoke test: server %s still %s after %s (raise the smoke test's timeout, or check the cloud)", srv.ID, s.Status, st.Timeout)
		}
		if err := sleep(ctx, 2*time.Second); err != nil {
			return res, err
		}
	}
	p.say("smoke test: server %s is ACTIVE after %.0f s; waiting for the console to show the guest up", srv.ID, time.Since(start).Seconds())

	var pats []*regexp.Regexp
	for _, s := range st.Console {
		pats = append(pats, regexp.MustCompile("(?m)"+s))
	}
	deadline = time.Now().Add(st.Timeout)
	console := ""
	for {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		out, err := servers.ShowConsoleOutput(cctx, cc, srv.ID, servers.ShowConsoleOutputOpts{}).Extract()
		cancel()
		if err == nil {
			console = strings.ReplaceAll(out, "\r", "")
			for i, re := range pats {
				if m := re.FindString(console); m != "" {
					res.Matched = st.Console[i]
					res.Seconds = time.Since(start).Seconds()
					p.say("smoke test: the console shows %q after %.0f s", strings.TrimSpace(m), res.Seconds)
					return res, nil
				}
			}
		} else if !gophercloud.ResponseCodeIs(err, http.StatusConflict) && !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
			// 409/404: the console is not there yet.
			return res, fmt.Errorf("smoke test: console of server %s: %w", srv.ID, p.c.computeError(err))
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("smoke test: the console of server %s never showed the guest up (none of %s) within %s; its last lines:\n%s",
				srv.ID, strings.Join(st.Console, ", "), st.Timeout, lastLines(console, 15))
		}
		if err := sleep(ctx, 5*time.Second); err != nil {
			return res, err
		}
	}
}

// pickFlavor finds the named flavor, or the smallest that fits the image.
func (c *Cloud) pickFlavor(ctx context.Context, cc *gophercloud.ServiceClient, want string, img *images.Image) (flavors.Flavor, error) {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	pages, err := flavors.ListDetail(cc, flavors.ListOpts{}).AllPages(cctx)
	if err != nil {
		return flavors.Flavor{}, fmt.Errorf("smoke test: list flavors: %w", c.computeError(err))
	}
	all, err := flavors.ExtractFlavors(pages)
	if err != nil {
		return flavors.Flavor{}, err
	}
	var names []string
	for _, f := range all {
		names = append(names, f.Name)
		if want != "" && (f.ID == want || f.Name == want) {
			return f, nil
		}
	}
	if want != "" {
		return flavors.Flavor{}, fmt.Errorf("smoke test: no flavor %q in %s (flavors: %s)", want, c.Label, strings.Join(names, ", "))
	}
	sort.SliceStable(all, func(i, j int) bool {
		a, b := all[i], all[j]
		if a.RAM != b.RAM {
			return a.RAM < b.RAM
		}
		if a.Disk != b.Disk {
			return a.Disk < b.Disk
		}
		return a.VCPUs < b.VCPUs
	})
	for _, f := range all {
		// A flavor with disk 0 takes its size from the image, but only
		// admins may boot images on it (Nova's zero_disk_flavor policy).
		if f.Disk >= img.MinDiskGigabytes && f.Disk > 0 && f.RAM >= img.MinRAMMegabytes {
			return f, nil
		}
	}
	return flavors.Flavor{}, fmt.Errorf("smoke test: no flavor of %s fits the image (min_disk %d GiB, min_ram %d MiB; flavors: %s): name one with the smoke test's flavor setting",
		c.Label, img.MinDiskGigabytes, img.MinRAMMegabytes, strings.Join(names, ", "))
}

// deleteServer deletes a server and waits until Nova has forgotten it.
func (c *Cloud) deleteServer(ctx context.Context, cc *gophercloud.ServiceClient, id string) error {
	// Nova refuses a delete for a moment now and then: 409 while the
	// server is in a task, 500 when its database was busy with the
	// server's own last update. A few tries, a few seconds apart.
	var err error
	for try := 1; ; try++ {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		err = servers.Delete(cctx, cc, id).ExtractErr()
		cancel()
		var ue gophercloud.ErrUnexpectedResponseCode
		if err == nil || try == 5 || !errors.As(err, &ue) || (ue.Actual != http.StatusConflict && ue.Actual < 500) {
			break
		}
		if serr := sleep(ctx, 2*time.Second); serr != nil {
			break
		}
	}
	if gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		return nil
	}
	if err != nil {
		return c.computeError(err)
	}
	for {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		s, err := servers.Get(cctx, cc, id).Extract()
		cancel()
		if gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
			return nil
		}
		if err != nil {
			return c.computeError(err)
		}
		if s.Status == "ERROR" && s.Fault.Message != "" && strings.Contains(strings.ToLower(s.Fault.Message), "delet") {
			return fmt.Errorf("it went to ERROR while being deleted: %s", s.Fault.Message)
		}
		if err := sleep(ctx, time.Second); err != nil {
			return fmt.Errorf("still %s when the wait ended", s.Status)
		}
	}
}

// computeError is a Nova error in a line: the status and Nova's sentence.
func (c *Cloud) computeError(err error) error {
	var ue gophercloud.ErrUnexpectedResponseCode
	if errors.As(err, &ue) {
		err = fmt.Errorf("HTTP %d from %s %s: %s", ue.Actual, ue.Method, ue.URL, condense(string(ue.Body), 300))
	}
	if c.Redact != nil {
		return c.Redact.Error(err)
	}
	return err
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

// runSmokeTest runs the smoke test on the verified upload and records the
// pass on it. A failure removes the upload (the image is bad: a rerun must
// not promote it) and says that nothing was promoted.
func (p *publisher) runSmokeTest(ctx context.Context, img *images.Image) (*images.Image, error) {
	sr, err := p.smokeTest(ctx, img)
	p.res.SmokeTest = sr
	if err != nil {
		err = fmt.Errorf("%w; %q was not promoted", err, p.req.Name)
		if img.Protected {
			return nil, err
		}
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if derr := p.c.delete(uctx, img.ID); derr != nil {
			return nil, fmt.Errorf("%w; removing the upload %s failed too (%v): builder publish --cleanup-orphans removes it", err, img.ID, derr)
		}
		p.say("removed the upload %s, which failed the smoke test", img.ID)
		return nil, fmt.Errorf("%w and the upload %s was removed", err, img.ID)
	}
	note := fmt.Sprintf("passed %s: server ACTIVE (flavor %s), console matched %q", time.Now().UTC().Format(time.RFC3339), sr.Flavor, sr.Matched)
	return p.c.update(ctx, img.ID, images.UpdateOpts{images.UpdateImageProperty{Op: images.AddOp, Name: PropSmoke, Value: note}})
}

func imageName(img *images.Image) string {
	if img == nil {
		return ""
	}
	return img.Name
}

// CheckSmokeTest checks a smoke test's settings (its console patterns).
func CheckSmokeTest(s SmokeTest) error {
	return s.check()
}
