package sdk

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
)

// TestKeepsNewerDispatcherAnswer: behind a load balancer two dispatcher
// instances may answer from etcd revisions of different age; the client
// keeps the newer list, compares only answers of one etcd cluster, and
// gives in after maxStaleAnswers refusals in a row.
func TestKeepsNewerDispatcherAnswer(t *testing.T) {
	answers := []string{
		`{"endpoints":["a:1","b:1"],"version":10,"etcd_cluster":"x"}`,
		`{"endpoints":["b:1"],"version":9,"etcd_cluster":"x"}`,  // lagging instance: refused
		`{"endpoints":["c:1"],"version":11,"etcd_cluster":"x"}`, // newer: taken
		`{"endpoints":["d:1"],"version":3,"etcd_cluster":"y"}`,  // other etcd: not comparable, taken
		`{"endpoints":["e:1"],"version":2,"etcd_cluster":"y"}`,  // refused 1
		`{"endpoints":["e:1"],"version":2,"etcd_cluster":"y"}`,  // refused 2
		`{"endpoints":["e:1"],"version":2,"etcd_cluster":"y"}`,  // refused 3
		`{"endpoints":["e:1"],"version":2,"etcd_cluster":"y"}`,  // etcd went back: taken
		`{"endpoints":["f:1"]}`,                                 // no version: taken
	}
	want := [][]string{{"a:1", "b:1"}, {"a:1", "b:1"}, {"c:1"}, {"d:1"}, {"d:1"}, {"d:1"}, {"d:1"}, {"e:1"}, {"f:1"}}
	var n atomic.Int32
	disp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(answers[n.Add(1)-1]))
	}))
	defer disp.Close()
	c, err := New(Config{DispatcherURL: disp.URL, App: "demo", User: "alice", Token: "tok", Handler: func(context.Context, *Message) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range want {
		if got := c.endpoints(context.Background(), nil); !slices.Equal(got, w) {
			t.Fatalf("answer %d: endpoints %v, want %v", i, got, w)
		}
	}
}
