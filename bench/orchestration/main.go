// Command orchestration measures what Silo's coordination costs, apart from
// training: the time per round with a trivial model as the number of
// runners grows, and the bytes on the wire per round against the raw size of
// the model (issue 6: "time per round with a trivial model and 1, 10, 100
// runners on loopback, and how it grows; bytes on the wire per round vs the
// raw model size").
//
//	go run ./bench/orchestration                       # 1, 10, 100 runners
//	go run ./bench/orchestration -runners 1,10,100,300
//
// For each runner count, a fresh in-process federation (real server on
// SQLite behind the production handler on loopback, real runner agents
// dialling it over HTTP) trains `glm` binomial on one feature and 100 rows
// per runner for -rounds rounds. A round is fit + evaluate on every runner;
// the time per round is the mean over rounds 2…n (round 1 also computes the
// federated statistics and loads the data). The baseline, measured in the
// same command, is one HTTP/1.1 POST round trip on the same loopback to a
// handler that does nothing: a round costs at least a few of them.
//
// A second experiment sends a realistic model (an ffnet with -wide hidden
// units, hundreds of kB of parameters) to -wide-runners runners, so the
// bytes per round can be compared with the raw model size: the ideal is
// about 3 copies per runner (the global model down for fit, the update up,
// the new global model down for evaluate). Results go to
// bench/results/orchestration.json.
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/bench/internal/fed"
	"github.com/silofl/silo/bench/internal/harness"
)

func main() {
	runnersFlag := flag.String("runners", "1,10,100", "runner counts")
	rounds := flag.Int("rounds", 20, "rounds per session")
	rows := flag.Int("rows", 100, "rows per runner")
	wide := flag.Int("wide", 256, "hidden units of each of the two layers of the large-model experiment (0 skips it)")
	wideRunners := flag.Int("wide-runners", 10, "runners in the large-model experiment")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run (server and runners) to this file")
	flag.Parse()
	if *cpuprofile != "" {
		pf, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench/orchestration:", err)
			os.Exit(1)
		}
		pprof.StartCPUProfile(pf)
		defer pprof.StopCPUProfile()
	}
	var counts []int
	for _, s := range strings.Split(*runnersFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "bench/orchestration: bad runner count %q\n", s)
			os.Exit(2)
		}
		counts = append(counts, n)
	}
	if err := run(counts, *rounds, *rows, *wide, *wideRunners); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "bench/orchestration:", err)
		os.Exit(1)
	}
}

type result struct {
	Experiment      string                   `json:"experiment"`
	Runners         int                      `json:"runners"`
	Rounds          int                      `json:"rounds"`
	Model           string                   `json:"model"`
	Params          int                      `json:"model_params"`
	RawModelBytes   int                      `json:"raw_model_bytes"`
	SetupSeconds    float64                  `json:"setup_seconds"` // runners online + datasets connected
	SessionSeconds  float64                  `json:"session_seconds"`
	FirstRound      float64                  `json:"first_round_seconds"`
	PerRound        float64                  `json:"seconds_per_round"`
	CPUPerRound     float64                  `json:"cpu_seconds_per_round"` // server and runners together
	PerRoundVsRTT   float64                  `json:"per_round_vs_loopback_rtt"`
	PerRoundVsOne   float64                  `json:"per_round_vs_smallest_count,omitempty"`
	WirePerRound    fed.WireCount            `json:"wire_per_round"`
	BytesPerRound   float64                  `json:"bytes_per_round"`
	PerRunnerRound  float64                  `json:"bytes_per_runner_round"`
	VsRawModel      float64                  `json:"bytes_per_runner_round_vs_raw_model"`
	RequestsPerRnd  float64                  `json:"requests_per_round"`
	RoutesPerRound  map[string]fed.WireCount `json:"wire_per_round_by_route"`
	RoundTimes      []float64                `json:"round_completed_at_seconds"`
	WireByRoundDiff []int64                  `json:"bytes_by_round"`
}

