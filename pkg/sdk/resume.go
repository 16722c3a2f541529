package sdk

import "slices"

// Flash reconnects (docs/protocol.md §4.4): each AUTH_REPLY may carry a
// resume token; the next AUTH sends it back, and a room that still holds
// the dropped session hands it over (AuthReply.resumed) instead of a full
// login. Any room may ignore it, so the token is sent whatever endpoint
// the client dials next; after a plain drop the room it was on is dialled
// first (preferEndpoint), since only that room holds the session.

// resumeToken is the token of the last session, "" for none.
func (c *Client) resumeToken() string {
	if p := c.resume.Load(); p != nil {
		return *p
	}
	return ""
}

// setResumeToken keeps the token of the session just established.
func (c *Client) setResumeToken(tok string) {
	if tok == "" {
		c.resume.Store(nil)
		return
	}
	c.resume.Store(&tok)
}

// preferEndpoint moves ep to the front of eps when eps offers it: a room
// the dispatcher no longer lists (draining, gone) is not dialled for a
// resume.
func preferEndpoint(eps []string, ep string) []string {
	i := slices.Index(eps, ep)
	if i <= 0 {
		return eps
	}
	out := make([]string, 0, len(eps))
	out = append(out, ep)
	out = append(out, eps[:i]...)
	return append(out, eps[i+1:]...)
}
