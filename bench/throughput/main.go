// Command throughput measures local training speed: rows × features per
// second per core for one GLM epoch (ml.Model.Train, as a runner's fit task
// runs it), against the machine's memory bandwidth measured in the same run
// (issue 6: "as a fraction of the machine's memory-bandwidth limit").
//
//	go run ./bench/throughput                     # 1M rows × 30 features (240 MB)
//	go run ./bench/throughput -rows 4000000
//
// An epoch has to read every feature value once (and the target, and the
// shuffled row order), so its time is bounded below by
// bytes touched / bandwidth. The bandwidth is measured on the very matrix
// the epoch trains on, by one goroutine (an epoch runs on one core):
//
//   - sequential: summing the matrix in order (the hardware's best case);
//   - shuffled rows: copying rows in a random order into a small buffer,
//     which is the access pattern of minibatch SGD over a shuffled epoch.
//
// The epoch's throughput is reported as a fraction of each bound: 1.0 would
// mean the epoch is limited by memory alone. Results go to
// bench/results/throughput.json.
package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/silofl/silo/bench/internal/harness"
	"github.com/silofl/silo/internal/ml"
)

func main() {
	rows := flag.Int("rows", 1_000_000, "training rows")
	features := flag.Int("features", 30, "features")
	batches := flag.String("batch", "64,256,1024", "SGD batch sizes to time (64 is the session default)")
	repeat := flag.Int("repeat", 3, "timings per figure; the best is kept")
	flag.BoolVar(&rowOrder, "row-order", false, "visit the rows one by one in a random permutation, not in shuffled blocks of consecutive rows")
	flag.Parse()
	var bs []int
	for _, s := range strings.Split(*batches, ",") {
		b, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || b < 1 {
			fmt.Fprintf(os.Stderr, "bench/throughput: bad batch size %q\n", s)
			os.Exit(2)
		}
		bs = append(bs, b)
	}
	if err := run(*rows, *features, bs, *repeat); err != nil {
		fmt.Fprintln(os.Stderr, "bench/throughput:", err)
		os.Exit(1)
	}
}

