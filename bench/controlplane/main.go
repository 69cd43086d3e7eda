// Command controlplane measures the server's API while many runners keep it
// busy (issue 6: "1,000 simulated runners long-polling and heartbeating
// while API requests are served — p50/p99 latency and errors; on SQLite and
// on PostgreSQL").
//
//	go run ./bench/controlplane                       # SQLite, 1000 runners
//	go run ./bench/controlplane -postgres postgres://user@127.0.0.1:5433/silo_bench?sslmode=disable
//
// A real server (production handler on loopback) gets -runners registered
// runners. Simulated runners — goroutines speaking the runner protocol, as
// `silo runner` does, without training — each keep one task long-poll open
// and heartbeat every interval the server asks for (10 s by default), their
// first heartbeats spread over one interval as runners started at different
// times would be. They run in a child process of their own: ten thousand
// long-polls hold ten thousand connections at each end, more files than
// one process may open here. Meanwhile -clients API users loop over typical
// reads (runners, datasets, sessions, workspace, audit) and one write (a
// token created and revoked). The baseline, measured in the same command
// just before, is the same API load on the same server with no runner
// connected. Latencies are reported as p50/p99 and as ratios to the
// baseline. Results go to bench/results/controlplane.json.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/bench/internal/fed"
	"github.com/silofl/silo/bench/internal/harness"
	"github.com/silofl/silo/client"
)

func main() {
	runners := flag.Int("runners", 10000, "simulated runners")
	clients := flag.Int("clients", 1, "concurrent API users of each kind of request")
	dur := flag.Duration("duration", 30*time.Second, "how long the API load runs under runner load (and half as long for the baseline)")
	postgres := flag.String("postgres", "", "also run on this PostgreSQL database (an empty database: postgres://…); SQLite always runs")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the server (not the simulated runners) while it is loaded to this file")
	child := flag.String("child", "", "internal: simulate the runners whose tokens this file lists, against -url")
	serverURL := flag.String("url", "", "internal: the server of -child")
	flag.Parse()
	if *child != "" {
		if err := runChild(*serverURL, *child); err != nil {
			fmt.Fprintln(os.Stderr, "controlplane child:", err)
			os.Exit(1)
		}
		return
	}
	res := harness.NewResults("controlplane")
	res.Params["runners"] = *runners
	res.Params["clients"] = *clients
	res.Params["duration_seconds"] = dur.Seconds()
	fmt.Printf("Silo control plane under load on %s\n", res.Machine)
	var rows []map[string]any
	stores := []struct{ name, dsn string }{{"sqlite", ""}}
	if *postgres != "" {
		stores = append(stores, struct{ name, dsn string }{"postgres", *postgres})
	} else {
		res.Note("PostgreSQL not measured: pass -postgres postgres://… (an empty database) to run the same load on it")
	}
	for _, st := range stores {
		r, err := run(st.name, st.dsn, *runners, *clients, *dur, *cpuprofile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench/controlplane (%s): %v\n", st.name, err)
			os.Exit(1)
		}
		rows = append(rows, r...)
	}
	fmt.Println()
	t := harness.NewTable("store", "phase", "traffic", "requests", "errors", "p50 ms", "p99 ms", "p50 vs idle", "p99 vs idle")
	for _, r := range rows {
		t.Row(r["store"].(string), r["phase"].(string), r["traffic"].(string), strconv.Itoa(r["requests"].(int)), strconv.Itoa(r["errors"].(int)),
			f2(r["p50_ms"].(float64)), f2(r["p99_ms"].(float64)), ratio(r["p50_vs_idle"]), ratio(r["p99_vs_idle"]))
		for _, k := range []string{"server_cores_idle", "server_cores_loaded", "simulated_runner_cores"} {
			if v, ok := r[k]; ok {
				res.Summary[r["store"].(string)+"_"+k] = v
			}
		}
		if r["phase"] == "loaded" && r["requests"].(int) > 0 {
			key := r["store"].(string) + "_" + r["traffic"].(string)
			for _, k := range []string{"p50_ms", "p99_ms", "p50_vs_idle", "p99_vs_idle", "errors"} {
				if v, ok := r[k]; ok {
					res.Summary[key+"_"+k] = v
				}
			}
		}
	}
	t.Flush()
	res.Note("each simulated runner holds one long-poll (wait 20s) and heartbeats at the interval the server returns (the first ones spread over one interval); they run in a child process; it, the API users and the server share this machine's cores")
	res.Note("API users: %d of each kind of request, each looping over its own; idle and loaded phases last %s each", *clients, *dur)
	res.Rows = rows
	path, err := res.Write()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("\nresults: %s\n", path)
}

