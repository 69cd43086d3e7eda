// Command abtest compares a package's Go benchmarks on the working tree
// with the same benchmarks on an older commit, in one command, so that the
// ratio is measured under the same load:
//
//	go run ./bench/abtest -pkg ./internal/runner -bench 'Task$' -benchtime 5x -copy bench_test.go,cputime_unix_test.go,cputime_other_test.go
//	go run ./bench/abtest -base HEAD~1 -pkg ./internal/ml -bench 'GLMEpoch$' -benchtime 2s -copy bench_test.go,cputime_unix_test.go,cputime_other_test.go
//
// It checks the base out with git worktree under a temporary directory,
// copies the named test files of the package from the working tree into
// it (so both sides run the same benchmark code, including benchmarks the
// base did not have), builds one test binary per side, and runs them
// alternately -runs times each. It prints the median ns/op of each side
// and new/old, and the same for CPU time where a benchmark reports
// cpu-ms/op or MB/cpu-s: on a shared machine CPU time moves less with the
// neighbours' load than wall time. The worktree is removed at the end.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/silofl/silo/bench/internal/harness"
)

func main() {
	base := flag.String("base", "HEAD", "the commit to compare the working tree with")
	pkg := flag.String("pkg", "", "the package, e.g. ./internal/runner")
	bench := flag.String("bench", ".", "benchmark regexp (-test.bench)")
	benchtime := flag.String("benchtime", "1s", "-test.benchtime")
	runs := flag.Int("runs", 5, "runs of each side, alternating")
	copyFiles := flag.String("copy", "", "comma-separated test files of the package to copy into the base (the benchmarks and their helpers)")
	cmdPkg := flag.String("cmd", "", "a benchmark command to compare instead of Go benchmarks, e.g. ./bench/orchestration")
	cmdArgs := flag.String("args", "", "arguments of the -cmd command, space-separated")
	flag.Parse()
	if *cmdPkg != "" {
		if err := runCmd(*base, *cmdPkg, strings.Fields(*cmdArgs), *runs); err != nil {
			fmt.Fprintln(os.Stderr, "bench/abtest:", err)
			os.Exit(1)
		}
		return
	}
	if *pkg == "" {
		fmt.Fprintln(os.Stderr, "bench/abtest: -pkg or -cmd is required")
		os.Exit(2)
	}
	if err := run(*base, *pkg, *bench, *benchtime, *runs, *copyFiles); err != nil {
		fmt.Fprintln(os.Stderr, "bench/abtest:", err)
		os.Exit(1)
	}
}

func run(base, pkg, bench, benchtime string, runs int, copyFiles string) error {
	root, tree, remove, err := baseTree(base)
	if err != nil {
		return err
	}
	defer remove()
	tmp := filepath.Dir(tree) // the binaries and outputs go next to it
	for _, f := range strings.Split(copyFiles, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(root, pkg, f))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(tree, pkg, f), b, 0o644); err != nil {
			return err
		}
	}
	bins := map[string]string{"old": filepath.Join(tmp, "old.test"), "new": filepath.Join(tmp, "new.test")}
	for side, dir := range map[string]string{"old": tree, "new": root} {
		cmd := exec.Command("go", "test", "-c", "-o", bins[side], pkg)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("building the %s side: %v: %s", side, err, out)
		}
	}
	fmt.Printf("%s: %s against the working tree, %d alternating runs each; %s; load average %s\n", pkg, base, runs, harness.ThisMachine(), loadAvg())
	wall := map[string][]float64{} // benchmark + side → ns/op
	cpu := map[string][]float64{}  // benchmark + side → CPU per op (any unit, the same on both sides)
	var names []string
	for i := 0; i < runs; i++ {
		for _, side := range []string{"old", "new"} {
			cmd := exec.Command(bins[side], "-test.run", "^$", "-test.bench", bench, "-test.benchtime", benchtime)
			cmd.Dir = filepath.Join(root, pkg)
			out, err := cmd.CombinedOutput()
			if err != nil {
				return fmt.Errorf("the %s side: %v: %s", side, err, out)
			}
			sc := bufio.NewScanner(bytes.NewReader(out))
			for sc.Scan() {
				name, ns, c, ok := parse(sc.Text())
				if !ok {
					continue
				}
				if !slices.Contains(names, name) {
					names = append(names, name)
				}
				wall[name+" "+side] = append(wall[name+" "+side], ns)
				if c > 0 {
					cpu[name+" "+side] = append(cpu[name+" "+side], c)
				}
			}
		}
	}
	t := harness.NewTable("benchmark", "old ms/op", "new ms/op", "new/old", "CPU new/old")
	for _, n := range names {
		o, w := median(wall[n+" old"]), median(wall[n+" new"])
		c := "–"
		if co, cn := median(cpu[n+" old"]), median(cpu[n+" new"]); co > 0 && cn > 0 {
			c = fmt.Sprintf("%.3f", cn/co)
		}
		t.Row(n, fmt.Sprintf("%.1f", o/1e6), fmt.Sprintf("%.1f", w/1e6), fmt.Sprintf("%.3f", w/o), c)
	}
	t.Flush()
	fmt.Printf("load average at the end: %s\n", loadAvg())
	return nil
}

// loadAvg is the 1-minute load average, which says how shared the machine
// was.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "unknown"
}

var (
	benchLine = regexp.MustCompile(`^(Benchmark\S+)\s+\d+\s+([\d.]+) ns/op`)
	cpuMS     = regexp.MustCompile(`([\d.]+) cpu-ms/op`)
	mbPerCPU  = regexp.MustCompile(`([\d.]+) MB/cpu-s`)
)

