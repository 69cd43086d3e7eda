package tabular

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
)

// benchRow is a typical health-care style record: identifiers, numbers,
// flags, categories, dates and free text.
type benchRow struct {
	ID     int64     `parquet:"id"`
	Age    *int32    `parquet:"age,optional"`
	Income *float64  `parquet:"income,optional"`
	Score  float64   `parquet:"score"`
	Smoker *bool     `parquet:"smoker,optional"`
	City   string    `parquet:"city,dict"`
	Visit  time.Time `parquet:"visit,timestamp(millisecond)"`
	Note   *string   `parquet:"note,optional"`
}

var benchCities = []string{"Lyon", "Paris", "Nantes", "Lille", "Marseille", "Toulouse", "Nice", "Rennes"}

func benchRowAt(rng *rand.Rand, i int) benchRow {
	r := benchRow{
		ID:     int64(i),
		Score:  rng.NormFloat64(),
		City:   benchCities[rng.IntN(len(benchCities))],
		Visit:  time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(rng.IntN(4*365*24*60)) * time.Minute),
		Income: ptr(float64(rng.IntN(20_000_000)) / 100),
	}
	if rng.IntN(20) != 0 {
		r.Age = ptr(int32(18 + rng.IntN(80)))
	}
	if rng.IntN(10) == 0 {
		r.Income = nil
	}
	if rng.IntN(30) != 0 {
		r.Smoker = ptr(rng.IntN(4) == 0)
	}
	if rng.IntN(3) == 0 {
		r.Note = ptr("follow-up " + strconv.Itoa(rng.IntN(1_000_000)))
	}
	return r
}

