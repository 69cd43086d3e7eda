// Command ffnet compares a federated feed-forward network in Silo with a
// torch MLP of the same shape trained centrally for the same number of
// epochs, on Fashion-MNIST (issue 6b).
//
//	apt-get install -y --no-install-recommends dataset-fashion-mnist python3-torch
//	go run ./bench/ffnet                   # 784-128-10, 5 rounds, 4 runners
//	go run ./bench/ffnet -rounds 10 -hidden 256,128
//
// The 60,000 training images (Debian's dataset-fashion-mnist, IDX files)
// are split evenly, in order, across 4 runners as CSV files (784 pixel
// columns and the label). A real server and 4 real runner agents in this
// process train `ffnet` (ReLU, Adam, batch 64) with FedAvg, one local epoch
// per round: -rounds rounds see the data as often as -rounds centralised
// epochs. Each runner holds out a small validation fraction for the
// session's own metrics; the training rows that remain (runner.IsTestRow
// decides, as on the runner) are pooled into one CSV for the baseline, a
// torch MLP of the same shape, optimiser, batch size and epochs, fed the
// same standardisation (per-pixel mean and std of those rows). Both models
// are scored on the official 10,000 test images by the same accuracy code.
// Results go to bench/results/ffnet.json.
package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
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
	"time"

	"gonum.org/v1/gonum/mat"

	"github.com/silofl/silo/bench/internal/fed"
	"github.com/silofl/silo/bench/internal/harness"
	"github.com/silofl/silo/internal/ml"
	"github.com/silofl/silo/internal/runner"
	"github.com/silofl/silo/model"
)

const dataDir = "/usr/share/datasets/fashion-mnist"

type params struct {
	Runners  int     `json:"runners"`
	Rounds   int     `json:"rounds"`
	Hidden   []int   `json:"hidden_layers"`
	LR       float64 `json:"learning_rate"`
	Batch    int     `json:"batch_size"`
	Seed     int64   `json:"seed"`
	Fraction float64 `json:"validation_fraction"`
	Train    int     `json:"train_images"`
	Seeds    int     `json:"central_seeds"`
}

func main() {
	var p params
	hidden := flag.String("hidden", "128", "hidden layer widths, comma-separated")
	flag.IntVar(&p.Runners, "runners", 4, "runners")
	flag.IntVar(&p.Rounds, "rounds", 5, "federated rounds = centralised epochs")
	flag.Float64Var(&p.LR, "lr", 1e-3, "Adam learning rate")
	flag.IntVar(&p.Batch, "batch", 64, "batch size")
	flag.Int64Var(&p.Seed, "seed", 23, "session seed")
	flag.Float64Var(&p.Fraction, "fraction", 0.05, "validation fraction each runner holds out for the session's own metrics")
	flag.IntVar(&p.Train, "train", 60000, "training images to use (of 60000)")
	flag.IntVar(&p.Seeds, "seeds", 1, "seeds of the central accuracy comparison (torch and Silo each trained this many times)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run (server and runners) to this file")
	flag.Parse()
	if *cpuprofile != "" {
		pf, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench/ffnet:", err)
			os.Exit(1)
		}
		pprof.StartCPUProfile(pf)
		defer pprof.StopCPUProfile()
	}
	for _, s := range strings.Split(*hidden, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "bench/ffnet: bad -hidden %q\n", *hidden)
			os.Exit(2)
		}
		p.Hidden = append(p.Hidden, n)
	}
	if err := run(p); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "bench/ffnet:", err)
		os.Exit(1)
	}
}

