package runner

import (
	"bytes"
	"context"
	"encoding/json"
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
