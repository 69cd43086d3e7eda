package ml

import (
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"
)

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x7e57)) }

// randomX draws n×d standard normal features.
func randomX(rng *rand.Rand, n, d int) *mat.Dense {
	x := make([]float64, n*d)
	for i := range x {
		x[i] = rng.NormFloat64()
	}
	return mat.NewDense(n, d, x)
}

// randomTargets draws valid (not model-consistent) targets for s.
func randomTargets(rng *rand.Rand, s Spec, n int) []float64 {
	y := make([]float64, n)
	for i := range y {
		switch {
		case s.Task == Classification:
			y[i] = float64(rng.IntN(len(s.Classes)))
		case s.Family == FamilyPoisson:
			y[i] = float64(rng.IntN(5))
		case s.Family == FamilyGamma:
			y[i] = math.Exp(rng.NormFloat64())
		case s.Family == FamilyTweedie:
			if rng.Float64() < 0.3 {
				y[i] = 0
			} else {
				y[i] = math.Exp(rng.NormFloat64())
			}
		default:
			y[i] = rng.NormFloat64()
		}
	}
	return y
}

func mustModel(t testing.TB, s Spec, seed int64) *Model {
	t.Helper()
	m, err := NewModel(s, seed)
	if err != nil {
		t.Fatalf("NewModel(%+v): %v", s, err)
	}
	return m
}

func classes(k int) []string {
	c := make([]string, k)
	for i := range c {
		c[i] = string(rune('a' + i))
	}
	return c
}

func norm2(v []float64) float64 { return math.Sqrt(dot(v, v)) }

func sub(a, b []float64) []float64 {
	d := make([]float64, len(a))
	for i := range a {
		d[i] = a[i] - b[i]
	}
	return d
}

func glmCoef(m *Model) []float64 { return m.params[:m.spec.NumFeatures+1] }

func accuracy(t testing.TB, m *Model, d Dataset) float64 {
	t.Helper()
	met, err := m.Evaluate(d)
	if err != nil {
		t.Fatal(err)
	}
	return met["accuracy"]
}

func sgd(lr float64, batch, epochs int) Optimizer {
	return Optimizer{Name: OptimizerSGD, LearningRate: lr, BatchSize: batch, LocalEpochs: epochs}
}

func adam(lr float64, batch, epochs int) Optimizer {
	return Optimizer{Name: OptimizerAdam, LearningRate: lr, BatchSize: batch, LocalEpochs: epochs}
}
