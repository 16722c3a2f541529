package main

import (
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/pkg/limits"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// Input limits; the string bounds match the column sizes in
// migrations/0001_init.sql.
const (
	maxBatch     = 1000
	maxAppLen    = limits.MaxAppLen
	maxDeviceLen = limits.MaxDeviceLen
	maxPayload   = 64 << 10
	// maxIdemKeyLen matches idempotency_keys.ikey (migration 0004).
	maxIdemKeyLen = 128
	pendingDefLim = 100
	pendingMaxLim = 500
	qosAtLeastOne = 1
)

func invalid(format string, a ...any) error {
	return status.Errorf(codes.InvalidArgument, "saver: "+format, a...)
}

func checkUser(app, user string) error { return limits.CheckUser(app, user) }

func checkMessages(msgs []*internalpb.Message) error {
	if len(msgs) > maxBatch {
		return invalid("batch of %d exceeds %d", len(msgs), maxBatch)
	}
	for _, m := range msgs {
		if err := checkMessage(m); err != nil {
			return err
		}
	}
	return nil
}

// checkMessage validates one message; the error is InvalidArgument.
func checkMessage(m *internalpb.Message) error {
	err := checkUser(m.GetApp(), m.GetUser())
	switch {
	case err != nil:
	case m.GetId() == 0:
		err = fmt.Errorf("id 0")
	case len(m.GetDevice()) > maxDeviceLen:
		err = fmt.Errorf("device longer than %d bytes", maxDeviceLen)
	case len(m.GetPayload()) > maxPayload:
		err = fmt.Errorf("payload of %d bytes exceeds %d", len(m.GetPayload()), maxPayload)
	case m.GetQos() != qosAtLeastOne:
		// QoS 0 is fire-and-forget: storing it would turn it into QoS 1.
		err = fmt.Errorf("qos %d: only qos 1 is stored", m.GetQos())
	case m.GetExpiresMs() < 0 || m.GetCreatedMs() < 0:
		err = fmt.Errorf("negative time")
	case len(m.GetIdempotencyKey()) > maxIdemKeyLen:
		err = fmt.Errorf("idempotency key longer than %d bytes", maxIdemKeyLen)
	case len(m.GetCollapseKey()) > maxCollapseKeyLen:
		err = fmt.Errorf("collapse key longer than %d bytes", maxCollapseKeyLen)
	case m.GetPriority() > priorityHigh:
		err = fmt.Errorf("priority %d: want 0 (normal) or 1 (high)", m.GetPriority())
	}
	if err != nil {
		return invalid("message %d: %v", m.GetId(), err)
	}
	return nil
}

func checkRefs(kind string, refs []*internalpb.MessageRef) error {
	if len(refs) > maxBatch {
		return invalid("%d %s refs exceed %d", len(refs), kind, maxBatch)
	}
	for i, r := range refs {
		if err := checkUser(r.GetApp(), r.GetUser()); err != nil {
			return invalid("%s ref %d: %v", kind, i, err)
		}
		if r.GetId() == 0 {
			return invalid("%s ref %d: id 0", kind, i)
		}
	}
	return nil
}

// pendingLimit applies the default and caps the page size.
func pendingLimit(n uint32) int {
	switch {
	case n == 0:
		return pendingDefLim
	case n > pendingMaxLim:
		return pendingMaxLim
	}
	return int(n)
}
