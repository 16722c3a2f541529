package main

import (
	"context"
	"testing"
	"time"

	"github.com/pushgw/pushgw/proto/internalpb"
)

// A collapse key's row outlives its message (the ack does not touch
// message_collapse_keys); the sweep's walk deletes it, keeps the rows of
// messages still stored, and the key then collapses as before.
func TestCollapseKeysPruned(t *testing.T) {
	f := newFixture(t, 10)
	keyed := func(user string) *internalpb.Message {
		m := msg("app", user, "", 0)
		m.CollapseKey = "score"
		return m
	}
	var acked []*internalpb.Message
	for _, u := range []string{"a", "b", "c", "d", "e"} {
		m := keyed(u)
		f.store(t, m)
		acked = append(acked, m)
	}
	live := keyed("f")
	f.store(t, live)
	f.ack(t, acked...)
	if n := f.count(t, "SELECT COUNT(*) FROM message_collapse_keys"); n != 6 {
		t.Fatalf("%d collapse key rows before the sweep, want 6", n)
	}
	// A walk of one row per call crosses the table in seven calls, the
	// last finding nothing past "f".
	var cur collapseCursor
	deleted, calls := int64(0), 0
	for end := false; !end; calls++ {
		n, e, err := f.sweep.db.pruneCollapseKeys(context.Background(), &cur, 1)
		if err != nil {
			t.Fatal(err)
		}
		deleted, end = deleted+n, e
		if calls > 10 {
			t.Fatal("the walk never reached the end of the table")
		}
	}
	if deleted != 5 || calls != 7 {
		t.Fatalf("walk deleted %d rows in %d calls, want 5 in 7", deleted, calls)
	}
	if n := f.count(t, "SELECT COUNT(*) FROM message_collapse_keys WHERE id = ?", live.GetId()); n != 1 {
		t.Fatal("the row of a stored message was pruned")
	}
	if n := f.count(t, "SELECT COUNT(*) FROM message_collapse_keys"); n != 1 {
		t.Fatalf("%d rows after the walk, want 1", n)
	}

	// The key still collapses: f's stored message goes, a's new one stays.
	next := keyed("f")
	f.store(t, next)
	if st := f.status(t, "app", live.GetId()).GetMessage().GetState(); st != internalpb.MessageState_MESSAGE_STATE_COLLAPSED {
		t.Fatalf("older keyed message: %v, want collapsed", st)
	}
	again := keyed("a")
	f.store(t, again)
	if got := f.pending(t, "app", "a", ""); len(got) != 1 || got[0].GetId() != again.GetId() {
		t.Fatalf("a pending %v, want [%d]", ids(got), again.GetId())
	}
	// The sweep itself runs the walk.
	f.ack(t, again, next)
	f.sweep.sweep(context.Background(), time.Now())
	if n := f.count(t, "SELECT COUNT(*) FROM message_collapse_keys"); n != 0 {
		t.Fatalf("%d rows after a sweep with every keyed message acked, want 0", n)
	}
}

// A row re-pointed at a newer message between the walk's read and its
// delete survives: the delete names the id it found dead.
func TestCollapseKeyPruneSparesRepointedRow(t *testing.T) {
	f := newFixture(t, 10)
	m := msg("app", "g", "", 0)
	m.CollapseKey = "k"
	f.store(t, m)
	f.ack(t, m)
	n := msg("app", "g", "", 0)
	n.CollapseKey = "k"
	f.store(t, n) // re-points the row at a stored message
	var cur collapseCursor
	if _, _, err := f.sweep.db.pruneCollapseKeys(context.Background(), &cur, 10); err != nil {
		t.Fatal(err)
	}
	if c := f.count(t, "SELECT COUNT(*) FROM message_collapse_keys WHERE id = ?", n.GetId()); c != 1 {
		t.Fatal("the row of a stored message was pruned")
	}
	// The stale id alone matches nothing.
	res, err := f.sqldb.Exec("DELETE FROM message_collapse_keys WHERE (app = 'app' AND `user` = 'g' AND collapse_key = 'k' AND id = ?)", m.GetId())
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := res.RowsAffected(); c != 0 {
		t.Fatal("a delete naming the old id removed the re-pointed row")
	}
}

// A multicast's members go with its idempotency key, in one transaction.
func TestPruneKeysTakesMulticastMembers(t *testing.T) {
	f := newFixture(t, 10)
	req := multiReq("app", 50, "mc-prune")
	if _, err := f.cli.StoreMulti(callCtx(t), req); err != nil {
		t.Fatal(err)
	}
	plain := multiReq("app", 5, "")
	if _, err := f.cli.StoreMulti(callCtx(t), plain); err != nil {
		t.Fatal(err)
	}
	if n := f.count(t, "SELECT COUNT(*) FROM multicast_members WHERE multicast_id = ?", req.GetIds()[0]); n != 50 {
		t.Fatalf("%d members recorded, want 50", n)
	}
	if n := f.count(t, "SELECT COUNT(*) FROM multicast_members"); n != 50 {
		t.Fatalf("%d members in all, want 50 (a multicast without a key records none)", n)
	}
	n, err := f.sweep.db.pruneKeys(context.Background(), time.Now().Add(time.Minute), 10)
	if err != nil || n != 1 {
		t.Fatalf("pruneKeys: %d, %v", n, err)
	}
	if n := f.count(t, "SELECT COUNT(*) FROM multicast_members"); n != 0 {
		t.Fatalf("%d members left after their key was pruned", n)
	}
}

