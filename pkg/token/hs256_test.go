package token

import (
	"crypto/hmac"
	"crypto/sha256"
	"strings"
	"testing"
)

// hs256 is HMAC-SHA256 for keys shorter than, equal to and longer than
// the block, and for empty and long messages.
func TestHS256MatchesHMAC(t *testing.T) {
	for _, klen := range []int{0, 1, 32, 63, 64, 65, 200} {
		for _, mlen := range []int{0, 1, 55, 64, 1000, 4096} {
			key := []byte(strings.Repeat("k", klen))
			msg := []byte(strings.Repeat("m", mlen))
			var got [sha256.Size]byte
			hs256(key, msg, &got)
			m := hmac.New(sha256.New, key)
			m.Write(msg)
			if want := m.Sum(nil); !hmac.Equal(got[:], want) {
				t.Fatalf("key %d B, msg %d B: hs256 %x, crypto/hmac %x", klen, mlen, got, want)
			}
		}
	}
}
