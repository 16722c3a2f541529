package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/pkg/txcheck"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// The check-back worker. Any center runs it: each poll it claims at most
// as many due records as it has free workers (saver leases them with
// SELECT … FOR UPDATE SKIP LOCKED, so two centers never get one record),
// asks each record's app whether to commit, and records the answer in
// saver. All state is in MySQL: a restarted center finds due records
// there, and a record whose claimer died is due again when its lease ends.
// A check URL costs at most -tx-check-timeout per call, MaxAnswerBytes of
// memory, and one of -tx-check-workers slots; redirects are not followed.

// Check outcomes (metric labels).
const (
	checkCommit   = "commit"
	checkRollback = "rollback"
	checkUnknown  = "unknown"
	checkFailed   = "failed"
	checkNoURL    = "no_url"
	checkInvalid  = "invalid_answer"
)

type txChecker struct {
	srv    *Server
	apps   *appconfig.Store
	cfg    txConfig
	client *http.Client
	log    *slog.Logger
	slots  chan struct{}

	wg     sync.WaitGroup
	cancel context.CancelFunc
	done   chan struct{}
}

func newCheckClient(timeout time.Duration, conns int) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = conns
	tr.MaxConnsPerHost = conns
	tr.ResponseHeaderTimeout = timeout
	return &http.Client{
		Transport: tr,
		Timeout:   timeout,
		// A redirect is not followed: it would send the signed check to an
		// address the app did not configure, and a loop would spin.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// startTxChecker runs the worker until stop; with no workers configured it
// does nothing (another center checks).
func startTxChecker(s *Server, apps *appconfig.Store, cfg txConfig) *txChecker {
	ctx, cancel := context.WithCancel(context.Background())
	c := &txChecker{srv: s, apps: apps, cfg: cfg, client: newCheckClient(cfg.Timeout, max(cfg.Workers, 1)), log: s.log,
		slots: make(chan struct{}, max(cfg.Workers, 1)), cancel: cancel, done: make(chan struct{})}
	if cfg.Workers == 0 {
		close(c.done)
		return c
	}
	go c.run(ctx)
	return c
}

func (c *txChecker) run(ctx context.Context) {
	defer close(c.done)
	t := time.NewTicker(c.cfg.Poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			c.wg.Wait()
			return
		case <-t.C:
			c.poll(ctx)
		}
	}
}

// poll claims up to the number of free slots and starts one check each.
func (c *txChecker) poll(ctx context.Context) {
	free := cap(c.slots) - len(c.slots)
	if free == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, downstreamTimeout)
	rep, err := c.srv.saverTx.ClaimTxChecks(cctx, &internalpb.ClaimTxChecksRequest{Limit: uint32(free), LeaseMs: c.cfg.Lease.Milliseconds()})
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			c.log.Warn("center: tx check claim failed; retrying next poll", "err", err)
		}
		return
	}
	for _, cl := range rep.GetClaims() {
		// Never blocks: only free slots were claimed, and only this
		// goroutine takes slots.
		c.slots <- struct{}{}
		c.srv.txm.checksBusy.Inc()
		c.wg.Add(1)
		go func() {
			defer func() { <-c.slots; c.srv.txm.checksBusy.Dec(); c.wg.Done() }()
			c.check(ctx, cl)
		}()
	}
}

