// Command ingest measures how fast Silo's runner reads a dataset and how much
// memory it needs while doing so, as the file grows (issue 4: "a 5 GB
// Parquet or CSV file is scanned in bounded memory"; issue 6: "CSV and
// Parquet scan MB/s vs pandas, and peak memory as the file grows").
//
//	go run ./bench/ingest                 # 64 MB, 256 MB, 1 GB
//	go run ./bench/ingest -max 5GB        # adds 5 GB (the full size)
//
// To profile one reader on one file:
//
//	go run ./bench/ingest -child scan -file F.csv -cpuprofile cpu.out   # or -child read
//
// For each size it writes a seeded synthetic CSV and Parquet file (a
// ground-truth logistic model plus noise; files are cached between runs in
// -data), then, on each file, in this order:
//
//   - cat FILE > /dev/null, once to warm the page cache and then measured:
//     the floor, reading the bytes and nothing else;
//   - tabular.Scan (what "connect" does: schema, counts, summaries) in a
//     child process, through the same blob.FileStore the runner uses;
//   - tabular.ReadBatches of every column (what training reads), likewise;
//   - pandas.read_csv / read_parquet with Debian's /usr/bin/python3.
//
// Every child's peak resident memory is its ru_maxrss from wait4. Figures
// are reported as fractions of cat's MB/s and as ratios to pandas' memory,
// because the machine is shared and noisy. Results go to
// bench/results/ingest.json.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/silofl/silo/bench/internal/harness"
	"github.com/silofl/silo/internal/blob"
	"github.com/silofl/silo/internal/tabular"
)

