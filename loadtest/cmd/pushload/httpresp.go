package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Limits of the lean client's response parser: it reads bytes from the
// network, so every length it trusts is bounded.
const (
	// maxRespHeaderBytes bounds the status line and headers together.
	maxRespHeaderBytes = 64 << 10
	// maxRespHeaders bounds the number of header lines.
	maxRespHeaders = 100
	// maxRespBody bounds a response body (center answers a few bytes).
	maxRespBody = 1 << 20
	// maxErrorBodyKept is how much of a non-200 body is kept for the
	// error samples; the rest is read and dropped.
	maxErrorBodyKept = 4 << 10
	// maxInterim bounds the 1xx answers skipped before the final one.
	maxInterim = 4
	// maxChunkSizeDigits bounds a chunk-size line's hex digits.
	maxChunkSizeDigits = 8
)

var errRespTooLarge = errors.New("response too large")

// leanResponse is one parsed HTTP/1.x response.
type leanResponse struct {
	status int
	// statusText is the status line after the version ("404 Not Found");
	// set only for a status other than 200.
	statusText string
	// body is set for a status other than 200, or for any status when
	// the caller keeps bodies (GET): at most maxErrorBodyKept bytes of it.
	body []byte
	// close is true when the connection cannot carry another request:
	// the server said Connection: close, spoke HTTP/1.0 without
	// keep-alive, or framed the body by closing.
	close bool
}

// readResponse reads one response to a POST from br, body included, so
// that the connection is ready for the next request unless close is set.
// Interim 1xx answers are skipped. Any error leaves the connection in an
// unknown state: the caller must close it.
func readResponse(br *bufio.Reader) (leanResponse, error) { return readResponseKeep(br, false) }

// readResponseKeep is readResponse that, with keepOK, also keeps a 200
// answer's body (a GET's answer is its body).
func readResponseKeep(br *bufio.Reader, keepOK bool) (leanResponse, error) {
	for i := 0; ; i++ {
		r, h, err := readHead(br)
		if err != nil {
			return r, err
		}
		if r.status >= 100 && r.status < 200 {
			if r.status == 101 {
				return r, errors.New("unexpected 101 Switching Protocols")
			}
			if i >= maxInterim {
				return r, fmt.Errorf("more than %d interim responses", maxInterim)
			}
			continue
		}
		return r, readBody(br, &r, h, keepOK)
	}
}

// head is what readHead learnt from the headers about the body.
type head struct {
	contentLength int64 // -1: none given
	chunked       bool
}

// readHead reads the status line and headers up to the blank line.
func readHead(br *bufio.Reader) (leanResponse, head, error) {
	var r leanResponse
	h := head{contentLength: -1}
	budget := maxRespHeaderBytes
	line, err := readLine(br, &budget)
	if err != nil {
		return r, h, fmt.Errorf("status line: %w", err)
	}
	var http10 bool
	switch {
	case bytes.HasPrefix(line, []byte("HTTP/1.1 ")):
	case bytes.HasPrefix(line, []byte("HTTP/1.0 ")):
		http10 = true
	default:
		return r, h, fmt.Errorf("malformed status line %q", clip(line))
	}
	rest := line[len("HTTP/1.1 "):]
	if len(rest) < 3 || (len(rest) > 3 && rest[3] != ' ') {
		return r, h, fmt.Errorf("malformed status line %q", clip(line))
	}
	for _, c := range rest[:3] {
		if c < '0' || c > '9' {
			return r, h, fmt.Errorf("malformed status code in %q", clip(line))
		}
		r.status = r.status*10 + int(c-'0')
	}
	if r.status < 100 {
		return r, h, fmt.Errorf("status %d out of range", r.status)
	}
	if r.status != 200 {
		r.statusText = string(rest)
	}
	keepAlive := false
	for n := 0; ; n++ {
		line, err := readLine(br, &budget)
		if err != nil {
			return r, h, fmt.Errorf("header: %w", err)
		}
		if len(line) == 0 {
			break
		}
		if n >= maxRespHeaders {
			return r, h, fmt.Errorf("more than %d header lines", maxRespHeaders)
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || len(name) == 0 || !isToken(name) {
			return r, h, fmt.Errorf("malformed header line %q", clip(line))
		}
		value = bytes.Trim(value, " \t")
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, err := parseContentLength(value)
			if err != nil {
				return r, h, err
			}
			if h.contentLength >= 0 && h.contentLength != n {
				return r, h, fmt.Errorf("conflicting Content-Length %d and %d", h.contentLength, n)
			}
			h.contentLength = n
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			if !bytes.EqualFold(value, []byte("chunked")) || h.chunked {
				return r, h, fmt.Errorf("unsupported Transfer-Encoding %q", clip(value))
			}
			h.chunked = true
		case bytes.EqualFold(name, []byte("Connection")):
			if hasToken(value, "close") {
				r.close = true
			}
			if hasToken(value, "keep-alive") {
				keepAlive = true
			}
		}
	}
	if h.chunked && h.contentLength >= 0 {
		// RFC 9112 6.3: a sender must not send both; a client that gets
		// both must not reuse the connection. Center never does.
		return r, h, errors.New("both Content-Length and Transfer-Encoding")
	}
	if http10 && !keepAlive {
		r.close = true
	}
	return r, h, nil
}

