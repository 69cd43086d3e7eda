// Package harness is what every Silo benchmark shares: a description of the
// machine, the results file under bench/results, a plain-text table, child
// processes measured for wall time and peak memory, and the Debian Python
// that runs the centralised baselines.
//
// Benchmarks report; they never assert. Every figure they publish is a ratio
// against a baseline measured in the same command, because the machines
// they run on are shared and noisy.
package harness

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"
)

// Machine describes where a benchmark ran.
type Machine struct {
	CPUModel   string  `json:"cpu_model"`
	NumCPU     int     `json:"nproc"`
	MemTotalGB float64 `json:"mem_total_gb"`
	GoVersion  string  `json:"go_version"`
	OS         string  `json:"os"`
	Arch       string  `json:"arch"`
	Kernel     string  `json:"kernel,omitempty"`
	Hostname   string  `json:"hostname,omitempty"`
}

// ThisMachine reads /proc for the CPU model and memory.
func ThisMachine() Machine {
	m := Machine{NumCPU: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseFloat(f[1], 64)
				m.MemTotalGB = kb / (1 << 20)
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	m.Hostname, _ = os.Hostname()
	return m
}

func (m Machine) String() string {
	return fmt.Sprintf("%s, %d CPUs, %.1f GiB RAM, %s %s/%s", m.CPUModel, m.NumCPU, m.MemTotalGB, m.GoVersion, m.OS, m.Arch)
}

// Results is the machine-readable record of one benchmark run.
type Results struct {
	Benchmark string         `json:"benchmark"`
	Command   string         `json:"command"`
	Started   time.Time      `json:"started"`
	Seconds   float64        `json:"seconds"`
	Machine   Machine        `json:"machine"`
	Params    map[string]any `json:"params"`
	Rows      any            `json:"rows"`
	Summary   map[string]any `json:"summary,omitempty"`
	Notes     []string       `json:"notes,omitempty"`
}

// NewResults starts the record of a run of the named benchmark.
func NewResults(name string) *Results {
	return &Results{Benchmark: name, Command: strings.Join(append([]string{"go run ./bench/" + name}, os.Args[1:]...), " "),
		Started: time.Now().UTC(), Machine: ThisMachine(), Params: map[string]any{}, Summary: map[string]any{}}
}

// Note adds a line to the record and prints it.
func (r *Results) Note(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	r.Notes = append(r.Notes, s)
	fmt.Println("note: " + s)
}

// ResultsEnv, when set, is the file Write saves to instead: bench/abtest
// runs a benchmark's old and new builds in turn and reads each run's record.
const ResultsEnv = "SILO_BENCH_RESULTS"

// Write saves the record as bench/results/<name>.json under the module root
// (found from the working directory), or as $SILO_BENCH_RESULTS, and
// returns the path.
func (r *Results) Write() (string, error) {
	r.Seconds = time.Since(r.Started).Seconds()
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", err
	}
	if path := os.Getenv(ResultsEnv); path != "" {
		return path, os.WriteFile(path, append(b, '\n'), 0o644)
	}
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, "bench", "results")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, r.Benchmark+".json")
	return path, os.WriteFile(path, append(b, '\n'), 0o644)
}

// ModuleRoot is the nearest directory at or above the working directory
// that holds go.mod.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod at or above the working directory: run the benchmark from the repository")
		}
		dir = parent
	}
}

// Table prints aligned columns.
type Table struct {
	w *tabwriter.Writer
}

// NewTable starts a table with a header row.
func NewTable(header ...string) *Table {
	t := &Table{w: tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', tabwriter.AlignRight)}
	t.Row(header...)
	return t
}

// Row adds a row.
func (t *Table) Row(cells ...string) { fmt.Fprintln(t.w, strings.Join(cells, "\t")+"\t") }

// Flush prints the table.
func (t *Table) Flush() { t.w.Flush() }

// Run is a child process's measurements.
type Run struct {
	Wall time.Duration
	// PeakRSS is the largest VmHWM read from /proc/PID/status while the
	// child ran (sampled every few milliseconds). Children that can should
	// also report their own VmHWM at the end (see VmHWM), which is exact.
	//
	// ru_maxrss from wait4 is not used: a child started with vfork+exec
	// (as os/exec does) inherits the parent's high-water mark at exec, so
	// a small child of a big parent reports the parent's memory.
	PeakRSS int64
	UserCPU time.Duration
	SysCPU  time.Duration
	Stdout  []byte
	Stderr  []byte
}

// RunChild runs cmd to completion and returns its wall time, peak resident
// memory (VmHWM), CPU time and output.
func RunChild(cmd *exec.Cmd) (Run, error) {
	var out, errb bytes.Buffer
	if cmd.Stdout == nil {
		cmd.Stdout = &out
	}
	cmd.Stderr = &errb
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return Run{}, err
	}
	var peak atomic.Int64
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		path := fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)
		tick := time.NewTicker(3 * time.Millisecond)
		defer tick.Stop()
		for {
			if v := statusKB(path, "VmHWM:"); v*1024 > peak.Load() {
				peak.Store(v * 1024)
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	err := cmd.Wait()
	close(done)
	<-sampled
	r := Run{Wall: time.Since(start), Stdout: out.Bytes(), Stderr: errb.Bytes(), PeakRSS: peak.Load()}
	if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			r.UserCPU = time.Duration(ru.Utime.Nano())
			r.SysCPU = time.Duration(ru.Stime.Nano())
		}
	}
	if err != nil {
		return r, fmt.Errorf("%s: %w: %s", strings.Join(cmd.Args, " "), err, lastLines(errb.Bytes(), 5))
	}
	return r, nil
}

