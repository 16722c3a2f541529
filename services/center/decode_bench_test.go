package main

import (
	"bytes"
	stdjson "encoding/json"
	"errors"
	"io"
	"testing"

	"github.com/bytedance/sonic"
	gojson "github.com/goccy/go-json"
	jsoniter "github.com/json-iterator/go"
)

// The JSON decoders measured for the push body (issue 11: pick a library
// only where the numbers say it beats encoding/json). Each decodes the
// same body the same strict way: unknown fields rejected, exactly one
// value. Run: go test -run '^$' -bench BenchmarkDecodePush -benchmem ./services/center/
var benchBodies = map[string][]byte{
	// A typical unicast: 64-byte payload, QoS 1, an idempotency key.
	"unicast": []byte(`{"user":"user-000123","payload":"0123456789012345678901234567890123456789012345678901234567890123","qos":1,"idempotency_key":"order-8812-3"}`),
	// The largest field set a push has.
	"full": []byte(`{"app":"app1","user":"user-000123","device":"phone","payload_base64":"aGVsbG8gd29ybGQ=","qos":1,"ttl":3600,"idempotency_key":"k-1","collapse_key":"score","priority":"high"}`),
}

type benchDecoder struct {
	name   string
	decode func(body []byte, dst *pushRequest) error
}

var errTrailing = errors.New("trailing data")

var (
	sonicStrict = sonic.Config{DisallowUnknownFields: true, ValidateString: true}.Froze()
	iterStrict  = jsoniter.Config{DisallowUnknownFields: true, ValidateJsonRawMessage: true}.Froze()
)

var benchDecoders = []benchDecoder{
	{"encoding_json", func(body []byte, dst *pushRequest) error {
		// What decodeBodyLimit does.
		dec := stdjson.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(dst); err != nil {
			return err
		}
		if _, err := dec.Token(); !errors.Is(err, io.EOF) {
			return errTrailing
		}
		return nil
	}},
	{"goccy_go_json", func(body []byte, dst *pushRequest) error {
		dec := gojson.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(dst); err != nil {
			return err
		}
		if dec.More() {
			return errTrailing
		}
		return nil
	}},
	{"sonic", func(body []byte, dst *pushRequest) error {
		// Unmarshal rejects trailing data itself.
		return sonicStrict.Unmarshal(body, dst)
	}},
	{"jsoniter", func(body []byte, dst *pushRequest) error {
		it := iterStrict.BorrowIterator(body)
		defer iterStrict.ReturnIterator(it)
		it.ReadVal(dst)
		if it.Error != nil {
			return it.Error
		}
		if it.WhatIsNext() != jsoniter.InvalidValue {
			return errTrailing
		}
		return nil
	}},
}

func BenchmarkDecodePush(b *testing.B) {
	for name, body := range benchBodies {
		for _, d := range benchDecoders {
			b.Run(name+"/"+d.name, func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(body)))
				for b.Loop() {
					var req pushRequest
					if err := d.decode(body, &req); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// The candidates decode the bench bodies to what encoding/json does, so
// the benchmark compares equal work; the strict cases below say which of
// them also reject what encoding/json rejects.
func TestBenchDecodersAgree(t *testing.T) {
	for name, body := range benchBodies {
		var want pushRequest
		if err := benchDecoders[0].decode(body, &want); err != nil {
			t.Fatal(err)
		}
		for _, d := range benchDecoders[1:] {
			var got pushRequest
			if err := d.decode(body, &got); err != nil {
				t.Fatalf("%s %s: %v", d.name, name, err)
			}
			if !pushRequestsEqual(got, want) {
				t.Fatalf("%s %s: %+v, want %+v", d.name, name, got, want)
			}
		}
	}
	for _, bad := range []string{
		`{"user":"u","payload":"x","nope":1}`,
		`{"user":"u","payload":"x"} {}`,
		`{"user":"u","payload":"x",}`,
		`{"user":"u","qos":"1"}`,
		`{"user":"u","qos":1.5}`,
		`[]`,
		`{"user":"u","payload":"x"`,
	} {
		for _, d := range benchDecoders {
			var got pushRequest
			if err := d.decode([]byte(bad), &got); err == nil {
				t.Logf("%s accepts %s, which encoding/json rejects", d.name, bad)
			}
		}
	}
}

func pushRequestsEqual(a, b pushRequest) bool {
	s := func(p *string) string {
		if p == nil {
			return "<nil>"
		}
		return *p
	}
	i := func(p *int) int {
		if p == nil {
			return -1
		}
		return *p
	}
	i64 := func(p *int64) int64 {
		if p == nil {
			return -1
		}
		return *p
	}
	return a.App == b.App && a.User == b.User && a.Device == b.Device && s(a.Payload) == s(b.Payload) &&
		s(a.PayloadBase64) == s(b.PayloadBase64) && i(a.QoS) == i(b.QoS) && i64(a.TTL) == i64(b.TTL) &&
		a.IdempotencyKey == b.IdempotencyKey && a.CollapseKey == b.CollapseKey && s(a.Priority) == s(b.Priority)
}