func run(counts []int, rounds, rows, wide, wideRunners int) error {
	res := harness.NewResults("orchestration")
	res.Params["runner_counts"] = counts
	res.Params["rounds"] = rounds
	res.Params["rows_per_runner"] = rows
	res.Params["wide_hidden_units"] = wide
	res.Params["wide_runners"] = wideRunners
	fmt.Printf("Silo orchestration overhead on %s\n", res.Machine)

	rtt := loopbackRTT(2000)
	fmt.Printf("baseline: loopback HTTP POST round trip (empty handler, keep-alive): %.1f µs median\n", rtt*1e6)
	res.Summary["loopback_rtt_seconds"] = rtt

	var out []result
	for _, n := range counts {
		r, err := experiment("trivial glm", n, rounds, rows, 1, nil)
		if err != nil {
			return fmt.Errorf("%d runners: %w", n, err)
		}
		r.PerRoundVsRTT = r.PerRound / rtt
		if len(out) > 0 {
			r.PerRoundVsOne = r.PerRound / out[0].PerRound
		} else {
			r.PerRoundVsOne = 1
		}
		out = append(out, *r)
	}
	if wide > 0 {
		r, err := experiment("large ffnet", wideRunners, max(3, rounds/2), rows, 30, []int{wide, wide})
		if err != nil {
			return fmt.Errorf("large model: %w", err)
		}
		r.PerRoundVsRTT = r.PerRound / rtt
		out = append(out, *r)
	}

	fmt.Println()
	t := harness.NewTable("model", "params", "runners", "setup s", "s/round", "CPU-s/round", "vs RTT", "vs 1st count", "requests/round", "bytes/round", "bytes/runner/round", "vs raw model")
	for _, r := range out {
		vsOne := "-"
		if r.PerRoundVsOne > 0 {
			vsOne = f2(r.PerRoundVsOne) + "×"
		}
		t.Row(r.Model, strconv.Itoa(r.Params), strconv.Itoa(r.Runners), f2(r.SetupSeconds), f4(r.PerRound), f4(r.CPUPerRound), f0(r.PerRoundVsRTT)+"×", vsOne,
			f0(r.RequestsPerRnd), harness.FormatSize(int64(r.BytesPerRound)), harness.FormatSize(int64(r.PerRunnerRound)), f1(r.VsRawModel)+"×")
	}
	t.Flush()
	for _, r := range out {
		key := fmt.Sprintf("%s_%d", strings.ReplaceAll(r.Experiment, " ", "_"), r.Runners)
		res.Summary[key+"_seconds_per_round"] = r.PerRound
		res.Summary[key+"_cpu_seconds_per_round"] = r.CPUPerRound
		res.Summary[key+"_bytes_per_runner_round"] = r.PerRunnerRound
		res.Summary[key+"_per_round_vs_rtt"] = r.PerRoundVsRTT
		res.Summary[key+"_bytes_per_runner_round_vs_raw_model"] = r.VsRawModel
		if r.PerRoundVsOne > 0 {
			res.Summary[key+"_per_round_vs_smallest_count"] = r.PerRoundVsOne
		}
	}
	res.Note("rounds are timed by when the store recorded them; bytes are HTTP bodies both ways plus request/response header estimates, for every request under /api/v1/runner/ (task polls, results, logs, heartbeats) that ended while rounds 2…n ran; CPU is the whole process's (server and runners)")
	res.Note("all runners, the server and its SQLite store share this machine's cores; with many runners the per-round time includes their scheduling")
	res.Rows = out
	path, err := res.Write()
	if err != nil {
		return err
	}
	fmt.Printf("\nresults: %s\n", path)
	return nil
}

