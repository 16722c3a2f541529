// Package sdk is the Go client of pushgw: it keeps one long-lived TCP
// connection to a room, re-establishing it as needed, and hands pushed
// messages to a Handler.
//
// A Client asks the dispatcher for an ordered list of room endpoints, tries
// them in order (telling the dispatcher which ones failed on its next call,
// and falling back to Config.Endpoints when the dispatcher cannot be
// reached; of two answers it keeps the one with the newer room list, by
// the answer's version), authenticates with a token minted by the business backend, and
// then:
//
//   - sends PING every heartbeat/2 as negotiated in AUTH_REPLY and treats the
//     connection as dead when nothing arrives for a heartbeat plus a margin
//     (two PINGs unanswered);
//   - calls Handler for each PUSH, one at a time in arrival order, and ACKs a
//     QoS 1 message only after Handler returned nil (ACKs are batched: every
//     20 ms or 100 ids);
//   - drops a redelivered message it has already handled (bounded memory of
//     recent ids, Config.DedupSize) but ACKs it again, since the earlier ACK
//     may have been lost;
//   - reconnects with exponential back-off and full jitter after any
//     disconnect; a REDIRECT's endpoints are tried first and its back-off
//     hint is honoured;
//   - stops on KICK (Run returns an error matching ErrKicked) and on fatal
//     authentication errors (TOKEN_INVALID, APP_UNKNOWN; Run returns a
//     *ServerError). TOKEN_EXPIRED makes it call Config.TokenFunc again.
//
// The wire protocol is described in docs/protocol.md.
package sdk