// lat collects latencies and errors of one kind of traffic.
type lat struct {
	mu     sync.Mutex
	D      []float64 `json:"seconds"`
	Errors int       `json:"errors"`
	First  string    `json:"first_error,omitempty"`
}

func (l *lat) add(start time.Time, err error) {
	el := time.Since(start).Seconds()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.Errors++
		if l.First == "" {
			l.First = err.Error()
		}
		return
	}
	l.D = append(l.D, el)
}

func (l *lat) quantiles() (n int, p50, p99 float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	d := slices.Clone(l.D)
	slices.Sort(d)
	if len(d) == 0 {
		return 0, 0, 0
	}
	q := func(p float64) float64 { return d[min(len(d)-1, int(p*float64(len(d))))] * 1000 }
	return len(d), q(0.5), q(0.99)
}

func run(store, dsn string, nRunners, nClients int, dur time.Duration, cpuprofile string) ([]map[string]any, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fmt.Printf("\n%s: starting the server and registering %d runners...\n", store, nRunners)
	f, err := fed.StartWith(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tr := &http.Transport{MaxIdleConns: 4 * nRunners, MaxIdleConnsPerHost: 4 * nRunners, IdleConnTimeout: time.Minute}
	hc := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()

	start := time.Now()
	tokens := make([]string, nRunners)
	var regErr atomic.Value
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range nRunners {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			r, err := f.API.RegisterRunner(ctx, silo.RunnerSpec{Name: fmt.Sprintf("sim-%04d", i), Provider: silo.ProviderLocal,
				StoragePath: "file:///srv/silo/sim-" + strconv.Itoa(i), VCPU: 1, MemoryGB: 1})
			if err != nil {
				regErr.Store(err)
				return
			}
			tokens[i] = r.Token
		})
	}
	wg.Wait()
	if err, ok := regErr.Load().(error); ok {
		return nil, fmt.Errorf("register runners: %w", err)
	}
	fmt.Printf("  registered in %.1fs\n", time.Since(start).Seconds())

	var out []map[string]any
	// Baseline: the API alone.
	serverCPU := fed.CPUTime()
	idle := apiLoad(ctx, f, hc, nClients, dur)
	idleCPU := (fed.CPUTime() - serverCPU).Seconds() / dur.Seconds()
	idleRows := report(store, "idle", idle, nil)
	out = append(out, idleRows...)

	// Now the runners connect, in a child process: a heartbeat each
	// (spread over one interval), then long-polls and heartbeats until the
	// end.
	tokFile := filepath.Join(f.Dir, "tokens")
	if err := os.WriteFile(tokFile, []byte(strings.Join(tokens, "\n")), 0o600); err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "-child", tokFile, "-url", f.URL)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer cmd.Wait()
	defer stdin.Close()
	lines := bufio.NewScanner(stdout)
	lines.Buffer(nil, 1<<20)
	// The child says when every runner's heartbeat was answered "online".
	start = time.Now()
	if !lines.Scan() || lines.Text() != "online" {
		return nil, fmt.Errorf("the simulated runners did not all come online: %s", lines.Text())
	}
	fmt.Printf("  %d runners online in %.1fs; measuring the API for %s\n", nRunners, time.Since(start).Seconds(), dur)
	fmt.Fprintln(stdin, "reset")
	if cpuprofile != "" {
		pf, err := os.Create(store + "-" + cpuprofile)
		if err != nil {
			return nil, err
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return nil, err
		}
	}
	serverCPU, simCPU := fed.CPUTime(), harness.ProcCPU(cmd.Process.Pid)
	loaded := apiLoad(ctx, f, hc, nClients, dur)
	pprof.StopCPUProfile()
	loadedCPU := (fed.CPUTime() - serverCPU).Seconds() / dur.Seconds()
	simCores := (harness.ProcCPU(cmd.Process.Pid) - simCPU).Seconds() / dur.Seconds()
	fmt.Printf("  server CPU: %.2f cores idle, %.2f loaded; the simulated runners %.2f cores\n", idleCPU, loadedCPU, simCores)
	fmt.Fprintln(stdin, "report")
	if !lines.Scan() {
		return nil, fmt.Errorf("the simulated runners did not report: %v", lines.Err())
	}
	var sim map[string]*lat
	if err := json.Unmarshal(lines.Bytes(), &sim); err != nil {
		return nil, fmt.Errorf("the simulated runners' report: %w", err)
	}
	loadedRows := report(store, "loaded", loaded, idle)
	out = append(out, loadedRows...)
	out = append(out, report(store, "loaded", map[string]*lat{"runner heartbeat": sim["heartbeat"]}, nil)...)
	out = append(out, report(store, "loaded", map[string]*lat{"runner long-poll (20 s wait)": sim["poll"]}, nil)...)
	out = append(out, map[string]any{"store": store, "phase": "loaded", "traffic": "CPU cores (server idle, loaded; simulated runners)", "requests": 0, "errors": 0,
		"p50_ms": 0.0, "p99_ms": 0.0, "server_cores_idle": idleCPU, "server_cores_loaded": loadedCPU, "simulated_runner_cores": simCores})
	return out, nil
}

