// Command tcpcopy prints the MiB/s of one file sent over one loopback TCP
// connection to a reader that discards it: the raw copy testnet/transfer.sh
// holds data get to.
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: tcpcopy FILE")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "tcpcopy:", err)
		os.Exit(1)
	}
}

func run(path string) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	type result struct {
		n   int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{0, err}
			return
		}
		defer c.Close()
		n, err := io.Copy(io.Discard, c)
		done <- result{n, err}
	}()
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	start := time.Now()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return err
	}
	sent, err := io.Copy(c, f)
	c.Close()
	if err != nil {
		return err
	}
	r := <-done
	if r.err != nil {
		return r.err
	}
	if r.n != sent {
		return fmt.Errorf("received %d of %d bytes", r.n, sent)
	}
	fmt.Printf("%.1f\n", float64(sent)/time.Since(start).Seconds()/(1<<20))
	return nil
}
