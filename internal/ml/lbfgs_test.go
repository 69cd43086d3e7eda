package ml

import (
	"context"
	"math"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"
)

func lbfgs(iters int) Optimizer {
	return Optimizer{Name: OptimizerLBFGS, LearningRate: 1, LocalEpochs: iters}
}

// Ridge regression has a closed form: L-BFGS on the gaussian GLM with L2
// must land on it (the intercept is not penalised).
func TestLBFGSSolvesRidgeExactly(t *testing.T) {
	rng := newRand(40)
	const n, l2 = 3000, 0.05
	beta := []float64{1.5, -2, 0.5, 0, 3, 0.7}
	d := len(beta) - 1
	x, y := linearData(rng, n, beta)
	for i := range y {
		y[i] += rng.NormFloat64()
	}
	// Objective: mean (y − η)² + (l2/2)‖w‖²; its normal equations are
	// (2/n)·AᵀA·b + l2·P·b = (2/n)·Aᵀy with A = [X 1] and P = diag(1…1, 0).
	a := mat.NewDense(n, d+1, nil)
	for i := range n {
		for j := range d {
			a.Set(i, j, x.At(i, j))
		}
		a.Set(i, d, 1)
	}
	var lhs mat.Dense
	lhs.Mul(a.T(), a)
	lhs.Scale(2.0/n, &lhs)
	for j := range d {
		lhs.Set(j, j, lhs.At(j, j)+l2)
	}
	var rhs mat.VecDense
	rhs.MulVec(a.T(), mat.NewVecDense(n, y))
	rhs.ScaleVec(2.0/n, &rhs)
	var want mat.VecDense
	if err := want.SolveVec(&lhs, &rhs); err != nil {
		t.Fatal(err)
	}

	m := mustModel(t, Spec{Package: PackageGLM, Task: Regression, NumFeatures: d, L2: l2}, 1)
	res := train(t, m, Dataset{X: x, Y: y}, TrainOptions{Optimizer: lbfgs(100)})
	for j, got := range glmCoef(m) {
		if w := want.AtVec(j); math.Abs(got-w) > 1e-6 {
			t.Errorf("coefficient %d: got %.8f, closed form %.8f", j, got, w)
		}
	}
	if res.Steps < 2 || res.Steps >= 100 {
		t.Errorf("%d iterations: want convergence well before the cap of 100", res.Steps)
	}
	exact, err := m.Loss(Dataset{X: x, Y: y})
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(res.Loss-exact) > 1e-12 {
		t.Errorf("reported loss %.15f, the final parameters' loss is %.15f", res.Loss, exact)
	}
}

// At the L-BFGS solution of a penalised logistic regression the gradient,
// computed here independently, vanishes; more SGD epochs only approach the
// same optimum, and more workers change nothing but rounding.
func TestLBFGSReachesTheLogisticOptimum(t *testing.T) {
	const l2 = 1e-3
	data := binaryData(41, 20000, 8)
	s := Spec{Package: PackageGLM, Task: Classification, NumFeatures: 8, Classes: []string{"0", "1"}, L2: l2}
	m := mustModel(t, s, 1)
	train(t, m, data, TrainOptions{Optimizer: lbfgs(200)})

	p := glmCoef(m)
	grad := make([]float64, len(p))
	n := data.Len()
	for i := range n {
		row := data.X.RawRowView(i)
		r := sigmoid(dot(row, p[:8])+p[8]) - data.Y[i]
		for j, v := range row {
			grad[j] += r * v / float64(n)
		}
		grad[8] += r / float64(n)
	}
	for j := range 8 {
		grad[j] += l2 * p[j]
	}
	if g := maxAbs(grad); g > 1e-7 {
		t.Errorf("largest gradient component at the lbfgs solution is %.2e, want below 1e-7", g)
	}

	sgdModel := mustModel(t, s, 1)
	train(t, sgdModel, data, TrainOptions{Optimizer: sgd(0.05, 32, 20)})
	lossL, _ := m.Loss(data)
	lossS, _ := sgdModel.Loss(data)
	if lossL > lossS+1e-6 {
		t.Errorf("lbfgs training loss %.6f is above 20 epochs of sgd's %.6f", lossL, lossS)
	}

	par := mustModel(t, s, 1)
	train(t, par, data, TrainOptions{Optimizer: lbfgs(200), Workers: 3})
	if diff := norm2(sub(par.params, m.params)); diff > 1e-6 {
		t.Errorf("3 workers moved the solution by %.2e", diff)
	}
}

