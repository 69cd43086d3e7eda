package dp

import (
	"math"
	"testing"
)

// Order lists used by the references, so that each reference is reproduced
// with exactly the orders it minimised over.

// tfCLIOrders is TF Privacy's compute_dp_sgd_privacy_lib.compute_dp_sgd_privacy
// list: [1.25, 1.5, 1.75, 2., 2.25, 2.5, 3., 3.5, 4., 4.5] + range(5, 64) + [128, 256, 512].
func tfCLIOrders() []float64 {
	o := []float64{1.25, 1.5, 1.75, 2, 2.25, 2.5, 3, 3.5, 4, 4.5}
	for a := 5; a < 64; a++ {
		o = append(o, float64(a))
	}
	return append(o, 128, 256, 512)
}

// opacusAlphas is Opacus' RDPAccountant.DEFAULT_ALPHAS and also the list of
// TF Privacy's tutorials/mnist_dpsgd_tutorial.py compute_epsilon:
// [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)).
func opacusAlphas() []float64 {
	var o []float64
	for x := 1; x < 100; x++ {
		o = append(o, 1+float64(x)/10)
	}
	for a := 12; a < 64; a++ {
		o = append(o, float64(a))
	}
	return o
}

func intOrders(lo, hi int) []float64 {
	var o []float64
	for a := lo; a <= hi; a++ {
		o = append(o, float64(a))
	}
	return o
}

func near(got, want, tol float64) bool { return math.Abs(got-want) <= tol }

// TestRDPReference checks RDP values published in TF Privacy's
// tensorflow_privacy/privacy/analysis/rdp_accountant_test.py.
func TestRDPReference(t *testing.T) {
	// test_compute_rdp_scalar: compute_rdp(0.1, 2, 10, 5) ≈ 0.07737 (places=5).
	if got := RDP(0.1, 2, 10, []float64{5})[0]; !near(got, 0.07737, 5e-6) {
		t.Errorf("RDP(q=0.1, σ=2, 10 steps, α=5) = %.7f, want 0.07737", got)
	}
	// test_compute_rdp_sequence: compute_rdp(0.01, 2.5, 50, [1.5, 2.5, 5, 50, 100, inf])
	// ≈ [0.00065, 0.001085, 0.00218075, 0.023846, 167.416307, inf] (delta=1e-5).
	// The fractional orders exercise _compute_log_a_frac, the integer ones _int.
	orders := []float64{1.5, 2.5, 5, 50, 100, math.Inf(1)}
	want := []float64{0.00065, 0.001085, 0.00218075, 0.023846, 167.416307, math.Inf(1)}
	got := RDP(0.01, 2.5, 50, orders)
	for i := range orders {
		if math.IsInf(want[i], 1) {
			if !math.IsInf(got[i], 1) {
				t.Errorf("RDP at α=∞ = %g, want +Inf", got[i])
			}
			continue
		}
		if !near(got[i], want[i], 1e-5) {
			t.Errorf("RDP(q=0.01, σ=2.5, 50 steps) at α=%g = %.8f, want %.8f", orders[i], got[i], want[i])
		}
	}
	// test_compute_rdp_no_data (q=0 → 0) and test_compute_rdp_no_sampling
	// (q=1, σ=10, α=20 → α/(2σ²) = 0.1).
	if got := RDP(0, 10, 1, []float64{20})[0]; got != 0 {
		t.Errorf("RDP with q=0 = %g, want 0", got)
	}
	if got := RDP(1, 10, 1, []float64{20})[0]; got != 0.1 {
		t.Errorf("RDP with q=1, σ=10, α=20 = %g, want 0.1", got)
	}
}

