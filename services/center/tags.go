package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/pushgw/pushgw/pkg/appconfig"
	"github.com/pushgw/pushgw/pkg/limits"
	"github.com/pushgw/pushgw/proto/internalpb"
)

// Tag routes (docs/openapi.yaml): PUT and DELETE add and remove users in
// batches, GET pages a tag's members, and /users/{user}/tags lists a
// user's tags. Saver holds tags (services/saver/tags.go); center checks
// every rule first so saver sees only well-formed calls.

// Tag limits of the API, answered with the codes below.
const (
	maxTagUsers     = limits.MaxTagUsersPerCall // users per PUT or DELETE body
	tagPageDefault  = 100
	tagPageMax      = 1000
	maxCursorBytes  = 256 // base64 of a user id of at most maxUserBytes
	maxReportedFull = 10  // users named in a TOO_MANY_TAGS message
)

// tagUsersRequest is the body of PUT and DELETE /v1/apps/{app}/tags/{tag}/users.
type tagUsersRequest struct {
	Users []string `json:"users"`
}

type tagAddResponse struct {
	Tag     string `json:"tag"`
	Added   uint32 `json:"added"`
	Members uint64 `json:"members"`
}

type tagRemoveResponse struct {
	Tag     string `json:"tag"`
	Removed uint32 `json:"removed"`
	Members uint64 `json:"members"`
}

type tagMembersResponse struct {
	Tag   string   `json:"tag"`
	Users []string `json:"users"`
	// NextCursor continues the listing; empty on the last page.
	NextCursor string `json:"next_cursor"`
}

type userTagsResponse struct {
	User string   `json:"user"`
	Tags []string `json:"tags"`
}

func checkTag(tag string) *apiError {
	if err := limits.CheckTag(tag); err != nil {
		return fieldError("tag", err.Error()+" (a tag is 1.."+strconv.Itoa(limits.MaxTagLen)+" bytes of UTF-8 without control characters)")
	}
	return nil
}

func (q *tagUsersRequest) validate() *apiError {
	if len(q.Users) == 0 {
		return fieldError("users", "users must list at least one user")
	}
	if len(q.Users) > maxTagUsers {
		return fieldError("users", fmt.Sprintf("users lists %d users; at most %d per request, send several requests", len(q.Users), maxTagUsers))
	}
	seen := make(map[string]struct{}, len(q.Users))
	for i, u := range q.Users {
		f := fmt.Sprintf("users[%d]", i)
		if e := checkUser(f, u); e != nil {
			return e
		}
		if _, dup := seen[u]; dup {
			return fieldError(f, fmt.Sprintf("user %q is listed twice; users must be distinct", u))
		}
		seen[u] = struct{}{}
	}
	return nil
}

// tagPath reads and checks {app} and {tag}.
func tagPath(r *http.Request, app appconfig.App) (string, *apiError) {
	if e := checkApp(r.PathValue("app"), app.Name); e != nil {
		return "", e
	}
	tag := r.PathValue("tag")
	return tag, checkTag(tag)
}

// tagUsersRoutes serves the three methods of /v1/apps/{app}/tags/{tag}/users.
func (s *Server) tagUsersRoutes() http.Handler {
	byMethod := map[string]http.Handler{
		http.MethodPut:    s.route("tag_add", http.MethodPut, s.handleTagAdd),
		http.MethodDelete: s.route("tag_remove", http.MethodDelete, s.handleTagRemove),
		http.MethodGet:    s.route("tag_members", http.MethodGet, s.handleTagMembers),
	}
	allow := "GET, PUT, DELETE"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h, ok := byMethod[r.Method]; ok {
			h.ServeHTTP(w, r)
			return
		}
		s.m.requests.WithLabelValues("tag_users", CodeMethodNotAllowed).Inc()
		w.Header().Set("Allow", allow)
		writeError(w, errorf(CodeMethodNotAllowed, "use "+allow+" for "+r.URL.Path))
	})
}

func (s *Server) handleTagAdd(w http.ResponseWriter, r *http.Request, app appconfig.App) (any, *apiError) {
	tag, e := tagPath(r, app)
	if e != nil {
		return nil, e
	}
	var req tagUsersRequest
	if e := decodeBody(w, r, &req); e != nil {
		return nil, e
	}
	if e := req.validate(); e != nil {
		return nil, e
	}
	rep, e := s.writeTag(r.Context(), s.saver.AddTagUsers, app.Name, tag, req.Users)
	if e != nil {
		return nil, e
	}
	switch rep.GetLimit() {
	case internalpb.TagLimit_TAG_LIMIT_TAG_FULL:
		return nil, &apiError{Code: CodeTagFull, Field: "users", Message: fmt.Sprintf(
			"tag %q has %d members and may have at most %d; nothing was added: remove members or use another tag",
			tag, rep.GetMembers(), limits.MaxTagMembers)}
	case internalpb.TagLimit_TAG_LIMIT_USER_FULL:
		return nil, tooManyTags(tag, req.Users, rep.GetFullUsers())
	}
	return tagAddResponse{Tag: tag, Added: rep.GetChanged(), Members: rep.GetMembers()}, nil
}

