//go:build unix

package ml

import (
	"syscall"
	"time"
)

// cpuTime returns the CPU time (user and system) used so far by this
// process and, separately, by its waited-for children: on a shared
// machine it measures work where wall time measures the neighbours.
func cpuTime() (self, children time.Duration) {
	var s, c syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &s)
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &c)
	return tv(s.Utime) + tv(s.Stime), tv(c.Utime) + tv(c.Stime)
}

func tv(t syscall.Timeval) time.Duration {
	return time.Duration(t.Sec)*time.Second + time.Duration(t.Usec)*time.Microsecond
}
