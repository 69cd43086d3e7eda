// Command glm compares federated logistic regression in Silo with
// scikit-learn's LogisticRegression on the pooled data (issue 6a).
//
//	go run ./bench/glm                    # 200k rows × 30 features
//	go run ./bench/glm -rows 1000000      # the full size
//
// A seeded generator draws features with different means, scales and some
// correlation, and a binary target from a known logistic model. The rows
// are split evenly, in order, across 4 runners, each holding its share as a
// CSV file in its own storage. A real Silo server (SQLite, the production
// HTTP handler on loopback) and 4 real runner agents in this process train a
// `glm` binomial model with FedAvg for -rounds rounds, exactly as a user's
// session would (stats, then fit and evaluate each round).
//
// The train/test split is the runners' own (runner.IsTestRow with the
// session seed and validation fraction), written out as pooled train.csv
// and test.csv, which /usr/bin/python3 reads to fit StandardScaler +
// LogisticRegression (lbfgs, the same L2). Both models are scored on the
// same pooled test rows by the same ROC AUC code (ml.Evaluate); the ceiling
// is the AUC of the ground-truth model. Results go to bench/results/glm.json.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"time"

	"gonum.org/v1/gonum/mat"

	"github.com/silofl/silo/bench/internal/fed"
	"github.com/silofl/silo/bench/internal/harness"
	"github.com/silofl/silo/internal/ml"
	"github.com/silofl/silo/internal/runner"
	"github.com/silofl/silo/model"
)

type params struct {
	Rows      int     `json:"rows"`
	Features  int     `json:"features"`
	Runners   int     `json:"runners"`
	Rounds    int     `json:"rounds"`
	Optimizer string  `json:"optimizer"`
	Seed      int64   `json:"seed"`
	Fraction  float64 `json:"validation_fraction"`
	LR        float64 `json:"learning_rate"`
	Momentum  float64 `json:"momentum"`
	Batch     int     `json:"batch_size"`
	Epochs    int     `json:"local_epochs"`
	L2        float64 `json:"l2"`
	DataSeed  uint64  `json:"data_seed"`
	RunnerCPU int     `json:"runner_vcpu"`
}

func main() {
	var p params
	flag.IntVar(&p.Rows, "rows", 200_000, "rows in total (the issue's full size is 1000000)")
	flag.IntVar(&p.Features, "features", 30, "features")
	flag.IntVar(&p.Runners, "runners", 4, "runners the rows are split across")
	flag.IntVar(&p.Rounds, "rounds", 10, "federated rounds")
	flag.Int64Var(&p.Seed, "seed", 23, "session seed (train/test split)")
	flag.Float64Var(&p.Fraction, "fraction", 0.2, "validation fraction")
	flag.StringVar(&p.Optimizer, "optimizer", "lbfgs", "local optimiser: lbfgs (full-batch L-BFGS, the session defaults) or sgd (the documented example: -lr -momentum -batch -epochs)")
	flag.Float64Var(&p.LR, "lr", 0.1, "SGD learning rate")
	flag.Float64Var(&p.Momentum, "momentum", 0.9, "SGD momentum")
	flag.IntVar(&p.Batch, "batch", 64, "SGD batch size")
	flag.IntVar(&p.Epochs, "epochs", 1, "local epochs per round (sgd); with lbfgs, if given, the most iterations per round")
	flag.Float64Var(&p.L2, "l2", 1e-4, "L2 penalty (Silo's (l2/2)·‖w‖² on the mean loss; sklearn C = 1/(l2·n))")
	flag.Uint64Var(&p.DataSeed, "data-seed", 6, "seed of the data generator")
	flag.IntVar(&p.RunnerCPU, "runner-vcpu", 1, "vCPU allowance of each runner (the machine's cores are shared by all)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the federated session (server and runners) to this file")
	flag.Parse()
	flag.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	profile = *cpuprofile
	if err := run(p); err != nil {
		fmt.Fprintln(os.Stderr, "bench/glm:", err)
		os.Exit(1)
	}
}

// explicit holds the flags given on the command line.
var explicit = map[string]bool{}

// profile is where to write a CPU profile of the session, if anywhere.
var profile string

