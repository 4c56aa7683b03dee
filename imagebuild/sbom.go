package imagebuild

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"builder/elements"
	"builder/internal/cleanup"
	"builder/internal/progress"
	"builder/sbom"
)

// sbomJob is a build's bill of materials (NAME.spdx.json and
// NAME.d/files.json beside the outputs, --sbom): the final tree is read
// while the disk is assembled (startSBOM), the document is written once the
// outputs are complete (write) and put in place with them.
type sbomJob struct {
	cancel  context.CancelFunc
	done    chan struct{}
	scan    *sbom.Scan
	err     error
	started time.Time
	took    time.Duration
	kept    bool // the scan kept with reused outputs, not read now
}

// startSBOM starts reading the image's package databases and files from
// root (the mounted final image). It returns nil when the build writes no
// SBOM; every method of a nil job does nothing. stop must be called before
// root is unmounted.
func startSBOM(ctx context.Context, root string, req Request) *sbomJob {
	if !req.SBOM {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	j := &sbomJob{cancel: cancel, done: make(chan struct{}), started: time.Now()}
	go func() {
		defer close(j.done)
		j.scan, j.err = sbom.ScanTree(ctx, root)
		j.took = time.Since(j.started)
	}()
	return j
}

// keptSBOM is the job for reused outputs written somewhere new: the scan
// kept with them describes the same tree.
func keptSBOM(req Request, scan *sbom.Scan) *sbomJob {
	if !req.SBOM || scan == nil {
		return nil
	}
	done := make(chan struct{})
	close(done)
	return &sbomJob{cancel: func() {}, done: done, scan: scan, kept: true}
}

// result waits for the scan and returns it, nil if it failed.
func (j *sbomJob) result() *sbom.Scan {
	if j == nil {
		return nil
	}
	<-j.done
	if j.err != nil || j.kept {
		return nil
	}
	return j.scan
}

// stop ends the scan (on a failed build) and waits for it: the tree it
// reads is about to be unmounted.
func (j *sbomJob) stop() {
	if j == nil {
		return
	}
	j.cancel()
	<-j.done
}

// write waits for the scan, hashes the outputs (or reads the .sha256 that
// --checksum wrote) and writes the SBOM and the file inventory beside them
// under temporary names. The returned place puts them in place: call it
// right after the outputs are renamed into place. Like the outputs, an
// existing NAME.spdx.json (and its NAME.d/files.json) is kept under the
// previous image's date unless OVERWRITE_OLD_IMAGE is set.
func (j *sbomJob) write(ctx context.Context, req Request, rep *progress.Reporter, p *plan, outs []output, stack *cleanup.Stack) (place func() error, err error) {
	nothing := func() error { return nil }
	if j == nil {
		return nothing, nil
	}
	final := absOutput(req) + ".spdx.json"
	t := rep.Phase("sbom", filepath.Base(final))
	defer func() {
		if err != nil {
			t.Fail(err)
		}
	}()
	select {
	case <-j.done:
	case <-ctx.Done():
		j.stop()
		return nil, ctx.Err()
	}
	if j.err != nil {
		return nil, fmt.Errorf("SBOM: %w", j.err)
	}
	in := sbom.Inputs{Name: filepath.Base(absOutput(req)), Created: sbomCreated(p), Base: p.baseDescription(req)}
	for _, e := range p.res.Elements {
		sum, err := sbom.DirDigest(e.Dir)
		if err != nil {
			return nil, fmt.Errorf("SBOM: element %s: %w", e.Name, err)
		}
		in.Elements = append(in.Elements, sbom.Element{Name: e.Name, Hash: sum, Origin: elementOrigin(e)})
	}
	if in.Outputs, err = outputDigests(ctx, outs); err != nil {
		return nil, err
	}
	doc, err := j.scan.Document(in)
	if err != nil {
		return nil, err
	}
	body, err := doc.JSON()
	if err != nil {
		return nil, err
	}

	// Staged beside the outputs, named after the run: a killed build's
	// leftovers are removed by the next one (see reapStaleRuns).
	dir, base := filepath.Dir(final), filepath.Base(absOutput(req))
	spdxTmp := filepath.Join(dir, "."+base+".spdx.json."+runTag(req.runID)+"tmp")
	invTmp := filepath.Join(dir, "."+base+".files.json."+runTag(req.runID)+"tmp")
	h := stack.Push("staged SBOM "+spdxTmp, func() error {
		return errors.Join(removeIfThere(spdxTmp), removeIfThere(invTmp))
	})
	if err := os.WriteFile(invTmp, doc.InventoryJSON(), 0o644); err != nil {
		return nil, fmt.Errorf("SBOM: %w", err)
	}
	if err := os.WriteFile(spdxTmp, body, 0o644); err != nil {
		return nil, fmt.Errorf("SBOM: %w", err)
	}
	// The date an existing image is kept under (keepOld), read before the
	// outputs are renamed.
	stamp := ""
	for _, o := range outs {
		if fi, err := os.Stat(o.Final); err == nil {
			stamp = fi.ModTime().Format("2006.01.02-15.04.05")
			break
		}
	}
	if fi, err := os.Stat(final); err == nil && stamp == "" {
		stamp = fi.ModTime().Format("2006.01.02-15.04.05")
	}
	how := fmt.Sprintf("tree read in %s beside the assembly", j.took.Round(10*time.Millisecond))
	if j.kept {
		how = "tree as read when the reused outputs were made"
	}
	t.Done(fmt.Sprintf("%d packages, %d files, %d elements (%s)", len(j.scan.Packages), len(j.scan.Files), len(in.Elements), how))

	return func() error {
		inv := sbom.InventoryPath(final)
		if old, err := os.ReadFile(final); err == nil && bytes.Equal(old, body) {
			// The same image described again (reused or reproduced
			// outputs): nothing to keep under a date.
			h.Release()
			return nil
		}
		if ow := req.Env["OVERWRITE_OLD_IMAGE"]; (ow == "" || ow == "0") && stamp != "" {
			if _, err := os.Stat(final); err == nil {
				kept := strings.TrimSuffix(final, ".spdx.json") + "-" + stamp + ".spdx.json"
				if err := os.Rename(final, kept); err != nil {
					return fmt.Errorf("keep the previous %s: %w", final, err)
				}
				if _, err := os.Stat(inv); err == nil {
					keptInv := sbom.InventoryPath(kept)
					if err := os.MkdirAll(filepath.Dir(keptInv), 0o755); err != nil {
						return err
					}
					if err := os.Rename(inv, keptInv); err != nil {
						return fmt.Errorf("keep the previous %s: %w", inv, err)
					}
				}
			}
		}
		if err := os.MkdirAll(filepath.Dir(inv), 0o755); err != nil {
			return err
		}
		// The inventory first: the SBOM names its digest.
		if err := os.Rename(invTmp, inv); err != nil {
			return fmt.Errorf("put %s in place: %w", inv, err)
		}
		if err := os.Rename(spdxTmp, final); err != nil {
			return fmt.Errorf("put %s in place: %w", final, err)
		}
		h.Forget()
		return nil
	}, nil
}

func removeIfThere(p string) error {
	if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// sbomCreated is the SBOM's creation time: SOURCE_DATE_EPOCH (the caller's
// or an element's environment.d), else now.
func sbomCreated(p *plan) time.Time {
	if p.epoch > 0 {
		return time.Unix(p.epoch, 0).UTC()
	}
	if v := p.env["SOURCE_DATE_EPOCH"]; v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			return time.Unix(n, 0).UTC()
		}
	}
	return time.Now().UTC().Truncate(time.Second)
}

