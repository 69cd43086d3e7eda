// Package dp does the privacy arithmetic of DP-SGD: a Rényi differential
// privacy (RDP) accountant for the Poisson-subsampled Gaussian mechanism, the
// conversion from RDP to (ε, δ), noise calibration, and the budget checks of a
// dataset's privacy ledger.
//
// The accountant follows Mironov, Talwar and Zhang (2019), "Rényi Differential
// Privacy of the Sampled Gaussian Mechanism" (arXiv:1908.10530), and mirrors
// TensorFlow Privacy's rdp_accountant.py and Opacus' analysis/rdp.py term for
// term, so that its numbers can be checked against theirs. It is pure math:
// no I/O, and it adds no noise (internal/ml does).
package dp

import "math"

// DefaultOrders returns the RDP orders Epsilon and Calibrate minimise over:
// Opacus' RDPAccountant.DEFAULT_ALPHAS (1.1, 1.2, …, 10.9, then 12, …, 63)
// extended with 64, 128, 256 and 512, which only matter — and then help —
// for very small ε. More orders can only lower the reported ε, never make it
// invalid: every order gives a valid bound.
func DefaultOrders() []float64 {
	orders := make([]float64, 0, 99+52+4)
	for x := 1; x < 100; x++ {
		orders = append(orders, 1+float64(x)/10)
	}
	for a := 12; a < 64; a++ {
		orders = append(orders, float64(a))
	}
	return append(orders, 64, 128, 256, 512)
}

// RDP returns the RDP of `steps` compositions of the sampled Gaussian
// mechanism with sampling rate q and noise multiplier sigma (noise standard
// deviation over L2 sensitivity) at each order in orders (each > 1).
// Entries may be +Inf (no guarantee at that order, e.g. sigma = 0) or NaN for
// an invalid order; ConvertRDP ignores NaNs. RDP composes additively, which is
// why the per-step value is simply multiplied by steps.
func RDP(q, sigma float64, steps int, orders []float64) []float64 {
	out := make([]float64, len(orders))
	for i, a := range orders {
		out[i] = rdpOne(q, sigma, a) * float64(steps)
	}
	return out
}

// rdpOne is the RDP of one step at order alpha (TF Privacy's _compute_rdp).
func rdpOne(q, sigma, alpha float64) float64 {
	switch {
	case math.IsNaN(q) || math.IsNaN(sigma) || math.IsNaN(alpha) || alpha <= 1 || q < 0 || q > 1 || sigma < 0:
		return math.NaN()
	case q == 0:
		return 0
	case sigma == 0 || math.IsInf(alpha, 1):
		return math.Inf(1)
	case q == 1:
		// No subsampling: the plain Gaussian mechanism.
		return alpha / (2 * sigma * sigma)
	}
	return logA(q, sigma, alpha) / (alpha - 1)
}

// logA computes log(A_α) of arXiv:1908.10530 §3.3, choosing the exact finite
// binomial sum for integer α and the two-sided series for fractional α.
func logA(q, sigma, alpha float64) float64 {
	if alpha == math.Trunc(alpha) && alpha < 1<<20 {
		return logAInt(q, sigma, int(alpha))
	}
	return logAFrac(q, sigma, alpha)
}

// logAInt is TF Privacy's _compute_log_a_int: for integer α,
// A_α = Σ_{i=0..α} C(α,i) q^i (1−q)^(α−i) exp((i²−i)/(2σ²)), summed in log
// space because the terms overflow float64 long before the sum matters.
func logAInt(q, sigma float64, alpha int) float64 {
	logQ, log1mQ := math.Log(q), math.Log1p(-q)
	s2 := 2 * sigma * sigma
	acc := math.Inf(-1)
	for i := 0; i <= alpha; i++ {
		fi := float64(i)
		term := logBinomInt(alpha, i) + fi*logQ + float64(alpha-i)*log1mQ + (fi*fi-fi)/s2
		acc = logAdd(acc, term)
	}
	return acc
}