func main() {
	child := flag.String("child", "", "internal: scan or read FILE in this process and print one JSON line")
	file := flag.String("file", "", "internal: the file for -child")
	maxSize := flag.String("max", "1GB", "largest file size; above 1GB the sizes are 64MB, 256MB, 1GB and this")
	sizesFlag := flag.String("sizes", "", "comma-separated sizes instead of -max, e.g. 64MB,2GB")
	dataDir := flag.String("data", filepath.Join(os.TempDir(), "silo-bench-ingest"), "where generated files are kept (reused between runs)")
	formats := flag.String("formats", "csv,parquet", "formats to measure")
	pandasMax := flag.String("pandas-max", "2GB", "skip pandas on files larger than this (pandas holds the whole table in memory)")
	cpuprofile := flag.String("cpuprofile", "", "with -child: write a CPU profile of the read to this file")
	flag.Parse()

	if *child != "" {
		if *cpuprofile != "" {
			pf, err := os.Create(*cpuprofile)
			if err != nil {
				fmt.Fprintln(os.Stderr, "ingest child:", err)
				os.Exit(1)
			}
			pprof.StartCPUProfile(pf)
		}
		err := runChild(*child, *file)
		if *cpuprofile != "" {
			pprof.StopCPUProfile()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "ingest child:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*maxSize, *sizesFlag, *dataDir, *formats, *pandasMax); err != nil {
		fmt.Fprintln(os.Stderr, "bench/ingest:", err)
		os.Exit(1)
	}
}

// measurement is one reader on one file.
type measurement struct {
	Format    string  `json:"format"`
	FileBytes int64   `json:"file_bytes"`
	Rows      int64   `json:"rows"`
	Reader    string  `json:"reader"` // cat, silo_scan, silo_read_batches, pandas
	Seconds   float64 `json:"seconds"`
	MBps      float64 `json:"mb_per_s"`
	PeakRSS   int64   `json:"peak_rss_bytes"`
	CPU       float64 `json:"cpu_seconds"`
	// MBperCPU is MB read per CPU-second (user+system, all threads): less
	// sensitive than MB/s to other load on a shared machine.
	MBperCPU float64 `json:"mb_per_cpu_second"`
	// CPUvsPandas is MBperCPU over pandas' on the same file.
	CPUvsPandas float64 `json:"mb_per_cpu_second_vs_pandas,omitempty"`
	// Ratios against the baselines of the same file in the same run.
	OfCat      float64 `json:"fraction_of_cat_mbps,omitempty"`
	VsPandas   float64 `json:"mbps_vs_pandas,omitempty"`
	RSSvPandas float64 `json:"rss_vs_pandas,omitempty"`
	// RSSvSmallest is this reader's peak RSS over its peak RSS on the
	// smallest file of the format: 1.0 means flat.
	RSSvSmallest float64 `json:"rss_vs_smallest_file,omitempty"`
	Skipped      string  `json:"skipped,omitempty"`
}

func run(maxSize, sizesFlag, dataDir, formatsFlag, pandasMaxFlag string) error {
	res := harness.NewResults("ingest")
	fmt.Printf("Silo ingest benchmark on %s\n", res.Machine)
	sizes, err := sizeList(maxSize, sizesFlag)
	if err != nil {
		return err
	}
	pandasMax, err := harness.ParseSize(pandasMaxFlag)
	if err != nil {
		return err
	}
	formats := strings.Split(formatsFlag, ",")
	res.Params["sizes"] = sizes
	res.Params["formats"] = formats
	res.Params["pandas_max_bytes"] = pandasMax
	res.Params["data_dir"] = dataDir
	res.Params["gomaxprocs"] = runtime.GOMAXPROCS(0)
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}

	pandasOK, why := harness.PythonHas("pandas")
	if !pandasOK {
		res.Note("pandas baseline skipped: %s", why)
	}
	parquetEngine := ""
	if pandasOK {
		for _, eng := range []string{"pyarrow", "fastparquet"} {
			if ok, _ := harness.PythonHas(eng); ok {
				parquetEngine = eng
				break
			}
		}
		if parquetEngine == "" && slices.Contains(formats, "parquet") {
			res.Note("pandas.read_parquet skipped: it needs pyarrow or fastparquet, and neither is packaged for this Debian release (python3-pyarrow, python3-fastparquet: no candidate); Parquet is compared with cat only")
		}
	}

	var all []measurement
	for _, format := range formats {
		smallest := map[string]int64{}
		for _, size := range sizes {
			path := filepath.Join(dataDir, fmt.Sprintf("ingest-v1-%d.%s", size, format))
			if err := ensureFile(path, format, size); err != nil {
				return err
			}
			st, err := os.Stat(path)
			if err != nil {
				return err
			}
			fmt.Printf("\n%s %s (%s on disk)\n", strings.ToUpper(format), filepath.Base(path), harness.FormatSize(st.Size()))
			ms, err := measureFile(self, path, format, st.Size(), pandasOK, parquetEngine, pandasMax)
			if err != nil {
				return err
			}
			for i := range ms {
				m := &ms[i]
				if m.Skipped != "" || m.PeakRSS == 0 {
					continue
				}
				if smallest[m.Reader] == 0 {
					smallest[m.Reader] = m.PeakRSS
				}
				m.RSSvSmallest = float64(m.PeakRSS) / float64(smallest[m.Reader])
			}
			all = append(all, ms...)
		}
	}

	fmt.Println()
	t := harness.NewTable("format", "file", "reader", "rows", "s", "MB/s", "of cat", "vs pandas", "MB/CPU-s", "vs pandas", "peak RSS", "RSS vs pandas", "RSS vs smallest")
	for _, m := range all {
		if m.Skipped != "" {
			t.Row(m.Format, harness.FormatSize(m.FileBytes), m.Reader, "-", "-", "-", "-", "-", "-", "-", "-", "-", "skipped")
			continue
		}
		t.Row(m.Format, harness.FormatSize(m.FileBytes), m.Reader, strconv.FormatInt(m.Rows, 10), f2(m.Seconds), f0(m.MBps),
			ratio(m.OfCat), ratio(m.VsPandas), f0(m.MBperCPU), ratio(m.CPUvsPandas), rss(m.PeakRSS), ratio(m.RSSvPandas), ratio(m.RSSvSmallest))
	}
	t.Flush()
	for _, m := range all {
		if m.Skipped != "" {
			fmt.Printf("skipped %s on %s %s: %s\n", m.Reader, m.Format, harness.FormatSize(m.FileBytes), m.Skipped)
		}
	}

	// Summary: the figures the issues ask for, at the largest size.
	for _, format := range formats {
		for _, reader := range []string{"silo_scan", "silo_read_batches"} {
			var first, last *measurement
			for i := range all {
				m := &all[i]
				if m.Format == format && m.Reader == reader && m.Skipped == "" {
					if first == nil {
						first = m
					}
					last = m
				}
			}
			if last == nil {
				continue
			}
			key := format + "_" + reader
			res.Summary[key+"_fraction_of_cat"] = last.OfCat
			res.Summary[key+"_peak_rss_growth"] = last.RSSvSmallest
			res.Summary[key+"_peak_rss_bytes_largest"] = last.PeakRSS
			res.Summary[key+"_file_growth"] = float64(last.FileBytes) / float64(first.FileBytes)
			res.Summary[key+"_mb_per_cpu_second"] = last.MBperCPU
			if last.VsPandas > 0 {
				res.Summary[key+"_mbps_vs_pandas"] = last.VsPandas
				res.Summary[key+"_mb_per_cpu_second_vs_pandas"] = last.CPUvsPandas
				res.Summary[key+"_rss_vs_pandas"] = last.RSSvPandas
			}
		}
	}
	res.Rows = all
	path, err := res.Write()
	if err != nil {
		return err
	}
	fmt.Printf("\nresults: %s\n", path)
	return nil
}