// statusKB reads a "Key:   123 kB" line of a /proc status file; 0 if absent.
func statusKB(path, key string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, key) {
			f := strings.Fields(line[len(key):])
			if len(f) > 0 {
				v, _ := strconv.ParseInt(f[0], 10, 64)
				return v
			}
		}
	}
	return 0
}

// VmHWM is this process's peak resident set size in bytes, from
// ProcCPU is the user and system CPU time process pid has used so far
// (from /proc/PID/stat, in clock ticks of 10 ms); 0 if it cannot be read.
func ProcCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// /proc/self/status: what a child reports at its end.
func VmHWM() int64 { return statusKB("/proc/self/status", "VmHWM:") * 1024 }

// PythonVmHWM is a Python expression for the same figure, in bytes.
const PythonVmHWM = `int([l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]) * 1024`

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// DebianPython is the interpreter with Debian's python3-sklearn,
// python3-pandas and python3-torch; the python3 on PATH may be another one.
const DebianPython = "/usr/bin/python3"

// PythonHas reports whether DebianPython can import every module, and if
// not, a one-line reason that says how to install them.
func PythonHas(modules ...string) (bool, string) {
	if _, err := os.Stat(DebianPython); err != nil {
		return false, DebianPython + " is missing: apt-get install -y --no-install-recommends python3"
	}
	code := "import " + strings.Join(modules, ", ")
	out, err := exec.Command(DebianPython, "-c", code).CombinedOutput()
	if err != nil {
		return false, fmt.Sprintf("%s cannot %q (%s): apt-get install -y --no-install-recommends python3-sklearn python3-pandas python3-torch",
			DebianPython, code, lastLines(out, 1))
	}
	return true, ""
}

// LastJSONLine decodes the last line of out that starts with '{' into v:
// children print their measurements as one JSON line.
func LastJSONLine(out []byte, v any) error {
	var last []byte
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		if line := bytes.TrimSpace(sc.Bytes()); len(line) > 0 && line[0] == '{' {
			last = append(last[:0], line...)
		}
	}
	if last == nil {
		return fmt.Errorf("no JSON line in the output: %q", lastLines(out, 3))
	}
	return json.Unmarshal(last, v)
}

// MB is 10⁶ bytes, the unit of every throughput figure.
const MB = 1e6

// ParseSize reads sizes such as 64MB, 1GB, 5GB, 512MiB (decimal units for
// MB/GB, binary for MiB/GiB).
func ParseSize(s string) (int64, error) {
	s = strings.TrimSpace(strings.ToUpper(s))
	units := []struct {
		suffix string
		mult   float64
	}{{"GIB", 1 << 30}, {"MIB", 1 << 20}, {"KIB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"G", 1e9}, {"M", 1e6}, {"B", 1}}
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			v, err := strconv.ParseFloat(strings.TrimSuffix(s, u.suffix), 64)
			if err != nil || v <= 0 {
				return 0, fmt.Errorf("bad size %q", s)
			}
			return int64(v * u.mult), nil
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("bad size %q (use e.g. 64MB, 1GB)", s)
	}
	return v, nil
}

// FormatSize prints a byte count in decimal units.
func FormatSize(n int64) string {
	switch {
	case n >= 1e9:
		return strconv.FormatFloat(float64(n)/1e9, 'f', 2, 64) + " GB"
	case n >= 1e6:
		return strconv.FormatFloat(float64(n)/1e6, 'f', 0, 64) + " MB"
	case n >= 1e3:
		return strconv.FormatFloat(float64(n)/1e3, 'f', 0, 64) + " kB"
	}
	return strconv.FormatInt(n, 10) + " B"
}

// CPUTime is this process's user+system CPU seconds, all threads.
func CPUTime() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
