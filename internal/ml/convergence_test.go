package ml

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// linearData draws standard normal features and the linear predictor
// η = Xβ + β0 for the true coefficients beta (intercept last).
func linearData(rng *rand.Rand, n int, beta []float64) (*mat.Dense, []float64) {
	d := len(beta) - 1
	x := randomX(rng, n, d)
	eta := make([]float64, n)
	for i := range eta {
		eta[i] = beta[d] + dot(x.RawRowView(i), beta[:d])
	}
	return x, eta
}

func train(t *testing.T, m *Model, d Dataset, opt TrainOptions) TrainResult {
	t.Helper()
	if opt.Rand == nil {
		opt.Rand = newRand(5)
	}
	res, err := m.Train(context.Background(), d, opt)
	if err != nil {
		t.Fatalf("Train: %v", err)
	}
	return res
}

func TestGaussianGLMRecoversOLS(t *testing.T) {
	rng := newRand(10)
	const n = 2000
	beta := []float64{1.5, -2, 0.5, 0, 3, 0.7}
	x, y := linearData(rng, n, beta)
	for i := range y {
		y[i] += rng.NormFloat64()
	}

	// Least squares on [X 1] by QR.
	a := mat.NewDense(n, len(beta), nil)
	for i := 0; i < n; i++ {
		for j := 0; j < len(beta)-1; j++ {
			a.Set(i, j, x.At(i, j))
		}
		a.Set(i, len(beta)-1, 1)
	}
	var ols mat.Dense
	if err := ols.Solve(a, mat.NewVecDense(n, y)); err != nil {
		t.Fatal(err)
	}

	m := mustModel(t, Spec{Package: PackageGLM, Task: Regression, NumFeatures: len(beta) - 1}, 1)
	train(t, m, Dataset{X: x, Y: y}, TrainOptions{Optimizer: sgd(0.2, n, 300)})
	for j, got := range glmCoef(m) {
		if want := ols.At(j, 0); math.Abs(got-want) > 1e-3 {
			t.Errorf("coefficient %d: got %.6f, OLS %.6f", j, got, want)
		}
	}
}

func TestBinomialGLMRecoversCoefficientsAndBayesAUC(t *testing.T) {
	rng := newRand(11)
	beta := []float64{1, -2, 0.5, 0, -0.5}
	draw := func(n int) (Dataset, []float64) {
		x, eta := linearData(rng, n, beta)
		y := make([]float64, n)
		p := make([]float64, n)
		for i, e := range eta {
			p[i] = sigmoid(e)
			if rng.Float64() < p[i] {
				y[i] = 1
			}
		}
		return Dataset{X: x, Y: y}, p
	}
	trainSet, _ := draw(20000)
	test, trueP := draw(20000)

	m := mustModel(t, Spec{Package: PackageGLM, Task: Classification, NumFeatures: 4, Classes: []string{"no", "yes"}}, 1)
	train(t, m, trainSet, TrainOptions{Optimizer: sgd(0.1, 100, 10)})
	for j, got := range glmCoef(m) {
		if math.Abs(got-beta[j]) > 0.1 {
			t.Errorf("coefficient %d: got %.3f, true %.3f", j, got, beta[j])
		}
	}

	met, err := m.Evaluate(test)
	if err != nil {
		t.Fatal(err)
	}
	pos := make([]bool, len(test.Y))
	for i, y := range test.Y {
		pos[i] = y == 1
	}
	bayes, _ := rocAUC(trueP, pos)
	t.Logf("AUC %.4f, Bayes AUC %.4f", met["roc_auc"], bayes)
	if math.Abs(met["roc_auc"]-bayes) > 0.003 {
		t.Errorf("ROC AUC %.4f, want within 0.003 of the Bayes AUC %.4f", met["roc_auc"], bayes)
	}
}