func tooManyTags(tag string, users []string, full []uint32) *apiError {
	var names []string
	field := "users"
	for _, i := range full {
		if int(i) >= len(users) {
			continue
		}
		if field == "users" {
			field = fmt.Sprintf("users[%d]", i)
		}
		if len(names) < maxReportedFull {
			names = append(names, strconv.Quote(users[i]))
		}
	}
	more := ""
	if len(full) > len(names) {
		more = fmt.Sprintf(" and %d more", len(full)-len(names))
	}
	return &apiError{Code: CodeTooManyTags, Field: field, Message: fmt.Sprintf(
		"%d users already have %d tags, the most a user may have: %s%s; nothing was added to tag %q: remove them from other tags or leave them out",
		len(full), limits.MaxTagsPerUser, strings.Join(names, ", "), more, tag)}
}

func (s *Server) handleTagRemove(w http.ResponseWriter, r *http.Request, app appconfig.App) (any, *apiError) {
	tag, e := tagPath(r, app)
	if e != nil {
		return nil, e
	}
	var req tagUsersRequest
	if e := decodeBody(w, r, &req); e != nil {
		return nil, e
	}
	if e := req.validate(); e != nil {
		return nil, e
	}
	rep, e := s.writeTag(r.Context(), s.saver.RemoveTagUsers, app.Name, tag, req.Users)
	if e != nil {
		return nil, e
	}
	return tagRemoveResponse{Tag: tag, Removed: rep.GetChanged(), Members: rep.GetMembers()}, nil
}

type tagWriteCall func(context.Context, *internalpb.TagUsersRequest, ...grpc.CallOption) (*internalpb.TagUsersReply, error)

func (s *Server) writeTag(ctx context.Context, call tagWriteCall, app, tag string, users []string) (*internalpb.TagUsersReply, *apiError) {
	cctx, cancel := context.WithTimeout(ctx, downstreamTimeout)
	defer cancel()
	rep, err := call(cctx, &internalpb.TagUsersRequest{App: app, Tag: tag, Users: users})
	if err == nil {
		return rep, nil
	}
	s.log.Warn("center: tag write failed", "app", app, "tag", tag, "users", len(users), "err", err)
	if status.Code(err) == codes.DeadlineExceeded || errors.Is(err, context.DeadlineExceeded) {
		return nil, errorf(CodeUnavailable, "tag store did not confirm in time; the change may or may not have been applied. Adding and removing are idempotent: retry the same request")
	}
	return nil, errorf(CodeUnavailable, "tag store is unavailable; nothing was changed, retry the request")
}

func (s *Server) handleTagMembers(_ http.ResponseWriter, r *http.Request, app appconfig.App) (any, *apiError) {
	tag, e := tagPath(r, app)
	if e != nil {
		return nil, e
	}
	q := r.URL.Query()
	for k := range q {
		if k != "cursor" && k != "limit" {
			return nil, fieldError(k, fmt.Sprintf("unknown query parameter %q; this route takes cursor and limit", k))
		}
		if len(q[k]) > 1 {
			return nil, fieldError(k, fmt.Sprintf("query parameter %q is given %d times", k, len(q[k])))
		}
	}
	limit := tagPageDefault
	if raw := q.Get("limit"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > tagPageMax {
			return nil, fieldError("limit", fmt.Sprintf("limit must be an integer from 1 to %d, not %q", tagPageMax, raw))
		}
		limit = n
	}
	after, e := decodeCursor(q.Get("cursor"))
	if e != nil {
		return nil, e
	}
	cctx, cancel := context.WithTimeout(r.Context(), downstreamTimeout)
	defer cancel()
	rep, err := s.saver.TagMembers(cctx, &internalpb.TagMembersRequest{App: app.Name, Tag: tag, After: after, Limit: uint32(limit)})
	if err != nil {
		s.log.Warn("center: tag members failed", "app", app.Name, "tag", tag, "err", err)
		return nil, errorf(CodeUnavailable, "tag store is unavailable; retry shortly")
	}
	out := tagMembersResponse{Tag: tag, Users: rep.GetUsers()}
	if out.Users == nil {
		out.Users = []string{}
	}
	if rep.GetMore() && len(out.Users) > 0 {
		out.NextCursor = encodeCursor(out.Users[len(out.Users)-1])
	}
	return out, nil
}

// The member cursor is the last user of a page, base64url without
// padding: opaque to the business, stable across saver restarts and Redis
// loss (saver pages MySQL in byte order), and safe in a query string.
func encodeCursor(lastUser string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(lastUser))
}

func decodeCursor(c string) (string, *apiError) {
	if c == "" {
		return "", nil
	}
	bad := fieldError("cursor", "cursor must be a next_cursor value returned by this route, unchanged")
	if len(c) > maxCursorBytes {
		return "", bad
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(c)
	if err != nil || checkUser("cursor", string(b)) != nil {
		return "", bad
	}
	return string(b), nil
}

func (s *Server) handleUserTags(_ http.ResponseWriter, r *http.Request, app appconfig.App) (any, *apiError) {
	if e := checkApp(r.PathValue("app"), app.Name); e != nil {
		return nil, e
	}
	user := r.PathValue("user")
	if e := checkUser("user", user); e != nil {
		return nil, e
	}
	cctx, cancel := context.WithTimeout(r.Context(), downstreamTimeout)
	defer cancel()
	rep, err := s.saver.UserTags(cctx, &internalpb.UserTagsRequest{App: app.Name, User: user})
	if err != nil {
		s.log.Warn("center: user tags failed", "app", app.Name, "err", err)
		return nil, errorf(CodeUnavailable, "tag store is unavailable; retry shortly")
	}
	tags := rep.GetTags()
	if tags == nil {
		tags = []string{}
	}
	slices.Sort(tags)
	return userTagsResponse{User: user, Tags: tags}, nil
}
