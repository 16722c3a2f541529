package proctest

import "syscall"

// procAttr kills the server with the test binary, so a crashed or timed-out
// test leaves no server process behind.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
