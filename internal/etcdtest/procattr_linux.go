package etcdtest

import "syscall"

// procAttr kills etcd with the test binary, so a crashed or timed-out test
// leaves no etcd behind.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
