package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/silofl/silo"
	"github.com/silofl/silo/model"
)

// TestFitSeededButDPNoiseUnpredictable: without differential privacy a fit
// is reproducible from the session seed; with it, the noise comes from a
// generator keyed afresh each time, so two identical fits differ and nobody
// who knows the seed can subtract the noise.
func TestFitSeededButDPNoiseUnpredictable(t *testing.T) {
	bt := newBenchTask(t)
	fit := func(noise float64) []byte {
		t.Helper()
		task := bt.task(silo.TaskFit, func(s *silo.TrainingSetup) {
			s.ClipNorm, s.NoiseMultiplier = 1, noise
			s.Optimizer = silo.OptimizerConfig{Name: "sgd", LearningRate: 0.1, BatchSize: 256, LocalEpochs: 1}
		})
		out, err := runFit(context.Background(), task, bt.log, bt.cfg)
		if err != nil {
			t.Fatal(err)
		}
		var fo silo.FitOutput
		if err := json.Unmarshal(out, &fo); err != nil || fo.NTrain == 0 {
			t.Fatalf("fit output %s: %v", out, err)
		}
		return task.Out[silo.PartParams]
	}
	if a, b := fit(0), fit(0); !bytes.Equal(a, b) {
		t.Fatal("two fits with the same seed and no DP differ: training is not reproducible")
	}
	if a, b := fit(1.1), fit(1.1); bytes.Equal(a, b) {
		t.Fatal("two DP fits with the same seed are identical: the noise is predictable")
	}
}

// TestJoinShuffledKeepsRowsWhole: the load-time shuffle moves whole rows
// with their targets, every row once, and changes the order.
func TestJoinShuffledKeepsRowsWhole(t *testing.T) {
	const n, w = 1000, 3
	var blocks rowBlocks
	y := make([]float64, n)
	for i := range n {
		y[i] = float64(i)
		blocks.add([]float64{float64(i * 10), float64(i*10 + 1), float64(i*10 + 2)})
	}
	x, y := blocks.joinShuffled(rand.New(rand.NewPCG(1, 2)), y, w)
	seen, moved := make([]bool, n), 0
	for i := range n {
		r := int(y[i])
		if seen[r] {
			t.Fatalf("row %d appears twice", r)
		}
		seen[r] = true
		if r != i {
			moved++
		}
		for j := range w {
			if x[i*w+j] != float64(r*10+j) {
				t.Fatalf("row %d was torn: %v", r, x[i*w:(i+1)*w])
			}
		}
	}
	if moved < n/2 {
		t.Errorf("only %d of %d rows moved", moved, n)
	}
}

// TestFitLBFGS: a GLM fit with lbfgs solves the local problem (a lower
// training loss than an SGD epoch, in few iterations), composes with
// FedProx, and is refused with DP noise, which it cannot honour.
func TestFitLBFGS(t *testing.T) {
	bt := newBenchTask(t)
	fit := func(opt silo.OptimizerConfig, mu, noise float64) (silo.FitOutput, error) {
		t.Helper()
		task := bt.task(silo.TaskFit, func(s *silo.TrainingSetup) {
			s.ClipNorm, s.NoiseMultiplier, s.ProximalMu, s.Optimizer = 1, noise, mu, opt
		})
		var fo silo.FitOutput
		out, err := runFit(context.Background(), task, bt.log, bt.cfg)
		if err == nil {
			err = json.Unmarshal(out, &fo)
		}
		return fo, err
	}
	lbfgs := silo.OptimizerConfig{Name: "lbfgs", LearningRate: 1, LocalEpochs: 100}
	l, err := fit(lbfgs, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	s, err := fit(silo.OptimizerConfig{Name: "sgd", LearningRate: 0.1, BatchSize: 64, LocalEpochs: 1}, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !(l.TrainLoss <= s.TrainLoss) || l.Steps < 1 || l.Steps > 100 {
		t.Errorf("lbfgs: loss %.5f in %d iterations; sgd epoch: loss %.5f", l.TrainLoss, l.Steps, s.TrainLoss)
	}
	if _, err := fit(lbfgs, 0.5, 0); err != nil {
		t.Errorf("lbfgs with fedprox: %v", err)
	}
	if _, err := fit(lbfgs, 0, 1.1); err == nil || !strings.Contains(err.Error(), "sgd or adam") {
		t.Errorf("lbfgs with DP noise: %v, want a refusal naming sgd or adam", err)
	}
}

// TestEncodeRowsMatchesEncodeRow: the column-wise encoder gives what
// Preprocessing.EncodeRow gives row by row: numeric columns (with nulls,
// NaN and ±Inf), categorical ones (unseen values, nulls), a numeric feature
// stored as text, over more rows than one tile, for a subset of the rows.
func TestEncodeRowsMatchesEncodeRow(t *testing.T) {
	prep := model.Preprocessing{Task: "regression", Target: "y", Features: []model.Feature{
		{Name: "a", Type: "float", Kind: model.Numeric, Mean: 1, Std: 2},
		{Name: "c", Type: "string", Kind: model.Categorical, Categories: []string{"x", "y", "z"}},
		{Name: "b", Type: "int", Kind: model.Numeric, Mean: -3, Std: 0.5},
		{Name: "s", Type: "string", Kind: model.Numeric, Mean: 0, Std: 1},
		{Name: "k", Type: "int", Kind: model.Categorical, Categories: []string{"1", "2"}},
	}}
	rng := rand.New(rand.NewPCG(5, 6))
	const n = 300
	cols := []column{{name: "a"}, {name: "c"}, {name: "b"}, {name: "s"}, {name: "k"}}
	for i := range cols {
		cols[i].null = make([]bool, n)
		if i == 1 || i == 3 {
			cols[i].str = make([]string, n)
		} else {
			cols[i].num = make([]float64, n)
		}
	}
	special := []float64{math.NaN(), math.Inf(1), math.Inf(-1)}
	for r := range n {
		for i := range cols {
			cols[i].null[r] = rng.IntN(10) == 0
		}
		cols[0].num[r] = rng.NormFloat64()
		if rng.IntN(20) == 0 {
			cols[0].num[r] = special[rng.IntN(3)]
		}
		cols[1].str[r] = []string{"x", "y", "z", "w"}[rng.IntN(4)]
		cols[2].num[r] = float64(rng.IntN(9) - 4)
		cols[3].str[r] = []string{" 1.5", "2", "oops", "-3e2"}[rng.IntN(4)]
		cols[4].num[r] = float64(rng.IntN(3))
	}
	var rows []int
	for r := range n {
		if rng.IntN(4) != 0 {
			rows = append(rows, r)
		}
	}
	w := prep.Width()
	enc := encodeRows(&prep, cols, rows, w, nil)
	want := make([]float64, w)
	for k, r := range rows {
		prep.EncodeRow(func(name string) model.Cell {
			for i := range cols {
				if cols[i].name == name {
					return cols[i].cell(r)
				}
			}
			t.Fatalf("no column %s", name)
			return model.Cell{}
		}, want)
		if got := enc[k*w : (k+1)*w]; !slices.Equal(got, want) {
			t.Fatalf("row %d: encodeRows %v, EncodeRow %v", r, got, want)
		}
	}
}