// TestLogAAgainstQuadrature checks log(A_α) against a direct numerical
// integration of its definition, A_α = E_{z~N(0,σ²)}[((1−q) + q·exp((2z−1)/(2σ²)))^α],
// independent of the series — the same check as TF Privacy's
// test_compute_log_a_equals_mp (rtol=1e-4), on some of its parameters.
func TestLogAAgainstQuadrature(t *testing.T) {
	for _, c := range []struct{ q, sigma, alpha float64 }{
		{1e-4, 1, 1.5},           // from TF's list, fractional
		{1e-3, 1, 2},             // from TF's list, integer
		{0.01, 10, 20},           // from TF's list
		{0.1, 100, 20.5},         // from TF's list, fractional, large σ
		{0.5, 2, 3.7},            // high sampling rate
		{256. / 60000, 1.1, 8.8}, // the MNIST tutorial's optimum
	} {
		got := logA(c.q, c.sigma, c.alpha)
		want := logAQuadrature(c.q, c.sigma, c.alpha)
		if math.Abs(got-want) > 1e-4*math.Abs(want) {
			t.Errorf("log A(q=%g, σ=%g, α=%g) = %.10g, quadrature %.10g", c.q, c.sigma, c.alpha, got, want)
		}
	}
}

// logAQuadrature integrates A_α by composite Simpson in log space over a range
// wide enough to hold all the mass (the integrand peaks near z = 0 or z ≈ α).
func logAQuadrature(q, sigma, alpha float64) float64 {
	lo, hi := -40*sigma, alpha+40*sigma
	const n = 400000 // even
	h := (hi - lo) / n
	logF := func(z float64) float64 {
		logNormal := -z*z/(2*sigma*sigma) - math.Log(sigma*math.Sqrt(2*math.Pi))
		ratio := logAdd(math.Log1p(-q), math.Log(q)+(2*z-1)/(2*sigma*sigma))
		return logNormal + alpha*ratio
	}
	vals := make([]float64, n+1)
	maxV := math.Inf(-1)
	for i := range vals {
		vals[i] = logF(lo + float64(i)*h)
		maxV = math.Max(maxV, vals[i])
	}
	var s float64
	for i, v := range vals {
		w := 2.0
		switch {
		case i == 0 || i == n:
			w = 1
		case i%2 == 1:
			w = 4
		}
		s += w * math.Exp(v-maxV)
	}
	return maxV + math.Log(s*h/3)
}

// dpSGD reproduces TF Privacy's compute_dp_sgd_privacy(n, batch_size,
// noise_multiplier, epochs, delta): q = batch/n, steps = ceil(epochs·n/batch),
// over tfCLIOrders.
func dpSGD(n, batch, sigma, epochs, delta float64, conv Conversion) (float64, float64) {
	q := batch / n
	steps := int(math.Ceil(epochs * n / batch))
	o := tfCLIOrders()
	return ConvertRDP(o, RDP(q, sigma, steps, o), delta, conv)
}

