package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"

	gojson "github.com/goccy/go-json"
)

// decodeStrict decodes exactly one JSON value from body into dst, rejecting
// unknown fields, with the results and errors of encoding/json.
//
// The accepted bodies take goccy/go-json, chosen by BenchmarkDecodePush
// (decode_bench_test.go): on a unicast push body it decodes in 2-6 µs and
// 7 allocations where encoding/json takes 13-20 µs and 13. A body it
// refuses is decoded again by encoding/json from a zero dst, so every
// error a client sees (message, byte offset, field) is encoding/json's;
// FuzzDecodeStrict checks the fast path accepts nothing encoding/json
// refuses and decodes what it accepts to the same value.
func decodeStrict(body []byte, dst any) error {
	dec := gojson.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err == nil && len(bytes.TrimSpace(body[min(int(dec.InputOffset()), len(body)):])) == 0 {
		return nil
	}
	reflect.ValueOf(dst).Elem().SetZero()
	return decodeStd(body, dst)
}

// decodeStd is encoding/json with the API's strictness, and the errors
// jsonError turns into answers.
func decodeStd(body []byte, dst any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errNotOneValue
	}
	return nil
}

var errNotOneValue = errors.New("request body must hold exactly one JSON value")
