package main

import (
	"encoding/base64"
	"fmt"
	"time"
	"unicode/utf8"
)

// pushRequest is the body of POST /v1/push.
type pushRequest struct {
	App           string  `json:"app"`
	User          string  `json:"user"`
	Device        string  `json:"device"`
	Payload       *string `json:"payload"`
	PayloadBase64 *string `json:"payload_base64"`
	QoS           *int    `json:"qos"`
	TTL           *int64  `json:"ttl"`
	// IdempotencyKey makes retries safe: a second push of the app with the
	// same key within the outcome retention stores and sends nothing and
	// answers the first message's id.
	IdempotencyKey string `json:"idempotency_key"`
	// CollapseKey and Priority: see collapse.go.
	CollapseKey string  `json:"collapse_key"`
	Priority    *string `json:"priority"`
	// Receipt asks for a delivery receipt (receipt.go).
	Receipt bool `json:"receipt"`
}

// multiPushRequest is the body of POST /v1/push/multi.
type multiPushRequest struct {
	App           string   `json:"app"`
	Users         []string `json:"users"`
	Payload       *string  `json:"payload"`
	PayloadBase64 *string  `json:"payload_base64"`
	QoS           *int     `json:"qos"`
	TTL           *int64   `json:"ttl"`
	// IdempotencyKey: a retry with the same key answers the first
	// multicast's ids and stores nothing.
	IdempotencyKey string  `json:"idempotency_key"`
	CollapseKey    string  `json:"collapse_key"`
	Priority       *string `json:"priority"`
	// Receipt asks for a delivery receipt per recipient's message
	// (receipt.go).
	Receipt bool `json:"receipt"`
}

// kickRequest is the body of POST /v1/kick.
type kickRequest struct {
	App    string `json:"app"`
	User   string `json:"user"`
	Device string `json:"device"`
	Reason string `json:"reason"`
}

// delivery is what the validated push bodies boil down to.
type delivery struct {
	payload []byte
	qos     uint32
	ttl     time.Duration // 0 for QoS 0: never stored, so never expires
	opts    storeOptions
}

// checkApp enforces that a body names the key's own app; an omitted app
// means the key's app.
func checkApp(named, keyApp string) *apiError {
	if named != "" && named != keyApp {
		return &apiError{Code: CodeForbidden, Field: "app",
			Message: fmt.Sprintf("this API key belongs to app %q and cannot act on app %q", keyApp, named)}
	}
	return nil
}

func checkUser(field, user string) *apiError {
	if user == "" {
		return fieldError(field, field+" is required")
	}
	if len(user) > maxUserBytes {
		return fieldError(field, fmt.Sprintf("%s is %d bytes; at most %d allowed", field, len(user), maxUserBytes))
	}
	// Bodies are checked whole; a user from the URL path is not.
	if !utf8.ValidString(user) {
		return fieldError(field, field+" is not valid UTF-8")
	}
	return nil
}

func checkDevice(device string) *apiError {
	if len(device) > maxDeviceBytes {
		return fieldError("device", fmt.Sprintf("device is %d bytes; at most %d allowed", len(device), maxDeviceBytes))
	}
	return nil
}

