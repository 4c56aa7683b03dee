// Package elementscmd is `builder elements`: list, show and resolve elements,
// like DIB's element-info.
package elementscmd

import (
	"builder/internal/workspace"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"builder/cmd/imagecmd"
	"builder/elements"
)

// Options are the flags of `builder elements`.
type Options struct {
	Out          io.Writer
	ElementsPath []string // ELEMENTS_PATH entries, first wins
	ImageCache   string   // where the built-in library is extracted
	Env          bool     // deps --env
	Arch         string
}

// library loads the elements; what goes wrong here is the input's fault
// (ELEMENTS_PATH, its elements, the cache given): a usage error.
func (o *Options) library() (*elements.Library, error) {
	cache := o.ImageCache
	if cache == "" {
		cache = workspace.DefaultCache()
	}
	builtin, err := elements.ExtractBuiltin(filepath.Join(cache, "builder", "elements"))
	if err != nil {
		return nil, &imagecmd.UsageError{Err: err}
	}
	lib, err := elements.LoadLibrary(o.ElementsPath, builtin, elements.FindDIBLibrary())
	if err != nil {
		return nil, &imagecmd.UsageError{Err: err}
	}
	return lib, nil
}

// NewCmdElements returns `builder elements` with its subcommands.
func NewCmdElements() *cobra.Command {
	opts := &Options{}
	cmd := &cobra.Command{
		Use:   "elements",
		Short: "List, show and resolve elements (ELEMENTS_PATH, the built-in library, then diskimage-builder's if installed)",
	}
	cmd.PersistentFlags().StringVar(&opts.ImageCache, "image-cache", os.Getenv("DIB_IMAGE_CACHE"), "cache directory")
	setup := func(c *cobra.Command) {
		opts.Out = c.OutOrStdout()
		opts.ElementsPath = splitPath(os.Getenv("ELEMENTS_PATH"))
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List every element: name, what it provides, where it comes from, what it overrides",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			setup(c)
			return List(opts)
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "show NAME",
		Short: "Show an element's README and files",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			setup(c)
			return Show(opts, args[0])
		},
	})
	deps := &cobra.Command{
		Use:   "deps ELEMENT...",
		Short: "Print the expanded element set, one name per line (DIB's element-info)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			setup(c)
			return Deps(c.Context(), opts, args)
		},
	}
	deps.Flags().BoolVar(&opts.Env, "env", false, "print IMAGE_ELEMENT, IMAGE_ELEMENT_YAML and get_image_element_array for eval")
	cmd.AddCommand(deps)
	return cmd
}

func splitPath(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ":") {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

// List prints every element.
func List(o *Options) error {
	lib, err := o.library()
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(o.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tPROVIDES\tFROM\tOVERRIDES")
	for _, e := range lib.All() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.Name, strings.Join(e.Provides, ","), from(e), strings.Join(e.Shadows, ","))
	}
	return tw.Flush()
}

// from says where an element comes from: "built-in", "diskimage-builder"
// (its own library, used for what builder does not ship) or the
// ELEMENTS_PATH directory.
func from(e *elements.Element) string {
	switch e.Origin {
	case elements.OriginBuiltin:
		return "built-in"
	case elements.OriginDIB:
		return "diskimage-builder"
	}
	return filepath.Dir(e.Dir)
}

// Show prints an element's README and the files it holds.
func Show(o *Options, name string) error {
	lib, err := o.library()
	if err != nil {
		return err
	}
	e, ok := lib.Get(name)
	if !ok {
		return &imagecmd.UsageError{Err: fmt.Errorf("element %q not found: see `builder elements list` for the names (ELEMENTS_PATH first, then the built-in library)", name)}
	}
	fmt.Fprintf(o.Out, "element %s\nfrom      %s (%s)\n", e.Name, from(e), e.Dir)
	if len(e.Deps) > 0 {
		fmt.Fprintf(o.Out, "deps      %s\n", strings.Join(e.Deps, " "))
	}
	if len(e.Provides) > 0 {
		fmt.Fprintf(o.Out, "provides  %s\n", strings.Join(e.Provides, " "))
	}
	for _, s := range e.Shadows {
		fmt.Fprintf(o.Out, "overrides %s\n", s)
	}
	for _, readme := range []string{"README.md", "README.rst", "README"} {
		if data, err := os.ReadFile(filepath.Join(e.Dir, readme)); err == nil {
			fmt.Fprintf(o.Out, "\n%s\n", strings.TrimRight(string(data), "\n"))
			break
		}
	}
	fmt.Fprintf(o.Out, "\nfiles:\n")
	var files []string
	filepath.WalkDir(e.Dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(e.Dir, p)
		files = append(files, rel)
		return nil
	})
	sort.Strings(files)
	for _, f := range files {
		fmt.Fprintf(o.Out, "  %s\n", f)
	}
	return nil
}

// Deps prints the expanded element set.
func Deps(ctx context.Context, o *Options, names []string) error {
	lib, err := o.library()
	if err != nil {
		return err
	}
	res, err := lib.Resolve(names)
	if err != nil {
		return &imagecmd.UsageError{Err: err}
	}
	if o.Env {
		fmt.Fprint(o.Out, res.Env().Script())
		return nil
	}
	for _, n := range res.Names() {
		fmt.Fprintln(o.Out, n)
	}
	return nil
}
