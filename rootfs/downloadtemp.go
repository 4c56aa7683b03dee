package rootfs

import (
	"os"
	"path/filepath"
	"syscall"
)

// A download is written to a temporary file (.download-*) in the cache's
// download directory and renamed when verified. A build killed outright
// leaves its temporary file behind; these two keep the directory clean
// without ever touching a download still running: the downloader holds a
// lock on its temporary file until it is renamed, and a temporary file
// that can be locked belongs to a build that is gone.

// lockDownload locks the temporary file at path for as long as the
// returned file is open (a descriptor of its own: closing the file being
// written does not release the lock before the rename).
func lockDownload(path string) *os.File {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		f.Close()
		return nil
	}
	return f
}

// removeStaleDownloads removes the temporary files of dead builds' downloads.
func removeStaleDownloads(dir string) {
	left, _ := filepath.Glob(filepath.Join(dir, ".download-*"))
	for _, p := range left {
		if f := lockDownload(p); f != nil {
			os.Remove(p)
			f.Close()
		}
	}
}
