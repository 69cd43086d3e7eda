package ml

import (
	"context"
	"fmt"
	"testing"
)

const benchRows, benchFeatures = 100_000, 30

// benchEpoch times one local epoch over 100k × 30 seeded logistic data and
// reports throughput in rows and row-features per second.
func benchEpoch(b *testing.B, s Spec, opt TrainOptions) {
	benchEpochOf(b, s, opt, binaryData(1, benchRows, benchFeatures))
}

func benchEpochOf(b *testing.B, s Spec, opt TrainOptions, d Dataset) {
	m := mustModel(b, s, 1)
	start := m.Params()
	opt.Rand = newRand(1)
	b.ReportAllocs()
	self0, _ := cpuTime()
	for b.Loop() {
		if err := m.SetParams(start); err != nil {
			b.Fatal(err)
		}
		if _, err := m.Train(context.Background(), d, opt); err != nil {
			b.Fatal(err)
		}
	}
	if self1, _ := cpuTime(); self1 > self0 {
		b.ReportMetric(float64((self1-self0).Microseconds())/1e3/float64(b.N), "cpu-ms/op")
	}
	rows := float64(benchRows*opt.Optimizer.LocalEpochs) * float64(b.N)
	b.ReportMetric(rows/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(rows*benchFeatures/b.Elapsed().Seconds(), "row-features/s")
}

var benchGLM = Spec{Package: PackageGLM, Task: Classification, NumFeatures: benchFeatures, Classes: []string{"0", "1"}, L2: 1e-4}

func BenchmarkGLMEpoch(b *testing.B) {
	benchEpoch(b, benchGLM, TrainOptions{Optimizer: Optimizer{Name: OptimizerSGD, LearningRate: 0.1, Momentum: 0.9, BatchSize: 64, LocalEpochs: 1}})
}

// BenchmarkGLMEpochShuffled is the runner's case: rows shuffled once when
// loaded, epochs visiting blocks of consecutive rows.
func BenchmarkGLMEpochShuffled(b *testing.B) {
	d := binaryData(1, benchRows, benchFeatures)
	d.Shuffled = true
	benchEpochOf(b, benchGLM, TrainOptions{Optimizer: Optimizer{Name: OptimizerSGD, LearningRate: 0.1, Momentum: 0.9, BatchSize: 64, LocalEpochs: 1}}, d)
}

func BenchmarkGLMEpochDP(b *testing.B) {
	benchEpoch(b, benchGLM, TrainOptions{
		Optimizer: Optimizer{Name: OptimizerSGD, LearningRate: 0.1, Momentum: 0.9, BatchSize: 64, LocalEpochs: 1},
		DP:        &DPOptions{ClipNorm: 1, NoiseMultiplier: 1},
	})
}

var benchFFNet = Spec{Package: PackageFFNet, Task: Classification, NumFeatures: benchFeatures, Classes: []string{"0", "1"}, HiddenLayers: []int{64, 32}, Dropout: 0.1}

func BenchmarkFFNetEpoch(b *testing.B) {
	benchEpoch(b, benchFFNet, TrainOptions{Optimizer: Optimizer{Name: OptimizerAdam, LearningRate: 1e-3, BatchSize: 64, LocalEpochs: 1}})
}

func BenchmarkFFNetEpochDP(b *testing.B) {
	benchEpoch(b, benchFFNet, TrainOptions{
		Optimizer: Optimizer{Name: OptimizerAdam, LearningRate: 1e-3, BatchSize: 64, LocalEpochs: 1},
		DP:        &DPOptions{ClipNorm: 1, NoiseMultiplier: 1},
	})
}

func BenchmarkPredictFFNet(b *testing.B) {
	d := binaryData(1, benchRows, benchFeatures)
	m := mustModel(b, benchFFNet, 1)
	for b.Loop() {
		if _, err := m.Predict(d.X); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(benchRows*b.N)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkFFNetMNISTEpoch is one Adam epoch of a 784-128-10 network over
// 14,250 rows, batch 64: one of four runners' shares of Fashion-MNIST.
func BenchmarkFFNetMNISTEpoch(b *testing.B) {
	for _, w := range []int{1, 2} {
		b.Run(fmt.Sprintf("workers=%d", w), func(b *testing.B) { benchMNISTEpoch(b, w) })
	}
}

func benchMNISTEpoch(b *testing.B, workers int) {
	const n = 14250
	rng := newRand(3)
	s := Spec{Package: PackageFFNet, Task: Classification, NumFeatures: 784, Classes: classes(10), HiddenLayers: []int{128}}
	d := Dataset{X: randomX(rng, n, 784), Y: randomTargets(rng, s, n), Shuffled: true}
	m := mustModel(b, s, 1)
	start := m.Params()
	opt := TrainOptions{Optimizer: adam(1e-3, 64, 1), Rand: newRand(1), Workers: workers}
	self0, _ := cpuTime()
	for b.Loop() {
		if err := m.SetParams(start); err != nil {
			b.Fatal(err)
		}
		if _, err := m.Train(context.Background(), d, opt); err != nil {
			b.Fatal(err)
		}
	}
	if self1, _ := cpuTime(); self1 > self0 {
		b.ReportMetric(float64((self1-self0).Microseconds())/1e3/float64(b.N), "cpu-ms/op")
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "rows/s")
}
