package limits

import (
	"fmt"
	"unicode"
	"unicode/utf8"
)

// Tag bounds, shared by center (which answers them as API errors) and saver
// (which enforces them against what is stored).
const (
	// MaxTagLen matches saver's tag_members.tag column.
	MaxTagLen = 128
	// MaxTagsPerUser bounds the set of tags one user of an app carries, so
	// listing or filtering a user's tags stays one small read.
	MaxTagsPerUser = 64
	// MaxTagMembers bounds one tag, so a tag broadcast pages through a known
	// maximum and one tag's Redis set stays well under a memory budget
	// (≈1,000,000 × ~60 B).
	MaxTagMembers = 1_000_000
	// MaxTagUsersPerCall bounds one add, remove or membership call.
	MaxTagUsersPerCall = 1000
)

// CheckTag validates a tag name: 1..MaxTagLen bytes of valid UTF-8 without
// control characters (Unicode category Cc: U+0000–U+001F, U+007F–U+009F).
// Anything else is allowed, '/' and ':' included (the API takes the tag as
// one escaped path segment, and saver's Redis keys length-prefix the app).
// Names are compared as bytes: "News" and "news" are two tags.
func CheckTag(tag string) error {
	switch {
	case tag == "":
		return fmt.Errorf("empty tag")
	case len(tag) > MaxTagLen:
		return fmt.Errorf("tag is %d bytes; at most %d allowed", len(tag), MaxTagLen)
	case !utf8.ValidString(tag):
		return fmt.Errorf("tag is not valid UTF-8")
	}
	for i, r := range tag {
		if unicode.IsControl(r) {
			return fmt.Errorf("tag has control character %U at byte %d", r, i)
		}
	}
	return nil
}
