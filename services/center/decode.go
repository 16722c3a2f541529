package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"unicode/utf8"
)

// decodeBody reads one JSON object from r into dst, enforcing the body
// rules of the API: application/json, at most maxBodyBytes, valid UTF-8
// (encoding/json would otherwise silently replace bad bytes with U+FFFD and
// store something the business never sent), no unknown fields, and exactly
// one JSON value.
func decodeBody(w http.ResponseWriter, r *http.Request, dst any) *apiError {
	return decodeBodyLimit(w, r, dst, maxBodyBytes)
}

// decodeBodyLimit is decodeBody with another size bound (a multicast's).
func decodeBodyLimit(w http.ResponseWriter, r *http.Request, dst any, limit int64) *apiError {
	if !isJSONContentType(r.Header.Get("Content-Type")) {
		return errorf(CodeUnsupportedMediaType, "Content-Type must be application/json")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return errorf(CodePayloadTooLarge, fmt.Sprintf("request body exceeds %d bytes", limit))
		}
		return errorf(CodeInvalidArgument, "could not read request body: "+err.Error())
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return errorf(CodeInvalidArgument, "request body is empty; send a JSON object")
	}
	if !utf8.Valid(body) {
		return errorf(CodeInvalidArgument, "request body is not valid UTF-8")
	}
	if err := decodeStrict(body, dst); err != nil {
		if errors.Is(err, errNotOneValue) {
			return errorf(CodeInvalidArgument, err.Error())
		}
		return jsonError(err)
	}
	return nil
}

// isJSONContentType reports whether ct is application/json, with any
// parameters. The two spellings clients send take no parsing:
// mime.ParseMediaType builds a map of parameters on every call.
func isJSONContentType(ct string) bool {
	switch ct {
	case "application/json", "application/json; charset=utf-8":
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/json"
}

// jsonError turns a decoding error into a message a developer can act on.
func jsonError(err error) *apiError {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return errorf(CodeInvalidArgument, fmt.Sprintf("malformed JSON at byte %d: %v", syn.Offset, syn))
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return errorf(CodeInvalidArgument, fmt.Sprintf("request body must be a JSON object, not %s", typ.Value))
		}
		return fieldError(field, fmt.Sprintf("field %q must be %s, not %s", field, jsonKind(typ.Type.Kind().String()), typ.Value))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errorf(CodeInvalidArgument, "malformed JSON: unexpected end of body")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return fieldError(field, fmt.Sprintf("unknown field %q", field))
	default:
		return errorf(CodeInvalidArgument, "malformed JSON: "+err.Error())
	}
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "int", "int32", "int64", "uint", "uint32", "uint64":
		return "an integer"
	case "slice":
		return "an array"
	case "struct", "map":
		return "an object"
	case "bool":
		return "a boolean"
	}
	return goKind
}
