package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/pushgw/pushgw/proto/internalpb"
)

func refOf(m *internalpb.Message) *internalpb.MessageRef {
	return &internalpb.MessageRef{App: m.GetApp(), User: m.GetUser(), Id: m.GetId()}
}

// One room flush window: many acks (and the deliveries of the same
// pushes) in one Report. One ack whose outcome row MariaDB refuses (a
// trigger plays the broken row) stays stored, in MySQL and in its inbox;
// every batch-mate is finished, counted delivered once, and removed from
// Redis.
func TestReportBatchIsolatesFailingAck(t *testing.T) {
	f := newFixture(t, 10)
	const n = 64
	msgs := make([]*internalpb.Message, n)
	for i := range msgs {
		msgs[i] = msg("app1", fmt.Sprint("user-", i%8), "", 0)
	}
	f.store(t, msgs...)
	bad := msgs[n/3]
	if _, err := f.sqldb.Exec(fmt.Sprintf("CREATE TRIGGER refuse_one BEFORE INSERT ON message_outcomes FOR EACH ROW "+
		"IF NEW.id = %d THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused by test'; END IF", bad.GetId())); err != nil {
		t.Fatal(err)
	}
	req := &internalpb.ReportRequest{}
	for _, m := range msgs {
		req.Delivered = append(req.Delivered, refOf(m))
		req.Acked = append(req.Acked, refOf(m))
	}
	if _, err := f.cli.Report(callCtx(t), req); err != nil {
		t.Fatalf("a batch with one failing ack: %v", err)
	}
	for _, m := range msgs {
		inMsgs, inOutcomes := f.rowCount(t, "messages", m.GetId()), f.rowCount(t, "message_outcomes", m.GetId())
		indexed, body := f.inInbox(t, m)
		if m == bad {
			if inMsgs != 1 || inOutcomes != 0 || !indexed || !body {
				t.Fatalf("failing ack %d: messages %d outcomes %d inbox %v/%v, want it still stored", m.GetId(), inMsgs, inOutcomes, indexed, body)
			}
			continue
		}
		if inMsgs != 0 || inOutcomes != 1 || indexed || body {
			t.Fatalf("batch-mate %d: messages %d outcomes %d inbox %v/%v, want acked and gone", m.GetId(), inMsgs, inOutcomes, indexed, body)
		}
		if st := f.status(t, "app1", m.GetId()); st.GetMessage().GetState() != internalpb.MessageState_MESSAGE_STATE_ACKED || st.GetMessage().GetDeliveryCount() != 1 {
			t.Fatalf("batch-mate %d: %v, want acked after 1 delivery", m.GetId(), st.GetMessage())
		}
	}
	if v := counterValue(f.srv.metrics.ackFailed); v != 1 {
		t.Fatalf("ack failures counted %v, want 1", v)
	}
	// Once the row can move, a later ack finishes it.
	if _, err := f.sqldb.Exec("DROP TRIGGER refuse_one"); err != nil {
		t.Fatal(err)
	}
	f.ack(t, bad)
	if f.rowCount(t, "messages", bad.GetId()) != 0 || f.rowCount(t, "message_outcomes", bad.GetId()) != 1 {
		t.Fatal("the failed ack did not land on its retry")
	}
}

