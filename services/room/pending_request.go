package main

// requestPull asks for a pull of s's stored messages that reads saver
// after this call. pullPending alone drops a request made while a pull is
// under way, and that pull may have read saver before the request's cause
// (register's put landing, say): the request is then remembered as
// behind, and the running pull pages on once it is done (deliverPending
// checks due), or the acks that make room in the window do.
func (r *room) requestPull(s *session) {
	p := &s.pending
	p.mu.Lock()
	if p.pulling {
		p.behind = true
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	// A pull started by someone else between the unlock and this call
	// reads saver after the request too.
	r.pullPending(s)
}
