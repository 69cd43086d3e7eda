package dp

import (
	"errors"
	"fmt"
	"math"
)

// Conversion chooses how RDP at a set of orders becomes an (ε, δ) guarantee.
type Conversion int

const (
	// Improved is the conversion of Balle et al. (2020), "Hypothesis Testing
	// Interpretations and Rényi Differential Privacy", Theorem 21 (also
	// Canonne, Kamath and Steinke 2020, Proposition 12):
	//   ε = rdp(α) − (log δ + log α)/(α − 1) + log((α − 1)/α),
	// minimised over α. It is what Opacus' get_privacy_spent and Google's
	// dp_accounting RdpAccountant (used by TF Privacy since 2022) compute.
	Improved Conversion = iota
	// Classic is Mironov (2017), "Rényi Differential Privacy", Proposition 3:
	//   ε = rdp(α) − log δ/(α − 1),
	// as in TF Privacy's get_privacy_spent before 2022 and therefore in the
	// numbers its tutorials and early tests publish. It is never tighter than
	// Improved and is offered to reproduce those numbers.
	Classic
)

func (c Conversion) String() string {
	switch c {
	case Improved:
		return "improved (Balle et al. 2020)"
	case Classic:
		return "classic (Mironov 2017)"
	}
	return fmt.Sprintf("Conversion(%d)", int(c))
}

// EpsilonConversion is the conversion Epsilon and Calibrate use: the tighter,
// equally rigorous, Improved one, so that a session gets the least noise its
// (ε, δ) allows.
const EpsilonConversion = Improved

// ConvertRDP returns the smallest ε, over orders, for which RDP values rdp
// (rdp[i] at orders[i]) imply (ε, δ)-DP, and the order attaining it. NaN
// entries are skipped; with no usable order, or δ outside (0, 1), the result
// is (+Inf, NaN): no guarantee. ε is never negative.
func ConvertRDP(orders, rdp []float64, delta float64, conv Conversion) (eps, order float64) {
	eps, order = math.Inf(1), math.NaN()
	if len(orders) != len(rdp) || !(delta > 0 && delta < 1) {
		return eps, order
	}
	logDelta := math.Log(delta)
	for i, a := range orders {
		r := rdp[i]
		if !(a > 1) || math.IsNaN(r) || r < 0 {
			continue
		}
		var e float64
		switch conv {
		case Classic:
			e = r - logDelta/(a-1)
		case Improved:
			e = r - (logDelta+math.Log(a))/(a-1) + math.Log1p(-1/a)
		default:
			return math.Inf(1), math.NaN()
		}
		if e < eps { // strict: the first of equal minima wins, as numpy's argmin
			eps, order = e, a
		}
	}
	return math.Max(eps, 0), order
}

// Epsilon returns the ε spent by `steps` steps of DP-SGD with Poisson
// sampling rate q and noise multiplier sigma, at the given δ, using
// DefaultOrders and EpsilonConversion, and the optimal RDP order (report it:
// an optimum at the smallest or largest order means the order list is the
// limit). Invalid arguments give (+Inf, NaN), i.e. no guarantee, so that a
// caller that forgets to validate can only over-charge a privacy budget.
func Epsilon(q, sigma float64, steps int, delta float64) (eps float64, order float64) {
	if steps < 0 || !(q >= 0 && q <= 1) || !(sigma >= 0) {
		return math.Inf(1), math.NaN()
	}
	if steps == 0 || q == 0 {
		return 0, math.NaN()
	}
	orders := DefaultOrders()
	return ConvertRDP(orders, RDP(q, sigma, steps, orders), delta, EpsilonConversion)
}

// CalibrationTolerance is the relative precision of Calibrate's σ. The σ
// returned always meets the target; it is at most this fraction above the
// smallest σ that does, so it wastes at most that much accuracy.
const CalibrationTolerance = 1e-4