func sizeList(maxSize, sizesFlag string) ([]int64, error) {
	var sizes []int64
	if sizesFlag != "" {
		for _, s := range strings.Split(sizesFlag, ",") {
			n, err := harness.ParseSize(s)
			if err != nil {
				return nil, err
			}
			sizes = append(sizes, n)
		}
		slices.Sort(sizes)
		return sizes, nil
	}
	max, err := harness.ParseSize(maxSize)
	if err != nil {
		return nil, err
	}
	for _, s := range []int64{64e6, 256e6, 1e9} {
		if s <= max {
			sizes = append(sizes, s)
		}
	}
	if len(sizes) == 0 || max > sizes[len(sizes)-1] {
		sizes = append(sizes, max)
	}
	return sizes, nil
}

// measureFile runs every reader on one file.
func measureFile(self, path, format string, size int64, pandasOK bool, parquetEngine string, pandasMax int64) ([]measurement, error) {
	base := measurement{Format: format, FileBytes: size}
	mbps := func(sec float64) float64 { return float64(size) / harness.MB / sec }
	perCPU := func(sec float64) float64 {
		if sec <= 0 {
			return 0
		}
		return float64(size) / harness.MB / sec
	}

	// cat: warm the page cache, then the best of two.
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	defer devnull.Close()
	catRun := func() (harness.Run, error) {
		cmd := exec.Command("cat", path)
		cmd.Stdout = devnull
		return harness.RunChild(cmd)
	}
	if _, err := catRun(); err != nil {
		return nil, err
	}
	cat := base
	cat.Reader = "cat"
	for range 2 {
		r, err := catRun()
		if err != nil {
			return nil, err
		}
		if cat.Seconds == 0 || r.Wall.Seconds() < cat.Seconds {
			cat.Seconds, cat.PeakRSS, cat.CPU = r.Wall.Seconds(), r.PeakRSS, (r.UserCPU + r.SysCPU).Seconds()
		}
	}
	cat.MBps = mbps(cat.Seconds)
	cat.MBperCPU = perCPU(cat.CPU)
	cat.OfCat = 1
	fmt.Printf("  %-18s %7.2f s  %7.0f MB/s  peak RSS %s\n", "cat", cat.Seconds, cat.MBps, rss(cat.PeakRSS))
	out := []measurement{cat}

	for _, mode := range []string{"scan", "read"} {
		r, err := harness.RunChild(exec.Command(self, "-child", mode, "-file", path))
		if err != nil {
			return nil, err
		}
		var cr childResult
		if err := harness.LastJSONLine(r.Stdout, &cr); err != nil {
			return nil, err
		}
		m := base
		m.Reader = map[string]string{"scan": "silo_scan", "read": "silo_read_batches"}[mode]
		m.Rows, m.Seconds, m.PeakRSS, m.CPU = cr.Rows, cr.Seconds, max(cr.VmHWM, r.PeakRSS), cr.CPU
		m.MBps = mbps(m.Seconds)
		m.OfCat = m.MBps / cat.MBps
		m.MBperCPU = perCPU(m.CPU)
		fmt.Printf("  %-18s %7.2f s  %7.0f MB/s  peak RSS %s  (%d rows, Go heap reserved %s)\n", m.Reader, m.Seconds, m.MBps, harness.FormatSize(m.PeakRSS), m.Rows, harness.FormatSize(cr.HeapSys))
		out = append(out, m)
	}

	pd := base
	pd.Reader = "pandas"
	switch {
	case !pandasOK:
		pd.Skipped = "pandas is not installed for " + harness.DebianPython
	case format == "parquet" && parquetEngine == "":
		pd.Skipped = "pandas.read_parquet needs pyarrow or fastparquet, not packaged for this Debian release"
	case size > pandasMax:
		pd.Skipped = fmt.Sprintf("file larger than -pandas-max %s", harness.FormatSize(pandasMax))
	default:
		script := `import sys, time, json, pandas
t, c = time.perf_counter(), time.process_time()
df = pandas.read_csv(sys.argv[1]) if sys.argv[2] == "csv" else pandas.read_parquet(sys.argv[1])
print(json.dumps({"rows": len(df), "seconds": time.perf_counter() - t, "cpu_seconds": time.process_time() - c, "vmhwm_bytes": ` + harness.PythonVmHWM + `}))`
		r, err := harness.RunChild(exec.Command(harness.DebianPython, "-c", script, path, format))
		if err != nil {
			return nil, err
		}
		var cr childResult
		if err := harness.LastJSONLine(r.Stdout, &cr); err != nil {
			return nil, err
		}
		pd.Rows, pd.Seconds, pd.PeakRSS, pd.CPU = cr.Rows, cr.Seconds, max(cr.VmHWM, r.PeakRSS), cr.CPU
		pd.MBps = mbps(pd.Seconds)
		pd.OfCat = pd.MBps / cat.MBps
		pd.MBperCPU = perCPU(pd.CPU)
		pd.VsPandas, pd.RSSvPandas, pd.CPUvsPandas = 1, 1, 1
		fmt.Printf("  %-18s %7.2f s  %7.0f MB/s  peak RSS %s  (%d rows; read_csv time only, interpreter start excluded)\n", "pandas", pd.Seconds, pd.MBps, harness.FormatSize(pd.PeakRSS), pd.Rows)
		for i := range out {
			if out[i].Reader != "cat" {
				out[i].VsPandas = out[i].MBps / pd.MBps
				out[i].RSSvPandas = float64(out[i].PeakRSS) / float64(pd.PeakRSS)
				out[i].CPUvsPandas = out[i].MBperCPU / pd.MBperCPU
			}
		}
	}
	out = append(out, pd)
	return out, nil
}

