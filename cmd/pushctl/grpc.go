package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"

	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/pkg/pushclient"
	"github.com/pushgw/pushgw/proto/apipb"
)

// pushGRPC sends req through center's gRPC API and prints the reply as
// the HTTP API's JSON, so scripts read either the same way.
func (c cli) pushGRPC(ctx context.Context, addr, apiKey string, req pushRequest) error {
	payload := []byte(nil)
	if req.Payload != nil {
		payload = []byte(*req.Payload)
	} else {
		b, err := base64.StdEncoding.DecodeString(req.PayloadBase64)
		if err != nil {
			return usageError{fmt.Errorf("--base64: PAYLOAD: %w", err)}
		}
		payload = b
	}
	cl, err := pushclient.Dial(addr, apiKey)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, httpTimeout)
	defer cancel()
	qos, ttl := uint32(req.QoS), req.TTL
	rep, err := cl.Push(ctx, &apipb.PushRequest{App: req.App, User: req.User, Device: req.Device,
		Payload: payload, Qos: &qos, Ttl: &ttl})
	if err != nil {
		if e := pushclient.ErrorOf(err); e != nil {
			return fmt.Errorf("gRPC %s: %s: %s", status.Code(err), e.GetCode(), e.GetMessage())
		}
		return fmt.Errorf("gRPC push to %s: %w", addr, err)
	}
	out := map[string]any{"id": strconv.FormatUint(rep.GetId(), 10), "qos": rep.GetQos()}
	if rep.GetReplayed() {
		out["replayed"] = true
	}
	if rep.Delivered != nil {
		out["delivered"] = rep.GetDelivered()
	}
	b, _ := json.Marshal(out)
	fmt.Fprintf(c.stdout, "%s\n", b)
	return nil
}
