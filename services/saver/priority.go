package main

import (
	"slices"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// priorityHigh is Message.priority for "high"; 0 is normal.
const priorityHigh = 1

// byPriority orders one Pending page for a reconnecting client: high
// priority messages first, each group oldest first. The page's largest id
// stays last whatever its priority: the room pages through a backlog with
// after_id = the last id of the previous page, and a smaller id there
// would make the next page repeat messages. So within one page (the
// room's -max-inflight, 100 by default, which holds a typical backlog
// whole) high messages go first, except that the newest message of the
// page, if high, closes it.
func byPriority(page []*internalpb.Message) []*internalpb.Message {
	if len(page) < 2 || !slices.ContainsFunc(page, func(m *internalpb.Message) bool { return m.GetPriority() >= priorityHigh }) {
		return page
	}
	last := 0
	for i, m := range page {
		if m.GetId() > page[last].GetId() {
			last = i
		}
	}
	newest := page[last]
	rest := make([]*internalpb.Message, 0, len(page))
	rest = append(rest, page[:last]...)
	rest = append(rest, page[last+1:]...)
	slices.SortStableFunc(rest, func(a, b *internalpb.Message) int {
		if ha, hb := a.GetPriority() >= priorityHigh, b.GetPriority() >= priorityHigh; ha != hb {
			if ha {
				return -1
			}
			return 1
		}
		switch {
		case a.GetId() < b.GetId():
			return -1
		case a.GetId() > b.GetId():
			return 1
		}
		return 0
	})
	return append(rest, newest)
}
