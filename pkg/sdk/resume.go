package sdk

import "slices"

// Flash reconnects (docs/protocol.md §4.4): each AUTH_REPLY may carry a
// resume token; the next AUTH sends it back, and a room that still holds
// the dropped session hands it over (AuthReply.resumed) instead of a full
// login. Any room may ignore it, so the token is sent whatever endpoint
// the client dials next. After a plain drop the room it was on, the only
// one holding the session, is asked first for a resume only
// (Auth.resume_only, resumeAuthTimeout): a room that hung meanwhile costs
// a second, not authTimeout, and if it reads that AUTH late it registers
// nothing, since it may not log the client in afresh.

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

// resumeFirst returns the attempts of a round: eps, preceded by a
// resume-only attempt at ep (the room a plain drop left) when ok and the
// dispatcher still offers it; a room it no longer lists (draining, gone)
// is not asked.
func resumeFirst(eps []string, ep string, ok bool) []string {
	if !ok || ep == "" || !slices.Contains(eps, ep) {
		return eps
	}
	return append([]string{ep}, eps...)
}