// Every family and the multinomial head train with lbfgs, ending below the
// loss they started at; FedProx keeps the solution nearer the global model.
func TestLBFGSFamiliesAndFedProx(t *testing.T) {
	rng := newRand(42)
	for _, s := range []Spec{
		{Package: PackageGLM, Task: Classification, NumFeatures: 4, Classes: classes(3)},
		{Package: PackageGLM, Task: Regression, Family: FamilyPoisson, NumFeatures: 4},
		{Package: PackageGLM, Task: Regression, Family: FamilyGamma, NumFeatures: 4, L2: 0.01},
		{Package: PackageGLM, Task: Regression, Family: FamilyTweedie, TweediePower: 1.5, NumFeatures: 4},
		{Package: PackageFFNet, Task: Classification, NumFeatures: 4, Classes: classes(2), HiddenLayers: []int{6}},
	} {
		t.Run(s.Package+"/"+s.Family+string(s.Task), func(t *testing.T) {
			x := randomX(rng, 500, 4)
			y := randomTargets(rng, s, 500)
			if s.Family == FamilyPoisson { // a real signal: λ = exp(0.5·x₀)
				for i := range y {
					y[i] = float64(poissonDraw(rng, math.Exp(0.5*x.At(i, 0))))
				}
			}
			data := Dataset{X: x, Y: y}
			m := mustModel(t, s, 3)
			before, _ := m.Loss(data)
			res := train(t, m, data, TrainOptions{Optimizer: lbfgs(50)})
			if !(res.Loss < before) {
				t.Errorf("loss %.5f after lbfgs, %.5f before", res.Loss, before)
			}

			global := mustModel(t, s, 3).Params()
			prox := mustModel(t, s, 3)
			train(t, prox, data, TrainOptions{Optimizer: lbfgs(50), ProximalMu: 10, Global: global})
			if a, b := norm2(sub(prox.params, global)), norm2(sub(m.params, global)); !(a < b) {
				t.Errorf("FedProx distance to the global model %.4f, without %.4f", a, b)
			}
		})
	}
}

func TestLBFGSRefusesWhatItCannotHonour(t *testing.T) {
	data := binaryData(43, 200, 3)
	base := Spec{Package: PackageGLM, Task: Classification, NumFeatures: 3, Classes: []string{"0", "1"}}
	l1 := base
	l1.L1 = 0.01
	drop := Spec{Package: PackageFFNet, Task: Classification, NumFeatures: 3, Classes: []string{"0", "1"}, HiddenLayers: []int{4}, Dropout: 0.2}
	for _, c := range []struct {
		name string
		spec Spec
		opt  TrainOptions
		want string
	}{
		{"dp", base, TrainOptions{Optimizer: lbfgs(10), DP: &DPOptions{ClipNorm: 1, NoiseMultiplier: 1}}, "differential privacy"},
		{"l1", l1, TrainOptions{Optimizer: lbfgs(10)}, "l1"},
		{"dropout", drop, TrainOptions{Optimizer: lbfgs(10)}, "dropout"},
		{"momentum", base, TrainOptions{Optimizer: Optimizer{Name: OptimizerLBFGS, LearningRate: 1, Momentum: 0.9, LocalEpochs: 5}}, "momentum"},
		{"iterations", base, TrainOptions{Optimizer: Optimizer{Name: OptimizerLBFGS, LearningRate: 1}}, "local_epochs"},
	} {
		m := mustModel(t, c.spec, 1)
		before := m.Params()
		c.opt.Rand = newRand(1)
		_, err := m.Train(context.Background(), data, c.opt)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error about %s", c.name, err, c.want)
		}
		if diff := norm2(sub(m.params, before)); diff != 0 {
			t.Errorf("%s: parameters changed on a refused run", c.name)
		}
	}
}