func run(p params) error {
	res := harness.NewResults("ffnet")
	res.Params["config"] = p
	fmt.Printf("Silo federated ffnet vs torch MLP on Fashion-MNIST, %s\n", res.Machine)
	trainX, trainY, err := readIDX("train", p.Train)
	if err != nil {
		return fmt.Errorf("%w (install Debian's dataset-fashion-mnist)", err)
	}
	testX, testY, err := readIDX("t10k", 0)
	if err != nil {
		return err
	}
	n := len(trainY)
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "silo-bench-ffnet-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	f, err := fed.Start(ctx)
	if err != nil {
		return err
	}
	defer f.Close()
	names := make([]string, p.Runners)
	for k := range names {
		names[k] = fmt.Sprintf("org-%d", k+1)
	}
	if err := f.AddRunners(names, 1, 4096); err != nil {
		return err
	}
	var pooled []int
	var datasets []string
	per := n / p.Runners
	for k, name := range names {
		lo, hi := k*per, (k+1)*per
		if k == p.Runners-1 {
			hi = n
		}
		path := filepath.Join(f.Root(name), "images.csv")
		if err := writeCSV(path, trainX, trainY, lo, hi); err != nil {
			return err
		}
		for i := lo; i < hi; i++ {
			if !runner.IsTestRow(p.Seed, int64(i-lo), p.Fraction) {
				pooled = append(pooled, i)
			}
		}
		ds := fmt.Sprintf("fashion_%d", k+1)
		datasets = append(datasets, ds)
		if _, err := f.AddDataset(ds, name, path); err != nil {
			return err
		}
	}
	trainPath := filepath.Join(dir, "train.csv")
	if err := writeRows(trainPath, trainX, trainY, pooled); err != nil {
		return err
	}
	testPath := filepath.Join(dir, "test.csv")
	if err := writeCSV(testPath, testX, testY, 0, len(testY)); err != nil {
		return err
	}
	fmt.Printf("%d runners online, %d datasets connected; %d training rows pooled for the baseline, %d test images\n", p.Runners, len(datasets), len(pooled), len(testY))

	cfg := map[string]any{
		"name": "bench-ffnet", "type": "hfl", "datasets": datasets, "min_clients": p.Runners, "rounds": p.Rounds, "round_timeout": "60m",
		"task":      map[string]any{"type": "classification", "target": "label"},
		"model":     map[string]any{"package": "ffnet", "hidden_layers": p.Hidden, "activation": "relu"},
		"optimizer": map[string]any{"name": "adam", "learning_rate": p.LR, "batch_size": p.Batch, "local_epochs": 1},
		"strategy":  map[string]any{"name": "fedavg"}, "validation": map[string]any{"fraction": p.Fraction}, "seed": p.Seed,
	}
	fmt.Printf("training: %d rounds of federated ffnet 784-%s-10 (FedAvg, Adam lr %g, batch %d, 1 local epoch)...\n", p.Rounds, joinInts(p.Hidden), p.LR, p.Batch)
	sr, err := f.RunSession(cfg, 50*time.Millisecond)
	if err != nil {
		return err
	}
	doc, err := f.API.LoadModel(ctx, sr.Session.ID, false)
	if err != nil {
		return err
	}
	siloAcc, err := accuracy(doc, testX, testY)
	if err != nil {
		return err
	}
	first := sr.RoundAt[0]
	later := time.Duration(0)
	if p.Rounds > 1 {
		later = (sr.RoundAt[len(sr.RoundAt)-1] - first) / time.Duration(p.Rounds-1)
	}
	fmt.Printf("Silo: %.1fs for %d rounds (round 1 with stats and data loading %.1fs, later rounds %.1fs each); test accuracy %.4f\n",
		sr.Total.Seconds(), p.Rounds, first.Seconds(), later.Seconds(), siloAcc)
	rows := []map[string]any{{"model": "silo_federated_ffnet", "seconds": sr.Total.Seconds(), "first_round_seconds": first.Seconds(),
		"later_round_seconds": later.Seconds(), "test_accuracy": siloAcc}}
	res.Summary["silo_test_accuracy"] = siloAcc
	res.Summary["silo_seconds"] = sr.Total.Seconds()

	if ok, why := harness.PythonHas("torch", "pandas", "numpy"); !ok {
		res.Note("torch baseline skipped: %s", why)
	} else {
		centralDir, centralTrain, centralTest = dir, trainPath, testPath
		tr, err := torchMLP(dir, trainPath, testPath, p)
		if err != nil {
			return err
		}
		tAcc := 0.0
		for i, c := range tr.pred {
			if c == int(testY[i]) {
				tAcc++
			}
		}
		tAcc /= float64(len(testY))
		fmt.Printf("torch: %.1fs (read %.1fs, %d epochs %.1fs, %d threads); test accuracy %.4f\n", tr.Read+tr.Train, tr.Read, p.Rounds, tr.Train, tr.Threads, tAcc)
		rows = append(rows, map[string]any{"model": "torch_mlp_pooled", "seconds": tr.Read + tr.Train, "read_seconds": tr.Read, "train_seconds": tr.Train,
			"threads": tr.Threads, "test_accuracy": tAcc, "peak_rss_bytes": tr.RSS})
		res.Summary["torch_test_accuracy"] = tAcc
		res.Summary["accuracy_difference"] = siloAcc - tAcc
		res.Summary["wall_time_ratio"] = sr.Total.Seconds() / (tr.Read + tr.Train)
		res.Summary["wall_time_ratio_vs_train_only"] = sr.Total.Seconds() / tr.Train
		if err := localEpoch(res, p, trainX, trainY, pooled, testX, testY, tr, tAcc); err != nil {
			return err
		}
		fmt.Println()
		t := harness.NewTable("model", "test accuracy", "Δ vs torch", "wall s", "wall vs torch")
		t.Row(fmt.Sprintf("Silo federated ffnet (%d runners, %d rounds)", p.Runners, p.Rounds), f4(siloAcc), signed(siloAcc-tAcc), f1(sr.Total.Seconds()), f2(sr.Total.Seconds()/(tr.Read+tr.Train))+"×")
		t.Row(fmt.Sprintf("torch MLP (pooled, %d epochs)", p.Rounds), f4(tAcc), "0", f1(tr.Read+tr.Train), "1.00×")
		t.Flush()
	}
	res.Params["pooled_train_rows"] = len(pooled)
	res.Params["gomaxprocs"] = runtime.GOMAXPROCS(0)
	res.Note("Silo's time is the session's wall time, creation to completion: %d runners and the server share %d cores; round 1 includes the statistics pass and reading and encoding each runner's CSV", p.Runners, runtime.NumCPU())
	res.Note("torch's time is pandas.read_csv of the pooled training CSV plus the training loop, timed inside Python (interpreter start and import excluded)")
	res.Rows = rows
	path, err := res.Write()
	if err != nil {
		return err
	}
	fmt.Printf("results: %s\n", path)
	return nil
}

