package token

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// claimsCases are claim payloads of every shape parseClaimsFast takes or
// declines.
var claimsCases = []string{
	`{"app":"a","sub":"u","exp":1700000000,"iat":1690000000}`,
	`{"app":"a","dev":"d","sub":"u","exp":1700000000.5,"nbf":1,"iat":0}`,
	`{"iss":"x","app":"a","sub":"u","jti":"j","exp":1}`,
	`{}`,
	`{"app":"a"}`,
	`{"app":"a","app":"b","sub":"u","exp":1}`,
	`{"APP":"a","sub":"u","exp":1}`,
	`{"app":"a\u0041","sub":"u","exp":1}`,
	`{"app":"\xff","sub":"u","exp":1}`,
	`{"app":"a","sub":"u","exp":1e9}`,
	`{"app":"a","sub":"u","exp":-1}`,
	`{"app":"a","sub":"u","exp":01}`,
	`{"app":"a","sub":"u","exp":1.}`,
	`{"app":"a","sub":"u","exp":null}`,
	`{"app":"a","sub":"u","exp":"1"}`,
	`{"app":1,"sub":"u","exp":1}`,
	`{"app":"a","sub":"u","aud":["x"],"exp":1}`,
	`{"app":"a", "sub":"u","exp":1}`,
	`{"app":"a","sub":"u","exp":1}x`,
	`{"app":"a","sub":"u","exp":1,}`,
	`{"app":"a","sub":"u","exp":1`,
	`{"app":"a"  ,"sub":"u"}`,
	`{"app":"a","sub":"u","exp":1}}`,
	`{"app":"a\tb","sub":"u","exp":1}`,
	`{"app":"a","sub":"u","exp":1,"iat":2,"nbf":3,"dev":"x","iss":"y","jti":"z"}`,
}

// Whatever parseClaimsFast accepts, encoding/json reads the same way.
func TestParseClaimsFastMatchesJSON(t *testing.T) {
	accepted := 0
	for _, in := range claimsCases {
		checkClaimsFast(t, []byte(in))
		var wc wireClaims
		if parseClaimsFast([]byte(in), &wc) {
			accepted++
		}
	}
	if accepted < 5 {
		t.Fatalf("fast path took %d cases, want the 5 plain ones at least", accepted)
	}
}

func FuzzParseClaimsFast(f *testing.F) {
	for _, in := range claimsCases {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, in []byte) { checkClaimsFast(t, in) })
}

func checkClaimsFast(t *testing.T, in []byte) {
	t.Helper()
	var fast wireClaims
	if !parseClaimsFast(in, &fast) {
		return
	}
	var slow wireClaims
	if err := json.Unmarshal(in, &slow); err != nil {
		t.Fatalf("%q: fast path accepted what encoding/json refuses: %v", in, err)
	}
	if !reflect.DeepEqual(fast, slow) {
		t.Fatalf("%q: fast %+v, encoding/json %+v", in, fast, slow)
	}
}

// A minted token's claims take the fast path.
func TestMintedClaimsAreFast(t *testing.T) {
	tok, err := Mint([]byte("s"), Claims{App: "a", User: "u", Device: "d", Expiry: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	js, err := b64.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var wc wireClaims
	if !parseClaimsFast(js, &wc) {
		t.Fatalf("minted claims %s declined by the fast path", js)
	}
}