// childResult is what a child prints.
type childResult struct {
	Rows    int64   `json:"rows"`
	Seconds float64 `json:"seconds"`
	HeapSys int64   `json:"go_heap_sys_bytes"`
	VmHWM   int64   `json:"vmhwm_bytes"`
	CPU     float64 `json:"cpu_seconds"` // of the timed part only
}

// runChild reads one file as the runner does (blob.FileStore → tabular) and
// prints its row count and time as one JSON line.
func runChild(mode, path string) error {
	ctx := context.Background()
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	store, err := blob.NewFileStore(filepath.Dir(abs))
	if err != nil {
		return err
	}
	objs, err := store.List(ctx, abs)
	if err != nil {
		return err
	}
	inputs := make([]tabular.Input, len(objs))
	for i, o := range objs {
		inputs[i] = &input{store: store, obj: o, ra: store.ReaderAt(ctx, o)}
	}
	opts := tabular.ScanOptions{NoSummary: []string{"id"}, MinRecordsPerAggregate: 10}
	var rows int64
	var elapsed time.Duration
	var cpu float64
	switch mode {
	case "scan":
		c0 := cpuSeconds()
		start := time.Now()
		p, err := tabular.Scan(ctx, inputs, opts)
		if err != nil {
			return err
		}
		elapsed = time.Since(start)
		cpu = cpuSeconds() - c0
		rows = p.Rows
	case "read":
		// The schema is what connect stored; training then reads batches.
		// Only the read is timed.
		p, err := tabular.Scan(ctx, inputs, opts)
		if err != nil {
			return err
		}
		var names []string
		for _, c := range p.Schema() {
			names = append(names, c.Name)
		}
		runtime.GC()
		c0 := cpuSeconds()
		start := time.Now()
		err = tabular.ReadBatches(ctx, inputs, p.Schema(), names, 4096, func(b *tabular.Batch) error {
			rows += int64(b.Len)
			return nil
		})
		if err != nil {
			return err
		}
		elapsed = time.Since(start)
		cpu = cpuSeconds() - c0
	default:
		return fmt.Errorf("unknown child mode %q", mode)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return json.NewEncoder(os.Stdout).Encode(childResult{Rows: rows, Seconds: elapsed.Seconds(), HeapSys: int64(ms.HeapSys), VmHWM: harness.VmHWM(), CPU: cpu})
}

// cpuSeconds is this process's user+system CPU time.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// input adapts a blob object to tabular.Input, as the runner does.
type input struct {
	store blob.Store
	obj   blob.Object
	ra    io.ReaderAt
}

func (i *input) Name() string { return filepath.Base(i.obj.Key) }
func (i *input) Size() int64  { return i.obj.Size }
func (i *input) Open(ctx context.Context) (io.ReadCloser, error) {
	return i.store.Open(ctx, i.obj.Key)
}
func (i *input) ReadAt(p []byte, off int64) (int, error) { return i.ra.ReadAt(p, off) }

// rss prints a peak RSS; cat finishes too fast to be sampled on small files.
func rss(n int64) string {
	if n == 0 {
		return "-"
	}
	return harness.FormatSize(n)
}

func f0(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) }
func f2(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }
func ratio(v float64) string {
	if v == 0 || math.IsNaN(v) {
		return "-"
	}
	if v >= 0.995 {
		return strconv.FormatFloat(v, 'f', 2, 64) + "×"
	}
	return strconv.FormatFloat(v, 'g', 2, 64) + "×"
}