// readIDX reads Fashion-MNIST images (as 784 bytes each) and labels; limit
// 0 means all.
func readIDX(set string, limit int) ([][]byte, []byte, error) {
	img, err := gunzip(filepath.Join(dataDir, set+"-images-idx3-ubyte.gz"))
	if err != nil {
		return nil, nil, err
	}
	lab, err := gunzip(filepath.Join(dataDir, set+"-labels-idx1-ubyte.gz"))
	if err != nil {
		return nil, nil, err
	}
	if len(img) < 16 || binary.BigEndian.Uint32(img) != 0x803 || len(lab) < 8 || binary.BigEndian.Uint32(lab) != 0x801 {
		return nil, nil, fmt.Errorf("%s: not IDX image/label files", set)
	}
	n := int(binary.BigEndian.Uint32(img[4:]))
	rows, cols := int(binary.BigEndian.Uint32(img[8:])), int(binary.BigEndian.Uint32(img[12:]))
	if rows*cols != 784 || int(binary.BigEndian.Uint32(lab[4:])) != n || len(img) != 16+n*784 || len(lab) != 8+n {
		return nil, nil, fmt.Errorf("%s: unexpected IDX shape", set)
	}
	if limit > 0 && limit < n {
		n = limit
	}
	x := make([][]byte, n)
	for i := range x {
		x[i] = img[16+i*784 : 16+(i+1)*784]
	}
	return x, lab[8 : 8+n], nil
}

func gunzip(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(zr)
}

func header(w *bufio.Writer) {
	for j := range 784 {
		fmt.Fprintf(w, "px%03d,", j)
	}
	w.WriteString("label\n")
}

func writeCSV(path string, x [][]byte, y []byte, lo, hi int) error {
	idx := make([]int, 0, hi-lo)
	for i := lo; i < hi; i++ {
		idx = append(idx, i)
	}
	return writeRows(path, x, y, idx)
}

