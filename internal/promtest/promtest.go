// Package promtest serves the Prometheus query API for tests that check
// what a PromQL client asks and how often, not what PromQL computes (the
// promql package's tests run a real Prometheus for that).
package promtest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// QueryAPI answers every instant query with the scalar 10 and counts them.
type QueryAPI struct {
	// URL is the server's address, for promql.url.
	URL     string
	queries atomic.Int64
}

// NewQueryAPI starts a server that is closed when the test ends.
func NewQueryAPI(t testing.TB) *QueryAPI {
	t.Helper()
	q := &QueryAPI{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/query" {
			http.NotFound(w, r)
			return
		}
		q.queries.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"status":"success","data":{"resultType":"scalar","result":[%d,"10"]}}`, time.Now().Unix())
	}))
	t.Cleanup(srv.Close)
	q.URL = srv.URL
	return q
}

// Queries is how many queries the server has answered.
func (q *QueryAPI) Queries() int64 { return q.queries.Load() }
