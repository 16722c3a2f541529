package ids

import (
	"sync"
	"testing"
	"time"
)

func TestConcurrentGeneratorsNeverCollide(t *testing.T) {
	const gens, per, workers = 4, 20000, 4
	var mu sync.Mutex
	seen := make(map[uint64]struct{}, gens*per*workers)
	var wg sync.WaitGroup
	for g := 0; g < gens; g++ {
		gen, err := NewGenerator(g)
		if err != nil {
			t.Fatal(err)
		}
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				local := make([]uint64, 0, per)
				for i := 0; i < per; i++ {
					id, err := gen.Next()
					if err != nil {
						t.Error(err)
						return
					}
					local = append(local, id)
				}
				mu.Lock()
				defer mu.Unlock()
				for _, id := range local {
					if _, dup := seen[id]; dup {
						t.Errorf("duplicate id %d", id)
					}
					seen[id] = struct{}{}
				}
			}()
		}
	}
	wg.Wait()
	if len(seen) != gens*per*workers {
		t.Fatalf("got %d distinct ids, want %d", len(seen), gens*per*workers)
	}
}

func TestMonotonicPerGenerator(t *testing.T) {
	gen, _ := NewGenerator(7)
	var last uint64
	for i := 0; i < 50000; i++ {
		id, err := gen.Next()
		if err != nil {
			t.Fatal(err)
		}
		if id <= last {
			t.Fatalf("id %d not above previous %d", id, last)
		}
		last = id
		if NodeOf(id) != 7 {
			t.Fatalf("node of %d = %d", id, NodeOf(id))
		}
	}
	if d := time.Since(Time(last)); d < -time.Second || d > time.Minute {
		t.Fatalf("Time(id) off by %v", d)
	}
}

func TestClockBackwards(t *testing.T) {
	gen, _ := NewGenerator(1)
	now := time.Now()
	gen.now = func() time.Time { return now }
	a, _ := gen.Next()
	gen.now = func() time.Time { return now.Add(-time.Millisecond * 5) }
	b, err := gen.Next()
	if err != nil || b <= a {
		t.Fatalf("small step back: a=%d b=%d err=%v", a, b, err)
	}
	gen.now = func() time.Time { return now.Add(-time.Hour) }
	if _, err := gen.Next(); err == nil {
		t.Fatal("want ErrClockBackwards for a one-hour step back")
	}
}

func TestNodeRange(t *testing.T) {
	if _, err := NewGenerator(MaxNode + 1); err == nil {
		t.Fatal("want error for node out of range")
	}
}