// checkDelivery validates payload, qos and ttl, shared by both push routes.
func checkDelivery(payload, payloadB64 *string, qos *int, ttl *int64) (delivery, *apiError) {
	var d delivery
	switch {
	case payload != nil && payloadB64 != nil:
		return d, fieldError("payload_base64", "give either payload or payload_base64, not both")
	case payload != nil:
		d.payload = []byte(*payload)
	case payloadB64 != nil:
		b, err := base64.StdEncoding.DecodeString(*payloadB64)
		if err != nil {
			return d, fieldError("payload_base64", "payload_base64 is not valid standard base64 (RFC 4648, with padding): "+err.Error())
		}
		d.payload = b
	default:
		return d, fieldError("payload", "payload (a string) or payload_base64 is required")
	}
	if len(d.payload) > maxPayloadBytes {
		return d, &apiError{Code: CodePayloadTooLarge, Field: "payload",
			Message: fmt.Sprintf("payload is %d bytes; at most %d allowed", len(d.payload), maxPayloadBytes)}
	}
	// QoS 1 is the default: a business that did not say otherwise expects
	// the message to arrive.
	d.qos = 1
	if qos != nil {
		if *qos != 0 && *qos != 1 {
			return d, fieldError("qos", fmt.Sprintf("qos must be 0 (at most once) or 1 (at least once), not %d", *qos))
		}
		d.qos = uint32(*qos)
	}
	if ttl != nil {
		if *ttl < 0 {
			return d, fieldError("ttl", fmt.Sprintf("ttl must be a number of seconds >= 0 (0 means the default %d), not %d", int64(defaultTTL/time.Second), *ttl))
		}
		if *ttl > int64(maxTTL/time.Second) {
			return d, fieldError("ttl", fmt.Sprintf("ttl is %d seconds; at most %d (7 days) allowed", *ttl, int64(maxTTL/time.Second)))
		}
	}
	if d.qos == 1 {
		d.ttl = defaultTTL
		if ttl != nil && *ttl > 0 {
			d.ttl = time.Duration(*ttl) * time.Second
		}
	}
	return d, nil
}

func (q *pushRequest) validate(keyApp string) (delivery, *apiError) {
	if e := checkApp(q.App, keyApp); e != nil {
		return delivery{}, e
	}
	if e := checkUser("user", q.User); e != nil {
		return delivery{}, e
	}
	if e := checkDevice(q.Device); e != nil {
		return delivery{}, e
	}
	d, e := checkDelivery(q.Payload, q.PayloadBase64, q.QoS, q.TTL)
	if e != nil {
		return d, e
	}
	if len(q.IdempotencyKey) > maxIdempotencyKeyBytes {
		return d, fieldError("idempotency_key", fmt.Sprintf("idempotency_key is %d bytes; at most %d allowed", len(q.IdempotencyKey), maxIdempotencyKeyBytes))
	}
	if q.IdempotencyKey != "" && d.qos == 0 {
		return d, fieldError("idempotency_key", "idempotency_key needs qos 1: a qos 0 push is not stored, so there is nothing to find on a retry")
	}
	d.opts, e = checkStoreOptions(q.CollapseKey, q.Priority, d.qos)
	return d, e
}

func (q *multiPushRequest) validate(keyApp string) (delivery, *apiError) {
	if e := checkApp(q.App, keyApp); e != nil {
		return delivery{}, e
	}
	if len(q.Users) == 0 {
		return delivery{}, fieldError("users", "users must list at least one user")
	}
	if len(q.Users) > maxMultiUsers {
		return delivery{}, fieldError("users", fmt.Sprintf("users lists %d users; at most %d per request", len(q.Users), maxMultiUsers))
	}
	seen := make(map[string]struct{}, len(q.Users))
	for i, u := range q.Users {
		if e := checkUser(fmt.Sprintf("users[%d]", i), u); e != nil {
			return delivery{}, e
		}
		if _, dup := seen[u]; dup {
			return delivery{}, fieldError(fmt.Sprintf("users[%d]", i), fmt.Sprintf("user %q is listed twice; users must be distinct", u))
		}
		seen[u] = struct{}{}
	}
	return checkDelivery(q.Payload, q.PayloadBase64, q.QoS, q.TTL)
}

func (q *kickRequest) validate(keyApp string) *apiError {
	if e := checkApp(q.App, keyApp); e != nil {
		return e
	}
	if e := checkUser("user", q.User); e != nil {
		return e
	}
	if e := checkDevice(q.Device); e != nil {
		return e
	}
	if len(q.Reason) > maxReasonBytes {
		return fieldError("reason", fmt.Sprintf("reason is %d bytes; at most %d allowed", len(q.Reason), maxReasonBytes))
	}
	return nil
}
