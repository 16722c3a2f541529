package main

import (
	"context"
	"fmt"
	"testing"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// BenchmarkTagAdd measures AddTagUsers of 1,000 new users per call (MySQL
// transaction with the count-row locks, then the Redis sets) over gRPC.
//
//	go test ./services/saver -run '^$' -bench Tag -benchtime 20x -cpu 2
func BenchmarkTagAdd(b *testing.B) {
	f := newTagFixture(b, 1<<30, 64)
	users := make([]string, maxTagUsersPerCall)
	b.ResetTimer()
	for i := range b.N {
		for j := range users {
			users[j] = fmt.Sprintf("u%d-%d", i, j)
		}
		if _, err := f.cli.AddTagUsers(context.Background(), &internalpb.TagUsersRequest{App: "bench", Tag: "t", Users: users}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*len(users))/b.Elapsed().Seconds(), "users/s")
}

// BenchmarkTagMembership measures "which of these 1,000 users are in tag
// T" over gRPC against a 10,000-member tag, from the Redis set (warm) and
// from MySQL (cold: the set is not there).
func BenchmarkTagMembership(b *testing.B) {
	f := newTagFixture(b, 1<<30, 64)
	all := make([]string, 10*maxTagUsersPerCall)
	for i := range all {
		all[i] = fmt.Sprintf("user-%05d", i)
	}
	for start := 0; start < len(all); start += maxTagUsersPerCall {
		f.add(b, "bench", "t", all[start:start+maxTagUsersPerCall]...)
	}
	// Every other user of the tag, and as many strangers.
	asked := make([]string, 0, maxTagUsersPerCall)
	for i := 0; len(asked) < maxTagUsersPerCall; i += 2 {
		asked = append(asked, all[i*5], fmt.Sprint("stranger-", i))
	}
	req := &internalpb.TagMembershipRequest{App: "bench", Tag: "t", Users: asked}
	run := func(b *testing.B, before func()) {
		for range b.N {
			before()
			r, err := f.cli.TagMembership(context.Background(), req)
			if err != nil || len(r.GetMembers()) != len(asked)/2 {
				b.Fatalf("%v, %d members", err, len(r.GetMembers()))
			}
		}
	}
	b.Run("redis", func(b *testing.B) {
		f.membership(b, "bench", "t", "x")
		waitUntil(b, "the tag set", func() bool { return f.marked(b, tagSetKeys("bench", "t")) })
		run(b, func() {})
	})
	b.Run("mysql", func(b *testing.B) {
		// The worker that would refill the set is stopped, so each call
		// finds it missing.
		f.tags.cache.close()
		k := tagSetKeys("bench", "t").set
		run(b, func() { b.StopTimer(); f.rdb.Del(context.Background(), k); b.StartTimer() })
	})
}