func run(n, d int, batches []int, repeat int) error {
	res := harness.NewResults("throughput")
	res.Params["rows"] = n
	res.Params["features"] = d
	res.Params["batch_sizes"] = batches
	res.Params["repeat"] = repeat
	res.Params["row_order"] = rowOrder
	res.Params["gomaxprocs"] = runtime.GOMAXPROCS(0)
	fmt.Printf("Silo local training throughput on %s\n", res.Machine)

	x, y := generate(n, d)
	matrixBytes := float64(len(x) * 8)
	fmt.Printf("data: %d rows × %d features (%s of float64)\n", n, d, harness.FormatSize(int64(matrixBytes)))

	// Bandwidth, on the same matrix, best of repeat.
	// Per core: bytes per CPU-second of the one goroutine that reads.
	seq := best(repeat, func() { seqRead(x) })
	seqBW := matrixBytes / seq.cpu
	par := best(repeat, func() { parRead(x, runtime.GOMAXPROCS(0)) })
	parBW := matrixBytes / par.wall
	perm := rand.New(rand.NewPCG(1, 2)).Perm(n)
	shuf := best(repeat, func() { shuffledRows(x, d, perm) })
	shufBW := matrixBytes / shuf.cpu
	fmt.Printf("memory bandwidth: sequential %.2f GB/s per core (wall-clock %.2f GB/s; %.2f GB/s on %d goroutines), shuffled rows %.2f GB/s per core\n",
		seqBW/1e9, matrixBytes/seq.wall/1e9, parBW/1e9, runtime.GOMAXPROCS(0), shufBW/1e9)

	// Bytes an epoch must touch: every feature value, the target, the row
	// order (an int per row), each once.
	epochBytes := float64(n)*float64(d+1)*8 + float64(n)*8
	rowsOut := []map[string]any{}
	t := harness.NewTable("batch", "epoch s", "CPU s", "cores used", "Mrow·feat/s/core", "bound (seq) s", "of seq bound", "of shuffled bound", "train loss")
	for _, b := range batches {
		spec := ml.Spec{Package: ml.PackageGLM, Task: ml.Classification, Family: "binomial", NumFeatures: d, Classes: []string{"0", "1"}, L2: 1e-4}
		m, err := ml.NewModel(spec, 1)
		if err != nil {
			return err
		}
		ds, err := ml.NewDataset(x, d, y)
		if err != nil {
			return err
		}
		// The rows are i.i.d. draws, so already in random order, as the
		// runner leaves them once it has loaded a dataset: the epoch reads
		// shuffled blocks of consecutive rows (-row-order visits them one
		// by one in a random permutation instead).
		ds.Shuffled = !rowOrder
		init := m.Params()
		wall, cpu := math.Inf(1), math.Inf(1)
		var loss float64
		for range repeat {
			if err := m.SetParams(init); err != nil {
				return err
			}
			opt := ml.TrainOptions{Optimizer: ml.Optimizer{Name: ml.OptimizerSGD, LearningRate: 0.1, Momentum: 0.9, BatchSize: b, LocalEpochs: 1},
				Rand: rand.New(rand.NewPCG(7, uint64(b)))}
			runtime.GC()
			c0 := cpuTime()
			t0 := time.Now()
			r, err := m.Train(context.Background(), ds, opt)
			w := time.Since(t0).Seconds()
			c := cpuTime() - c0
			if err != nil {
				return err
			}
			wall, cpu, loss = math.Min(wall, w), math.Min(cpu, c), r.Loss
		}
		// Per core: the work over the CPU time it took. Train runs on one
		// goroutine; cores used is CPU/wall, below 1 when the machine's
		// other load took the CPU away.
		cores := cpu / wall
		perCore := float64(n) * float64(d) / cpu
		boundSeq := epochBytes / seqBW
		boundShuf := epochBytes / shufBW
		t.Row(strconv.Itoa(b), f3(wall), f3(cpu), f2(cores), f1(perCore/1e6), f3(boundSeq), pct(boundSeq/cpu), pct(boundShuf/cpu), f5(loss))
		rowsOut = append(rowsOut, map[string]any{"batch_size": b, "epoch_seconds": wall, "cpu_seconds": cpu, "cores_used": cores,
			"row_features_per_second_per_core": perCore, "epoch_bytes": epochBytes, "bound_sequential_seconds": boundSeq,
			"bound_shuffled_seconds": boundShuf, "fraction_of_sequential_bandwidth_bound": boundSeq / wall,
			"fraction_of_shuffled_bandwidth_bound": boundShuf / wall, "train_loss": loss})
		if b == batches[0] {
			res.Summary["default_batch"] = b
			res.Summary["row_features_per_second_per_core"] = perCore
			res.Summary["fraction_of_sequential_bandwidth_bound"] = boundSeq / cpu
			res.Summary["fraction_of_shuffled_bandwidth_bound"] = boundShuf / cpu
		}
	}
	fmt.Println()
	t.Flush()
	res.Summary["sequential_bandwidth_gbps_1core"] = seqBW / 1e9
	res.Summary["sequential_bandwidth_gbps_all"] = parBW / 1e9
	res.Summary["shuffled_rows_bandwidth_gbps_1core"] = shufBW / 1e9
	res.Note("bound = bytes an epoch must touch (features, target, row order: %s) / bandwidth measured on the same matrix by one goroutine; 'of bound' = bound / epoch CPU time, 1.0 would be memory-bound; times are CPU seconds, the best of %d, because the machine is shared", harness.FormatSize(int64(epochBytes)), repeat)
	res.Note("a GLM epoch costs about 4 flops per feature value (forward dot product and gradient update), so at 1.0 of the bound it would run ~%.1f Gflop/s", 4*float64(n)*float64(d)/(epochBytes/seqBW)/1e9)
	res.Rows = map[string]any{"bandwidth": map[string]any{"sequential_1core_bytes_per_s": seqBW, "sequential_all_bytes_per_s": parBW,
		"shuffled_rows_1core_bytes_per_s": shufBW, "matrix_bytes": matrixBytes}, "epochs": rowsOut}
	path, err := res.Write()
	if err != nil {
		return err
	}
	fmt.Printf("\nresults: %s\n", path)
	return nil
}