// parse reads a benchmark line: its name, ns/op and CPU per op (0 when the
// benchmark reports none).
func parse(line string) (name string, ns, cpu float64, ok bool) {
	m := benchLine.FindStringSubmatch(line)
	if m == nil {
		return "", 0, 0, false
	}
	ns, _ = strconv.ParseFloat(m[2], 64)
	if c := cpuMS.FindStringSubmatch(line); c != nil {
		cpu, _ = strconv.ParseFloat(c[1], 64)
	} else if c := mbPerCPU.FindStringSubmatch(line); c != nil {
		if v, _ := strconv.ParseFloat(c[1], 64); v > 0 {
			cpu = 1 / v // CPU seconds per MB: per op, up to the op's constant size
		}
	}
	return m[1], ns, cpu, true
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(v))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// checkout puts base in a new worktree tmp/base and returns its directory
// and how to remove it.
func checkout(root, tmp, base string) (string, func(), error) {
	tree := filepath.Join(tmp, "base")
	if out, err := exec.Command("git", "-C", root, "worktree", "add", "--detach", tree, base).CombinedOutput(); err != nil {
		return "", nil, fmt.Errorf("git worktree add: %v: %s", err, out)
	}
	return tree, func() { _ = exec.Command("git", "-C", root, "worktree", "remove", "--force", tree).Run() }, nil
}

// baseTree checks base out in a temporary worktree of the module, and
// returns the module's root, the worktree and how to remove both.
func baseTree(base string) (root, tree string, remove func(), err error) {
	if root, err = harness.ModuleRoot(); err != nil {
		return "", "", nil, err
	}
	tmp, err := os.MkdirTemp("", "silo-abtest-")
	if err != nil {
		return "", "", nil, err
	}
	tree, rm, err := checkout(root, tmp, base)
	if err != nil {
		_ = os.RemoveAll(tmp)
		return "", "", nil, err
	}
	return root, tree, func() { rm(); _ = os.RemoveAll(tmp) }, nil
}

// runCmd compares a benchmark command built on base and on the working
// tree, by the numbers in its results' summary.
func runCmd(base, pkg string, args []string, runs int) error {
	root, tree, remove, err := baseTree(base)
	if err != nil {
		return err
	}
	defer remove()
	tmp := filepath.Dir(tree) // the binaries and outputs go next to it
	// The same benchmark code on both sides.
	if err := os.RemoveAll(filepath.Join(tree, "bench")); err != nil {
		return err
	}
	if out, err := exec.Command("cp", "-a", filepath.Join(root, "bench"), filepath.Join(tree, "bench")).CombinedOutput(); err != nil {
		return fmt.Errorf("copy bench/ into the base: %v: %s", err, out)
	}
	bins := map[string]string{"old": filepath.Join(tmp, "old"), "new": filepath.Join(tmp, "new")}
	for side, dir := range map[string]string{"old": tree, "new": root} {
		cmd := exec.Command("go", "build", "-o", bins[side], pkg)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("building %s on the %s side: %v: %s", pkg, side, err, out)
		}
	}
	name := filepath.Base(pkg)
	fmt.Printf("%s %s: %s against the working tree, %d alternating runs each; %s; load average %s\n", pkg, strings.Join(args, " "), base, runs, harness.ThisMachine(), loadAvg())
	vals := map[string][]float64{} // key + side → values
	var keys []string
	var records []any
	for i := 0; i < runs; i++ {
		for _, side := range []string{"old", "new"} {
			out := filepath.Join(tmp, fmt.Sprintf("%s-%d.json", side, i))
			cmd := exec.Command(bins[side], args...)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), harness.ResultsEnv+"="+out)
			if b, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("the %s side: %v: %s", side, err, b)
			}
			b, err := os.ReadFile(out)
			if err != nil {
				return err
			}
			var rec struct {
				Summary map[string]any `json:"summary"`
			}
			if err := json.Unmarshal(b, &rec); err != nil {
				return fmt.Errorf("the %s side's results: %w", side, err)
			}
			var full any
			_ = json.Unmarshal(b, &full)
			records = append(records, map[string]any{"side": side, "run": i + 1, "results": full})
			for k, v := range rec.Summary {
				f, ok := v.(float64)
				if !ok {
					continue
				}
				if !slices.Contains(keys, k) {
					keys = append(keys, k)
				}
				vals[k+" "+side] = append(vals[k+" "+side], f)
			}
			fmt.Printf("  run %d %s done (load average %s)\n", i+1, side, loadAvg())
		}
	}
	slices.Sort(keys)
	res := harness.NewResults(name + "-ab")
	res.Params["base"] = base
	res.Params["command"] = pkg
	res.Params["args"] = args
	res.Params["runs"] = runs
	t := harness.NewTable("summary key", "old (median)", "new (median)", "new/old")
	for _, k := range keys {
		o, n := median(vals[k+" old"]), median(vals[k+" new"])
		ratio := "–"
		if o != 0 {
			ratio = fmt.Sprintf("%.3f", n/o)
			res.Summary[k+"_new_over_old"] = n / o
		}
		res.Summary[k+"_old"], res.Summary[k+"_new"] = o, n
		t.Row(k, fmt.Sprintf("%.6g", o), fmt.Sprintf("%.6g", n), ratio)
	}
	t.Flush()
	res.Rows = records
	path, err := res.Write()
	if err != nil {
		return err
	}
	fmt.Printf("load average at the end: %s\nresults: %s\n", loadAvg(), path)
	return nil
}
