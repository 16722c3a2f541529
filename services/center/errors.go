package main

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// Error codes of the center API. They are part of the public contract
// (docs/openapi.yaml lists each with its HTTP status): never rename one,
// only add.
const (
	CodeInvalidArgument      = "INVALID_ARGUMENT"
	CodeUnauthenticated      = "UNAUTHENTICATED"
	CodeForbidden            = "FORBIDDEN"
	CodeNotFound             = "NOT_FOUND"
	CodeMethodNotAllowed     = "METHOD_NOT_ALLOWED"
	CodePayloadTooLarge      = "PAYLOAD_TOO_LARGE"
	CodeUnsupportedMediaType = "UNSUPPORTED_MEDIA_TYPE"
	CodeInternal             = "INTERNAL"
	CodeUnavailable          = "UNAVAILABLE"
	// CodeTagFull: an add would give a tag more than limits.MaxTagMembers.
	CodeTagFull = "TAG_FULL"
	// CodeTooManyTags: users of an add already carry limits.MaxTagsPerUser tags.
	CodeTooManyTags = "TOO_MANY_TAGS"
	// CodeTxAlreadyDecided: a commit of a rolled-back transaction or the
	// reverse; the body's state says how it was decided.
	CodeTxAlreadyDecided = "TX_ALREADY_DECIDED"
	// CodeRateLimited: the app is over a per-app limit; Retry-After says
	// when to try again.
	CodeRateLimited = "RATE_LIMITED"
	// CodeTooManyInFlight: this center runs as many multicast deliveries
	// as it may; retry shortly (another center may take it).
	CodeTooManyInFlight = "TOO_MANY_IN_FLIGHT"
)

// codeOK labels successful requests in metrics.
const codeOK = "OK"

// statusOf maps each code to its one HTTP status.
var statusOf = map[string]int{
	CodeInvalidArgument:      http.StatusBadRequest,
	CodeUnauthenticated:      http.StatusUnauthorized,
	CodeForbidden:            http.StatusForbidden,
	CodeNotFound:             http.StatusNotFound,
	CodeMethodNotAllowed:     http.StatusMethodNotAllowed,
	CodePayloadTooLarge:      http.StatusRequestEntityTooLarge,
	CodeUnsupportedMediaType: http.StatusUnsupportedMediaType,
	CodeInternal:             http.StatusInternalServerError,
	CodeUnavailable:          http.StatusServiceUnavailable,
	// Conflicts with what is stored, not malformed requests: the same body
	// succeeds once members or tags are removed.
	CodeTagFull:          http.StatusConflict,
	CodeTooManyTags:      http.StatusConflict,
	CodeTxAlreadyDecided: http.StatusConflict,
	CodeRateLimited:      http.StatusTooManyRequests,
	CodeTooManyInFlight:  http.StatusServiceUnavailable,
}

// apiError is the body of every non-2xx answer.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Field names the request field at fault, when there is one.
	Field string `json:"field,omitempty"`
	// State is the decided state of a transaction (TX_ALREADY_DECIDED).
	State string `json:"state,omitempty"`
	// retryAfter, in seconds, becomes the Retry-After header when > 0.
	retryAfter int
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

func errorf(code, msg string) *apiError { return &apiError{Code: code, Message: msg} }

func fieldError(field, msg string) *apiError {
	return &apiError{Code: CodeInvalidArgument, Message: msg, Field: field}
}

// jsonAppender is an answer that encodes itself, byte for byte as
// encoding/json would, without reflection: the unicast push answer, sent
// once per push.
type jsonAppender interface {
	appendJSON(b []byte) []byte
}

// answerBufSize fits a self-encoded answer and its newline.
const answerBufSize = 96

func writeJSON(w http.ResponseWriter, status int, v any) {
	var b []byte
	if a, ok := v.(jsonAppender); ok {
		b = a.appendJSON(make([]byte, 0, answerBufSize))
	} else {
		var err error
		if b, err = json.Marshal(v); err != nil {
			status = http.StatusInternalServerError
			b = []byte(`{"code":"INTERNAL","message":"response encoding failed"}`)
		}
	}
	// Assigned rather than Set: the keys are canonical already, and Set
	// would canonicalize them again on every answer.
	h := w.Header()
	h["Content-Type"] = []string{"application/json; charset=utf-8"}
	h["X-Content-Type-Options"] = []string{"nosniff"}
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, e *apiError) {
	status, ok := statusOf[e.Code]
	if !ok {
		status = http.StatusInternalServerError
	}
	if e.Code == CodeUnauthenticated {
		w.Header().Set("WWW-Authenticate", `Bearer realm="pushgw"`)
	}
	if e.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.retryAfter))
	}
	writeJSON(w, status, e)
}
