package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
)

// Tag commands talk to center's tag routes (docs/openapi.yaml).
const (
	// tagBatch is center's limit of users per add or remove; longer lists
	// go as several requests, each answered on its own line.
	tagBatch = 1000
	// tagPage is the member page size of `tag ls --tag`.
	tagPage = 1000
	// maxTagPages stops `tag ls --tag` on a cursor that never ends.
	maxTagPages = 2000
)

const tagUsage = "usage: pushctl tag add|rm --app A --tag T USER...\n       pushctl tag ls --app A (--user U | --tag T)\n"

func (c cli) tag(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usageError{fmt.Errorf("want a subcommand: add, rm or ls\n%s", tagUsage)}
	}
	switch args[0] {
	case "add":
		return c.tagWrite(ctx, "tag add", http.MethodPut, args[1:])
	case "rm":
		return c.tagWrite(ctx, "tag rm", http.MethodDelete, args[1:])
	case "ls":
		return c.tagList(ctx, args[1:])
	}
	return usageError{fmt.Errorf("unknown subcommand %q\n%s", args[0], tagUsage)}
}

func tagUsersURL(center, app, tag string) string {
	return center + "/v1/apps/" + url.PathEscape(app) + "/tags/" + url.PathEscape(tag) + "/users"
}

// tagWrite adds (PUT) or removes (DELETE) the positional users.
func (c cli) tagWrite(ctx context.Context, name, method string, args []string) error {
	fs := c.flagSet(name)
	app := fs.String("app", "", "app name")
	tag := fs.String("tag", "", "tag name")
	center := fs.String("center", defaultCenter, "center base URL")
	apiKey := fs.String("api-key", "", "the app's API key")
	users, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := require("app", *app, "tag", *tag, "api-key", *apiKey); err != nil {
		return err
	}
	if len(users) == 0 {
		return usageError{fmt.Errorf("want at least one USER argument")}
	}
	for start := 0; start < len(users); start += tagBatch {
		body, _ := json.Marshal(map[string][]string{"users": users[start:min(start+tagBatch, len(users))]})
		if err := c.call(ctx, method, tagUsersURL(*center, *app, *tag), *apiKey, body); err != nil {
			if start > 0 {
				return fmt.Errorf("after %d users were sent: %w", start, err)
			}
			return err
		}
	}
	return nil
}

// tagList prints a user's tags, or every page of a tag's members (one JSON
// line per page).
func (c cli) tagList(ctx context.Context, args []string) error {
	fs := c.flagSet("tag ls")
	app := fs.String("app", "", "app name")
	user := fs.String("user", "", "list this user's tags")
	tag := fs.String("tag", "", "list this tag's members")
	limit := fs.Int("limit", tagPage, "members per page (1..1000)")
	center := fs.String("center", defaultCenter, "center base URL")
	apiKey := fs.String("api-key", "", "the app's API key")
	pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if err := require("app", *app, "api-key", *apiKey); err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return usageError{fmt.Errorf("unexpected argument %q", pos[0])}
	case (*user == "") == (*tag == ""):
		return usageError{fmt.Errorf("give exactly one of --user (list the user's tags) or --tag (list the tag's members)")}
	case *limit < 1 || *limit > tagPage:
		return usageError{fmt.Errorf("--limit must be 1..%d", tagPage)}
	}
	if *user != "" {
		return c.call(ctx, http.MethodGet, *center+"/v1/apps/"+url.PathEscape(*app)+"/users/"+url.PathEscape(*user)+"/tags", *apiKey, nil)
	}
	cursor := ""
	for range maxTagPages {
		u := tagUsersURL(*center, *app, *tag) + "?limit=" + strconv.Itoa(*limit)
		if cursor != "" {
			u += "&cursor=" + url.QueryEscape(cursor)
		}
		var page bytes.Buffer
		pc := c
		pc.stdout = &page
		if err := pc.call(ctx, http.MethodGet, u, *apiKey, nil); err != nil {
			return err
		}
		c.stdout.Write(page.Bytes())
		var reply struct {
			NextCursor string `json:"next_cursor"`
		}
		if err := json.Unmarshal(page.Bytes(), &reply); err != nil {
			return fmt.Errorf("member page: %w", err)
		}
		if reply.NextCursor == "" {
			return nil
		}
		cursor = reply.NextCursor
	}
	return fmt.Errorf("stopped after %d pages; the listing did not end", maxTagPages)
}
