package publish

import (
	"os/exec"
	"strconv"
	"testing"
)

// A lease whose holder is gone is nobody's: a publish killed on this host
// (its process is gone), or a publish of this process that released it
// while Glance could not hear it. A live holder, or one on another host,
// keeps it until its TTL.
func TestLeaseHeldByNoOne(t *testing.T) {
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	pid := strconv.Itoa(dead.Process.Pid)
	ours := leaseHolder("host-a", "run-ours")
	for _, c := range []struct {
		theirs string
		want   bool
	}{
		{leaseHolder("host-a", "run-live"), false}, // this very process, still publishing
		{"host-a pid " + pid + " run r1", true},
		{"host-b pid " + pid + " run r1", false},
		{"host-a", false},
		{"", false},
	} {
		if got := heldByNoOne(c.theirs, ours); got != c.want {
			t.Errorf("heldByNoOne(%q) = %v, want %v", c.theirs, got, c.want)
		}
	}
	// Glance down (nothing listens on port 9): the release is not
	// recorded there, and the lease is nobody's all the same.
	c, err := Connect(t.Context(), Credentials{Env: map[string]string{"OS_AUTH_TYPE": "none", "OS_IMAGE_URL": "http://127.0.0.1:9"}})
	if err != nil {
		t.Fatal(err)
	}
	gaveUp := leaseHolder("host-a", "run-gave-up")
	l := &lease{c: c, id: "00000000-0000-0000-0000-000000000000", holder: gaveUp}
	if err := l.release(t.Context()); err == nil {
		t.Fatalf("releasing with Glance down succeeded")
	}
	if !heldByNoOne(gaveUp, ours) {
		t.Errorf("a lease this process released while Glance was down is still taken as held")
	}
}