// MaxNoiseMultiplier bounds Calibrate's search (the same bound as Opacus'
// get_noise_multiplier). A budget needing more noise than this trains
// nothing useful, so Calibrate reports it as unreachable.
const MaxNoiseMultiplier = 1e6

// minNoiseMultiplier is where Calibrate stops looking for less noise: below
// it DP-SGD's guarantees are vacuous for any realistic ε.
const minNoiseMultiplier = 1e-3

// Calibrate finds the smallest noise multiplier σ (to CalibrationTolerance)
// such that `steps` steps at Poisson sampling rate q meet (epsilon, delta)
// according to Epsilon. It bisects on σ, which is valid because ε falls
// monotonically as σ grows.
func Calibrate(epsilon, delta, q float64, steps int) (sigma float64, err error) {
	switch {
	case !(epsilon > 0) || math.IsInf(epsilon, 1):
		return 0, fmt.Errorf("calibrating DP-SGD noise: epsilon must be a positive finite number, got %g", epsilon)
	case !(delta > 0 && delta < 1):
		return 0, fmt.Errorf("calibrating DP-SGD noise: delta must be between 0 and 1 (exclusive), got %g", delta)
	case !(q > 0 && q <= 1):
		return 0, fmt.Errorf("calibrating DP-SGD noise: sampling rate q must be in (0, 1], got %g", q)
	case steps < 1:
		return 0, fmt.Errorf("calibrating DP-SGD noise: need at least one step, got %d", steps)
	}
	meets := func(s float64) bool {
		e, _ := Epsilon(q, s, steps, delta)
		return e <= epsilon
	}
	// Bracket the answer: meets(hi) and !meets(lo).
	hi := 1.0
	for !meets(hi) {
		hi *= 2
		if hi > MaxNoiseMultiplier {
			return 0, fmt.Errorf("calibrating DP-SGD noise: %w: ε=%g at δ=%g cannot be met over %d steps at sampling rate %g with a noise multiplier up to %g; allow a larger epsilon, fewer rounds or epochs, or a smaller batch",
				ErrUnreachable, epsilon, delta, steps, q, float64(MaxNoiseMultiplier))
		}
	}
	lo := hi / 2
	for meets(lo) {
		if lo < minNoiseMultiplier {
			return lo, nil // (almost) no noise is needed; say so plainly
		}
		hi, lo = lo, lo/2
	}
	for hi-lo > CalibrationTolerance*hi {
		mid := lo + (hi-lo)/2
		if meets(mid) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi, nil
}

// ErrUnreachable reports a privacy target no amount of noise can meet within
// MaxNoiseMultiplier.
var ErrUnreachable = errors.New("privacy target unreachable")

// Segment is a run of DP-SGD steps at one Poisson sampling rate and noise
// multiplier. A runner that trains a session over several rounds records
// one per round: a server may change the noise between rounds.
type Segment struct {
	SampleRate      float64 `json:"q"`
	NoiseMultiplier float64 `json:"sigma"`
	Steps           int     `json:"steps"`
}

// EpsilonOf returns the ε at δ of all segments run one after another: their
// RDP adds up order by order (exact composition), then converts as Epsilon
// does. A segment with invalid numbers gives +Inf: no guarantee.
func EpsilonOf(segments []Segment, delta float64) float64 {
	orders := DefaultOrders()
	total := make([]float64, len(orders))
	ran := false
	for _, s := range segments {
		if s.Steps < 0 || !(s.SampleRate >= 0 && s.SampleRate <= 1) || !(s.NoiseMultiplier >= 0) || math.IsInf(s.NoiseMultiplier, 0) {
			return math.Inf(1)
		}
		if s.Steps == 0 || s.SampleRate == 0 {
			continue
		}
		ran = true
		for i, r := range RDP(s.SampleRate, s.NoiseMultiplier, s.Steps, orders) {
			total[i] += r
		}
	}
	if !ran {
		return 0
	}
	eps, _ := ConvertRDP(orders, total, delta, EpsilonConversion)
	return eps
}