// check makes one check-back and records its result.
func (c *txChecker) check(ctx context.Context, cl *internalpb.TxClaim) {
	rec := cl.GetTx()
	app, ok := c.apps.Get(rec.GetApp())
	outcome, detail := checkNoURL, "app has no check_url"
	switch {
	case !ok:
		detail = "app is unknown or disabled"
	case app.CheckURL != "":
		start := time.Now()
		outcome, detail = c.ask(ctx, app, rec)
		c.srv.txm.checkSeconds.Observe(time.Since(start).Seconds())
	}
	if ctx.Err() != nil && outcome == checkFailed {
		// Shut down mid-call: no answer came, and the record is checked
		// again after its lease.
		return
	}
	// An answer that came is recorded even while stopping, so a restart
	// does not ask again.
	ctx = context.WithoutCancel(ctx)
	c.srv.txm.checks.WithLabelValues(outcome).Inc()
	switch outcome {
	case checkCommit, checkRollback:
		to := internalpb.TxState_TX_STATE_COMMITTED
		if outcome == checkRollback {
			to = internalpb.TxState_TX_STATE_ROLLED_BACK
		}
		rep, err := c.srv.decideTx(ctx, rec.GetApp(), rec.GetId(), to, internalpb.TxDecider_TX_DECIDER_CHECK_BACK, cl.GetClaimToken(),
			fmt.Sprintf("check %d answered %s", rec.GetChecks()+1, outcome))
		if err == nil && !rep.GetApplied() {
			c.log.Info("center: tx check-back answer came after a decision", "tx", rec.GetId(), "answer", outcome,
				"state", txStateWord(rep.GetTx().GetState()), "decided_by", txDeciderWord(rep.GetTx().GetDecidedBy()))
		}
		return
	}
	c.log.Debug("center: tx check-back undecided", "tx", rec.GetId(), "app", rec.GetApp(), "outcome", outcome, "detail", detail, "check", rec.GetChecks()+1)
	cctx, cancel := context.WithTimeout(ctx, downstreamTimeout)
	rep, err := c.srv.saverTx.ReportTxCheck(cctx, &internalpb.ReportTxCheckRequest{
		Id: rec.GetId(), ClaimToken: cl.GetClaimToken(), NextInMs: app.TxCheckInterval().Milliseconds(), MaxChecks: uint32(app.TxCheckMax()),
	})
	cancel()
	if err != nil {
		// The lease runs out and the record is checked again.
		c.log.Warn("center: tx check result not recorded; the record is checked again after its lease", "tx", rec.GetId(), "err", err)
		return
	}
	if rep.GetApplied() && rep.GetTx().GetState() == internalpb.TxState_TX_STATE_EXPIRED {
		c.srv.txDecided(rep.GetTx(), fmt.Sprintf("no decision after %d checks; last: %s (%s)", rep.GetTx().GetChecks(), outcome, detail))
	}
}

// ask POSTs the signed check to the app's URL and returns the outcome and,
// for an undecided one, why.
func (c *txChecker) ask(ctx context.Context, app appconfig.App, rec *internalpb.TxRecord) (string, string) {
	if err := appconfig.CheckTxURL(app.CheckURL); err != nil {
		return checkNoURL, err.Error()
	}
	req := txcheck.Request{
		TxID: strconv.FormatUint(rec.GetId(), txIDBase), App: rec.GetApp(), IdempotencyKey: rec.GetIdempotencyKey(),
		TargetKind: txKindWord(rec.GetTargetKind()), Check: int(rec.GetChecks()) + 1, MaxChecks: app.TxCheckMax(), PreparedMs: rec.GetCreatedMs(),
		Users: []string{},
	}
	for _, p := range rec.GetRecipients() {
		if len(req.Users) == txcheck.MaxListedUsers {
			break
		}
		if p.GetUser() == "" {
			continue // a broadcast record's one recipient names the broadcast, not a user
		}
		req.Users = append(req.Users, p.GetUser())
	}
	body, err := json.Marshal(req)
	if err != nil {
		return checkFailed, "encode request: " + err.Error()
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, app.CheckURL, bytes.NewReader(body))
	if err != nil {
		return checkNoURL, "cannot build request: " + err.Error()
	}
	ts := time.Now().Unix()
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("User-Agent", "pushgw-center")
	hreq.Header.Set(txcheck.HeaderApp, app.Name)
	hreq.Header.Set(txcheck.HeaderTxID, req.TxID)
	hreq.Header.Set(txcheck.HeaderTimestamp, strconv.FormatInt(ts, 10))
	hreq.Header.Set(txcheck.HeaderSignature, txcheck.Sign(app.Secret, ts, body))
	resp, err := c.client.Do(hreq)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return checkFailed, "timed out after " + c.cfg.Timeout.String()
		}
		return checkFailed, "unreachable"
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, txcheck.MaxAnswerBytes+1))
	if err != nil {
		return checkFailed, "answer could not be read"
	}
	if resp.StatusCode != http.StatusOK {
		return checkFailed, "answered HTTP " + strconv.Itoa(resp.StatusCode)
	}
	d, err := txcheck.ParseAnswer(raw)
	if err != nil {
		return checkInvalid, err.Error()
	}
	switch d {
	case txcheck.Commit:
		return checkCommit, ""
	case txcheck.Rollback:
		return checkRollback, ""
	}
	return checkUnknown, "business answered UNKNOWN"
}

// stop ends polling and waits for the checks in flight (their calls are
// cancelled; their records come back after the lease).
func (c *txChecker) stop() {
	c.cancel()
	<-c.done
}