// ---- the generator ----

// record is one synthetic patient: a ground-truth logistic model of the
// target on the features, plus nulls, a category, a flag and a date.
type record struct {
	ID     int64     `parquet:"id"`
	Age    *int32    `parquet:"age,optional"`
	Income *float64  `parquet:"income,optional"`
	Smoker bool      `parquet:"smoker"`
	Region string    `parquet:"region,dict"`
	Visit  time.Time `parquet:"visit,timestamp(millisecond)"`
	X1     float64   `parquet:"x1"`
	X2     float64   `parquet:"x2"`
	X3     float64   `parquet:"x3"`
	X4     float64   `parquet:"x4"`
	X5     float64   `parquet:"x5"`
	X6     float64   `parquet:"x6"`
	X7     float64   `parquet:"x7"`
	X8     float64   `parquet:"x8"`
	Target int32     `parquet:"target"`
}

var regions = []string{"north", "south", "east", "west", "centre", "islands", "overseas", "capital"}

// truth is the ground-truth coefficient of x1…x8.
var truth = [8]float64{0.8, -0.5, 0.3, 0, 0.25, -0.15, 0, 0.6}

var epoch = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

func makeRecord(rng *rand.Rand, i int64) record {
	r := record{ID: i, Smoker: rng.IntN(4) == 0, Region: regions[rng.IntN(len(regions))],
		Visit: epoch.Add(time.Duration(rng.IntN(4*365*24*3600)) * time.Second)}
	xs := []*float64{&r.X1, &r.X2, &r.X3, &r.X4, &r.X5, &r.X6, &r.X7, &r.X8}
	eta := -0.4
	for j, x := range xs {
		// Four significant digits keep CSV rows realistic in size.
		*x = math.Round(rng.NormFloat64()*1e4) / 1e4
		eta += truth[j] * *x
	}
	age := int32(18 + rng.IntN(80))
	eta += 0.02 * float64(age-50)
	if rng.IntN(20) != 0 {
		r.Age = &age
	}
	if rng.IntN(10) != 0 {
		inc := math.Round(math.Exp(10+0.5*rng.NormFloat64())) / 1
		r.Income = &inc
	}
	if r.Smoker {
		eta += 0.7
	}
	if rng.Float64() < 1/(1+math.Exp(-eta)) {
		r.Target = 1
	}
	return r
}