func writeRows(path string, x [][]byte, y []byte, rows []int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	header(w)
	var line []byte
	for _, i := range rows {
		line = line[:0]
		for _, v := range x[i] {
			line = strconv.AppendInt(line, int64(v), 10)
			line = append(line, ',')
		}
		line = strconv.AppendInt(line, int64(y[i]), 10)
		line = append(line, '\n')
		w.Write(line)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Close()
}

// accuracy scores the downloaded model on the test images through its own
// preprocessing.
func accuracy(doc *model.Document, x [][]byte, y []byte) (float64, error) {
	prep := &doc.Preprocessing
	w := prep.Width()
	buf := make([]float64, len(y)*w)
	for i := range y {
		prep.EncodeRow(func(col string) model.Cell {
			j, err := strconv.Atoi(strings.TrimPrefix(col, "px"))
			if err != nil || j < 0 || j >= 784 {
				return model.Cell{Null: true}
			}
			return model.Cell{Num: float64(x[i][j])}
		}, buf[i*w:(i+1)*w])
	}
	out, err := doc.Model().Predict(mat.NewDense(len(y), w, buf))
	if err != nil {
		return 0, err
	}
	// Classes are labels "0".."9" in the model's order.
	yy := make([]float64, len(y))
	for i, v := range y {
		k := slices.Index(doc.Spec.Classes, strconv.Itoa(int(v)))
		if k < 0 {
			return 0, fmt.Errorf("label %d is not among the model's classes %v", v, doc.Spec.Classes)
		}
		yy[i] = float64(k)
	}
	m, err := ml.Evaluate(ml.Classification, len(doc.Spec.Classes), yy, out)
	if err != nil {
		return 0, err
	}
	return m["accuracy"], nil
}

type torchResult struct {
	Read, Train float64
	TrainCPU    float64
	Threads     int
	RSS         int64
	pred        []int
}

const torchScript = `
import sys, time, json
import numpy as np, pandas as pd, torch
train, test, hidden, epochs, lr, batch, out = sys.argv[1], sys.argv[2], [int(h) for h in sys.argv[3].split(",")], int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
torch.manual_seed(int(sys.argv[8]) if len(sys.argv) > 8 else 23)
t0 = time.perf_counter()
df = pd.read_csv(train)
y = torch.tensor(df["label"].to_numpy(), dtype=torch.long)
X = df.drop(columns=["label"]).to_numpy(dtype=np.float32)
mu, sd = X.mean(axis=0), X.std(axis=0)
sd[sd == 0] = 1
X = torch.from_numpy((X - mu) / sd)
t1 = time.perf_counter()
layers, w = [], X.shape[1]
for h in hidden:
    layers += [torch.nn.Linear(w, h), torch.nn.ReLU()]
    w = h
layers.append(torch.nn.Linear(w, 10))
net = torch.nn.Sequential(*layers)
opt = torch.optim.Adam(net.parameters(), lr=lr)
lossf = torch.nn.CrossEntropyLoss()
n = X.shape[0]
c1 = time.process_time()
for epoch in range(epochs):
    perm = torch.randperm(n)
    for i in range(0, n, batch):
        idx = perm[i:i + batch]
        opt.zero_grad()
        loss = lossf(net(X[idx]), y[idx])
        loss.backward()
        opt.step()
t2 = time.perf_counter()
c2 = time.process_time()
te = pd.read_csv(test)
Xt = torch.from_numpy((te.drop(columns=["label"]).to_numpy(dtype=np.float32) - mu) / sd)
with torch.no_grad():
    pred = net(Xt).argmax(dim=1).numpy()
np.savetxt(out, pred, fmt="%d")
print(json.dumps({"read": t1 - t0, "train": t2 - t1, "train_cpu": c2 - c1, "threads": torch.get_num_threads(), "rss": ` + harness.PythonVmHWM + `}))
`

func torchMLP(dir, trainPath, testPath string, p params, seed ...int) (*torchResult, error) {
	predPath := filepath.Join(dir, "torch-pred.txt")
	cmd := exec.Command(harness.DebianPython, "-c", torchScript, trainPath, testPath, joinInts(p.Hidden), strconv.Itoa(p.Rounds),
		fmt.Sprint(p.LR), strconv.Itoa(p.Batch), predPath)
	if len(seed) > 0 {
		cmd.Args = append(cmd.Args, strconv.Itoa(seed[0]))
	}
	r, err := harness.RunChild(cmd)
	if err != nil {
		return nil, err
	}
	var out struct {
		Read, Train float64
		TrainCPU    float64 `json:"train_cpu"`
		Threads     int
		RSS         int64
	}
	if err := harness.LastJSONLine(r.Stdout, &out); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(predPath)
	if err != nil {
		return nil, err
	}
	tr := &torchResult{Read: out.Read, Train: out.Train, TrainCPU: out.TrainCPU, Threads: out.Threads, RSS: max(out.RSS, r.PeakRSS)}
	for _, line := range bytes.Fields(b) {
		v, err := strconv.Atoi(string(line))
		if err != nil {
			return nil, err
		}
		tr.pred = append(tr.pred, v)
	}
	return tr, nil
}

// localEpoch times one local epoch of Silo's ffnet (ml.Model.Train, the
// runner's fit, without orchestration) on the pooled training rows with
// the baseline's standardisation, on 1 and 2 goroutines, against one of
// torch's epochs (its training time over the epochs). The 1-goroutine
// model then trains as many epochs as torch did, and both are scored on the
// test images: the same work, centrally, so the same accuracy is expected.
func localEpoch(res *harness.Results, p params, x [][]byte, y []byte, rows []int, testX [][]byte, testY []byte, tr *torchResult, torchAcc float64) error {
	const d = 784
	n := len(rows)
	feat, target := make([]float64, n*d), make([]float64, n)
	mean, sd := make([]float64, d), make([]float64, d)
	for k, i := range rows {
		for j, v := range x[i] {
			feat[k*d+j] = float64(v)
			mean[j] += float64(v)
		}
		target[k] = float64(y[i])
	}
	for j := range mean {
		mean[j] /= float64(n)
	}
	for k := range n {
		for j := range d {
			dv := feat[k*d+j] - mean[j]
			sd[j] += dv * dv
		}
	}
	for j := range sd {
		if sd[j] = math.Sqrt(sd[j] / float64(n)); sd[j] == 0 {
			sd[j] = 1
		}
	}
	for k := range n {
		for j := range d {
			feat[k*d+j] = (feat[k*d+j] - mean[j]) / sd[j]
		}
	}
	ds, err := ml.NewDataset(feat, d, target)
	if err != nil {
		return err
	}
	spec := ml.Spec{Package: ml.PackageFFNet, Task: ml.Classification, NumFeatures: d, Classes: []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}, HiddenLayers: p.Hidden}
	torchEpoch, torchCPU := tr.Train/float64(p.Rounds), tr.TrainCPU/float64(p.Rounds)
	t := harness.NewTable("one local epoch", "wall s", "CPU s", "wall vs torch", "CPU vs torch")
	t.Row("torch (1 thread)", f2(torchEpoch), f2(torchCPU), "1.00×", "1.00×")
	for _, workers := range []int{1, 2} {
		m, err := ml.NewModel(spec, p.Seed)
		if err != nil {
			return err
		}
		opt := ml.TrainOptions{Optimizer: ml.Optimizer{Name: ml.OptimizerAdam, LearningRate: p.LR, BatchSize: p.Batch, LocalEpochs: 1},
			Rand: rand.New(rand.NewPCG(1, 2)), Workers: workers}
		c0 := harness.CPUTime()
		t0 := time.Now()
		if _, err := m.Train(context.Background(), ds, opt); err != nil {
			return err
		}
		wall, cpu := time.Since(t0).Seconds(), harness.CPUTime()-c0
		t.Row(fmt.Sprintf("Silo ml.Train, %d goroutine(s)", workers), f2(wall), f2(cpu), f2(wall/torchEpoch)+"×", f2(cpu/torchCPU)+"×")
		res.Summary[fmt.Sprintf("local_epoch_wall_vs_torch_workers%d", workers)] = wall / torchEpoch
		res.Summary[fmt.Sprintf("local_epoch_cpu_vs_torch_workers%d", workers)] = cpu / torchCPU
		res.Summary[fmt.Sprintf("local_epoch_seconds_workers%d", workers)] = wall
		if workers != 1 {
			continue
		}
		opt.Optimizer.LocalEpochs = p.Rounds - 1
		if opt.Optimizer.LocalEpochs > 0 {
			if _, err := m.Train(context.Background(), ds, opt); err != nil {
				return err
			}
		}
		tx := make([]float64, len(testY)*d)
		for i, img := range testX {
			for j, v := range img {
				tx[i*d+j] = (float64(v) - mean[j]) / sd[j]
			}
		}
		pred, err := m.Predict(mat.NewDense(len(testY), d, tx))
		if err != nil {
			return err
		}
		correct := 0
		for i, label := range testY {
			best := 0
			for k := 1; k < 10; k++ {
				if pred.At(i, k) > pred.At(i, best) {
					best = k
				}
			}
			if best == int(label) {
				correct++
			}
		}
		acc := float64(correct) / float64(len(testY))
		res.Summary["local_test_accuracy"] = acc
		res.Summary["local_accuracy_difference"] = acc - torchAcc
		fmt.Printf("Silo ml.Train centrally, %d epochs: test accuracy %.4f (torch %.4f, %+.4f)\n", p.Rounds, acc, torchAcc, acc-torchAcc)
	}
	if p.Seeds > 1 {
		return centralSeeds(res, p, ds, spec, testX, testY, mean, sd, torchAcc)
	}
	res.Summary["torch_epoch_seconds"] = torchEpoch
	res.Summary["torch_epoch_cpu_seconds"] = torchCPU
	fmt.Println()
	t.Flush()
	return nil
}

