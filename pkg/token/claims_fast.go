package token

import (
	"strconv"
	"unicode/utf8"
)

// parseClaimsFast decodes the claims of the tokens pushgw mints (compact
// JSON, lower-case keys, plain strings and numbers) without
// encoding/json's reflection, which was most of a login's token cost in
// the room. It accepts only input whose meaning is beyond doubt and
// reports false for anything else (whitespace, escapes, invalid UTF-8,
// other keys or value types, duplicate keys, numbers beyond the plain
// form); the caller then decodes with encoding/json, so what a token
// means never depends on which path read it.
func parseClaimsFast(js []byte, wc *wireClaims) bool {
	n := len(js)
	if n < 2 || js[0] != '{' || js[n-1] != '}' {
		return false
	}
	var exp, nbf float64 // copied out at the end: only set ones escape
	var seen uint8
	i := 1
	if js[i] == '}' {
		return i == n-1
	}
	for {
		key, next, ok := fastString(js, i)
		if !ok || next >= n || js[next] != ':' {
			return false
		}
		i = next + 1
		var bit uint8
		switch key {
		case "app", "dev", "sub", "iss", "jti":
			v, next, ok := fastString(js, i)
			if !ok {
				return false
			}
			i = next
			switch key {
			case "app":
				bit, wc.App = 1, v
			case "dev":
				bit, wc.Dev = 2, v
			case "sub":
				bit, wc.Sub = 4, v
			case "iss":
				bit = 8
			case "jti":
				bit = 16
			}
		case "exp", "nbf", "iat":
			v, next, ok := fastNumber(js, i)
			if !ok {
				return false
			}
			i = next
			switch key {
			case "exp":
				bit, exp = 32, v
			case "nbf":
				bit, nbf = 64, v
			case "iat":
				bit = 128
			}
		default:
			return false
		}
		if seen&bit != 0 {
			return false // encoding/json's last-wins rule is left to it
		}
		seen |= bit
		if i >= n {
			return false
		}
		if js[i] == '}' {
			if i != n-1 {
				return false
			}
			break
		}
		if js[i] != ',' {
			return false
		}
		i++
	}
	if seen&32 != 0 {
		wc.Exp = new(exp)
	}
	if seen&64 != 0 {
		wc.Nbf = new(nbf)
	}
	return true
}

// fastString reads a JSON string at js[i] that has no escapes, no control
// characters and only valid UTF-8 (what encoding/json would return
// unchanged), returning it and the index after its closing quote.
func fastString(js []byte, i int) (string, int, bool) {
	if i >= len(js) || js[i] != '"' {
		return "", 0, false
	}
	start := i + 1
	for j := start; j < len(js); j++ {
		switch c := js[j]; {
		case c == '"':
			s := js[start:j]
			if !utf8.Valid(s) {
				return "", 0, false
			}
			return string(s), j + 1, true
		case c == '\\' || c < 0x20:
			return "", 0, false
		}
	}
	return "", 0, false
}

// fastNumber reads a JSON number at js[i] of the plain form digits with
// an optional fraction (no sign, no exponent, no leading zero before
// more digits), returning it and the index after it.
func fastNumber(js []byte, i int) (float64, int, bool) {
	j := i
	for j < len(js) && js[j] >= '0' && js[j] <= '9' {
		j++
	}
	if j == i || (js[i] == '0' && j-i > 1) {
		return 0, 0, false
	}
	if j < len(js) && js[j] == '.' {
		k := j + 1
		for k < len(js) && js[k] >= '0' && js[k] <= '9' {
			k++
		}
		if k == j+1 {
			return 0, 0, false
		}
		j = k
	}
	if j < len(js) && (js[j] == 'e' || js[j] == 'E') {
		return 0, 0, false
	}
	v, err := strconv.ParseFloat(string(js[i:j]), 64)
	if err != nil {
		return 0, 0, false
	}
	return v, j, true
}