// optimizer is the session's "optimizer" object.
func optimizer(p params) map[string]any {
	if p.Optimizer == "lbfgs" {
		o := map[string]any{"name": "lbfgs"}
		if explicit["epochs"] {
			o["local_epochs"] = p.Epochs
		}
		return o
	}
	return map[string]any{"name": p.Optimizer, "learning_rate": p.LR, "momentum": p.Momentum, "batch_size": p.Batch, "local_epochs": p.Epochs}
}

func run(p params) error {
	res := harness.NewResults("glm")
	res.Params["config"] = p
	fmt.Printf("Silo federated GLM vs scikit-learn on %s\n", res.Machine)
	ctx := context.Background()

	dir, err := os.MkdirTemp("", "silo-bench-glm-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	// The data: one CSV per runner, and the pooled split for the baseline.
	start := time.Now()
	d := generate(p)
	fmt.Printf("generated %d rows × %d features in %.1fs (%.1f%% positive)\n", p.Rows, p.Features, time.Since(start).Seconds(), 100*mean(d.y))

	f, err := fed.Start(ctx)
	if err != nil {
		return err
	}
	defer f.Close()
	names := make([]string, p.Runners)
	for k := range names {
		names[k] = fmt.Sprintf("org-%d", k+1)
	}
	if err := f.AddRunners(names, p.RunnerCPU, 4096); err != nil {
		return err
	}
	header := make([]string, p.Features+1)
	for j := range p.Features {
		header[j] = fmt.Sprintf("f%02d", j+1)
	}
	header[p.Features] = "label"
	var trainRows, testRows []int
	var datasets []string
	per := p.Rows / p.Runners
	for k, name := range names {
		lo, hi := k*per, (k+1)*per
		if k == p.Runners-1 {
			hi = p.Rows
		}
		path := filepath.Join(f.Root(name), "data.csv")
		if err := writeCSV(path, header, d, rangeOf(lo, hi)); err != nil {
			return err
		}
		for i := lo; i < hi; i++ {
			if runner.IsTestRow(p.Seed, int64(i-lo), p.Fraction) {
				testRows = append(testRows, i)
			} else {
				trainRows = append(trainRows, i)
			}
		}
		ds := fmt.Sprintf("org_%d", k+1)
		datasets = append(datasets, ds)
		if _, err := f.AddDataset(ds, name, path); err != nil {
			return err
		}
	}
	trainPath, testPath := filepath.Join(dir, "train.csv"), filepath.Join(dir, "test.csv")
	if err := writeCSV(trainPath, header, d, trainRows); err != nil {
		return err
	}
	if err := writeCSV(testPath, header, d, testRows); err != nil {
		return err
	}
	fmt.Printf("%d runners online, %d datasets connected; split: %d train / %d test rows\n", p.Runners, len(datasets), len(trainRows), len(testRows))

	// Silo: a federated session, end to end.
	cfg := map[string]any{
		"name": "bench-glm", "type": "hfl", "datasets": datasets, "min_clients": p.Runners, "rounds": p.Rounds, "round_timeout": "30m",
		"task":      map[string]any{"type": "classification", "target": "label", "positive_class": "1"},
		"model":     map[string]any{"package": "glm", "family": "binomial", "l2": p.L2},
		"optimizer": optimizer(p),
		"strategy":  map[string]any{"name": "fedavg"}, "validation": map[string]any{"fraction": p.Fraction}, "seed": p.Seed,
	}
	fmt.Printf("training: %d rounds of federated glm binomial (FedAvg, optimizer %v)...\n", p.Rounds, optimizer(p))
	if profile != "" {
		pf, err := os.Create(profile)
		if err != nil {
			return err
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return err
		}
	}
	sr, err := f.RunSession(cfg, 20*time.Millisecond)
	pprof.StopCPUProfile()
	if err != nil {
		return err
	}
	metrics, err := f.API.SessionMetrics(ctx, sr.Session.ID)
	if err != nil {
		return err
	}
	doc, err := f.API.LoadModel(ctx, sr.Session.ID, false)
	if err != nil {
		return err
	}
	siloProb, err := predict(doc, d, testRows)
	if err != nil {
		return err
	}
	yTest := make([]float64, len(testRows))
	trueProb := make([]float64, len(testRows))
	for i, r := range testRows {
		yTest[i] = d.y[r]
		trueProb[i] = d.p[r]
	}
	siloAUC, siloLL, err := scores(yTest, siloProb)
	if err != nil {
		return err
	}
	oracleAUC, oracleLL, _ := scores(yTest, trueProb)
	first := sr.RoundAt[0]
	later := time.Duration(0)
	if p.Rounds > 1 {
		later = (sr.RoundAt[len(sr.RoundAt)-1] - first) / time.Duration(p.Rounds-1)
	}
	fedAUC := metrics.Federated[len(metrics.Federated)-1]["roc_auc"]
	roundAUC := make([]float64, len(sr.RoundAt))
	for _, m := range metrics.Federated {
		if r := int(m["round"]); r >= 1 && r <= len(roundAUC) {
			roundAUC[r-1] = m["roc_auc"]
		}
	}
	res.Summary["round_roc_auc"] = roundAUC
	fmt.Printf("Silo: %.2fs for %d rounds (round 1, with stats and data loading: %.2fs; later rounds %.3fs each); test ROC AUC %.5f (server's histogram estimate %.5f)\n",
		sr.Total.Seconds(), p.Rounds, first.Seconds(), later.Seconds(), siloAUC, fedAUC)

	// scikit-learn on the pooled training rows.
	row := map[string]any{"reader": "silo_federated", "seconds": sr.Total.Seconds(), "roc_auc": siloAUC, "log_loss": siloLL,
		"first_round_seconds": first.Seconds(), "later_round_seconds": later.Seconds(), "server_roc_auc_estimate": fedAUC}
	rows := []map[string]any{row, {"reader": "ground_truth_model", "roc_auc": oracleAUC, "log_loss": oracleLL}}
	res.Summary["silo_roc_auc"] = siloAUC
	res.Summary["oracle_roc_auc"] = oracleAUC
	res.Summary["silo_seconds"] = sr.Total.Seconds()
	res.Summary["silo_later_round_seconds"] = later.Seconds()
	if ok, why := harness.PythonHas("sklearn", "pandas", "numpy"); !ok {
		res.Note("scikit-learn baseline skipped: %s", why)
	} else {
		sk, err := sklearn(dir, trainPath, testPath, p.L2, len(trainRows))
		if err != nil {
			return err
		}
		skAUC, skLL, err := scores(yTest, sk.prob)
		if err != nil {
			return err
		}
		fmt.Printf("scikit-learn: %.2fs (read_csv %.2fs, fit %.2fs, %d lbfgs iterations); test ROC AUC %.5f (sklearn's own roc_auc_score %.5f); peak RSS %s\n",
			sk.Read+sk.Fit, sk.Read, sk.Fit, sk.Iter, skAUC, sk.AUC, harness.FormatSize(sk.RSS))
		rows = append(rows, map[string]any{"reader": "sklearn_pooled", "seconds": sk.Read + sk.Fit, "read_seconds": sk.Read, "fit_seconds": sk.Fit,
			"iterations": sk.Iter, "roc_auc": skAUC, "log_loss": skLL, "sklearn_roc_auc_score": sk.AUC, "peak_rss_bytes": sk.RSS})
		res.Summary["sklearn_roc_auc"] = skAUC
		res.Summary["roc_auc_difference"] = siloAUC - skAUC
		res.Summary["wall_time_ratio"] = sr.Total.Seconds() / (sk.Read + sk.Fit)
		res.Summary["wall_time_ratio_vs_fit_only"] = sr.Total.Seconds() / sk.Fit
		res.Summary["later_round_vs_sklearn_fit"] = later.Seconds() / sk.Fit
		// Time to target: the first round whose model reaches sklearn's test
		// AUC less 0.001, by the server's per-round federated AUC (the
		// runners' test rows are the pooled test rows scored here).
		target := skAUC - 0.001
		reached := -1
		for k, a := range roundAUC {
			if a >= target {
				reached = k
				break
			}
		}
		skTime := sk.Read + sk.Fit
		if reached >= 0 {
			tt := sr.RoundAt[reached].Seconds()
			res.Summary["rounds_to_target"] = reached + 1
			res.Summary["seconds_to_target"] = tt
			res.Summary["time_to_target_ratio"] = tt / skTime
			fmt.Printf("reached sklearn's AUC − 0.001 (%.5f) in round %d after %.2fs: %.2f× sklearn's read+fit\n", target, reached+1, tt, tt/skTime)
		} else {
			res.Note("Silo did not reach sklearn's test AUC less 0.001 (%.5f) in %d rounds", target, p.Rounds)
			fmt.Printf("did not reach sklearn's AUC − 0.001 (%.5f) in %d rounds\n", target, p.Rounds)
		}

		fmt.Println()
		t := harness.NewTable("model", "test ROC AUC", "Δ AUC vs sklearn", "log loss", "wall s", "wall vs sklearn")
		t.Row("Silo federated glm ("+strconv.Itoa(p.Runners)+" runners)", f5(siloAUC), signed(siloAUC-skAUC), f5(siloLL), f2(sr.Total.Seconds()), f2(sr.Total.Seconds()/(sk.Read+sk.Fit))+"×")
		t.Row("sklearn LogisticRegression (pooled)", f5(skAUC), "0", f5(skLL), f2(sk.Read+sk.Fit), "1.00×")
		t.Row("ground-truth model (ceiling)", f5(oracleAUC), signed(oracleAUC-skAUC), f5(oracleLL), "-", "-")
		t.Flush()
		fmt.Printf("\nwall time ratio %.2f× (vs sklearn fit alone %.2f×); one later Silo round = %.2f× sklearn's whole fit\n",
			sr.Total.Seconds()/(sk.Read+sk.Fit), sr.Total.Seconds()/sk.Fit, later.Seconds()/sk.Fit)
	}
	res.Params["train_rows"] = len(trainRows)
	res.Params["test_rows"] = len(testRows)
	res.Params["gomaxprocs"] = runtime.GOMAXPROCS(0)
	res.Summary["wire_bytes_total"] = sr.End.Sub(sr.Start).Total()
	res.Note("Silo's time is the session's wall time from creation to completion on this machine: %d runners and the server share its %d cores; it includes the statistics pass and each runner reading and encoding its CSV (round 1), and every round's fit and evaluate tasks", p.Runners, runtime.NumCPU())
	res.Note("scikit-learn's time is pandas.read_csv of the pooled training file plus StandardScaler + LogisticRegression(lbfgs).fit, timed inside Python (interpreter start excluded)")
	res.Rows = rows
	path, err := res.Write()
	if err != nil {
		return err
	}
	fmt.Printf("results: %s\n", path)
	return nil
}

// data is the generated table.
type data struct {
	d    int
	x    []float64 // row-major
	y    []float64
	p    []float64 // ground-truth probability
	beta []float64
}

// generate draws x = μ + σ·(z + 0.4·shared) per feature, so features have
// different locations and scales and are correlated, and y ~
// Bernoulli(σ(β₀ + β·standardised x)), with a third of the β zero.
func generate(p params) *data {
	rng := rand.New(rand.NewPCG(p.DataSeed, 0x61a))
	d := p.Features
	mu, sd, beta := make([]float64, d), make([]float64, d), make([]float64, d)
	for j := range d {
		mu[j] = 4 * (rng.Float64() - 0.5)
		sd[j] = math.Exp(2 * (rng.Float64() - 0.5))
		if j%3 != 2 {
			beta[j] = rng.NormFloat64() * 1.5 / math.Sqrt(float64(d))
		}
	}
	out := &data{d: d, x: make([]float64, p.Rows*d), y: make([]float64, p.Rows), p: make([]float64, p.Rows), beta: beta}
	const intercept = -0.3
	scale := math.Sqrt(1 + 0.4*0.4)
	for i := range p.Rows {
		shared := rng.NormFloat64()
		eta := intercept
		for j := range d {
			z := (rng.NormFloat64() + 0.4*shared) / scale
			// Four decimals: what a CSV export would hold.
			v := math.Round((mu[j]+sd[j]*z)*1e4) / 1e4
			out.x[i*d+j] = v
			eta += beta[j] * z
		}
		out.p[i] = 1 / (1 + math.Exp(-eta))
		if rng.Float64() < out.p[i] {
			out.y[i] = 1
		}
	}
	return out
}

func rangeOf(lo, hi int) []int {
	r := make([]int, hi-lo)
	for i := range r {
		r[i] = lo + i
	}
	return r
}

func writeCSV(path string, header []string, d *data, rows []int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	cw := csv.NewWriter(w)
	cw.Write(header)
	cw.Flush()
	var line []byte
	for _, i := range rows {
		line = line[:0]
		for j := range d.d {
			line = strconv.AppendFloat(line, d.x[i*d.d+j], 'f', -1, 64)
			line = append(line, ',')
		}
		line = strconv.AppendInt(line, int64(d.y[i]), 10)
		line = append(line, '\n')
		w.Write(line)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Close()
}

// predict scores rows with the downloaded model document, through its own
// preprocessing (the federated standardisation).
func predict(doc *model.Document, d *data, rows []int) ([]float64, error) {
	prep := &doc.Preprocessing
	w := prep.Width()
	x := make([]float64, len(rows)*w)
	for k, i := range rows {
		prep.EncodeRow(func(col string) model.Cell {
			j, err := strconv.Atoi(col[1:])
			if err != nil || j < 1 || j > d.d {
				return model.Cell{Null: true}
			}
			return model.Cell{Num: d.x[i*d.d+j-1]}
		}, x[k*w:(k+1)*w])
	}
	out, err := doc.Model().Predict(mat.NewDense(len(rows), w, x))
	if err != nil {
		return nil, err
	}
	pos := slices.Index(doc.Spec.Classes, "1")
	if pos < 0 {
		return nil, fmt.Errorf("model classes %v have no \"1\"", doc.Spec.Classes)
	}
	p := make([]float64, len(rows))
	for k := range rows {
		p[k] = out.At(k, pos)
	}
	return p, nil
}

// scores returns ROC AUC and log loss by Silo's own metric code, so every
// model is scored the same way.
func scores(y, p []float64) (auc, logLoss float64, err error) {
	pred := mat.NewDense(len(y), 2, nil)
	for i, v := range p {
		pred.Set(i, 0, 1-v)
		pred.Set(i, 1, v)
	}
	m, err := ml.Evaluate(ml.Classification, 2, y, pred)
	if err != nil {
		return 0, 0, err
	}
	return m["roc_auc"], m["log_loss"], nil
}

type sklearnResult struct {
	Read, Fit float64
	Iter      int
	AUC       float64
	RSS       int64
	prob      []float64
}

const sklearnScript = `
import sys, time, json
import numpy as np, pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from sklearn.pipeline import make_pipeline
from sklearn.metrics import roc_auc_score
train, test, l2, n, out = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
t0 = time.perf_counter()
df = pd.read_csv(train)
X, y = df.drop(columns=["label"]).to_numpy(), df["label"].to_numpy()
t1 = time.perf_counter()
C = 1.0 / (l2 * n) if l2 > 0 else 1e12
model = make_pipeline(StandardScaler(), LogisticRegression(C=C, solver="lbfgs", max_iter=1000))
model.fit(X, y)
t2 = time.perf_counter()
te = pd.read_csv(test)
p = model.predict_proba(te.drop(columns=["label"]).to_numpy())[:, list(model.classes_).index(1)]
np.savetxt(out, p, fmt="%.17g")
hwm = ` + harness.PythonVmHWM + `
print(json.dumps({"read": t1 - t0, "fit": t2 - t1, "iter": int(model[-1].n_iter_[0]), "auc": roc_auc_score(te["label"], p), "rss": hwm}))
`

func sklearn(dir, trainPath, testPath string, l2 float64, n int) (*sklearnResult, error) {
	probPath := filepath.Join(dir, "sklearn-prob.txt")
	r, err := harness.RunChild(exec.Command(harness.DebianPython, "-c", sklearnScript, trainPath, testPath, fmt.Sprint(l2), strconv.Itoa(n), probPath))
	if err != nil {
		return nil, err
	}
	var out struct {
		Read, Fit, AUC float64
		Iter           int
		RSS            int64
	}
	if err := harness.LastJSONLine(r.Stdout, &out); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(probPath)
	if err != nil {
		return nil, err
	}
	var prob []float64
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		v, err := strconv.ParseFloat(sc.Text(), 64)
		if err != nil {
			return nil, err
		}
		prob = append(prob, v)
	}
	return &sklearnResult{Read: out.Read, Fit: out.Fit, Iter: out.Iter, AUC: out.AUC, RSS: max(out.RSS, r.PeakRSS), prob: prob}, nil
}

func mean(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

func f2(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }
func f5(v float64) string { return strconv.FormatFloat(v, 'f', 5, 64) }
func signed(v float64) string {
	if v >= 0 {
		return "+" + f5(v)
	}
	return f5(v)
}