// experiment runs one session on n fresh runners.
func experiment(name string, n, rounds, rows, features int, hidden []int) (*result, error) {
	ctx := context.Background()
	fmt.Printf("\n%s: %d runner(s), %d rounds, %d rows × %d feature(s) each\n", name, n, rounds, rows, features)
	setup := time.Now()
	f, err := fed.Start(ctx)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("org-%03d", i+1)
	}
	if err := f.AddRunners(names, 1, 1024); err != nil {
		return nil, err
	}
	var datasets []string
	for i, rn := range names {
		path := filepath.Join(f.Root(rn), "data.csv")
		if err := writeData(path, rows, features, uint64(i)); err != nil {
			return nil, err
		}
		ds := fmt.Sprintf("org_%03d", i+1)
		if _, err := f.API.RegisterDataset(ctx, silo.DatasetSpec{Name: ds, Runner: rn, URI: "file://" + path}); err != nil {
			return nil, err
		}
		datasets = append(datasets, ds)
	}
	for _, ds := range datasets {
		if _, err := f.WaitDataset(ds); err != nil {
			return nil, err
		}
	}
	setupSec := time.Since(setup).Seconds()
	fmt.Printf("  setup (runners online, datasets connected): %.2fs\n", setupSec)

	mdl := map[string]any{"package": "glm", "family": "binomial", "l2": 1e-4}
	params := features + 1
	label := "glm, 1 feature"
	if hidden != nil {
		mdl = map[string]any{"package": "ffnet", "hidden_layers": hidden, "activation": "relu"}
		params = 0
		widths := append(append([]int{features}, hidden...), 2) // an estimate; the downloaded model gives the exact count
		for i := 1; i < len(widths); i++ {
			params += widths[i-1]*widths[i] + widths[i]
		}
		label = fmt.Sprintf("ffnet %d-%s-2", features, strings.Trim(strings.ReplaceAll(fmt.Sprint(hidden), " ", "-"), "[]"))
	}
	cfg := map[string]any{
		"name": "bench-orchestration", "type": "hfl", "datasets": datasets, "min_clients": n, "rounds": rounds, "round_timeout": "10m",
		"task":      map[string]any{"type": "classification", "target": "y", "positive_class": "1"},
		"model":     mdl,
		"optimizer": map[string]any{"name": "sgd", "learning_rate": 0.05, "momentum": 0.9, "batch_size": 32, "local_epochs": 1},
		"strategy":  map[string]any{"name": "fedavg"}, "validation": map[string]any{"fraction": 0.2}, "seed": 23,
	}
	sr, err := f.RunSession(cfg, 20*time.Millisecond)
	if err != nil {
		return nil, err
	}
	// The model the server actually holds: its parameter count decides the
	// raw size (a binary GLM may keep one output or two).
	if doc, err := f.API.LoadModel(ctx, sr.Session.ID, false); err == nil {
		params = len(doc.Params)
	}
	r := &result{Experiment: name, Runners: n, Rounds: rounds, Model: label, Params: params, RawModelBytes: params * 8, SetupSeconds: setupSec,
		SessionSeconds: sr.Total.Seconds(), FirstRound: sr.RoundAt[0].Seconds()}
	for i, at := range sr.RoundAt {
		r.RoundTimes = append(r.RoundTimes, at.Seconds())
		prev := sr.Start
		if i > 0 {
			prev = sr.WireAt[i-1]
		}
		r.WireByRoundDiff = append(r.WireByRoundDiff, sr.WireAt[i].Sub(prev).Total())
	}
	later := rounds - 1
	if later < 1 {
		return nil, fmt.Errorf("need at least 2 rounds")
	}
	r.PerRound = (sr.RoundAt[rounds-1] - sr.RoundAt[0]).Seconds() / float64(later)
	r.CPUPerRound = (sr.CPUAt[rounds-1] - sr.CPUAt[0]).Seconds() / float64(later)
	w := sr.WireAt[rounds-1].Sub(sr.WireAt[0])
	r.WirePerRound = fed.WireCount{Requests: w.Requests / int64(later), Up: w.Up / int64(later), Down: w.Down / int64(later), Headers: w.Headers / int64(later)}
	r.BytesPerRound = float64(w.Total()) / float64(later)
	r.RoutesPerRound = map[string]fed.WireCount{}
	for k, v := range fed.SubRoutes(sr.RoutesAt[rounds-1], sr.RoutesAt[0]) {
		l := int64(later)
		r.RoutesPerRound[k] = fed.WireCount{Requests: v.Requests / l, Up: v.Up / l, Down: v.Down / l, Headers: v.Headers / l}
	}
	var keys []string
	for k := range r.RoutesPerRound {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := r.RoutesPerRound[k]
		fmt.Printf("    per round %-28s %4d requests, %s up, %s down, %s headers\n", k, v.Requests, harness.FormatSize(v.Up), harness.FormatSize(v.Down), harness.FormatSize(v.Headers))
	}
	r.RequestsPerRnd = float64(w.Requests) / float64(later)
	r.PerRunnerRound = r.BytesPerRound / float64(n)
	r.VsRawModel = r.PerRunnerRound / float64(r.RawModelBytes)
	fmt.Printf("  session %.2fs: round 1 %.3fs, then %.4fs per round (%.4f CPU-s); %.0f requests and %s per round (%s per runner; raw model %d B → %.1f×)\n",
		r.SessionSeconds, r.FirstRound, r.PerRound, r.CPUPerRound, r.RequestsPerRnd, harness.FormatSize(int64(r.BytesPerRound)), harness.FormatSize(int64(r.PerRunnerRound)), r.RawModelBytes, r.VsRawModel)
	return r, nil
}

func writeData(path string, rows, features int, seed uint64) error {
	rng := rand.New(rand.NewPCG(seed, 99))
	var b bytes.Buffer
	for j := range features {
		fmt.Fprintf(&b, "x%d,", j+1)
	}
	b.WriteString("y\n")
	for range rows {
		eta := 0.0
		for j := range features {
			v := rng.NormFloat64()
			eta += v / float64(j+1)
			b.WriteString(strconv.FormatFloat(v, 'f', 4, 64))
			b.WriteByte(',')
		}
		y := 0
		if rng.Float64() < 1/(1+math.Exp(-eta)) {
			y = 1
		}
		b.WriteString(strconv.Itoa(y))
		b.WriteByte('\n')
	}
	return os.WriteFile(path, b.Bytes(), 0o600)
}

// loopbackRTT is the median time of a small JSON POST to an empty handler
// over a kept-alive loopback connection.
func loopbackRTT(n int) float64 {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{}`))
	}))
	defer ts.Close()
	c := ts.Client()
	body := []byte(`{"status":"succeeded","output":{}}`)
	times := make([]float64, 0, n)
	for i := range n + 100 {
		t0 := time.Now()
		resp, err := c.Post(ts.URL+"/api/v1/runner/tasks/x/result", "application/json", bytes.NewReader(body))
		if err != nil {
			continue
		}
		io.Copy(io.Discard, bufio.NewReader(resp.Body))
		resp.Body.Close()
		if i >= 100 { // warm-up
			times = append(times, time.Since(t0).Seconds())
		}
	}
	slices.Sort(times)
	return times[len(times)/2]
}

func f0(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) }
func f1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }
func f2(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }
func f4(v float64) string { return strconv.FormatFloat(v, 'f', 4, 64) }
