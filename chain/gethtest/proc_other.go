//go:build !linux

package gethtest

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return nil }