// centralSeeds trains Silo's network centrally for as many epochs as torch,
// with -seeds seeds, and reruns torch with as many seeds: one run of either
// moves by about a point of accuracy with its seed, so the comparison is of
// the means.
func centralSeeds(res *harness.Results, p params, ds ml.Dataset, spec ml.Spec, testX [][]byte, testY []byte, mean, sd []float64, torchAcc float64) error {
	const d = 784
	tx := make([]float64, len(testY)*d)
	for i, img := range testX {
		for j, v := range img {
			tx[i*d+j] = (float64(v) - mean[j]) / sd[j]
		}
	}
	var silo, torch []float64
	for s := range p.Seeds {
		m, err := ml.NewModel(spec, p.Seed+int64(s))
		if err != nil {
			return err
		}
		opt := ml.TrainOptions{Optimizer: ml.Optimizer{Name: ml.OptimizerAdam, LearningRate: p.LR, BatchSize: p.Batch, LocalEpochs: p.Rounds},
			Rand: rand.New(rand.NewPCG(uint64(s), 7))}
		if _, err := m.Train(context.Background(), ds, opt); err != nil {
			return err
		}
		pred, err := m.Predict(mat.NewDense(len(testY), d, tx))
		if err != nil {
			return err
		}
		correct := 0
		for i, label := range testY {
			best := 0
			for k := 1; k < 10; k++ {
				if pred.At(i, k) > pred.At(i, best) {
					best = k
				}
			}
			if best == int(label) {
				correct++
			}
		}
		silo = append(silo, float64(correct)/float64(len(testY)))
	}
	torch = append(torch, torchAcc)
	for s := 1; s < p.Seeds; s++ {
		tr, err := torchMLP(centralDir, centralTrain, centralTest, p, 23+s)
		if err != nil {
			return err
		}
		correct := 0
		for i, c := range tr.pred {
			if c == int(testY[i]) {
				correct++
			}
		}
		torch = append(torch, float64(correct)/float64(len(testY)))
	}
	avg := func(v []float64) float64 {
		t := 0.0
		for _, x := range v {
			t += x
		}
		return t / float64(len(v))
	}
	res.Summary["central_silo_accuracies"] = silo
	res.Summary["central_torch_accuracies"] = torch
	res.Summary["central_accuracy_difference_of_means"] = avg(silo) - avg(torch)
	fmt.Printf("central accuracy over %d seeds, %d epochs: Silo %v (mean %.4f), torch %v (mean %.4f): difference of means %+.4f\n",
		p.Seeds, p.Rounds, silo, avg(silo), torch, avg(torch), avg(silo)-avg(torch))
	return nil
}

// The baseline's files, for reruns with other seeds.
var centralDir, centralTrain, centralTest string

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}

func f1(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }
func f2(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }
func f4(v float64) string { return strconv.FormatFloat(v, 'f', 4, 64) }
func signed(v float64) string {
	if v >= 0 {
		return "+" + f4(v)
	}
	return f4(v)
}
