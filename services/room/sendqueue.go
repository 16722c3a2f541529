package main

import "sync"

// maxPooledFrameSlots: a queue slice grown past this many frames (a burst
// to a slow reader, up to -send-queue) is left to the GC rather than
// pooled.
const maxPooledFrameSlots = 1024

// framePool lends the slices frames are queued in while a connection has
// frames waiting, so an idle connection keeps a pointer, not a slice
// header, and a busy one reuses slices instead of growing a new one per
// write.
var framePool = sync.Pool{New: func() any { return new([][]byte) }}

// sendQueue is the part of a conn both engines share: the frames queued
// for one connection, its bound, and the start of its close. The engine's
// conn embeds it and says, through queueOwner, how the queue gets written.
type sendQueue struct {
	mu      sync.Mutex
	frames  *[][]byte // from framePool; nil while nothing is queued
	closing bool      // no more Sends; flush, then close

	// The gnet engine's own flags under mu. They sit here, in the padding
	// after closing, because as gnetConn fields past the embedded queue
	// they would take a word of their own on every connection (the std
	// engine leaves them unused, at no cost).
	flushing bool // a flush task is queued or waiting for the socket
	gone     bool // gnet closed the connection
}

// queueOwner is the engine side of a sendQueue.
type queueOwner interface {
	// flushLocked is called with the queue's lock held after a frame was
	// queued or the close began (closeBegun): the engine makes sure a
	// write of the queue is under way. It must not block.
	flushLocked(closeBegun bool)
}

// queuedLocked is the number of frames waiting.
func (q *sendQueue) queuedLocked() int {
	if q.frames == nil {
		return 0
	}
	return len(*q.frames)
}

// pushLocked queues frame.
func (q *sendQueue) pushLocked(frame []byte) {
	if q.frames == nil {
		q.frames = framePool.Get().(*[][]byte)
	}
	*q.frames = append(*q.frames, frame)
}

// takeLocked hands the queued frames over (nil for none); the writer gives
// them back with releaseFrames once written.
func (q *sendQueue) takeLocked() *[][]byte {
	p := q.frames
	q.frames = nil
	return p
}

// dropLocked discards whatever is queued.
func (q *sendQueue) dropLocked() { releaseFrames(q.takeLocked()) }

// releaseFrames returns a queue slice taken with takeLocked to the pool.
func releaseFrames(p *[][]byte) {
	if p == nil {
		return
	}
	clear(*p) // the frames may be large; the pool must not keep them alive
	if cap(*p) > maxPooledFrameSlots {
		return
	}
	*p = (*p)[:0]
	framePool.Put(p)
}

func (q *sendQueue) isClosing() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.closing
}

// send is conn.Send: it queues frame unless the connection is closing, or
// queues an ERROR SLOW_CONSUMER instead and begins the close when limit
// frames are already waiting.
func (q *sendQueue) send(o queueOwner, frame []byte, limit int) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closing {
		return errClosed
	}
	if q.queuedLocked() >= limit {
		q.beginCloseLocked(o, slowConsumerFrame)
		return errQueueFull
	}
	q.pushLocked(frame)
	o.flushLocked(false)
	return nil
}

// closeWith is conn.CloseWith.
func (q *sendQueue) closeWith(o queueOwner, frame []byte) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closing {
		return false
	}
	q.beginCloseLocked(o, frame)
	return true
}

func (q *sendQueue) beginCloseLocked(o queueOwner, frame []byte) {
	q.closing = true
	if frame != nil {
		q.pushLocked(frame)
	}
	o.flushLocked(true)
}

// appendFrames copies frames after buf, for one write.
func appendFrames(buf []byte, frames *[][]byte) []byte {
	for _, f := range *frames {
		buf = append(buf, f...)
	}
	return buf
}

// getWriteBuf and putWriteBuf lend the buffer one write coalesces queued
// frames into, so an idle connection holds none.
func getWriteBuf() *[]byte { return writeBufPool.Get().(*[]byte) }

func putWriteBuf(bp *[]byte) {
	if cap(*bp) <= maxPooledWriteBuf {
		*bp = (*bp)[:0]
		writeBufPool.Put(bp)
	}
}
