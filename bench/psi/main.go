// Command psi measures private record linkage end to end: two runners (each
// its own `silo runner` process, as in production) link N × N identifiers
// with a given overlap through a server on this machine, and the same
// command measures the group operations alone — every hash-to-group and
// scalar multiplication the protocol needs, on a worker pool of every core
// — so the protocol's overhead is a ratio measured in one run.
//
//	go run ./bench/psi                    # 1,000,000 × 1,000,000, 50 % overlap
//	go run ./bench/psi -n 10000000        # 10,000,000 × 10,000,000 (writes psi-10m.json)
//
// It reports the session's wall time, the group operations' wall time (on
// up to -baseline-n records per set, scaled linearly to N: they cost the
// same per record), their ratio, each runner's peak RSS (VmHWM of its
// process, sampled), the bytes on the wire, and the progress the session
// showed while it ran.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/silofl/silo"
	"github.com/silofl/silo/bench/internal/fed"
	"github.com/silofl/silo/bench/internal/harness"
	"github.com/silofl/silo/internal/psi"
)

func main() {
	n := flag.Int("n", 1_000_000, "identifiers per dataset")
	overlap := flag.Float64("overlap", 0.5, "fraction of each dataset's identifiers the other also holds")
	baselineN := flag.Int("baseline-n", 1_000_000, "records per set the group-operation baseline measures (scaled to -n)")
	memory := flag.String("memory", "1GiB", "each runner's --memory")
	flag.Parse()
	name := "psi"
	if *n >= 10_000_000 {
		name = "psi-10m"
	}
	res := harness.NewResults(name)
	res.Params["n"], res.Params["overlap"], res.Params["runner_memory"], res.Params["cores"] = *n, *overlap, *memory, runtime.NumCPU()
	fmt.Printf("Private record linkage, %d × %d identifiers, %.0f%% overlap, on %s\n", *n, *n, 100**overlap, res.Machine)
	if err := run(res, *n, *overlap, *baselineN, *memory); err != nil {
		fmt.Fprintln(os.Stderr, "bench/psi:", err)
		os.Exit(1)
	}
	path, err := res.Write()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/psi:", err)
		os.Exit(1)
	}
	fmt.Println("results:", path)
}