// ensureFile writes the file unless an earlier run left it (the generator
// is seeded, so the content is the same).
func ensureFile(path, format string, size int64) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	start := time.Now()
	fmt.Printf("generating %s (%s)... ", filepath.Base(path), harness.FormatSize(size))
	tmp := path + ".tmp"
	var err error
	if format == "csv" {
		err = writeCSV(tmp, size)
	} else {
		err = writeParquet(tmp, size)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	fmt.Printf("%.1fs\n", time.Since(start).Seconds())
	return os.Rename(tmp, path)
}

func writeCSV(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	w.WriteString("id,age,income,smoker,region,visit,x1,x2,x3,x4,x5,x6,x7,x8,target\n")
	rng := rand.New(rand.NewPCG(4, 2026))
	var line []byte
	var written int64
	for i := int64(0); written < size; i++ {
		r := makeRecord(rng, i)
		line = strconv.AppendInt(line[:0], r.ID, 10)
		line = append(line, ',')
		if r.Age != nil {
			line = strconv.AppendInt(line, int64(*r.Age), 10)
		} else {
			line = append(line, "NA"...)
		}
		line = append(line, ',')
		if r.Income != nil {
			line = strconv.AppendFloat(line, *r.Income, 'f', -1, 64)
		}
		line = append(line, ',')
		line = strconv.AppendBool(line, r.Smoker)
		line = append(line, ',')
		line = append(line, r.Region...)
		line = append(line, ',')
		line = r.Visit.AppendFormat(line, time.DateTime)
		for _, x := range []float64{r.X1, r.X2, r.X3, r.X4, r.X5, r.X6, r.X7, r.X8} {
			line = append(line, ',')
			line = strconv.AppendFloat(line, x, 'f', -1, 64)
		}
		line = append(line, ',')
		line = strconv.AppendInt(line, int64(r.Target), 10)
		line = append(line, '\n')
		w.Write(line)
		written += int64(len(line))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Close()
}

type countingWriter struct {
	w *bufio.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// writeParquet writes Snappy-compressed row groups of 128k rows until the
// file holds at least size bytes.
func writeParquet(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	cw := &countingWriter{w: bufio.NewWriterSize(f, 1<<20)}
	const groupRows = 128 << 10
	w := parquet.NewGenericWriter[record](cw, parquet.Compression(&parquet.Snappy), parquet.MaxRowsPerRowGroup(groupRows))
	rng := rand.New(rand.NewPCG(4, 2026))
	rows := make([]record, 8192)
	var i int64
	for cw.n < size {
		for k := range rows {
			rows[k] = makeRecord(rng, i)
			i++
		}
		if _, err := w.Write(rows); err != nil {
			return err
		}
		if i%groupRows == 0 {
			if err := w.Flush(); err != nil {
				return err
			}
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	if err := cw.w.Flush(); err != nil {
		return err
	}
	return f.Close()
}