// generate draws standard normal features and a logistic target.
func generate(n, d int) ([]float64, []float64) {
	rng := rand.New(rand.NewPCG(3, 30))
	beta := make([]float64, d)
	for j := range beta {
		beta[j] = rng.NormFloat64() / math.Sqrt(float64(d))
	}
	x, y := make([]float64, n*d), make([]float64, n)
	for i := range n {
		eta := 0.0
		for j := range d {
			v := rng.NormFloat64()
			x[i*d+j] = v
			eta += beta[j] * v
		}
		if rng.Float64() < 1/(1+math.Exp(-eta)) {
			y[i] = 1
		}
	}
	return x, y
}

var sink float64

// rowOrder switches off block-shuffled epochs.
var rowOrder bool

// timing is one measurement: wall and CPU seconds (this process, all
// threads; only the measured goroutine runs meanwhile).
type timing struct{ wall, cpu float64 }

// measure runs f and times it.
func measure(f func()) timing {
	runtime.GC()
	c0 := cpuTime()
	t0 := time.Now()
	f()
	return timing{time.Since(t0).Seconds(), cpuTime() - c0}
}

// seqRead sums x in order with independent accumulators.
func seqRead(x []float64) { sink += sum(x) }

func sum(x []float64) float64 {
	var a, b, c, d, e, f, g, h float64
	i := 0
	for ; i+8 <= len(x); i += 8 {
		a += x[i]
		b += x[i+1]
		c += x[i+2]
		d += x[i+3]
		e += x[i+4]
		f += x[i+5]
		g += x[i+6]
		h += x[i+7]
	}
	for ; i < len(x); i++ {
		a += x[i]
	}
	return a + b + c + d + e + f + g + h
}

// parRead sums x with k goroutines, each over a contiguous part.
func parRead(x []float64, k int) {
	var wg sync.WaitGroup
	parts := make([]float64, k)
	for p := range k {
		lo, hi := p*len(x)/k, (p+1)*len(x)/k
		wg.Go(func() { parts[p] = sum(x[lo:hi]) })
	}
	wg.Wait()
	for _, v := range parts {
		sink += v
	}
}

// shuffledRows copies the rows of x in perm's order into a 64-row buffer,
// as minibatch SGD gathers a shuffled batch, and sums the buffer.
func shuffledRows(x []float64, d int, perm []int) {
	buf := make([]float64, 64*d)
	k := 0
	for _, r := range perm {
		copy(buf[k*d:(k+1)*d], x[r*d:(r+1)*d])
		k++
		if k == 64 {
			sink += buf[0] + buf[len(buf)-1]
			k = 0
		}
	}
}

// best runs f n times and keeps the fastest wall time and the smallest CPU
// time (on a shared machine the process may be descheduled: CPU time then
// measures the work better than wall time).
func best(n int, f func()) timing {
	b := timing{math.Inf(1), math.Inf(1)}
	for range n {
		t := measure(f)
		b.wall, b.cpu = math.Min(b.wall, t.wall), math.Min(b.cpu, t.cpu)
	}
	return b
}

// cpuTime is this process's user+system CPU seconds.
func cpuTime() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

func f1(v float64) string  { return strconv.FormatFloat(v, 'f', 1, 64) }
func f2(v float64) string  { return strconv.FormatFloat(v, 'f', 2, 64) }
func f3(v float64) string  { return strconv.FormatFloat(v, 'f', 3, 64) }
func f5(v float64) string  { return strconv.FormatFloat(v, 'f', 5, 64) }
func pct(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) }
