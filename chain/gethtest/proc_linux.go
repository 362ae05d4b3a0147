package gethtest

import (
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

// sysProcAttr kills geth when the test process dies without its cleanup
// (a test timeout's panic, SIGKILL), so no node outlives its test.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// Linux sends the parent-death signal when the thread that forked the
// child exits, not the process: a thread left locked by a goroutine that
// ended (as network-namespace code does) exits with it, and would take
// geth along. So every geth is started from one thread that lives as
// long as the process.
var spawner struct {
	once sync.Once
	reqs chan spawnReq
}

type spawnReq struct {
	cmd  *exec.Cmd
	errc chan error
}

func spawn(cmd *exec.Cmd) error {
	spawner.once.Do(func() {
		spawner.reqs = make(chan spawnReq)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread stays
			for r := range spawner.reqs {
				r.errc <- r.cmd.Start()
			}
		}()
	})
	errc := make(chan error, 1)
	spawner.reqs <- spawnReq{cmd, errc}
	return <-errc
}
