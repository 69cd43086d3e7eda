package ml

import (
	"math"
	"slices"
	"testing"
)

// gradCases covers every head and both activations. Parameters are random
// and L2/FedProx terms are on, so the whole local objective is checked.
func gradCases() []struct {
	name string
	spec Spec
} {
	glm := func(task Task, k int, family string) Spec {
		s := Spec{Package: PackageGLM, Task: task, NumFeatures: 4, Family: family, L2: 0.3}
		if task == Classification {
			s.Classes = classes(k)
		}
		if family == FamilyTweedie {
			s.TweediePower = 1.5
		}
		return s
	}
	ff := func(task Task, k int, act string, dropout float64) Spec {
		s := Spec{Package: PackageFFNet, Task: task, NumFeatures: 4, HiddenLayers: []int{5, 3}, Activation: act, Dropout: dropout, L2: 0.1}
		if task == Classification {
			s.Classes = classes(k)
		}
		return s
	}
	return []struct {
		name string
		spec Spec
	}{
		{"glm/gaussian", glm(Regression, 0, FamilyGaussian)},
		{"glm/binomial", glm(Classification, 2, FamilyBinomial)},
		{"glm/multinomial", glm(Classification, 3, FamilyMultinomial)},
		{"glm/poisson", glm(Regression, 0, FamilyPoisson)},
		{"glm/gamma", glm(Regression, 0, FamilyGamma)},
		{"glm/tweedie", glm(Regression, 0, FamilyTweedie)},
		{"ffnet/relu/binary", ff(Classification, 2, ActivationReLU, 0)},
		{"ffnet/relu/multi", ff(Classification, 4, ActivationReLU, 0)},
		{"ffnet/relu/regression", ff(Regression, 0, ActivationReLU, 0)},
		{"ffnet/tanh/binary", ff(Classification, 2, ActivationTanh, 0)},
		{"ffnet/tanh/multi", ff(Classification, 3, ActivationTanh, 0)},
		{"ffnet/tanh/regression", ff(Regression, 0, ActivationTanh, 0)},
		{"ffnet/tanh/multi/dropout", ff(Classification, 3, ActivationTanh, 0.3)},
		{"ffnet/relu/regression/dropout", ff(Regression, 0, ActivationReLU, 0.3)},
	}
}

// TestGradientsMatchFiniteDifferences compares the analytic gradient of the
// local objective (mean data loss + (L2/2)‖w‖² + (μ/2)‖w − global‖²) with
// central differences. Dropout masks are replayed by reseeding.
func TestGradientsMatchFiniteDifferences(t *testing.T) {
	for _, tc := range gradCases() {
		t.Run(tc.name, func(t *testing.T) {
			rng := newRand(1)
			const n = 13
			m := mustModel(t, tc.spec, 7)
			for j := range m.params {
				m.params[j] = 0.5 * rng.NormFloat64()
			}
			global := make([]float64, len(m.params))
			for j := range global {
				global[j] = rng.NormFloat64()
			}
			d := Dataset{X: randomX(rng, n, tc.spec.NumFeatures), Y: randomTargets(rng, m.spec, n)}
			opt := TrainOptions{Optimizer: sgd(0.1, n, 1), ProximalMu: 0.7, Global: global, Rand: newRand(99)}
			rows := make([]int, n)
			for i := range rows {
				rows[i] = i
			}

			tr := newTrainer(m, d, opt)
			tr.rng = newRand(42)
			tr.gradient(rows)
			tr.addPenalties()
			analytic := append([]float64(nil), tr.grad...)

			objective := func() float64 {
				tr.rng = newRand(42)
				x, y := tr.gather(rows)
				eta := m.forward(tr.ws, x, tr.dropoutRand())
				f := m.head.loss(eta, y) / n
				for _, ly := range m.layers {
					for j := ly.w; j < ly.b; j++ {
						f += m.spec.L2 / 2 * m.params[j] * m.params[j]
					}
				}
				for j, g := range global {
					f += opt.ProximalMu / 2 * (m.params[j] - g) * (m.params[j] - g)
				}
				return f
			}
			numeric := make([]float64, len(m.params))
			const h = 1e-6
			for j := range m.params {
				orig := m.params[j]
				m.params[j] = orig + h
				fp := objective()
				m.params[j] = orig - h
				fm := objective()
				m.params[j] = orig
				numeric[j] = (fp - fm) / (2 * h)
			}
			rel := norm2(sub(analytic, numeric)) / max(norm2(analytic), norm2(numeric))
			t.Logf("relative error %.2g", rel)
			if !(rel < 1e-5) {
				t.Errorf("relative gradient error %.3g ≥ 1e-5\nanalytic %v\nnumeric  %v", rel, analytic, numeric)
			}
			for j := range numeric {
				if math.Abs(analytic[j]-numeric[j]) > 1e-5*max(1, math.Abs(numeric[j])) {
					t.Errorf("param %d: analytic %.10g, numeric %.10g", j, analytic[j], numeric[j])
				}
			}
		})
	}
}

