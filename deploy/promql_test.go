package deploy

import (
	"fmt"
	"slices"
	"testing"
)

// promqlKeywords are PromQL words that are never metric names.
var promqlKeywords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"bool": true, "and": true, "or": true, "unless": true, "offset": true, "atan2": true,
	"inf": true, "nan": true, "Inf": true, "NaN": true,
	// Aggregation operators: "sum by (x) (…)" puts "by", not "(", after them.
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true,
	"limitk": true, "limit_ratio": true,
}

// labelListKeywords are followed by a parenthesised list of label names.
var labelListKeywords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isIdent(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }

// metricNames returns the metric names a PromQL expression selects, in
// order of appearance. It is a tokenizer, not a parser: it skips strings,
// label matchers {…}, ranges and subqueries […], numbers, Grafana
// variables ($x, ${x}), function and aggregation names (a word before
// "("), keywords and their label lists (by (a, b)), and the duration after
// offset. What remains are the selectors' names.
func metricNames(expr string) ([]string, error) {
	var out []string
	i := 0
	skipSpace := func(j int) int {
		for j < len(expr) && (expr[j] == ' ' || expr[j] == '\t' || expr[j] == '\n' || expr[j] == '\r') {
			j++
		}
		return j
	}
	closing := func(open, close byte, j int) (int, error) { // j at open; returns index after close
		depth := 0
		for ; j < len(expr); j++ {
			switch c := expr[j]; {
			case c == '"' || c == '\'' || c == '`':
				end, err := skipString(expr, j)
				if err != nil {
					return 0, err
				}
				j = end - 1
			case c == open:
				depth++
			case c == close:
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, fmt.Errorf("unbalanced %c at offset %d in %q", open, j, expr)
	}
	depth := 0 // parentheses
	for i < len(expr) {
		c := expr[i]
		switch {
		case c == '(':
			depth++
			i++
		case c == ')':
			depth--
			if depth < 0 {
				return nil, fmt.Errorf("unbalanced ) at offset %d in %q", i, expr)
			}
			i++
		case c == '"' || c == '\'' || c == '`':
			end, err := skipString(expr, i)
			if err != nil {
				return nil, err
			}
			i = end
		case c == '{':
			end, err := closing('{', '}', i)
			if err != nil {
				return nil, err
			}
			i = end
		case c == '[':
			end, err := closing('[', ']', i)
			if err != nil {
				return nil, err
			}
			i = end
		case c == '$':
			i++
			if i < len(expr) && expr[i] == '{' {
				end, err := closing('{', '}', i)
				if err != nil {
					return nil, err
				}
				i = end
				continue
			}
			for i < len(expr) && isIdent(expr[i]) {
				i++
			}
		case c >= '0' && c <= '9' || c == '.':
			// A number (0.99, 1e3, 0x1f) or a duration (5m): letters that
			// follow belong to it.
			for i < len(expr) && (isIdent(expr[i]) || expr[i] == '.') {
				i++
			}
		case isIdentStart(c):
			start := i
			for i < len(expr) && isIdent(expr[i]) {
				i++
			}
			word := expr[start:i]
			next := skipSpace(i)
			switch {
			case labelListKeywords[word]:
				if next < len(expr) && expr[next] == '(' {
					end, err := closing('(', ')', next)
					if err != nil {
						return nil, err
					}
					i = end
				}
			case word == "offset":
				i = next
				for i < len(expr) && (isIdent(expr[i]) || expr[i] == '-') {
					i++
				}
			case promqlKeywords[word]:
			case next < len(expr) && expr[next] == '(':
				// A function or aggregation name.
			default:
				out = append(out, word)
			}
		default:
			i++
		}
	}
	if depth != 0 {
		return nil, fmt.Errorf("unbalanced ( in %q", expr)
	}
	return out, nil
}

// skipString returns the index after the string literal starting at i.
func skipString(s string, i int) (int, error) {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		if s[j] == '\\' && q != '`' {
			j++
			continue
		}
		if s[j] == q {
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("unterminated string at offset %d in %q", i, s)
}

func TestMetricNames(t *testing.T) {
	cases := []struct {
		expr string
		want []string
	}{
		{`up{job=~"pushgw-.*"} == 0`, []string{"up"}},
		{`max by (cluster) (pushgw_dispatcher_rooms) == 0`, []string{"pushgw_dispatcher_rooms"}},
		{`sum by (cluster) (rate(a_total{code=~"INTERNAL|UNAVAILABLE"}[5m])) / sum by (cluster) (rate(a_total[5m])) > 0.01`, []string{"a_total", "a_total"}},
		{`histogram_quantile(0.99, sum by (cluster, le) (rate(x_seconds_bucket[5m]))) > 0.25`, []string{"x_seconds_bucket"}},
		{`process_open_fds{job="pushgw-room"} / process_max_fds{job="pushgw-room"} > 0.8`, []string{"process_open_fds", "process_max_fds"}},
		{`pushgw_room_connections > 0.9 * 100000`, []string{"pushgw_room_connections"}},
		{`sum(rate(m{cluster=~"$cluster",result!="ok"}[$__rate_interval]))`, []string{"m"}},
		{`a offset 1h - b offset -5m unless on (x) group_left (y) c`, []string{"a", "b", "c"}},
		{`sum without (le) (rate(x[${__interval}])) and bool y`, []string{"x", "y"}},
		{`max_over_time(rate(z[5m])[1h:1m]) * 1e3 + w{l="}"}`, []string{"z", "w"}},
		{`label_replace(v, "dst", "$1", "src", "(.*)")`, []string{"v"}},
		{`ns:recorded:rate5m`, []string{"ns:recorded:rate5m"}},
	}
	for _, tc := range cases {
		got, err := metricNames(tc.expr)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("metricNames(%q) = %v, %v; want %v", tc.expr, got, err, tc.want)
		}
	}
	for _, bad := range []string{`sum(rate(x[5m])`, `x{a="b}`, `x{a="b"`} {
		if _, err := metricNames(bad); err == nil {
			t.Errorf("metricNames(%q): want an error", bad)
		}
	}
}
