package server

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/silofl/silo"
)

// metrics counts requests per route and status class and sums their
// durations, exposed in the Prometheus text format. A handful of counters
// does not justify a client library.
type metrics struct {
	mu       sync.Mutex
	start    time.Time
	requests map[[2]string]uint64 // {route, code} → count
	seconds  map[string]float64   // route → total seconds
	counts   map[string]uint64    // route → count
}

func newMetrics() *metrics {
	return &metrics{start: time.Now(), requests: map[[2]string]uint64{}, seconds: map[string]float64{}, counts: map[string]uint64{}}
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Flush lets long-polls and streams flush through the recorder.
func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (m *metrics) wrap(name string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		t0 := time.Now()
		next.ServeHTTP(rec, r)
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		d := time.Since(t0).Seconds()
		m.mu.Lock()
		m.requests[[2]string{name, fmt.Sprint(rec.status)}]++
		m.seconds[name] += d
		m.counts[name]++
		m.mu.Unlock()
	})
}

func (m *metrics) handle(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "# HELP silo_build_info Build information.\n# TYPE silo_build_info gauge\nsilo_build_info{version=%q} 1\n", silo.Version)
	fmt.Fprintf(&b, "# HELP silo_uptime_seconds Seconds since the server started.\n# TYPE silo_uptime_seconds gauge\nsilo_uptime_seconds %.3f\n", time.Since(m.start).Seconds())
	b.WriteString("# HELP silo_http_requests_total HTTP requests by route and status code.\n# TYPE silo_http_requests_total counter\n")
	keys := make([][2]string, 0, len(m.requests))
	for k := range m.requests {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i][0]+keys[i][1] < keys[j][0]+keys[j][1] })
	for _, k := range keys {
		fmt.Fprintf(&b, "silo_http_requests_total{route=%q,code=%q} %d\n", k[0], k[1], m.requests[k])
	}
	b.WriteString("# HELP silo_http_request_duration_seconds Time spent serving HTTP requests by route.\n# TYPE silo_http_request_duration_seconds summary\n")
	routes := make([]string, 0, len(m.counts))
	for k := range m.counts {
		routes = append(routes, k)
	}
	sort.Strings(routes)
	for _, rt := range routes {
		fmt.Fprintf(&b, "silo_http_request_duration_seconds_sum{route=%q} %g\n", rt, m.seconds[rt])
		fmt.Fprintf(&b, "silo_http_request_duration_seconds_count{route=%q} %d\n", rt, m.counts[rt])
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = w.Write([]byte(b.String()))
}