func (l *lat) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.D, l.Errors, l.First = nil, 0, ""
}

// runChild simulates the runners whose tokens are listed in file: it says
// "online" once each has been answered online, resets its counts on
// "reset", and prints them as JSON and stops on "report".
func runChild(serverURL, file string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	tokens := strings.Split(string(b), "\n")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr := &http.Transport{MaxIdleConns: 2 * len(tokens), MaxIdleConnsPerHost: 2 * len(tokens), IdleConnTimeout: time.Minute}
	hc := &http.Client{Transport: tr}
	hb, poll := &lat{}, &lat{}
	var online sync.WaitGroup
	online.Add(len(tokens))
	var wg sync.WaitGroup
	for i, tok := range tokens {
		c := client.New(serverURL, tok)
		c.HTTPClient = hc
		wg.Go(func() { simulate(ctx, c, hc, serverURL, tok, i, len(tokens), hb, poll, online.Done) })
	}
	online.Wait()
	fmt.Println("online")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch in.Text() {
		case "reset":
			hb.reset()
			poll.reset()
		case "report":
			cancel()
			wg.Wait()
			return json.NewEncoder(os.Stdout).Encode(map[string]*lat{"heartbeat": hb, "poll": poll})
		}
	}
	return in.Err()
}

// simulate is one runner: heartbeats at the interval the server asks for,
// and one long-poll open at a time. It calls online once a heartbeat was
// answered with the runner online.
func simulate(ctx context.Context, c *client.Client, hc *http.Client, serverURL, token string, i, n int, hb, poll *lat, online func()) {
	interval := silo.DefaultHeartbeatInterval
	// Spread the first heartbeats over one interval, as runners started at
	// different times would be.
	select {
	case <-ctx.Done():
		return
	case <-time.After(time.Duration(i) * interval / time.Duration(n)):
	}
	var once sync.Once
	beat := func() {
		t0 := time.Now()
		r, err := c.Heartbeat(ctx, silo.Heartbeat{ProtocolVersion: silo.ProtocolVersion, AgentVersion: silo.Version, Hostname: "sim", VCPU: 1, MemoryMB: 1024})
		if ctx.Err() != nil {
			return
		}
		hb.add(t0, err)
		if err == nil {
			if r.Status == silo.RunnerOnline {
				once.Do(online)
			}
			if d, err := time.ParseDuration(r.HeartbeatInterval); err == nil && d > 0 {
				interval = d
			}
		}
	}
	beat()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(interval):
				beat()
			}
		}
	}()
	for ctx.Err() == nil {
		t0 := time.Now()
		err := pollOnce(ctx, hc, serverURL, token)
		if ctx.Err() != nil {
			return
		}
		poll.add(t0, err)
		if err != nil {
			time.Sleep(500 * time.Millisecond)
		}
	}
}