// writeBenchCSV writes rows until the file holds at least size bytes.
func writeBenchCSV(t testing.TB, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	w.WriteString("id,age,income,score,smoker,city,visit,note\n")
	rng := rand.New(rand.NewPCG(7, 8))
	var written int64
	var line []byte
	for i := 0; written < size; i++ {
		r := benchRowAt(rng, i)
		line = strconv.AppendInt(line[:0], r.ID, 10)
		line = append(line, ',')
		if r.Age != nil {
			line = strconv.AppendInt(line, int64(*r.Age), 10)
		} else {
			line = append(line, "NA"...)
		}
		line = append(line, ',')
		if r.Income != nil {
			line = strconv.AppendFloat(line, *r.Income, 'f', 2, 64)
		}
		line = append(line, ',')
		line = strconv.AppendFloat(line, r.Score, 'g', 8, 64)
		line = append(line, ',')
		if r.Smoker != nil {
			line = strconv.AppendBool(line, *r.Smoker)
		}
		line = append(line, ',')
		line = append(line, r.City...)
		line = append(line, ',')
		line = r.Visit.AppendFormat(line, time.DateTime)
		line = append(line, ',')
		if r.Note != nil {
			line = append(line, '"')
			line = append(line, *r.Note...)
			line = append(line, '"')
		}
		line = append(line, '\n')
		w.Write(line)
		written += int64(len(line))
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
}

// writeBenchParquet writes Snappy-compressed row groups of 100,000 rows
// until the file holds at least size bytes.
func writeBenchParquet(t testing.TB, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cw := &countingWriter{w: bufio.NewWriterSize(f, 1<<20)}
	w := parquet.NewGenericWriter[benchRow](cw, parquet.Compression(&parquet.Snappy), parquet.MaxRowsPerRowGroup(100_000))
	rng := rand.New(rand.NewPCG(7, 8))
	rows := make([]benchRow, 10_000)
	for i := 0; cw.n < size; {
		for k := range rows {
			rows[k] = benchRowAt(rng, i)
			i++
		}
		if _, err := w.Write(rows); err != nil {
			t.Fatal(err)
		}
		if i%100_000 == 0 {
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := cw.w.(*bufio.Writer).Flush(); err != nil {
		t.Fatal(err)
	}
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

var benchOpts = ScanOptions{NoSummary: []string{"id"}, MinRecordsPerAggregate: 10}

func BenchmarkScanCSV(b *testing.B) {
	path := filepath.Join(b.TempDir(), "bench.csv")
	writeBenchCSV(b, path, 50<<20)
	benchmarkScan(b, path)
}

func BenchmarkScanParquet(b *testing.B) {
	path := filepath.Join(b.TempDir(), "bench.parquet")
	writeBenchParquet(b, path, 50<<20)
	benchmarkScan(b, path)
}

// BenchmarkScanNumericCSV is the shape a runner trains on: 30 float
// features and a 0/1 target, no quotes, about 1 % nulls.
func BenchmarkScanNumericCSV(b *testing.B) {
	path := filepath.Join(b.TempDir(), "numeric.csv")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for j := range 30 {
		fmt.Fprintf(w, "x%d,", j)
	}
	w.WriteString("y\n")
	rng := rand.New(rand.NewPCG(3, 4))
	var line []byte
	for written := 0; written < 50<<20; written += len(line) {
		line = line[:0]
		for range 30 {
			if rng.IntN(100) != 0 {
				line = strconv.AppendFloat(line, rng.NormFloat64(), 'g', 7, 64)
			}
			line = append(line, ',')
		}
		line = append(line, byte('0'+rng.IntN(2)), '\n')
		w.Write(line)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	f.Close()
	benchmarkScanWith(b, path, ScanOptions{MinRecordsPerAggregate: 10})
}

// benchmarkScan measures Scan and ReadBatches on one file, and cat on the
// same file as the floor: reading the bytes and nothing else.
func benchmarkScan(b *testing.B, path string) { benchmarkScanWith(b, path, benchOpts) }

func benchmarkScanWith(b *testing.B, path string, opts ScanOptions) {
	in := []Input{openFileInput(b, path)}
	size := in[0].Size()
	p, err := Scan(context.Background(), in, opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("%s: %.1f MB, %d rows", filepath.Base(path), float64(size)/1e6, p.Rows)
	b.Run("cat", func(b *testing.B) {
		b.SetBytes(size)
		defer reportCPU(b, size, true)()
		for b.Loop() {
			cmd := exec.Command("cat", path)
			if err := cmd.Run(); err != nil { // stdout is /dev/null
				b.Fatal(err)
			}
		}
	})
	b.Run("Scan", func(b *testing.B) {
		b.SetBytes(size)
		defer reportCPU(b, size, false)()
		for b.Loop() {
			if _, err := Scan(context.Background(), in, opts); err != nil {
				b.Fatal(err)
			}
		}
	})
	var names []string
	for _, c := range p.Schema() {
		names = append(names, c.Name)
	}
	b.Run("ReadBatches", func(b *testing.B) {
		b.SetBytes(size)
		defer reportCPU(b, size, false)()
		for b.Loop() {
			err := ReadBatches(context.Background(), in, p.Schema(), names, 1024, func(*Batch) error { return nil })
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}

// reportCPU reports MB processed per CPU second, of this process or of
// its children (cat), when the returned function is called.
func reportCPU(b *testing.B, size int64, children bool) func() {
	self0, child0 := cpuTime()
	return func() {
		self1, child1 := cpuTime()
		used := self1 - self0
		if children {
			used = child1 - child0
		}
		if used > 0 {
			b.ReportMetric(float64(size)*float64(b.N)/1e6/used.Seconds(), "MB/cpu-s")
		}
	}
}

// TestScanMemoryIsBounded scans files several times larger than the heap
// limit and samples the Go heap meanwhile: memory, not time, so the test
// is robust on a busy machine.
func TestScanMemoryIsBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("writes and scans several hundred MB")
	}
	const limit = 64 << 20
	dir := t.TempDir()
	tests := []struct {
		name  string
		size  int64
		write func(testing.TB, string, int64)
	}{
		{"big.csv", 200 << 20, writeBenchCSV},
		{"big.parquet", 120 << 20, writeBenchParquet},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.name)
			tt.write(t, path, tt.size)
			in := []Input{openFileInput(t, path)}
			var p *Profile
			var names []string
			peakScan := peakHeap(t, func() {
				var err error
				if p, err = Scan(context.Background(), in, benchOpts); err != nil {
					t.Fatal(err)
				}
			})
			for _, c := range p.Schema() {
				names = append(names, c.Name)
			}
			var rows int64
			peakRead := peakHeap(t, func() {
				err := ReadBatches(context.Background(), in, p.Schema(), names, 4096, func(b *Batch) error {
					rows += int64(b.Len)
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
			})
			t.Logf("%s: %d MiB, %d rows; peak heap %d MiB scanning, %d MiB reading batches",
				tt.name, in[0].Size()>>20, p.Rows, peakScan>>20, peakRead>>20)
			if rows != p.Rows {
				t.Errorf("ReadBatches read %d rows, Scan counted %d", rows, p.Rows)
			}
			if peakScan > limit || peakRead > limit {
				t.Errorf("peak heap %d MiB (Scan), %d MiB (ReadBatches); want under %d MiB", peakScan>>20, peakRead>>20, limit>>20)
			}
		})
	}
}

// peakHeap runs fn and returns the largest HeapAlloc seen meanwhile.
func peakHeap(t *testing.T, fn func()) uint64 {
	runtime.GC()
	debug.FreeOSMemory()
	var peak uint64
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Go(func() {
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc)
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	})
	fn()
	close(done)
	wg.Wait()
	return peak
}

func ExampleScan() {
	in := []Input{&memInput{"visits.csv", []byte("id,age,city\n1,34,Lyon\n2,,Paris\n3,51,Lyon\n")}}
	p, err := Scan(context.Background(), in, ScanOptions{NoSummary: []string{"id"}, MinRecordsPerAggregate: 2})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, c := range p.Columns {
		fmt.Printf("%s %s: %d values, %d nulls", c.Name, c.Type, c.Count, c.Nulls)
		if c.Mean != nil {
			fmt.Printf(", mean %.1f", *c.Mean)
		}
		if c.Categories != nil {
			fmt.Printf(", categories %q", c.Categories)
		}
		fmt.Println()
	}
	// Output:
	// id int: 3 values, 0 nulls
	// age int: 2 values, 1 nulls, mean 42.5
	// city string: 3 values, 0 nulls, categories ["Lyon"]
}
