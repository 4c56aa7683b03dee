package publish

import (
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"sync"
	"time"
)

// progressReader counts and hashes what the upload reads, prints progress
// every few seconds, and tells a watchdog when data last moved.
type progressReader struct {
	r     io.Reader
	total int64
	out   io.Writer
	h     hash.Hash

	mu        sync.Mutex
	n         int64
	last      time.Time // last read
	lastPrint time.Time
	start     time.Time
}

func newProgressReader(r io.Reader, total int64, out io.Writer) *progressReader {
	now := time.Now()
	return &progressReader{r: r, total: total, out: out, h: sha512.New(), last: now, lastPrint: now, start: now}
}

func (p *progressReader) Read(b []byte) (int, error) {
	k, err := p.r.Read(b)
	p.h.Write(b[:k])
	p.mu.Lock()
	p.n += int64(k)
	now := time.Now()
	p.last = now
	if now.Sub(p.lastPrint) >= 5*time.Second && p.total > 0 {
		p.lastPrint = now
		fmt.Fprintf(p.out, "publish: uploading %3.0f%% (%s of %s)\n", 100*float64(p.n)/float64(p.total), humanBytes(p.n), humanBytes(p.total))
	}
	p.mu.Unlock()
	return k, err
}

func (p *progressReader) sum() string { return hex.EncodeToString(p.h.Sum(nil)) }

// watch calls stalled once when no data was read for d; the returned
// function stops watching.
func (p *progressReader) watch(d time.Duration, stalled func()) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(d / 10)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				p.mu.Lock()
				idle := time.Since(p.last)
				p.mu.Unlock()
				if idle >= d {
					stalled()
					return
				}
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done) }) }
}
