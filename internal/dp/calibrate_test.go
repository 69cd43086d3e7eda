package dp

import (
	"errors"
	"math"
	"testing"
)

// TestCalibrateOpacusReference compares with Opacus' get_noise_multiplier
// (opacus/tests/accountants_test.py): ε=8, δ=1e-5, sample_rate 0.04 →
// 1.416 for epochs=90 (steps = int(90/0.04) = 2250) and 1.3562 for
// steps=2000 (assertAlmostEqual places=4). Opacus bisects until its ε is
// within epsilon_tolerance=0.01 below the target and returns the upper end, so
// its σ meets the target but may be a little above the smallest one; ours
// must be no larger, and close.
func TestCalibrateOpacusReference(t *testing.T) {
	for _, c := range []struct {
		steps  int
		opacus float64
	}{{2250, 1.416}, {2000, 1.3562}} {
		sigma, err := Calibrate(8, 1e-5, 0.04, c.steps)
		if err != nil {
			t.Fatal(err)
		}
		if sigma > c.opacus+5e-5 || sigma < c.opacus-0.005 {
			t.Errorf("%d steps: σ = %.5f, Opacus %.4f", c.steps, sigma, c.opacus)
		}
	}
}

// TestCalibrateRoundTrip: the σ found meets the target, only just, and is the
// smallest that does to within CalibrationTolerance.
func TestCalibrateRoundTrip(t *testing.T) {
	for _, c := range []struct {
		eps, delta, q float64
		steps         int
	}{
		{4, 1e-5, 64.0 / 1000, 160}, // SPEC's example: ε=4, batch 64, 10 rounds
		{1, 1e-5, 0.01, 1000},
		{0.5, 1e-6, 0.004, 5000},
		{10, 1e-5, 0.5, 10},
		{3, 1e-5, 1, 20}, // no subsampling
		{8, 1e-5, 0.04, 2250},
	} {
		sigma, err := Calibrate(c.eps, c.delta, c.q, c.steps)
		if err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		got, _ := Epsilon(c.q, sigma, c.steps, c.delta)
		if got > c.eps || got < 0.99*c.eps {
			t.Errorf("%+v: σ=%g spends ε=%g, want just under %g", c, sigma, got, c.eps)
		}
		less, _ := Epsilon(c.q, sigma*(1-2*CalibrationTolerance), c.steps, c.delta)
		if less <= c.eps {
			t.Errorf("%+v: σ=%g is not minimal: %g also meets ε (%g)", c, sigma, sigma*(1-2*CalibrationTolerance), less)
		}
	}
}

func TestCalibrateErrors(t *testing.T) {
	for _, c := range []struct {
		name          string
		eps, delta, q float64
		steps         int
	}{
		{"zero epsilon", 0, 1e-5, 0.01, 100},
		{"negative epsilon", -1, 1e-5, 0.01, 100},
		{"NaN epsilon", math.NaN(), 1e-5, 0.01, 100},
		{"infinite epsilon", math.Inf(1), 1e-5, 0.01, 100},
		{"zero delta", 1, 0, 0.01, 100},
		{"delta one", 1, 1, 0.01, 100},
		{"zero q", 1, 1e-5, 0, 100},
		{"q above one", 1, 1e-5, 1.2, 100},
		{"no steps", 1, 1e-5, 0.01, 0},
	} {
		if _, err := Calibrate(c.eps, c.delta, c.q, c.steps); err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
	// A target so small that σ would pass MaxNoiseMultiplier.
	_, err := Calibrate(1e-6, 1e-5, 1, 1000)
	if !errors.Is(err, ErrUnreachable) {
		t.Errorf("unreachable target: err = %v, want ErrUnreachable", err)
	}
}
