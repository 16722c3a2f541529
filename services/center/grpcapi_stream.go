package main

import (
	"context"
	"errors"
	"io"
	"sync"

	"github.com/pushgw/pushgw/proto/apipb"
)

// streamMaxInFlight bounds the pushes of one PushStream being validated,
// stored or waiting for their reply to be sent. While all are taken the
// stream is not read, so HTTP/2 flow control slows the backend down
// instead of center buffering without bound.
const streamMaxInFlight = 256

// PushStream answers each push as soon as it is durable (QoS 1, through
// the store batcher, so a stream's pushes share Saver.Store calls with
// each other and with HTTP requests) or sent (QoS 0), in completion
// order.
func (g *grpcAPI) PushStream(stream apipb.PushAPI_PushStreamServer) error {
	ctx := stream.Context()
	app := appOf(ctx)
	// Workers queue replies; one goroutine sends, as a stream's Send is
	// not safe for concurrent use. A worker holds its slot until its reply
	// is queued, so slots bound the queue too.
	replies := make(chan *apipb.StreamPushReply, streamMaxInFlight)
	slots := make(chan struct{}, streamMaxInFlight)
	sendErr := make(chan error, 1)
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for r := range replies {
			if err := stream.Send(r); err != nil {
				sendErr <- err
				for range replies { // let the workers finish
				}
				return
			}
		}
	}()
	var workers sync.WaitGroup
	var recvErr error
recv:
	for {
		in, err := stream.Recv()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				recvErr = err
			}
			break
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			recvErr = ctx.Err()
			break recv
		}
		workers.Add(1)
		g.s.m.storeBatch.streamInFlight.Inc()
		go func() {
			defer workers.Done()
			pctx, cancel := context.WithTimeout(ctx, g.s.timeout)
			out, e := g.s.pushGRPC(pctx, app, in.GetPush())
			cancel()
			rep, code := &apipb.StreamPushReply{Ref: in.GetRef(), Reply: out}, codeOK
			if e != nil {
				rep.Error, code = apiErrorPB(e), e.Code
			}
			g.s.m.requests.WithLabelValues("grpc_pushstream", code).Inc()
			replies <- rep
			g.s.m.storeBatch.streamInFlight.Dec()
			<-slots
		}()
	}
	workers.Wait()
	close(replies)
	<-sent
	select {
	case err := <-sendErr:
		return err
	default:
	}
	if recvErr != nil && ctx.Err() == nil {
		return recvErr
	}
	return context.Cause(ctx)
}
