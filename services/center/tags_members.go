package main

import (
	"context"
	"fmt"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// forEachTagMember calls fn with the members of app's tag, in byte order,
// batch users at a time (1..tagPageMax), until the tag is exhausted or fn
// or a page read fails; it returns that error, with context.
//
// For whoever wires tag broadcasts and tag multicasts: each page is one
// Saver.TagMembers call under its own downstreamTimeout, within ctx, so
// give ctx the deadline of the whole walk (a 1,000,000-member tag is 1,000
// pages of 1,000). Pages are read from MySQL by keyset, so the walk is
// consistent under concurrent writes in this sense: a member present for
// the whole walk is yielded exactly once; one added or removed meanwhile
// may or may not be. fn runs on the caller's goroutine and the next page
// is read only after it returns, so fn bounds the memory and sets the
// pace (pacing belongs there); the users slice is fn's to keep.
func (s *Server) forEachTagMember(ctx context.Context, app, tag string, batch int, fn func(users []string) error) error {
	if batch < 1 || batch > tagPageMax {
		return fmt.Errorf("center: tag %s/%s: batch %d outside 1..%d", app, tag, batch, tagPageMax)
	}
	after := ""
	for page := 0; ; page++ {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("center: tag %s/%s: page %d: %w", app, tag, page, err)
		}
		cctx, cancel := context.WithTimeout(ctx, downstreamTimeout)
		rep, err := s.saver.TagMembers(cctx, &internalpb.TagMembersRequest{App: app, Tag: tag, After: after, Limit: uint32(batch)})
		cancel()
		if err != nil {
			return fmt.Errorf("center: tag %s/%s: page %d after %q: %w", app, tag, page, after, err)
		}
		users := rep.GetUsers()
		if len(users) > 0 {
			if err := fn(users); err != nil {
				return err
			}
			after = users[len(users)-1]
		}
		if !rep.GetMore() || len(users) == 0 {
			return nil
		}
	}
}