// elementOrigin says where an element was found.
func elementOrigin(e *elements.Element) string {
	if e.Origin == elements.OriginPath {
		return "ELEMENTS_PATH " + filepath.Dir(e.Dir)
	}
	return e.Origin.String()
}

// baseDescription names the base the image was built on: a
// DIB_LOCAL_IMAGE, a container image reference or a bootstrap recipe and
// its mirror, with the base's key in builder's cache (which names the
// content: a local image's hash, a pulled image's identity, the mirror's
// Release files).
func (p *plan) baseDescription(req Request) string {
	key := ""
	if p.baseKey != "" && p.baseKey != "scratch" {
		key = " (base key " + p.baseKey + ")"
	}
	if local := p.env["DIB_LOCAL_IMAGE"]; local != "" {
		return "DIB_LOCAL_IMAGE " + local + key
	}
	src, ok, err := readRootfsSource(p.res.OS.Dir, p.env, req.Arch)
	switch {
	case err != nil || !ok:
		return "built from nothing by " + p.res.OS.Name + "'s root.d hooks"
	case src.Method == "image":
		return "container image " + src.Image + key
	}
	b := src.Bootstrap
	return strings.TrimSpace(fmt.Sprintf("%s %s %s %s from %s", b.Method, b.Suite, b.Variant, b.Arch, firstMirror(b.Sources))) + key
}

// outputDigests is the sha256 of each output file, read from the .sha256
// file --checksum wrote beside it when there is one, else computed (in
// parallel, one output per processor).
func outputDigests(ctx context.Context, outs []output) ([]sbom.Output, error) {
	res := make([]sbom.Output, len(outs))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i, o := range outs {
		g.Go(func() error {
			sum, err := outputDigest(gctx, o)
			if err != nil {
				return fmt.Errorf("SBOM: digest of %s: %w", o.Final, err)
			}
			res[i] = sbom.Output{Path: o.Final, SHA256: sum}
			return nil
		})
	}
	return res, g.Wait()
}

func outputDigest(ctx context.Context, o output) (string, error) {
	if data, err := os.ReadFile(o.Temp + ".sha256"); err == nil {
		if f := strings.Fields(string(data)); len(f) > 0 && len(f[0]) == 64 {
			return f[0], nil
		}
	}
	f, err := os.Open(o.Temp)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		n, err := f.Read(buf)
		h.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