func run(res *harness.Results, n int, overlap float64, baselineN int, memory string) error {
	ctx := context.Background()
	root, err := harness.ModuleRoot()
	if err != nil {
		return err
	}
	f, err := fed.Start(ctx)
	if err != nil {
		return err
	}
	defer f.Close()
	bin := filepath.Join(f.Dir, "silo")
	build := exec.Command("go", "build", "-o", bin, "./cmd/silo")
	build.Dir, build.Stderr = root, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build silo: %w", err)
	}

	// Two datasets: ids [0, n) and [n(1-overlap), …+n).
	shift := int(float64(n) * (1 - overlap))
	datasets := map[string]int{"bank": 0, "telco": shift}
	roots := map[string]string{}
	t0 := time.Now()
	for ds, first := range datasets {
		roots[ds] = filepath.Join(f.Dir, "runners", ds)
		if err := os.MkdirAll(roots[ds], 0o700); err != nil {
			return err
		}
		if err := writeIDs(filepath.Join(roots[ds], "customers.csv"), first, n); err != nil {
			return err
		}
	}
	fmt.Printf("generated the datasets in %s\n", time.Since(t0).Round(time.Millisecond))

	// The group operations alone: each record hashed and blinded once and
	// re-blinded once, as many as both runners do, on every core.
	m := min(n, baselineN)
	opsWall, opsCPU := groupOps(2*m, runtime.NumCPU())
	scale := float64(n) / float64(m)
	baseline := time.Duration(float64(opsWall) * scale)
	fmt.Printf("group operations alone: %d hashes+blinds and %d re-blinds in %s (%s CPU); for %d: %s\n", 2*m, 2*m, opsWall.Round(time.Millisecond), opsCPU.Round(time.Millisecond), n, baseline.Round(time.Millisecond))

	// The runners: their own processes, measured.
	type proc struct {
		cmd  *exec.Cmd
		peak atomic.Int64
	}
	procs := map[string]*proc{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() {
		close(stop)
		for _, p := range procs {
			p.cmd.Process.Signal(os.Interrupt)
		}
		for _, p := range procs {
			p.cmd.Wait()
		}
		wg.Wait()
	}()
	for ds := range datasets {
		r, err := f.API.RegisterRunner(ctx, silo.RunnerSpec{Name: ds + "-runner", Provider: silo.ProviderLocal, StoragePath: "file://" + roots[ds], VCPU: runtime.NumCPU(), MemoryGB: 1})
		if err != nil {
			return err
		}
		cmd := exec.Command(bin, "runner", "--server", f.URL, "--storage-root", roots[ds], "--vcpu", strconv.Itoa(runtime.NumCPU()), "--memory", memory)
		cmd.Env = append(os.Environ(), "SILO_RUNNER_TOKEN="+r.Token, "SILO_LOG_LEVEL=warn")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Start(); err != nil {
			return err
		}
		p := &proc{cmd: cmd}
		procs[ds] = p
		wg.Go(func() {
			status := fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)
			for {
				if v := vmHWM(status); v > p.peak.Load() {
					p.peak.Store(v)
				}
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		})
	}
	privacy := silo.DefaultPrivacyControls()
	privacy.IdentifierColumns = []string{"email"}
	for ds := range datasets {
		if err := waitOnline(ctx, f, ds+"-runner"); err != nil {
			return err
		}
		if _, err := f.API.RegisterDataset(ctx, silo.DatasetSpec{Name: ds, Runner: ds + "-runner", URI: "file://" + filepath.Join(roots[ds], "customers.csv"), Privacy: &privacy}); err != nil {
			return err
		}
	}
	for ds := range datasets {
		if _, err := f.WaitDataset(ds); err != nil {
			return err
		}
	}
	connectPeak := map[string]int64{}
	for ds, p := range procs {
		connectPeak[ds] = p.peak.Load()
	}

	// The linkage.
	cfg := map[string]any{"name": "bench-psi", "type": "prl", "datasets": []string{"bank", "telco"},
		"id_columns": map[string][]string{"bank": {"email"}, "telco": {"email"}}, "normalize": []string{"trim", "lowercase"}}
	b, _ := json.Marshal(cfg)
	wire0 := f.Wire.Count()
	cpu0 := map[string]time.Duration{"server": cpuTime()}
	for ds, p := range procs {
		cpu0[ds] = procCPU(p.cmd.Process.Pid)
	}
	start := time.Now()
	s, err := f.API.CreateSession(ctx, b)
	if err != nil {
		return err
	}
	var steps []map[string]any
	lastStep := ""
	lastPrint := time.Time{}
	for !s.Status.Done() {
		time.Sleep(500 * time.Millisecond)
		if s, err = f.API.GetSession(ctx, s.ID); err != nil {
			return err
		}
		if p := s.Progress; p != nil && time.Since(lastPrint) > 10*time.Second {
			fmt.Printf("%7.1fs  %-12s %d/%d %s\n", time.Since(start).Seconds(), p.Step, p.Done, p.Total, p.Unit)
			lastPrint = time.Now()
		}
		if s.Phase != lastStep {
			steps = append(steps, map[string]any{"step": s.Phase, "reason": s.StatusReason, "at_seconds": time.Since(start).Seconds()})
			lastStep = s.Phase
		}
	}
	wall := time.Since(start)
	cpu := cpuTime() - cpu0["server"]
	for ds, p := range procs {
		cpu += procCPU(p.cmd.Process.Pid) - cpu0[ds]
	}
	if s.Status != silo.SessionCompleted {
		return fmt.Errorf("session %s: %s", s.Status, s.StatusReason)
	}
	wire := f.Wire.Count().Sub(wire0)
	m2, err := f.API.LinkageMetrics(ctx, s.ID)
	if err != nil {
		return err
	}
	want := int64(n - shift)
	for _, c := range m2.Clients {
		if c.NOverlappedRecords != want {
			return fmt.Errorf("%s: %d records linked, want %d", c.Dataset, c.NOverlappedRecords, want)
		}
	}
	ratio := wall.Seconds() / baseline.Seconds()
	opsCPUScaled := time.Duration(float64(opsCPU) * scale)
	cpuRatio := cpu.Seconds() / opsCPUScaled.Seconds()
	t := harness.NewTable("n", "linked", "session s", "group ops s", "ratio", "CPU s", "ops CPU s", "CPU ratio", "bank peak RSS", "telco peak RSS", "wire")
	t.Row(strconv.Itoa(n), strconv.FormatInt(want, 10), fmt.Sprintf("%.1f", wall.Seconds()), fmt.Sprintf("%.1f", baseline.Seconds()), fmt.Sprintf("%.2f×", ratio),
		fmt.Sprintf("%.1f", cpu.Seconds()), fmt.Sprintf("%.1f", opsCPUScaled.Seconds()), fmt.Sprintf("%.2f×", cpuRatio),
		harness.FormatSize(procs["bank"].peak.Load()), harness.FormatSize(procs["telco"].peak.Load()), harness.FormatSize(wire.Total()))
	t.Flush()
	res.Rows = []map[string]any{{"n": n, "linked": want, "session_seconds": wall.Seconds(), "group_ops_seconds": baseline.Seconds(),
		"group_ops_measured_records": 2 * m, "group_ops_cpu_seconds": opsCPUScaled.Seconds(), "session_cpu_seconds": cpu.Seconds(),
		"bank_peak_rss": procs["bank"].peak.Load(), "telco_peak_rss": procs["telco"].peak.Load(),
		"bank_peak_rss_after_connect": connectPeak["bank"], "telco_peak_rss_after_connect": connectPeak["telco"],
		"wire_bytes": wire.Total(), "steps": steps}}
	res.Summary["session_seconds"] = wall.Seconds()
	res.Summary["group_ops_seconds"] = baseline.Seconds()
	res.Summary["ratio_to_group_ops"] = ratio
	res.Summary["cpu_ratio_to_group_ops"] = cpuRatio
	res.Summary["peak_rss_bytes_max"] = max(procs["bank"].peak.Load(), procs["telco"].peak.Load())
	if m < n {
		res.Note("the group operations were timed on %d records per set and scaled ×%.0f", m, scale)
	}
	return nil
}

