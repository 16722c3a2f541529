package main

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"testing"
)

// FuzzReadResponse feeds network bytes to the lean parser: it must never
// panic or hang, keep what it promises (bounds, a 3-digit final status),
// and, whenever it accepts a response that keeps the connection, agree
// with net/http's reader on the status, the kept body (with or without
// keeping a 200's) and where the next response starts. Seeds: testdata/fuzz/FuzzReadResponse.
func FuzzReadResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{\"id\":\"123\"}",
		"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 5\r\nConnection: close\r\n\r\nslow!",
		"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbusy\r\n0\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\nuntil close",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		rd := bytes.NewReader(in)
		br := bufio.NewReaderSize(rd, leanReadBuffer)
		r, err := readResponse(br)
		if err != nil {
			return
		}
		if r.status < 200 || r.status > 999 {
			t.Fatalf("final status %d", r.status)
		}
		if len(r.body) > maxErrorBodyKept || (r.status == 200 && (r.body != nil || r.statusText != "")) {
			t.Fatalf("kept %d body bytes, status text %q for %d", len(r.body), r.statusText, r.status)
		}
		if r.close {
			return // whatever follows is not read
		}
		used := len(in) - rd.Len() - br.Buffered()
		// Keeping every body (a GET's answer) changes nothing else.
		krd := bytes.NewReader(in)
		kbr := bufio.NewReaderSize(krd, leanReadBuffer)
		kr, err := readResponseKeep(kbr, true)
		if err != nil || kr.status != r.status || kr.close || len(in)-krd.Len()-kbr.Buffered() != used {
			t.Fatalf("keeping bodies: %+v, %v; without: %+v", kr, err, r)
		}
		if len(kr.body) > maxErrorBodyKept || (r.status != 200 && !bytes.Equal(kr.body, r.body)) {
			t.Fatalf("kept body %q, without keeping %q", kr.body, r.body)
		}
		// net/http is the reference for a response the lean client reuses
		// the connection after: same status, same body, and the next
		// response starts at the same byte.
		hrd := bytes.NewReader(in)
		hr := bufio.NewReader(hrd)
		var resp *http.Response
		for {
			resp, err = http.ReadResponse(hr, nil)
			if err != nil {
				return // stricter than net/http is fine
			}
			if resp.StatusCode >= 200 {
				break
			}
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.Close {
			return
		}
		if resp.StatusCode != r.status {
			t.Fatalf("status %d, net/http %d, in %q", r.status, resp.StatusCode, in)
		}
		if !bytes.HasPrefix(body, kr.body) || (len(body) <= maxErrorBodyKept && len(body) != len(kr.body)) {
			t.Fatalf("body %q, net/http %q, in %q", kr.body, body, in)
		}
		if hused := len(in) - hrd.Len() - hr.Buffered(); hused != used {
			t.Fatalf("consumed %d bytes, net/http %d, in %q", used, hused, in)
		}
	})
}