// TestEpsilonClassicReference checks ε values TF Privacy published with the
// classic conversion (Mironov 2017), to the precision they publish.
func TestEpsilonClassicReference(t *testing.T) {
	// TF Privacy tensorflow_privacy/privacy/analysis/compute_dp_sgd_privacy_test.py
	// (2019–2021 versions, before dp_accounting): named_parameters
	//   ('Test0', 60000, 150, 1.3, 15, 1e-5, 0.941870567, 19.0),
	//   ('Test1', 100000, 100, 1.0, 30, 1e-7, 1.70928734, 13.0),
	//   ('Test2', 100000000, 1024, 0.1, 10, 1e-7, 5907984.81339406, 1.25),
	// checked with assertAlmostEqual (7 decimal places).
	for _, c := range []struct {
		n, batch, sigma, epochs, delta, eps, order float64
	}{
		{60000, 150, 1.3, 15, 1e-5, 0.941870567, 19},
		{100000, 100, 1.0, 30, 1e-7, 1.70928734, 13},
		{100000000, 1024, 0.1, 10, 1e-7, 5907984.81339406, 1.25},
	} {
		eps, order := dpSGD(c.n, c.batch, c.sigma, c.epochs, c.delta, Classic)
		if !near(eps, c.eps, 5e-8) || order != c.order {
			t.Errorf("classic ε(n=%g, batch=%g, σ=%g, epochs=%g, δ=%g) = %.10f at α=%g, want %.9f at α=%g",
				c.n, c.batch, c.sigma, c.epochs, c.delta, eps, order, c.eps, c.order)
		}
	}

	// TF Privacy tutorials/README.md (2019), MNIST, N = 60000, batch 256, δ = 1e-5:
	// "compute_dp_sgd_privacy.py --N=60000 --batch_size=256 --noise_multiplier=1.1
	//  --epochs=60 --delta=1e-5 ... satisfies differential privacy with eps = 3.01".
	if eps, _ := dpSGD(60000, 256, 1.1, 60, 1e-5, Classic); !near(eps, 3.01, 0.005) {
		t.Errorf("compute_dp_sgd_privacy MNIST σ=1.1, 60 epochs: ε = %.4f, want 3.01", eps)
	}
	// Same README, "Expected Output" and "Select Parameters" table, computed by
	// tutorials/mnist_dpsgd_tutorial.py's compute_epsilon: steps = epoch·60000//256,
	// q = 256/60000, orders = opacusAlphas, δ = 1e-5, published to 2 decimals.
	for _, c := range []struct {
		sigma     float64
		epochs    int
		published float64
	}{
		{1.1, 1, 1.03},  // "Test accuracy after 1 epochs ... epsilon is: 1.03"
		{1.1, 2, 1.11},  // "after 2 epochs ... 1.11"
		{1.1, 60, 3.01}, // "after 60 epochs ... 3.01"; table row σ=1.1, 60 epochs
		{1.3, 15, 1.19}, // table row σ=1.3, 15 epochs
		{0.7, 45, 7.10}, // table row σ=0.7, 45 epochs
	} {
		o := opacusAlphas()
		steps := c.epochs * 60000 / 256
		eps, _ := ConvertRDP(o, RDP(256.0/60000, c.sigma, steps, o), 1e-5, Classic)
		if !near(eps, c.published, 0.005) {
			t.Errorf("MNIST tutorial σ=%g, %d epochs: ε = %.4f, README says %.2f", c.sigma, c.epochs, eps, c.published)
		}
	}
}

