// Package ids generates 64-bit message ids that are unique across the
// cluster and roughly time-ordered: 41 bits of milliseconds since Epoch,
// 10 bits of node id (leased from etcd, see lease.go), 12 bits of sequence.
package ids

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

const (
	nodeBits = 10
	seqBits  = 12
	// MaxNode is the largest node id.
	MaxNode = 1<<nodeBits - 1
	maxSeq  = 1<<seqBits - 1
	// maxBackwardsWait bounds how long Next waits out a clock that stepped back.
	maxBackwardsWait = 2 * time.Second
)

// Epoch is the zero of the id clock (2026-01-01 UTC); 41 bits of
// milliseconds from it last about 69 years.
var Epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// ErrClockBackwards is returned when the wall clock stepped back further
// than Next is willing to wait.
var ErrClockBackwards = errors.New("ids: clock moved backwards")

// Generator hands out ids for one node. It is safe for concurrent use.
type Generator struct {
	mu     sync.Mutex
	node   uint64
	lastMS int64
	seq    uint64
	now    func() time.Time
}

// NewGenerator returns a generator for node (0..MaxNode).
func NewGenerator(node int) (*Generator, error) {
	if node < 0 || node > MaxNode {
		return nil, fmt.Errorf("ids: node %d out of range 0..%d", node, MaxNode)
	}
	return &Generator{node: uint64(node), now: time.Now}, nil
}

// SetNode switches the node id (after a lease was lost and re-acquired under
// another number). Ids already issued stay unique because the new node's
// ids are distinct in the node field.
func (g *Generator) SetNode(node int) {
	g.mu.Lock()
	g.node = uint64(node)
	g.mu.Unlock()
}

// Node returns the current node id.
func (g *Generator) Node() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return int(g.node)
}

// Next returns a new id.
func (g *Generator) Next() (uint64, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	ms := g.now().Sub(Epoch).Milliseconds()
	if ms < g.lastMS {
		if time.Duration(g.lastMS-ms)*time.Millisecond > maxBackwardsWait {
			return 0, fmt.Errorf("%w by %dms", ErrClockBackwards, g.lastMS-ms)
		}
		ms = g.lastMS // keep issuing from the last tick; seq overflow waits below
	}
	if ms == g.lastMS {
		g.seq = (g.seq + 1) & maxSeq
		if g.seq == 0 {
			// 4096 ids in one millisecond: spin to the next one.
			for ms <= g.lastMS {
				time.Sleep(100 * time.Microsecond)
				ms = g.now().Sub(Epoch).Milliseconds()
				if ms < g.lastMS {
					ms = g.lastMS + 1 // clock went back while spinning; borrow one tick
				}
			}
		}
	} else {
		g.seq = 0
	}
	g.lastMS = ms
	return uint64(ms)<<(nodeBits+seqBits) | g.node<<seqBits | g.seq, nil
}

// Time returns the moment encoded in id.
func Time(id uint64) time.Time {
	return Epoch.Add(time.Duration(id>>(nodeBits+seqBits)) * time.Millisecond)
}

// NodeOf returns the node field of id.
func NodeOf(id uint64) int { return int(id >> seqBits & MaxNode) }
