//go:build !unix

package runner

import "os"

// lockFile is a no-op where flock is missing: agents in one process still
// take turns on the state's mutex.
func lockFile(*os.File) error { return nil }

func unlockFile(*os.File) error { return nil }