// A batch whose every ack fails answers the error, so the room retries it.
func TestReportBatchAllFailing(t *testing.T) {
	f := newFixture(t, 10)
	m := msg("app1", "u", "", 0)
	f.store(t, m)
	if _, err := f.sqldb.Exec("CREATE TRIGGER refuse_all BEFORE INSERT ON message_outcomes FOR EACH ROW SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused by test'"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.cli.Report(callCtx(t), &internalpb.ReportRequest{Acked: []*internalpb.MessageRef{refOf(m)}}); err == nil {
		t.Fatal("a report none of whose acks landed answered OK")
	}
}

// A delivery reported in an earlier window than its ack is counted by the
// UPDATE; one reported with its ack is counted by the ack: both end with
// delivery_count 1.
func TestReportDeliveredThenAckedCountsOnce(t *testing.T) {
	f := newFixture(t, 10)
	early, same := msg("app1", "u", "", 0), msg("app1", "u", "", 0)
	f.store(t, early, same)
	if _, err := f.cli.Report(callCtx(t), &internalpb.ReportRequest{Delivered: []*internalpb.MessageRef{refOf(early)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.cli.Report(callCtx(t), &internalpb.ReportRequest{
		Delivered: []*internalpb.MessageRef{refOf(same)},
		Acked:     []*internalpb.MessageRef{refOf(early), refOf(same)},
	}); err != nil {
		t.Fatal(err)
	}
	for _, m := range []*internalpb.Message{early, same} {
		if st := f.status(t, "app1", m.GetId()); st.GetMessage().GetDeliveryCount() != 1 || st.GetMessage().GetState() != internalpb.MessageState_MESSAGE_STATE_ACKED {
			t.Fatalf("message %d: %v, want acked after 1 delivery", m.GetId(), st.GetMessage())
		}
	}
}

// BenchmarkReportAcks measures the ACK path's saver hop: acks per second
// through Report, one ack per call against a room's flush window of many
// (each pushed message also reported delivered in the same window), and
// the CPU MariaDB spent per ack. delivered_first=true reports each window's
// deliveries in a Report of their own before the acks (a client slower
// than the flush window): that adds the delivered-only UPDATE.
// go test -run '^$' -bench BenchmarkReportAcks -benchtime 2000x ./services/saver/
func BenchmarkReportAcks(b *testing.B) {
	for _, per := range []int{1, 20, 100, 500} {
		b.Run(fmt.Sprint("acks_per_call=", per), func(b *testing.B) { benchReportAcks(b, per, false) })
	}
	b.Run("acks_per_call=100/delivered_first=true", func(b *testing.B) { benchReportAcks(b, 100, true) })
}

func benchReportAcks(b *testing.B, per int, deliveredFirst bool) {
	f := newFixture(b, 10)
	msgs := make([]*internalpb.Message, b.N)
	for i := range msgs {
		msgs[i] = msg("app1", fmt.Sprint("u", i%100), "", 0)
	}
	for i := 0; i < len(msgs); i += 500 {
		f.store(b, msgs[i:min(i+500, len(msgs))]...)
	}
	mysqlPid := findProcess("mariadbd", "mysqld")
	db0, q0 := procCPU(mysqlPid), questions(b, f)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < len(msgs); i += per {
		req := &internalpb.ReportRequest{}
		for _, m := range msgs[i:min(i+per, len(msgs))] {
			req.Delivered = append(req.Delivered, refOf(m))
			req.Acked = append(req.Acked, refOf(m))
		}
		if deliveredFirst {
			if _, err := f.cli.Report(callCtx(b), &internalpb.ReportRequest{Delivered: req.Delivered}); err != nil {
				b.Fatal(err)
			}
			req.Delivered = nil
		}
		if _, err := f.cli.Report(callCtx(b), req); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(len(msgs))/time.Since(start).Seconds(), "acks/s")
	// A failed read of /proc is 0: then there is no figure, not a wrong one.
	// Both figures are server-wide: other clients of the server add to them.
	if db1 := procCPU(mysqlPid); db0 > 0 && db1 > 0 {
		b.ReportMetric(float64((db1-db0).Microseconds())/float64(len(msgs)), "mysql-µs/ack")
	}
	b.ReportMetric(float64(questions(b, f)-q0-1)/float64(len(msgs)), "mysql-stmts/ack")
}

// questions is the server's count of statements clients sent (each one
// round trip, BEGIN and COMMIT included); reading it is one more.
func questions(b *testing.B, f *fixture) int64 {
	var name string
	var n int64
	if err := f.sqldb.QueryRow("SHOW GLOBAL STATUS LIKE 'Questions'").Scan(&name, &n); err != nil {
		b.Fatal(err)
	}
	return n
}