// TestEpsilonImprovedReference checks ε values published with the improved
// conversion (Balle et al. 2020), which Epsilon uses.
func TestEpsilonImprovedReference(t *testing.T) {
	// TF Privacy compute_dp_sgd_privacy_test.py since the move to dp_accounting
	// (2022–): the same settings as the classic test now give
	//   ('Test0', ..., 0.7242234026109595, 19.0), ('Test1', ..., 1.4154988495444845, 13.0),
	//   ('Test2', ..., 5907982.31138195, 1.25), with assertAlmostEqual.
	for _, c := range []struct {
		n, batch, sigma, epochs, delta, eps, order float64
	}{
		{60000, 150, 1.3, 15, 1e-5, 0.7242234026109595, 19},
		{100000, 100, 1.0, 30, 1e-7, 1.4154988495444845, 13},
		{100000000, 1024, 0.1, 10, 1e-7, 5907982.31138195, 1.25},
	} {
		eps, order := dpSGD(c.n, c.batch, c.sigma, c.epochs, c.delta, Improved)
		if !near(eps, c.eps, 5e-8) || order != c.order {
			t.Errorf("improved ε(n=%g, batch=%g, σ=%g, epochs=%g, δ=%g) = %.16g at α=%g, want %.16g at α=%g",
				c.n, c.batch, c.sigma, c.epochs, c.delta, eps, order, c.eps, c.order)
		}
	}

	// Opacus opacus/tests/accountants_test.py test_rdp_accountant: σ = 1.5,
	// sample_rate 0.04, steps = int(90/0.04) = 2250, δ = 1e-5 → 7.32911117143
	// (assertAlmostEqual), over DEFAULT_ALPHAS.
	o := opacusAlphas()
	if eps, _ := ConvertRDP(o, RDP(0.04, 1.5, 2250, o), 1e-5, Improved); !near(eps, 7.32911117143, 5e-8) {
		t.Errorf("Opacus test_rdp_accountant: ε = %.11f, want 7.32911117143", eps)
	}
	// Epsilon's DefaultOrders contain DEFAULT_ALPHAS, and the optimum (α=3.9)
	// is inside, so Epsilon must give the same.
	if eps, order := Epsilon(0.04, 1.5, 2250, 1e-5); !near(eps, 7.32911117143, 5e-8) || order != 3.9 {
		t.Errorf("Epsilon(0.04, 1.5, 2250, 1e-5) = %.11f at α=%g, want 7.32911117143 at α=3.9", eps, order)
	}

	// Opacus opacus/accountants/analysis/rdp.py module docstring: RDP of
	// (q=1e-5, σ=1.0, 10 steps) + (q=1e-4, σ=3.0, 4 steps) over orders 2..32,
	// δ = 1e-5 → "(0.336, 23)" (doctest +NUMBER: 3 decimals).
	o = intOrders(2, 32)
	r1, r2 := RDP(1e-5, 1.0, 10, o), RDP(1e-4, 3.0, 4, o)
	for i := range r1 {
		r1[i] += r2[i]
	}
	if eps, order := ConvertRDP(o, r1, 1e-5, Improved); !near(eps, 0.336, 5e-4) || order != 23 {
		t.Errorf("Opacus docstring composition: ε = %.5f at α=%g, want 0.336 at α=23", eps, order)
	}

	// TF Privacy rdp_accountant_test.py test_get_privacy_spent_check_target_delta:
	// constant RDP 1.1 (pure DP) over orders 2..32, δ = 1e-5 → ε = 1.32783806176
	// at the largest order 32; and the unsampled Gaussian with σ = 4.530877117,
	// "chosen to obtain exactly (1, 1e-6)-DP", over orders 1.000..99.999 → ε ≈ 1.
	o = intOrders(2, 32)
	flat := make([]float64, len(o))
	for i := range flat {
		flat[i] = 1.1
	}
	if eps, order := ConvertRDP(o, flat, 1e-5, Improved); !near(eps, 1.32783806176, 5e-8) || order != 32 {
		t.Errorf("constant RDP 1.1: ε = %.11f at α=%g, want 1.32783806176 at α=32", eps, order)
	}
	o = nil
	for i := 1001; i < 100000; i++ { // TF starts at 1.000, where RDP→ε is undefined
		o = append(o, 0.001*float64(i))
	}
	if eps, _ := ConvertRDP(o, RDP(1, 4.530877117, 1, o), 1e-6, Improved); !near(eps, 1, 5e-8) {
		t.Errorf("Gaussian σ=4.530877117 at δ=1e-6: ε = %.10f, want 1", eps)
	}
}

// TestImprovedNeverLooser: both conversions are valid bounds; the improved one
// must never report more ε than the classic one on the same RDP curve.
func TestImprovedNeverLooser(t *testing.T) {
	o := DefaultOrders()
	for _, q := range []float64{1e-4, 0.01, 0.3, 1} {
		for _, sigma := range []float64{0.5, 1, 4} {
			r := RDP(q, sigma, 1000, o)
			c, _ := ConvertRDP(o, r, 1e-5, Classic)
			i, _ := ConvertRDP(o, r, 1e-5, Improved)
			if i > c {
				t.Errorf("q=%g σ=%g: improved ε %g > classic ε %g", q, sigma, i, c)
			}
		}
	}
}

