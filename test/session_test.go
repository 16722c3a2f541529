package test

import (
	"encoding/binary"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/pkg/token"
	"github.com/pushgw/pushgw/proto/clientpb"
)

func TestSessions(t *testing.T) {
	c := StartCluster(t, Options{Heartbeat: time.Second, MissedBeats: 2})

	// A well-behaved neighbour on the same room must keep working through
	// every hostile case below.
	good := Dial(t, c.RoomTCP[0])
	goodToken := c.Token("neighbour", "phone", time.Hour)
	rep := good.Auth(goodToken)
	if rep.HeartbeatSeconds != 1 || rep.SessionId == "" {
		t.Fatalf("auth reply = %+v, want heartbeat 1s and a session id", rep)
	}
	stopPing := keepPinging(t, good, 300*time.Millisecond)
	defer stopPing()

	t.Run("silent connection is closed after missed beats and its session removed", func(t *testing.T) {
		rc := Dial(t, c.RoomTCP[0])
		rc.Auth(c.Token("silent", "phone", time.Hour))
		waitSession(t, c, "silent", 1)
		start := time.Now()
		rc.ExpectErrorAndClose(protocol.CodeHeartbeatTimeout)
		if d := time.Since(start); d > 6*time.Second {
			t.Fatalf("closed after %v, want about 2s", d)
		}
		waitSession(t, c, "silent", 0)
	})

	cases := []struct {
		name string
		send func(rc *RawClient)
		code protocol.Code
	}{
		{"bad token", func(rc *RawClient) {
			rc.Send(protocol.OpAuth, &clientpb.Auth{Token: "not-a-jwt"})
		}, protocol.CodeTokenInvalid},
		{"token signed with the wrong secret", func(rc *RawClient) {
			tok, _ := token.Mint([]byte(strings.Repeat("x", 32)), token.Claims{App: c.App, User: "u", Expiry: time.Now().Add(time.Hour)})
			rc.Send(protocol.OpAuth, &clientpb.Auth{Token: tok})
		}, protocol.CodeTokenInvalid},
		{"expired token", func(rc *RawClient) {
			rc.Send(protocol.OpAuth, &clientpb.Auth{Token: c.Token("u", "d", -time.Hour)})
		}, protocol.CodeTokenExpired},
		{"token for another app signed with this app's secret", func(rc *RawClient) {
			tok, _ := token.Mint([]byte(c.Secret), token.Claims{App: c.OtherApp.Name, User: "u", Expiry: time.Now().Add(time.Hour)})
			rc.Send(protocol.OpAuth, &clientpb.Auth{Token: tok})
		}, protocol.CodeTokenInvalid},
		{"token for an unknown app", func(rc *RawClient) {
			tok, _ := token.Mint([]byte(c.Secret), token.Claims{App: "no-such-app", User: "u", Expiry: time.Now().Add(time.Hour)})
			rc.Send(protocol.OpAuth, &clientpb.Auth{Token: tok})
		}, protocol.CodeAppUnknown},
		{"oversize frame", func(rc *RawClient) {
			rc.Write(protocol.AppendFrame(nil, protocol.OpAuth, 0, 1, make([]byte, protocol.DefaultMaxBodySize+1)))
		}, protocol.CodeFrameTooLarge},
		{"1 GB length prefix", func(rc *RawClient) {
			h := protocol.AppendFrame(nil, protocol.OpAuth, 0, 1, nil)
			binary.BigEndian.PutUint32(h[10:14], 1<<30)
			rc.Write(h)
		}, protocol.CodeFrameTooLarge},
		{"garbage bytes", func(rc *RawClient) {
			rc.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		}, protocol.CodeBadFrame},
		{"push before auth", func(rc *RawClient) {
			rc.Send(protocol.OpAck, &clientpb.Ack{Ids: []uint64{1}})
		}, protocol.CodeAuthRequired},
		{"body that is not protobuf", func(rc *RawClient) {
			rc.Write(protocol.AppendFrame(nil, protocol.OpAuth, 0, 1, []byte{0xff, 0xff, 0xff, 0xff}))
		}, protocol.CodeBadBody},
		{"unknown op", func(rc *RawClient) {
			f := protocol.AppendFrame(nil, protocol.OpPing, 0, 1, nil)
			f[3] = 200
			rc.Write(f)
		}, protocol.CodeUnknownOp},
		{"no auth within the deadline", func(rc *RawClient) {}, protocol.CodeAuthTimeout},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rc := Dial(t, c.RoomTCP[0])
			tc.send(rc)
			rc.ExpectErrorAndClose(tc.code)
			good.Ping()
		})
	}

	t.Run("second AUTH is refused", func(t *testing.T) {
		rc := Dial(t, c.RoomTCP[0])
		rc.Auth(c.Token("twice", "d", time.Hour))
		rc.Send(protocol.OpAuth, &clientpb.Auth{Token: c.Token("twice", "d", time.Hour)})
		rc.ExpectErrorAndClose(protocol.CodeAlreadyAuthed)
	})

	t.Run("secrets, keys and tokens never reach logs or metrics", func(t *testing.T) {
		secrets := []string{c.Secret, c.APIKey, goodToken, c.OtherApp.Secret, c.OtherApp.APIKey}
		for name, p := range c.Procs {
			logs, _ := os.ReadFile(p.Log)
			resp, err := http.Get("http://" + p.Admin + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			metrics, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			for _, s := range secrets {
				if strings.Contains(string(logs), s) || strings.Contains(string(metrics), s) {
					t.Fatalf("%s exposes a secret in its logs or /metrics", name)
				}
			}
		}
	})

	t.Run("neighbour still receives pushes", func(t *testing.T) {
		stopPing()
		id := c.Push("neighbour", 1, time.Hour, "still here")
		p, err := good.NextPush(10 * time.Second)
		if err != nil || p.Id != id {
			t.Fatalf("push = %+v, %v; want %d", p, err, id)
		}
	})
}

// keepPinging pings rc in the background so its heartbeat never lapses;
// PONGs are consumed by the test's reads.
func keepPinging(t *testing.T, rc *RawClient, every time.Duration) (stop func()) {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tk := time.NewTicker(every)
		defer tk.Stop()
		for {
			select {
			case <-done:
				return
			case <-tk.C:
				b := protocol.AppendFrame(nil, protocol.OpPing, 0, 0, nil)
				_ = rc.Conn.SetWriteDeadline(time.Now().Add(time.Second))
				if _, err := rc.Conn.Write(b); err != nil {
					return
				}
			}
		}
	}()
	var once bool
	return func() {
		if !once {
			once = true
			close(done)
			<-stopped
		}
	}
}
