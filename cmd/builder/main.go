// Command builder builds bootable cloud disk images from diskimage-builder
// elements, with hooks in buildah containers and a loopless disk assembly.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"os/user"
	"strings"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	"go.podman.io/buildah"
	"go.podman.io/storage/pkg/unshare"

	"builder/cmd/boottestcmd"
	"builder/cmd/cachecmd"
	"builder/cmd/diffcmd"
	"builder/cmd/doctorcmd"
	"builder/cmd/elementscmd"
	"builder/cmd/imagecmd"
	"builder/cmd/pipelinecmd"
	"builder/cmd/publishcmd"
	"builder/cmd/ramdiskcmd"
	"builder/cmd/versioncmd"
	"builder/internal/doctor"
	"builder/rootfs"
)

func currentUserName() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return fmt.Sprint("uid ", os.Getuid())
}

func main() {
	// buildah re-executes this binary for its chroot and copier helpers.
	if buildah.InitReexec() {
		return
	}
	os.Exit(run())
}

func run() int {
	logrus.SetLevel(logrus.WarnLevel)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sigs
		first := time.Now()
		fmt.Fprintf(os.Stderr, "\nbuilder: %s: stopping and cleaning up (again to abort at once)\n", s)
		cancel()
		for range sigs {
			// One stop often arrives twice at once: timeout(1) and CI
			// runners signal the process and its group, a terminal's
			// Ctrl-C the whole group. Only a later one means "at once".
			if time.Since(first) > time.Second {
				break
			}
		}
		fmt.Fprintln(os.Stderr, "builder: aborted; the next build removes what is left")
		os.Exit(130)
	}()

	root := &cobra.Command{
		Use:           "builder",
		Short:         "Build bootable cloud disk images from diskimage-builder elements",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, args []string) {
			if cmd.Name() == "image" || cmd.Name() == "ramdisk" {
				// Not root: continue in a user namespace with the
				// subordinate id ranges, so image files keep their owners.
				// First check that it can be made, and say how to fix it
				// when not, rather than build with only one id mapped.
				if os.Geteuid() != 0 {
					if f := doctor.Privilege(cmd.Context()); f.Status == doctor.Fail {
						fmt.Fprintf(os.Stderr, "builder: cannot build as %s here: %s\n  fix: %s\n", currentUserName(), f.Detail, f.Fix)
						os.Exit(1)
					}
				}
				unshare.MaybeReexecUsingUserNamespace(false)
			}
		},
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &imagecmd.UsageError{Err: fmt.Errorf("%w (see %s --help)", err, c.CommandPath())}
	})
	root.AddCommand(imagecmd.NewCmdImage(nil), boottestcmd.NewCmdBootTest(nil), elementscmd.NewCmdElements(),
		publishcmd.NewCmdPublish(nil), pipelinecmd.NewCmdPipeline(nil), doctorcmd.NewCmdDoctor(nil))
	root.AddCommand(ramdiskcmd.NewCmdRamdisk(nil), cachecmd.NewCmdCache(), versioncmd.NewCmdVersion(nil))
	root.AddCommand(diffcmd.NewCmdDiff())
	strictArgs(root)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var bt *boottestcmd.ExitError
	if errors.As(err, &bt) {
		// boot-test has printed its verdict already.
		if errors.Is(err, context.Canceled) {
			return 130
		}
		return bt.Code
	}
	fmt.Fprintf(os.Stderr, "builder: %v\n", err)
	var he *rootfs.HookError
	if errors.As(err, &he) {
		printHookFailure(he)
	}
	var ue *imagecmd.UsageError
	if errors.As(err, &ue) {
		return 2
	}
	if errors.Is(err, context.Canceled) {
		return 130
	}
	return 1
}

// strictArgs makes every wrong command line a usage error (exit 2) with
// one line: a command's argument check (cobra's "accepts 1 arg(s)") names
// its --help, and a command that only groups others (builder elements,
// builder pipeline) refuses an unknown subcommand instead of printing its
// help and exiting 0.
func strictArgs(c *cobra.Command) {
	for _, sub := range c.Commands() {
		strictArgs(sub)
	}
	if c.HasSubCommands() && c.Run == nil && c.RunE == nil {
		c.Args = cobra.ArbitraryArgs
		c.RunE = func(c *cobra.Command, args []string) error {
			if len(args) == 0 {
				return c.Help()
			}
			var names []string
			for _, s := range c.Commands() {
				if s.IsAvailableCommand() {
					names = append(names, s.Name())
				}
			}
			return &imagecmd.UsageError{Err: fmt.Errorf("unknown command %q for %q: use one of %s (see %s --help)",
				args[0], c.CommandPath(), strings.Join(names, ", "), c.CommandPath())}
		}
		return
	}
	if check := c.Args; check != nil {
		c.Args = func(c *cobra.Command, args []string) error {
			err := check(c, args)
			var ue *imagecmd.UsageError
			var bt *boottestcmd.ExitError
			if err == nil || errors.As(err, &ue) || errors.As(err, &bt) {
				return err
			}
			if strings.Contains(err.Error(), c.CommandPath()) {
				return &imagecmd.UsageError{Err: fmt.Errorf("%w (see %s --help)", err, c.CommandPath())}
			}
			return &imagecmd.UsageError{Err: fmt.Errorf("%s: %w (see %s --help)", c.CommandPath(), err, c.CommandPath())}
		}
	}
}

func printHookFailure(he *rootfs.HookError) {
	if len(he.Tail) > 0 {
		fmt.Fprintf(os.Stderr, "builder: last lines of %s/%s:\n", he.Phase, he.Script)
		for _, l := range he.Tail {
			fmt.Fprintf(os.Stderr, "    %s\n", l)
		}
	}
	if he.Log != "" {
		fmt.Fprintf(os.Stderr, "builder: full log: %s\n", he.Log)
	}
}