// TestNoSubsamplingIsGaussian: q = 1 is the plain Gaussian mechanism, whose
// RDP is α/(2σ²) per step.
func TestNoSubsamplingIsGaussian(t *testing.T) {
	o := DefaultOrders()
	for _, sigma := range []float64{0.5, 1.1, 7} {
		r := RDP(1, sigma, 3, o)
		for i, a := range o {
			if want := 3 * a / (2 * sigma * sigma); !near(r[i], want, 1e-12*want) {
				t.Errorf("σ=%g α=%g: RDP %g, want %g", sigma, a, r[i], want)
			}
		}
	}
	// And the subsampled accountant approaches it as q → 1.
	a := []float64{2, 2.5, 10}
	r, g := RDP(1-1e-9, 1.3, 1, a), RDP(1, 1.3, 1, a)
	for i := range a {
		if !near(r[i], g[i], 1e-6*g[i]) {
			t.Errorf("α=%g: RDP at q→1 is %g, Gaussian %g", a[i], r[i], g[i])
		}
	}
}

func TestEpsilonMonotone(t *testing.T) {
	q, delta := 0.01, 1e-5
	prev := 0.0
	for _, steps := range []int{1, 10, 100, 1000, 10000} {
		eps, _ := Epsilon(q, 1.1, steps, delta)
		if !(eps > prev) {
			t.Errorf("%d steps: ε %g not above %g for fewer steps", steps, eps, prev)
		}
		prev = eps
	}
	prev = math.Inf(1)
	for _, sigma := range []float64{0.6, 0.8, 1, 1.5, 3, 10} {
		eps, _ := Epsilon(q, sigma, 1000, delta)
		if !(eps < prev) {
			t.Errorf("σ=%g: ε %g not below %g for less noise", sigma, eps, prev)
		}
		prev = eps
	}
	prev = 0
	for _, q := range []float64{0.001, 0.01, 0.1, 0.5, 1} {
		eps, _ := Epsilon(q, 1.1, 100, delta)
		if !(eps > prev) {
			t.Errorf("q=%g: ε %g not above %g for a lower sampling rate", q, eps, prev)
		}
		prev = eps
	}
}

func TestEpsilonEdgeCases(t *testing.T) {
	if eps, _ := Epsilon(0.01, 1, 0, 1e-5); eps != 0 {
		t.Errorf("0 steps: ε = %g, want 0", eps)
	}
	if eps, _ := Epsilon(0, 1, 10, 1e-5); eps != 0 {
		t.Errorf("q=0: ε = %g, want 0", eps)
	}
	for _, c := range []struct {
		name            string
		q, sigma, delta float64
		steps           int
	}{
		{"no noise", 0.01, 0, 1e-5, 10},
		{"negative noise", 0.01, -1, 1e-5, 10},
		{"q > 1", 1.5, 1, 1e-5, 10},
		{"NaN q", math.NaN(), 1, 1e-5, 10},
		{"δ = 0", 0.01, 1, 0, 10},
		{"δ = 1", 0.01, 1, 1, 10},
		{"negative steps", 0.01, 1, 1e-5, -1},
	} {
		if eps, _ := Epsilon(c.q, c.sigma, c.steps, c.delta); !math.IsInf(eps, 1) {
			t.Errorf("%s: ε = %g, want +Inf (no guarantee)", c.name, eps)
		}
	}
}

// TestLogErfcSwitch: the asymptotic series must join Go's Erfc smoothly
// where logErfc switches between them.
func TestLogErfcSwitch(t *testing.T) {
	below, above := logErfc(math.Nextafter(26, 0)), logErfc(26)
	if math.Abs(below-above) > 1e-15*math.Abs(below) {
		t.Errorf("log erfc jumps at 26: %.17g vs %.17g", below, above)
	}
	if got := logErfc(-40); got != math.Log(2) {
		t.Errorf("log erfc(−40) = %g, want log 2", got)
	}
}
