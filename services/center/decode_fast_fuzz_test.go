package main

import (
	"reflect"
	"testing"
	"unicode/utf8"
)

// FuzzDecodeStrict: for any body, decodeStrict (goccy/go-json first)
// answers exactly what encoding/json answers: the same error text, or the
// same decoded value, for each body type of the API.
func FuzzDecodeStrict(f *testing.F) {
	for _, s := range []string{
		`{"user":"u","payload":"x","qos":1,"ttl":60,"idempotency_key":"k"}`,
		`{"USER":"u","Payload":"x"}`, `{"user":"a","user":"b","payload":"x"}`,
		`{"user":"u","payload":"x"} {}`, `{"user":"u","payload":"x"}}`, `{"user":"u","payload":"x"}]`,
		`{"user":"u","qos":1.0}`, `{"user":"u","qos":1e2}`, `{"user":"u","ttl":99999999999999999999}`,
		`{"user":"u","qos":null,"payload":null}`, `{"user":"\ud800\u0041"}`, `{"user":"\u00e9\t"}`,
		`{"users":["a",null,"b"]}`, `{"users":"a"}`, `{"user":"u","nope":{}}`, `[]`, `null`, `1`, `"x"`,
		`{"user":"u",}`, `{"user":"u" "payload":"x"}`, ` {"user":"u"} `, `{"priority":"high","collapse_key":"k"}`,
		`{"qos":01}`, `{"qos":-0}`, `{"ttl":1e400}`, `{"qos":-1}`, `{"qos":2147483648000}`, `{"user":"\u0000"}`,
		`{"user":"u","payload":"\/\b\f\n\r\"\\"}`, `{"user":"\x"}`, `{"user":true}`, `{"users":[1]}`, `{"ttl":"5"}`,
		`{"user":"u"}` + "\n\t ", `{"a\u0070p":"x"}`, `{"reason":"r","device":"d"}`, `{`, `}`, ` `,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if !utf8.Valid(body) {
			return // decodeBody refuses it before decoding
		}
		for _, mk := range []func() any{
			func() any { return &pushRequest{} },
			func() any { return &multiPushRequest{} },
			func() any { return &kickRequest{} },
		} {
			fast, std := mk(), mk()
			errFast, errStd := decodeStrict(body, fast), decodeStd(body, std)
			if (errFast == nil) != (errStd == nil) || (errFast != nil && errFast.Error() != errStd.Error()) {
				t.Fatalf("%T of %q: fast path %v, encoding/json %v", fast, body, errFast, errStd)
			}
			if errStd == nil && !reflect.DeepEqual(fast, std) {
				t.Fatalf("%T of %q: fast path %+v, encoding/json %+v", fast, body, fast, std)
			}
		}
	})
}
