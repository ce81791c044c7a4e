package projections

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"

	"github.com/ThreeDotsLabs/watermill"
)

// writeback asks the kernel to start writing the read model's WAL to disk
// after each commit of the projections, instead of leaving its pages dirty
// until the checkpointer syncs them.
//
// The read model commits without an fsync (synchronous=NORMAL: it can be
// rebuilt from the log), so its WAL pages stay dirty in the page cache
// until a checkpoint syncs the WAL, every 100 ms under load. Each of those
// syncs then sends ~100 ms of WAL to the disk at once: 1–2 MB in the
// closed-loop publish, where the read model writes as many bytes as the
// log. The log's own commits, each waiting for an fdatasync of its WAL,
// queue behind that burst, and the appenders feel it as latency. Started
// after every commit (sync_file_range, which starts the writes and promises
// nothing; see startWritingBack), the same bytes reach the disk a commit at
// a time, between the log's syncs.
//
// Measured on a 2-core AMD EPYC host (kernel build v657; `ledgerq bench
// --scenarios publish`, 64 connections, fresh servers, 3 alternating rounds
// of 8 s): single-publish p99 7.88, 7.44 and 6.67 ms against 8.80, 8.82 and
// 8.19, and 20.1, 20.7 and 21.9k msg/s against 18.8, 19.4 and 19.7k. The
// read model on tmpfs, which takes its bytes off the disk altogether, did
// barely better (p99 6.81–7.23 ms).
//
// It runs on a goroutine of its own, poked after each commit, so the
// projections never wait for it: the call can block while the disk's
// queue is full. Where the call does not exist (not Linux) or the file
// system refuses it, it stops after the first failure; nothing depends on
// it but latency.
type writeback struct {
	path   string // the read model's WAL
	logger watermill.LoggerAdapter
	kick   chan struct{}
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once

	runs     atomic.Int64 // writebacks started
	disabled atomic.Bool  // the file system or the OS cannot do it
}

func startWriteback(walPath string, logger watermill.LoggerAdapter) *writeback {
	w := &writeback{
		path:   walPath,
		logger: logger,
		kick:   make(chan struct{}, 1),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	go w.loop()
	return w
}

// poke asks for a writeback of what the last commit wrote. It never blocks:
// pokes that come while one is pending are one writeback.
func (w *writeback) poke() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *writeback) loop() {
	defer close(w.done)
	var f *os.File
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	for {
		select {
		case <-w.stop:
			return
		case <-w.kick:
		}
		if f == nil {
			// SQLite creates the WAL with the first write after WAL mode
			// was set; keeping it open is safe, as SQLite truncates it but
			// never replaces it while a connection is open.
			var err error
			if f, err = os.Open(w.path); err != nil {
				if errors.Is(err, os.ErrNotExist) {
					continue
				}
				w.disable(err)
				return
			}
		}
		if err := startWritingBack(f); err != nil {
			w.disable(err)
			return
		}
		w.runs.Add(1)
	}
}

func (w *writeback) disable(err error) {
	w.disabled.Store(true)
	w.logger.Info("read model: cannot start the WAL's writeback early; its pages reach the disk at checkpoints", watermill.LogFields{
		"file": w.path, "reason": err.Error(),
	})
}

// close stops the loop. It may be called more than once.
func (w *writeback) close() {
	w.once.Do(func() { close(w.stop) })
	<-w.done
}
