package gethtest

import "syscall"

// sysProcAttr kills geth when the test process dies without its cleanup
// (a test timeout's panic, SIGKILL), so no node outlives its test.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
