//go:build unix

package runner

import (
	"os"
	"syscall"
)

// lockFile takes an exclusive lock on f, shared with other processes: two
// agents on one storage root (two runners registered on the same folder)
// then update its state one at a time.
func lockFile(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX) // #nosec G115 -- a file descriptor fits an int
}

func unlockFile(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_UN) // #nosec G115 -- a file descriptor fits an int
}
