package main

import (
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/pkg/limits"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// Input limits. Keys are built from these strings, so they are bounded to
// keep Redis keys and fields small.
const (
	maxBatch     = 1000
	maxAppLen    = limits.MaxAppLen
	maxDeviceLen = limits.MaxDeviceLen
	maxRoomIDLen = 128
)

func invalid(format string, a ...any) error {
	return status.Errorf(codes.InvalidArgument, "register: "+format, a...)
}

func checkBatch(n int) error {
	if n > maxBatch {
		return invalid("batch of %d exceeds %d", n, maxBatch)
	}
	return nil
}

func checkUser(app, user string) error { return limits.CheckUser(app, user) }

// checkSessions validates a batch; the device may be empty (a client that
// sends none is one anonymous device), the room id may not, because it is
// what Delete and Refresh compare.
func checkSessions(ss []*internalpb.Session) error {
	if err := checkBatch(len(ss)); err != nil {
		return err
	}
	for i, s := range ss {
		err := checkUser(s.GetApp(), s.GetUser())
		switch {
		case err != nil:
		case len(s.GetDevice()) > maxDeviceLen:
			err = fmt.Errorf("device longer than %d bytes", maxDeviceLen)
		case s.GetRoomId() == "":
			err = fmt.Errorf("empty room_id")
		case len(s.GetRoomId()) > maxRoomIDLen:
			err = fmt.Errorf("room_id longer than %d bytes", maxRoomIDLen)
		}
		if err != nil {
			return invalid("session %d: %v", i, err)
		}
	}
	return nil
}

func checkUsers(us []*internalpb.UserKey) error {
	if err := checkBatch(len(us)); err != nil {
		return err
	}
	for i, u := range us {
		if err := checkUser(u.GetApp(), u.GetUser()); err != nil {
			return invalid("user %d: %v", i, err)
		}
	}
	return nil
}
