package main

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzTagBody feeds arbitrary bytes through the tag routes' decoders: the
// PUT/DELETE body rules and validation, the member cursor and the tag name
// from the path. Whatever the bytes, the answer is a value or an apiError
// with a code and a message, never a panic; an accepted body or cursor
// keeps the rules it was checked against.
func FuzzTagBody(f *testing.F) {
	for _, s := range []string{
		`{"users":["alice","bob"]}`,
		`{"users":[]}`,
		`{"users":["a","a"]}`,
		`{"users":"alice"}`,
		`{"users":["a"],"tag":"x"}`,
		`{"users":["a"]} {}`,
		"{\"users\":[\"\xff\"]}",
		`{"users":["\u0000"]}`,
		`YWxpY2U`, `***`, ``, `null`, `[1]`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		req := httptest.NewRequest("PUT", "/v1/apps/demo/tags/t/users", strings.NewReader(in))
		req.Header.Set("Content-Type", "application/json")
		var body tagUsersRequest
		e := decodeBody(httptest.NewRecorder(), req, &body)
		if e == nil {
			e = body.validate()
			if e == nil {
				if len(body.Users) == 0 || len(body.Users) > maxTagUsers {
					t.Fatalf("accepted %d users", len(body.Users))
				}
				for _, u := range body.Users {
					if checkUser("u", u) != nil {
						t.Fatalf("accepted user %q", u)
					}
				}
			}
		}
		if e != nil && (e.Code == "" || e.Message == "") {
			t.Fatalf("error without code or message: %+v", e)
		}
		after, e := decodeCursor(in)
		switch {
		case e != nil && (e.Code == "" || e.Message == ""):
			t.Fatalf("cursor error without code or message: %+v", e)
		case e == nil && in != "" && (checkUser("cursor", after) != nil || encodeCursor(after) != in):
			t.Fatalf("cursor %q accepted as %q", in, after)
		}
		if e := checkTag(in); e != nil && (e.Code == "" || e.Message == "" || e.Field != "tag") {
			t.Fatalf("tag error: %+v", e)
		}
	})
}
