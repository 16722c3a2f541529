package main

import (
	"encoding/json"
	"strconv"
	"time"
)

// appendPushBody appends the JSON body of request k to dst, the same
// document the net/http path marshals from a map: /v1/push's
// {"app","user","payload","qos","ttl"} for user k mod users, or with -multi
// /v1/push/multi's "users" from k*batch on. The payload is timedPayload's,
// built in place.
func appendPushBody(dst []byte, f *pushFlags, runID string, k int64, t0 time.Time) []byte {
	dst = append(dst, `{"app":`...)
	dst = appendJSONString(dst, f.app)
	if !f.multi {
		dst = append(dst, `,"user":`...)
		dst = appendUser(dst, f, k)
	} else {
		dst = append(dst, `,"users":[`...)
		for i := 0; i < f.batch; i++ {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendUser(dst, f, k*int64(f.batch)+int64(i))
		}
		dst = append(dst, ']')
	}
	dst = append(dst, `,"payload":`...)
	start := len(dst) + 1 // the payload's first byte, after the quote
	dst = appendJSONString(dst, runID)
	dst = dst[:len(dst)-1] // reopen the quoted string
	dst = append(dst, '|')
	dst = strconv.AppendInt(dst, t0.UnixNano(), 10)
	dst = append(dst, '|')
	for len(dst)-start < f.size {
		dst = append(dst, 'x')
	}
	dst = append(dst, `","qos":`...)
	dst = strconv.AppendInt(dst, int64(f.qos), 10)
	dst = append(dst, `,"ttl":`...)
	dst = strconv.AppendInt(dst, int64(f.ttl), 10)
	return append(dst, '}')
}

// appendUser appends user i mod users as a JSON string: the prefix, then
// the number.
func appendUser(dst []byte, f *pushFlags, i int64) []byte {
	dst = appendJSONString(dst, f.userPrefix)
	dst = strconv.AppendInt(dst[:len(dst)-1], i%int64(f.users), 10)
	return append(dst, '"')
}

// appendJSONString appends s as a JSON string. strconv.AppendQuote is
// valid JSON for printable ASCII (it escapes only " and \), which is what
// app names, user prefixes and run ids are; anything else goes through
// encoding/json.
func appendJSONString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f {
			b, _ := json.Marshal(s)
			return append(dst, b...)
		}
	}
	return strconv.AppendQuote(dst, s)
}