// Migration 0010 fills the side tables from rows stored before it, so an
// upgraded saver collapses and replays them.
func TestMigrationBackfillsSideTables(t *testing.T) {
	f := newFixture(t, 10)
	old := msg("app", "h", "", 0)
	old.CollapseKey = "score"
	f.store(t, old)
	req := multiReq("app", 3, "mc-old")
	if _, err := f.cli.StoreMulti(callCtx(t), req); err != nil {
		t.Fatal(err)
	}
	f.ack(t, &internalpb.Message{App: "app", User: "u-1", Id: req.GetIds()[1]})
	// The state before 0010: no side-table rows, 0010 not recorded.
	for _, q := range []string{"DELETE FROM message_collapse_keys", "DELETE FROM multicast_members", "DELETE FROM schema_migrations WHERE version = 10"} {
		if _, err := f.sqldb.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	if err := migrate(context.Background(), f.mcfg, testLog(), false); err != nil {
		t.Fatal(err)
	}
	if n := f.count(t, "SELECT COUNT(*) FROM message_collapse_keys WHERE id = ?", old.GetId()); n != 1 {
		t.Fatal("the stored keyed message was not backfilled")
	}
	if n := f.count(t, "SELECT COUNT(*) FROM multicast_members WHERE multicast_id = ?", req.GetIds()[0]); n != 3 {
		t.Fatalf("%d members backfilled, want 3 (acked one included)", n)
	}
	next := msg("app", "h", "", 0)
	next.CollapseKey = "score"
	f.store(t, next)
	if st := f.status(t, "app", old.GetId()).GetMessage().GetState(); st != internalpb.MessageState_MESSAGE_STATE_COLLAPSED {
		t.Fatalf("message stored before the migration: %v, want collapsed", st)
	}
}

// A contract migration waits for -contract on a database in use, and a
// later migration waits behind it; a fresh database gets everything.
func TestContractMigrationWaits(t *testing.T) {
	f := newFixture(t, 10)
	if n := f.count(t, "SELECT COUNT(*) FROM schema_migrations WHERE version = 11"); n != 1 {
		t.Fatal("a fresh database did not get the contract migration")
	}
	// Back to before 0011, indexes included.
	for _, q := range []string{
		"DELETE FROM schema_migrations WHERE version = 11",
		"ALTER TABLE messages ADD INDEX idx_messages_multicast (multicast_id)",
	} {
		if _, err := f.sqldb.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	indexed := func() int {
		return f.count(t, "SELECT COUNT(*) FROM information_schema.statistics WHERE table_schema = DATABASE() "+
			"AND table_name = 'messages' AND index_name = 'idx_messages_multicast'")
	}
	if err := migrate(context.Background(), f.mcfg, testLog(), false); err != nil {
		t.Fatal(err)
	}
	if indexed() == 0 || f.count(t, "SELECT COUNT(*) FROM schema_migrations WHERE version = 11") != 0 {
		t.Fatal("a saver start applied a contract migration to a database in use")
	}
	if err := migrate(context.Background(), f.mcfg, testLog(), true); err != nil {
		t.Fatal(err)
	}
	if indexed() != 0 || f.count(t, "SELECT COUNT(*) FROM schema_migrations WHERE version = 11") != 1 {
		t.Fatal("migrate -contract did not apply 0011")
	}
}

// Before 0011, a multicast a saver of the previous release stored (no
// members) is answered from the index it still has.
func TestMulticastReplayWithoutMembers(t *testing.T) {
	f := newFixture(t, 10)
	req := multiReq("app", 4, "mc-prev")
	if _, err := f.cli.StoreMulti(callCtx(t), req); err != nil {
		t.Fatal(err)
	}
	if _, err := f.sqldb.Exec("DELETE FROM multicast_members"); err != nil {
		t.Fatal(err)
	}
	rep, err := f.cli.StoreMulti(callCtx(t), multiReq("app", 4, "mc-prev"))
	if err != nil {
		t.Fatal(err)
	}
	if !rep.GetReplayed() || len(rep.GetIds()) != 4 || rep.GetMulticastId() != req.GetIds()[0] {
		t.Fatalf("replay: replayed=%v ids=%d multicast=%d", rep.GetReplayed(), len(rep.GetIds()), rep.GetMulticastId())
	}
}
