package sdk

import (
	"strings"
	"testing"
)

// FuzzParseEndpoints feeds arbitrary dispatcher answers: the result is an
// error or a bounded list of non-empty endpoints, never a panic.
func FuzzParseEndpoints(f *testing.F) {
	for _, s := range []string{
		`{"endpoints":["127.0.0.1:7300","127.0.0.1:7310"]}`,
		`{"endpoints":["tcp://127.0.0.1:7300"," "]}`,
		`{"endpoints":[]}`, `{"endpoints":null}`, `{}`, `[]`, ``, `{"endpoints":[1]}`,
		`{"endpoints":["127.0.0.1:7300"],"version":42,"etcd_cluster":"cdf818194e3a8c32"}`,
		`{"endpoints":["127.0.0.1:7300"],"version":-1}`, `{"endpoints":["127.0.0.1:7300"],"version":1e30}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ans, err := parseEndpoints(body)
		eps := ans.endpoints
		if err != nil {
			if eps != nil || ans.version != 0 {
				t.Fatalf("answer %+v with error %v", ans, err)
			}
			return
		}
		if ans.version < 0 {
			t.Fatalf("negative version %d", ans.version)
		}
		if len(eps) == 0 || len(eps) > maxEndpoints {
			t.Fatalf("%d endpoints", len(eps))
		}
		for _, e := range eps {
			if e == "" || strings.HasPrefix(e, "tcp://") {
				t.Fatalf("endpoint %q", e)
			}
		}
	})
}
