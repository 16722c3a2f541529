package sdk

// Flash reconnects (docs/protocol.md §4.4): each AUTH_REPLY may carry a
// resume token; the next AUTH sends it back, and a room that still holds
// the dropped session hands it over (AuthReply.resumed) instead of a full
// login. Any room may ignore it, so the token is sent whatever endpoint
// the client dials next.

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