// readBody reads the body framed as h says, keeping it in r.body when
// the status is not 200 or keepOK is set.
func readBody(br *bufio.Reader, r *leanResponse, h head, keepOK bool) error {
	keep := r.status != 200 || keepOK
	switch {
	case r.status == 204 || r.status == 304:
		return nil
	case h.chunked:
		return readChunked(br, r, keep)
	case h.contentLength >= 0:
		if h.contentLength > maxRespBody {
			return fmt.Errorf("Content-Length %d: %w", h.contentLength, errRespTooLarge)
		}
		return readN(br, r, int(h.contentLength), keep)
	default:
		// Framed by the server closing the connection.
		r.close = true
		n, err := readN2EOF(br, r, keep)
		if err != nil {
			return err
		}
		if n > maxRespBody {
			return fmt.Errorf("body until close: %w", errRespTooLarge)
		}
		return nil
	}
}

// readN reads exactly n body bytes.
func readN(br *bufio.Reader, r *leanResponse, n int, keep bool) error {
	if keep {
		k := min(n, maxErrorBodyKept-len(r.body))
		if k > 0 {
			start := len(r.body)
			r.body = append(r.body, make([]byte, k)...)
			if _, err := io.ReadFull(br, r.body[start:]); err != nil {
				return fmt.Errorf("body: %w", noEOF(err))
			}
			n -= k
		}
	}
	if _, err := br.Discard(n); err != nil {
		return fmt.Errorf("body: %w", noEOF(err))
	}
	return nil
}

// readN2EOF reads the body until the server closes, at most maxRespBody+1
// bytes, and returns how many it read.
func readN2EOF(br *bufio.Reader, r *leanResponse, keep bool) (int, error) {
	total := 0
	for total <= maxRespBody {
		b, err := br.Peek(1)
		if len(b) == 0 {
			if err == io.EOF {
				return total, nil
			}
			return total, fmt.Errorf("body: %w", err)
		}
		n := br.Buffered()
		if err := readN(br, r, n, keep); err != nil {
			return total, err
		}
		total += n
	}
	return total, nil
}

// readChunked reads a chunked body and its trailers.
func readChunked(br *bufio.Reader, r *leanResponse, keep bool) error {
	budget := maxRespHeaderBytes
	total := 0
	for {
		line, err := readLine(br, &budget)
		if err != nil {
			return fmt.Errorf("chunk size: %w", err)
		}
		size, ok := parseChunkSize(line)
		if !ok {
			return fmt.Errorf("malformed chunk size line %q", clip(line))
		}
		if size == 0 {
			break
		}
		if total += size; total > maxRespBody {
			return fmt.Errorf("chunked body: %w", errRespTooLarge)
		}
		if err := readN(br, r, size, keep); err != nil {
			return err
		}
		crlf, err := readLine(br, &budget)
		if err != nil {
			return fmt.Errorf("chunk end: %w", err)
		}
		if len(crlf) != 0 {
			return errors.New("chunk data longer than its size")
		}
	}
	// Trailers, then the blank line that ends the message.
	for n := 0; ; n++ {
		line, err := readLine(br, &budget)
		if err != nil {
			return fmt.Errorf("trailer: %w", err)
		}
		if len(line) == 0 {
			return nil
		}
		if n >= maxRespHeaders {
			return fmt.Errorf("more than %d trailer lines", maxRespHeaders)
		}
	}
}

// parseChunkSize reads "hex[;extensions]".
func parseChunkSize(line []byte) (int, bool) {
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	line = bytes.TrimRight(line, " \t")
	if len(line) == 0 || len(line) > maxChunkSizeDigits {
		return 0, false
	}
	n := 0
	for _, c := range line {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		n = n<<4 | int(d)
	}
	return n, true
}

// readLine returns one line without its CRLF (a bare LF is accepted, as
// net/http does), charging it to budget. The slice is valid until the
// next read from br.
func readLine(br *bufio.Reader, budget *int) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if *budget -= len(line); *budget < 0 {
		return nil, fmt.Errorf("headers: %w", errRespTooLarge)
	}
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("line longer than %d bytes: %w", br.Size(), errRespTooLarge)
		}
		return nil, noEOF(err)
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// parseContentLength accepts decimal digits only, at most maxRespBody
// checked by the caller; 19 digits keep it inside int64.
func parseContentLength(v []byte) (int64, error) {
	if len(v) == 0 || len(v) > 19 {
		return 0, fmt.Errorf("malformed Content-Length %q", clip(v))
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("malformed Content-Length %q", clip(v))
		}
		n = n*10 + int64(c-'0')
	}
	return n, nil
}

// hasToken says whether a comma-separated header value holds tok,
// case-insensitively.
func hasToken(v []byte, tok string) bool {
	for len(v) > 0 {
		var part []byte
		part, v, _ = bytes.Cut(v, []byte(","))
		if bytes.EqualFold(bytes.Trim(part, " \t"), []byte(tok)) {
			return true
		}
	}
	return false
}

// isToken says whether b is an RFC 9110 token (a header field name).
func isToken(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c >= 0x7f || bytes.IndexByte([]byte(`"(),/:;<=>?@[\]{}`), c) >= 0 {
			return false
		}
	}
	return true
}

// noEOF turns a clean EOF in the middle of a response into
// io.ErrUnexpectedEOF: the response is incomplete either way.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// clip shortens network bytes quoted in an error.
func clip(b []byte) string {
	const maxQuoted = 64
	if len(b) > maxQuoted {
		return string(b[:maxQuoted]) + "..."
	}
	return string(b)
}