// poissonDraw samples Poisson(lambda) by Knuth's method (lambda is small here).
func poissonDraw(rng *rand.Rand, lambda float64) int {
	l, k, p := math.Exp(-lambda), 0, 1.0
	for {
		p *= rng.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

func TestLogLinkGLMsRecoverCoefficients(t *testing.T) {
	beta := []float64{0.3, -0.2, 0.5, 0.5}
	cases := []struct {
		family string
		power  float64
		draw   func(rng *rand.Rand, mu float64) float64
	}{
		{FamilyPoisson, 0, func(rng *rand.Rand, mu float64) float64 { return float64(poissonDraw(rng, mu)) }},
		{FamilyGamma, 0, func(rng *rand.Rand, mu float64) float64 {
			const shape = 4 // sum of 4 exponentials with mean μ/4
			y := 0.0
			for range shape {
				y += rng.ExpFloat64() * mu / shape
			}
			return y
		}},
		{FamilyTweedie, 1.5, func(rng *rand.Rand, mu float64) float64 {
			// Compound Poisson–gamma with p = 1.5, dispersion φ = 1: N ~
			// Poisson(μ^0.5/0.5) jumps, each gamma with shape (2−p)/(p−1) = 1
			// (exponential) and scale φ(p−1)μ^(p−1) = 0.5·μ^0.5.
			y := 0.0
			for range poissonDraw(rng, math.Sqrt(mu)/0.5) {
				y += rng.ExpFloat64() * 0.5 * math.Sqrt(mu)
			}
			return y
		}},
	}
	for _, tc := range cases {
		t.Run(tc.family, func(t *testing.T) {
			rng := newRand(12)
			const n = 20000
			x, eta := linearData(rng, n, beta)
			y := make([]float64, n)
			for i, e := range eta {
				y[i] = tc.draw(rng, math.Exp(e))
			}
			s := Spec{Package: PackageGLM, Task: Regression, NumFeatures: 3, Family: tc.family, TweediePower: tc.power}
			m := mustModel(t, s, 1)
			train(t, m, Dataset{X: x, Y: y}, TrainOptions{Optimizer: adam(0.01, 128, 5)})
			for j, got := range glmCoef(m) {
				if math.Abs(got-beta[j]) > 0.05 {
					t.Errorf("coefficient %d: got %.3f, true %.3f", j, got, beta[j])
				}
			}
		})
	}
}

func TestL1GivesExactZeros(t *testing.T) {
	rng := newRand(13)
	const n = 1000
	beta := []float64{2, -1.5, 1, 0, 0, 0, 0, 0, 0, 0, 0.5}
	x, y := linearData(rng, n, beta)
	for i := range y {
		y[i] += 0.5 * rng.NormFloat64()
	}
	d := Dataset{X: x, Y: y}
	fit := func(l1 float64) []float64 {
		m := mustModel(t, Spec{Package: PackageGLM, Task: Regression, NumFeatures: 10, L1: l1}, 1)
		train(t, m, d, TrainOptions{Optimizer: sgd(0.1, n, 300)})
		return glmCoef(m)
	}
	zeros := func(c []float64) int {
		z := 0
		for _, v := range c[:10] {
			if v == 0 {
				z++
			}
		}
		return z
	}
	if z := zeros(fit(0)); z != 0 {
		t.Fatalf("without L1, %d coefficients are exactly zero; the test cannot tell L1 apart", z)
	}
	c := fit(0.2)
	for j := 0; j < 3; j++ {
		if c[j] == 0 {
			t.Errorf("relevant coefficient %d was zeroed", j)
		}
	}
	for j := 3; j < 10; j++ {
		if c[j] != 0 {
			t.Errorf("irrelevant coefficient %d = %g, want exactly 0", j, c[j])
		}
	}
	if c[10] == 0 {
		t.Errorf("the intercept must not be penalised, but it is 0")
	}
}

// xorData labels points of [-1,1]² by the sign of x₁x₂: no linear boundary
// does better than chance.
func xorData(rng *rand.Rand, n int) Dataset {
	x := make([]float64, 2*n)
	y := make([]float64, n)
	for i := 0; i < n; i++ {
		a, b := 2*rng.Float64()-1, 2*rng.Float64()-1
		x[2*i], x[2*i+1] = a, b
		if a*b > 0 {
			y[i] = 1
		}
	}
	return Dataset{X: mat.NewDense(n, 2, x), Y: y}
}

func TestFFNetLearnsXORWhereGLMCannot(t *testing.T) {
	rng := newRand(14)
	trainSet, test := xorData(rng, 2000), xorData(rng, 1000)
	cls := []string{"neg", "pos"}

	net := mustModel(t, Spec{Package: PackageFFNet, Task: Classification, NumFeatures: 2, Classes: cls, HiddenLayers: []int{16, 16}, Activation: ActivationTanh}, 3)
	train(t, net, trainSet, TrainOptions{Optimizer: adam(0.01, 32, 40)})
	glm := mustModel(t, Spec{Package: PackageGLM, Task: Classification, NumFeatures: 2, Classes: cls}, 3)
	train(t, glm, trainSet, TrainOptions{Optimizer: adam(0.01, 32, 40)})

	netAcc, glmAcc := accuracy(t, net, test), accuracy(t, glm, test)
	t.Logf("test accuracy: ffnet %.3f, glm %.3f", netAcc, glmAcc)
	if netAcc <= 0.95 {
		t.Errorf("ffnet accuracy %.3f, want > 0.95", netAcc)
	}
	// A linear boundary cannot beat chance on XOR: the GLM's accuracy stays
	// near (or, by an unlucky tilt, below) 0.5 and its log loss near ln 2.
	if glmAcc > 0.6 {
		t.Errorf("glm accuracy %.3f on XOR, want ≈ 0.5", glmAcc)
	}
	if l, err := glm.Loss(test); err != nil || l < 0.99*math.Ln2 {
		t.Errorf("glm log loss %.4f (err %v), want ≥ 0.99·ln 2", l, err)
	}
}

func TestFFNetSeparatesThreeBlobs(t *testing.T) {
	rng := newRand(15)
	centres := [][]float64{{3, 0, 0, 0}, {0, 3, 0, 0}, {0, 0, 3, 0}}
	draw := func(n int) Dataset {
		x := randomX(rng, n, 4)
		y := make([]float64, n)
		for i := range y {
			c := rng.IntN(3)
			y[i] = float64(c)
			row := x.RawRowView(i)
			for j := range row {
				row[j] += centres[c][j]
			}
		}
		return Dataset{X: x, Y: y}
	}
	trainSet, test := draw(1500), draw(1000)
	m := mustModel(t, Spec{Package: PackageFFNet, Task: Classification, NumFeatures: 4, Classes: []string{"a", "b", "c"}, HiddenLayers: []int{16}, Dropout: 0.1}, 4)
	train(t, m, trainSet, TrainOptions{Optimizer: adam(0.01, 32, 20)})
	met, err := m.Evaluate(test)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("test metrics %v", met)
	if met["accuracy"] <= 0.9 {
		t.Errorf("accuracy %.3f, want > 0.9", met["accuracy"])
	}
	if met["roc_auc"] <= 0.95 {
		t.Errorf("macro ROC AUC %.3f, want > 0.95", met["roc_auc"])
	}
}

func TestFFNetRegressionFitsNonlinearFunction(t *testing.T) {
	rng := newRand(16)
	draw := func(n int) Dataset {
		x := make([]float64, n)
		y := make([]float64, n)
		for i := range x {
			x[i] = 4*rng.Float64() - 2
			y[i] = math.Sin(2*x[i]) + 0.1*rng.NormFloat64()
		}
		return Dataset{X: mat.NewDense(n, 1, x), Y: y}
	}
	trainSet, test := draw(2000), draw(500)
	m := mustModel(t, Spec{Package: PackageFFNet, Task: Regression, NumFeatures: 1, HiddenLayers: []int{32, 32}, Activation: ActivationTanh}, 5)
	train(t, m, trainSet, TrainOptions{Optimizer: adam(0.02, 64, 60)})
	met, err := m.Evaluate(test)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("test metrics %v", met)
	// Noise variance 0.01 against a target variance of about 0.45: R² ≈ 0.978 at best.
	if met["r2"] < 0.95 {
		t.Errorf("R² %.3f, want ≥ 0.95", met["r2"])
	}
}
