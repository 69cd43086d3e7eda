package main

import "syscall"

// childProcAttr makes a child runner receive SIGTERM when the server dies,
// so a crashed server leaves no orphaned agents behind.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
