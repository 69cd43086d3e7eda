package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/silofl/silo"
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