// writeIDs writes a CSV of n customers with ids from first, in a shuffled
// order, their emails in mixed case.
func writeIDs(path string, first, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	fmt.Fprintln(w, "email,segment")
	for i := range n {
		// A fixed bijection of [0, n) so the file is not sorted by id.
		j := (uint64(i)*2654435761 + 12345) % uint64(n)
		if gcd(2654435761, uint64(n)) != 1 {
			j = uint64(i)
		}
		id := first + int(j)
		email := fmt.Sprintf("Customer%09d@Example.com", id)
		if id%2 == 0 {
			email = strings.ToLower(email)
		}
		fmt.Fprintf(w, "%s,%d\n", email, id%7)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Close()
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// groupOps times k hash-and-blind operations and k re-blinds on workers
// goroutines: the protocol's cryptography without anything around it.
func groupOps(k, workers int) (wall, cpu time.Duration) {
	h := psi.NewHasher("bench:0")
	k1, _ := psi.NewScalar()
	k2, _ := psi.NewScalar()
	c0 := cpuTime()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			buf := make([]byte, 0, 64)
			for i := w; i < k; i += workers {
				buf = fmt.Appendf(buf[:0], "customer%09d@example.com", i)
				e := h.Blind(k1, buf)
				if _, err := psi.Reblind(k2, &e); err != nil {
					panic(err)
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start), cpuTime() - c0
}

// cpuTime is this process's CPU time (the bench and the in-process
// server); procCPU another's (a runner).
func cpuTime() time.Duration { return statCPU("/proc/self/stat") }

func procCPU(pid int) time.Duration { return statCPU(fmt.Sprintf("/proc/%d/stat", pid)) }

func statCPU(path string) time.Duration {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b)[strings.LastIndexByte(string(b), ')')+2:])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

func vmHWM(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			v, _ := strconv.ParseInt(strings.Fields(rest)[0], 10, 64)
			return v * 1024
		}
	}
	return 0
}

func waitOnline(ctx context.Context, f *fed.Federation, name string) error {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		r, err := f.API.GetRunner(ctx, name)
		if err == nil && r.Status == silo.RunnerOnline {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("runner %s did not come online", name)
}
