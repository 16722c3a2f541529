package sdk_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"time"

	"github.com/pushgw/pushgw/pkg/protocol"
	"github.com/pushgw/pushgw/pkg/sdk"
	"github.com/pushgw/pushgw/proto/clientpb"
)

func ExampleClient() {
	room := exampleRoom() // a stand-in room on loopback; normally the dispatcher finds one

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := sdk.New(sdk.Config{
		// DispatcherURL: "http://127.0.0.1:7080", // how a real client finds rooms
		Endpoints: []string{room},
		App:       "demo", User: "alice", Device: "phone",
		// Minted by the business backend with the app secret (pkg/token).
		TokenFunc: func(ctx context.Context) (string, error) { return "eyJ...", nil },
		Handler: func(ctx context.Context, m *sdk.Message) error {
			fmt.Printf("message %d (QoS %d): %s\n", m.ID, m.QoS, m.Payload)
			cancel()   // one message is enough for this example
			return nil // nil: the message is ACKed
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	err = c.Run(ctx) // blocks until ctx ends, Close, KICK or a fatal auth error
	fmt.Println("run:", err)

	closeCtx, done := context.WithTimeout(context.Background(), time.Second)
	defer done()
	_ = c.Close(closeCtx)
	// Output:
	// message 7 (QoS 1): hello
	// run: context canceled
}

// exampleRoom accepts one connection, authenticates it and pushes one
// message, speaking the wire protocol with pkg/protocol.
func exampleRoom() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go func() {
		defer ln.Close()
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		r := protocol.NewReader(bufio.NewReader(conn), 0)
		auth, err := r.Read()
		if err != nil {
			return
		}
		b, _ := protocol.AppendMessage(nil, protocol.OpAuthReply, auth.Seq, &clientpb.AuthReply{SessionId: "s1", HeartbeatSeconds: 30})
		b, _ = protocol.AppendMessage(b, protocol.OpPush, 0, &clientpb.Push{Id: 7, App: "demo", Qos: 1, Payload: []byte("hello")})
		if _, err := conn.Write(b); err != nil {
			return
		}
		for { // drain ACK and PING until the client leaves
			if _, err := r.Read(); err != nil {
				return
			}
		}
	}()
	return ln.Addr().String()
}
