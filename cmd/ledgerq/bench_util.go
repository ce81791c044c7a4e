package main

import (
	"bytes"
	"sync/atomic"
)

// atomicCounter is a counter shared by workers.
type atomicCounter struct{ n atomic.Int64 }

func (c *atomicCounter) add(d int64) int64 { return c.n.Add(d) }

// newBenchBufs gives each worker its own response buffer.
func newBenchBufs(n int) []*bytes.Buffer {
	bufs := make([]*bytes.Buffer, n)
	for i := range bufs {
		bufs[i] = new(bytes.Buffer)
	}
	return bufs
}