// TestGhostClippingMatchesPerExampleClipping checks the batched per-example
// norms against gradients computed one example at a time.
func TestGhostClippingMatchesPerExampleClipping(t *testing.T) {
	specs := []Spec{
		{Package: PackageGLM, Task: Classification, NumFeatures: 5, Classes: classes(2)},
		{Package: PackageGLM, Task: Regression, NumFeatures: 5, Family: FamilyPoisson},
		{Package: PackageFFNet, Task: Classification, NumFeatures: 5, Classes: classes(3), HiddenLayers: []int{6, 4}, Activation: ActivationTanh},
		{Package: PackageFFNet, Task: Regression, NumFeatures: 5, HiddenLayers: []int{8}},
	}
	for _, s := range specs {
		t.Run(s.Package+"/"+string(s.Task), func(t *testing.T) {
			rng := newRand(3)
			const n = 20
			m := mustModel(t, s, 1)
			for j := range m.params {
				m.params[j] = rng.NormFloat64()
			}
			d := Dataset{X: randomX(rng, n, 5), Y: randomTargets(rng, m.spec, n)}
			rows := make([]int, n)
			for i := range rows {
				rows[i] = i
			}
			tr := newTrainer(m, d, TrainOptions{Optimizer: sgd(0.1, n, 1), Rand: newRand(1)})

			// Clip at the median per-example norm so that about half clip.
			grads := make([][]float64, n)
			norms := make([]float64, n)
			for i := range rows {
				tr.gradient(rows[i : i+1])
				grads[i] = append([]float64(nil), tr.grad...)
				norms[i] = norm2(tr.grad)
			}
			clip := append([]float64(nil), norms...)
			slices.Sort(clip)
			clipNorm := clip[n/2]

			want := make([]float64, len(m.params))
			clipped := 0
			for _, g := range grads {
				c := 1.0
				if nrm := norm2(g); nrm > clipNorm {
					c = clipNorm / nrm
					clipped++
				}
				for j := range want {
					want[j] += c * g[j]
				}
			}
			if clipped == 0 || clipped == n {
				t.Fatalf("test data should clip some but not all examples; clipped %d of %d", clipped, n)
			}

			tr.opt.DP = &DPOptions{ClipNorm: clipNorm}
			tr.dpGradient(rows)
			for j := range tr.grad {
				got := tr.grad[j] * n // dpGradient divides by the expected batch size, n here
				if math.Abs(got-want[j]) > 1e-10*max(1, math.Abs(want[j])) {
					t.Errorf("param %d: ghost-clipped sum %.12g, per-example %.12g", j, got, want[j])
				}
			}
		})
	}
}

// TestGradLossMatchesParts: the fused gradient-and-loss pass gives exactly
// the gradient grad gives, and the loss that loss gives to rounding,
// saturated and non-finite predictors too.
func TestGradLossMatchesParts(t *testing.T) {
	eta := []float64{0, math.Copysign(0, -1), 1e-300, -1e-300, 0.5, -0.5, 3, -3, 36, -36, 700, -700, 800, -800, math.Inf(1), math.Inf(-1), math.NaN()}
	for _, h := range []head{{kind: headLogistic, classes: 2}, {kind: headIdentity}, {kind: headLog, power: 1.5}} {
		for _, yv := range []float64{0, 1} {
			y := make([]float64, len(eta))
			for i := range y {
				y[i] = yv
			}
			m := general(eta, len(eta), 1)
			g1, g2 := make([]float64, len(eta)), make([]float64, len(eta))
			l1 := h.loss(m, y)
			h.grad(m, y, g1, 0.25)
			l2 := h.gradLoss(m, y, g2, 0.25)
			same := func(a, b float64) bool {
				return math.Float64bits(a) == math.Float64bits(b) || math.IsNaN(a) && math.IsNaN(b)
			}
			if !same(l1, l2) && !(math.Abs(l1-l2) <= 1e-14*math.Abs(l1)) {
				t.Errorf("head %d, y=%g: loss %v apart, %v fused", h.kind, yv, l1, l2)
			}
			for i := range g1 {
				if !same(g1[i], g2[i]) {
					t.Errorf("head %d, y=%g, η=%g: gradient %v apart, %v fused", h.kind, yv, eta[i], g1[i], g2[i])
				}
			}
			// Finite predictors only: the sum to rounding, not just NaN-ness.
			l1, l2 = h.loss(general(eta[:14], 14, 1), y[:14]), h.gradLoss(general(eta[:14], 14, 1), y[:14], g2, 0.25)
			if !(math.Abs(l1-l2) <= 1e-14*math.Abs(l1)) {
				t.Errorf("head %d, y=%g: finite loss %v apart, %v fused", h.kind, yv, l1, l2)
			}
		}
	}
}

// TestGradLossBlockedLogs: over many rows the logistic loss summed through
// products of 16 factors stays within rounding of the log1p sum.
func TestGradLossBlockedLogs(t *testing.T) {
	rng := newRand(77)
	const n = 1003
	eta, y, g := make([]float64, n), make([]float64, n), make([]float64, n)
	for i := range eta {
		eta[i] = 8 * rng.NormFloat64()
		y[i] = float64(rng.IntN(2))
	}
	h := head{kind: headLogistic, classes: 2}
	m := general(eta, n, 1)
	l1, l2 := h.loss(m, y), h.gradLoss(m, y, g, 1)
	if math.Abs(l1-l2) > 1e-13*l1 {
		t.Errorf("loss %.17g by log1p, %.17g by blocked logs", l1, l2)
	}
}

func TestAllFinite(t *testing.T) {
	for n := 0; n < 11; n++ {
		v := make([]float64, n)
		for i := range v {
			v[i] = float64(i) * 1e300
		}
		if !allFinite(v) || firstNonFinite(v) != -1 {
			t.Fatalf("n=%d: finite values reported non-finite", n)
		}
		for i := range v {
			for _, bad := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
				w := slices.Clone(v)
				w[i] = bad
				if allFinite(w) || firstNonFinite(w) != i {
					t.Fatalf("n=%d: %g at %d: allFinite %v, firstNonFinite %d", n, bad, i, allFinite(w), firstNonFinite(w))
				}
			}
		}
	}
}