// pollOnce is one long-poll for a task, as the runner agent sends it; no
// task is ever queued, so anything but "no task" (204) is an error.
func pollOnce(ctx context.Context, hc *http.Client, serverURL, token string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, serverURL+"/api/v1/runner/tasks?wait=20s", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("User-Agent", "silo-runner/"+silo.Version)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("long-poll: %s: %s", resp.Status, body)
	}
	return nil
}

// apiLoad runs n users of each kind of request for d, each looping over
// its own request: a slow listing then holds up only its own samples.
func apiLoad(ctx context.Context, f *fed.Federation, hc *http.Client, n int, d time.Duration) map[string]*lat {
	kinds := []string{"GET /runners?limit=100", "GET /datasets", "GET /sessions", "GET /workspace", "GET /audit", "POST+DELETE /tokens"}
	out := map[string]*lat{}
	for _, k := range kinds {
		out[k] = &lat{}
	}
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	for u := range n {
		for _, kind := range kinds {
			// Every user is the admin: the limits under test are the
			// server's, not per-user ones.
			api := client.New(f.URL, f.Token)
			api.HTTPClient = hc
			wg.Go(func() {
				for k := u; time.Now().Before(end); k += n {
					t0 := time.Now()
					var err error
					switch kind {
					case "GET /runners?limit=100": // a page, as the web UI shows them
						_, err = api.ListRunnersPage(ctx, client.RunnerPage{Limit: 100})
					case "GET /datasets":
						_, err = api.ListDatasets(ctx)
					case "GET /sessions":
						_, err = api.ListSessions(ctx)
					case "GET /workspace":
						_, err = api.Workspace(ctx)
					case "GET /audit":
						_, err = api.ListAudit(ctx, client.AuditQuery{})
					case "POST+DELETE /tokens":
						var tok *silo.Token
						tok, err = api.CreateToken(ctx, silo.TokenRequest{Name: "bench-" + strconv.Itoa(k)})
						if err == nil {
							err = api.RevokeToken(ctx, tok.ID)
						}
					}
					out[kind].add(t0, err)
				}
			})
		}
	}
	wg.Wait()
	return out
}

func report(store, phase string, m map[string]*lat, idle map[string]*lat) []map[string]any {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var rows []map[string]any
	for _, k := range keys {
		n, p50, p99 := m[k].quantiles()
		r := map[string]any{"store": store, "phase": phase, "traffic": k, "requests": n, "errors": m[k].Errors, "p50_ms": p50, "p99_ms": p99}
		if m[k].First != "" {
			r["first_error"] = m[k].First
		}
		if idle != nil && idle[k] != nil {
			_, i50, i99 := idle[k].quantiles()
			if i50 > 0 {
				r["p50_vs_idle"] = p50 / i50
				r["p99_vs_idle"] = p99 / i99
			}
		}
		fmt.Printf("  %-7s %-32s %6d requests, %3d errors, p50 %7.2f ms, p99 %8.2f ms\n", phase, k, n, m[k].Errors, p50, p99)
		rows = append(rows, r)
	}
	return rows
}

func f2(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }
func ratio(v any) string {
	f, ok := v.(float64)
	if !ok || f == 0 {
		return "-"
	}
	return strconv.FormatFloat(f, 'f', 2, 64) + "×"
}
