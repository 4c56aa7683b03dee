package pipeline

import (
	"builder/internal/redact"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteTable prints the summary: one line per image, then the reason of
// every failure and skip.
func (s *Summary) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "IMAGE\tBUILD\tBOOT TEST\tPUBLISH\tRESULT\tTIME")
	for _, r := range s.Images {
		pub := r.Publish
		if r.Publish == OK && len(r.Published) > 0 {
			var where []string
			for _, p := range r.Published {
				where = append(where, p.Cloud)
			}
			pub = "ok: " + strings.Join(where, ",")
			same := true
			for _, p := range r.Published {
				same = same && p.Unchanged
			}
			if same {
				pub = "unchanged: " + strings.Join(where, ",")
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.Build, r.BootTest, pub, r.Result, (time.Duration(r.Seconds) * time.Second).String())
	}
	tw.Flush()
	failed, skipped, ok := 0, 0, 0
	for _, r := range s.Images {
		switch r.Result {
		case Failed:
			failed++
		case Skipped:
			skipped++
		case OK:
			ok++
		}
		if r.Error != "" {
			fmt.Fprintf(w, "  %s: %s\n", r.Name, r.Error)
		}
	}
	fmt.Fprintf(w, "%d ok, %d failed, %d skipped, %d not run, in %s\n", ok, failed, skipped, len(s.Images)-ok-failed-skipped,
		(time.Duration(s.Seconds) * time.Second).String())
}

// WriteJSON writes the summary as JSON to path, without secrets.
func (s *Summary) WriteJSON(path string, red *redact.Redactor) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(red.String(string(b))+"\n"), 0o644); err != nil {
		return fmt.Errorf("report %s: %w", path, err)
	}
	return nil
}