// logAFrac is TF Privacy's _compute_log_a_frac: for fractional α the binomial
// series is infinite and A_α is split at z0 into the integrals over (−∞, z0]
// and [z0, ∞); terms are added until both fall below exp(−30).
func logAFrac(q, sigma, alpha float64) float64 {
	logQ, log1mQ := math.Log(q), math.Log1p(-q)
	s2 := 2 * sigma * sigma
	sqrt2Sigma := math.Sqrt2 * sigma
	z0 := sigma*sigma*math.Log(1/q-1) + 0.5
	a0, a1 := math.Inf(-1), math.Inf(-1)
	// The series converges, but guard against a pathological input spinning.
	// A truncated sum would understate A_α, i.e. the privacy loss, so running
	// out of terms reports no guarantee at this order instead.
	const maxTerms = 1 << 22
	for i := 0; ; i++ {
		if i == maxTerms {
			return math.Inf(1)
		}
		fi := float64(i)
		logCoef, positive := logAbsBinom(alpha, fi)
		j := alpha - fi

		t0 := logCoef + fi*logQ + j*log1mQ
		t1 := logCoef + j*logQ + fi*log1mQ
		e0 := math.Log(0.5) + logErfc((fi-z0)/sqrt2Sigma)
		e1 := math.Log(0.5) + logErfc((z0-j)/sqrt2Sigma)
		s0 := t0 + (fi*fi-fi)/s2 + e0
		s1 := t1 + (j*j-j)/s2 + e1

		if positive {
			a0, a1 = logAdd(a0, s0), logAdd(a1, s1)
		} else {
			a0, a1 = logSub(a0, s0), logSub(a1, s1)
		}
		if math.Max(s0, s1) < -30 {
			break
		}
	}
	return logAdd(a0, a1)
}

// logAdd returns log(exp(x) + exp(y)) without overflow.
func logAdd(x, y float64) float64 {
	a, b := math.Min(x, y), math.Max(x, y)
	if math.IsInf(a, -1) || math.IsInf(b, 1) {
		return b
	}
	return math.Log1p(math.Exp(a-b)) + b
}

// logSub returns log(exp(x) − exp(y)); NaN if that would be negative, which
// only numerical trouble can cause and which ConvertRDP then ignores.
func logSub(x, y float64) float64 {
	switch {
	case x < y || math.IsNaN(x) || math.IsNaN(y):
		return math.NaN()
	case math.IsInf(y, -1) || math.IsInf(x, 1):
		return x
	case x == y:
		return math.Inf(-1)
	}
	d := x - y
	if d > 700 { // expm1 would overflow; exp(y) is negligible next to exp(x)
		return x
	}
	return math.Log(math.Expm1(d)) + y
}

// logBinomInt returns log C(n, k) for integers 0 ≤ k ≤ n.
func logBinomInt(n, k int) float64 {
	a, _ := math.Lgamma(float64(n + 1))
	b, _ := math.Lgamma(float64(k + 1))
	c, _ := math.Lgamma(float64(n - k + 1))
	return a - b - c
}

// logAbsBinom returns log|C(α, k)| and whether C(α, k) > 0, for real α > 0
// and integer k ≥ 0, through C(α,k) = Γ(α+1) / (Γ(k+1) Γ(α−k+1)). Γ(α−k+1)
// turns negative for some k > α+1, which flips the sign of the term.
func logAbsBinom(alpha, k float64) (float64, bool) {
	a, _ := math.Lgamma(alpha + 1)
	b, _ := math.Lgamma(k + 1)
	c, sign := math.Lgamma(alpha - k + 1)
	return a - b - c, sign > 0
}

// logErfc computes log(erfc(x)) accurately for large x, where erfc underflows
// (x ≳ 26.5). TF Privacy uses scipy's log_ndtr. Go's Erfc keeps full relative
// accuracy down the tail to x = 26 (erfc ≈ 1e-295, still a normal float);
// beyond, the asymptotic (Laurent) series TF Privacy falls back on is off by
// less than 1e-13 — its first omitted term is ~25·x⁻¹⁰.
func logErfc(x float64) float64 {
	if x < 26 {
		return math.Log(math.Erfc(x))
	}
	x2 := x * x
	return -0.5*math.Log(math.Pi) - math.Log(x) - x2 - 0.5/x2 + 0.625/(x2*x2) -
		37.0/24.0/(x2*x2*x2) + 353.0/64.0/(x2*x2*x2*x2)
}
