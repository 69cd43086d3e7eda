package ml

import (
	"fmt"
	"math"
)

// maxEta caps the linear predictor of log-link models in predictions and
// reported losses, so a saturated model yields huge but finite numbers rather
// than +Inf. Gradients are deliberately not capped: a model that far out has
// diverged, and letting exp overflow is what makes Train report it instead of
// bouncing silently between the caps.
const maxEta = 700

// headKind is the output nonlinearity with its loss.
type headKind int

const (
	headLogistic headKind = iota // one logit; sigmoid; log loss
	headSoftmax                  // k logits; softmax; cross-entropy
	headIdentity                 // identity link; squared error
	headLog                      // log link; Tweedie-family deviance with variance power p
)

// head maps the output layer's linear predictor η to predictions, losses and
// loss gradients. Losses are per example and summed by the caller.
type head struct {
	kind    headKind
	classes int
	power   float64 // headLog: 1 poisson, 2 gamma, (1,2) tweedie
}

func newHead(s Spec) head {
	switch s.Family {
	case FamilyBinomial:
		return head{kind: headLogistic, classes: 2}
	case FamilyMultinomial:
		return head{kind: headSoftmax, classes: len(s.Classes)}
	case FamilyPoisson:
		return head{kind: headLog, power: 1}
	case FamilyGamma:
		return head{kind: headLog, power: 2}
	case FamilyTweedie:
		return head{kind: headLog, power: s.TweediePower}
	default:
		return head{kind: headIdentity}
	}
}

// checkTarget reports whether y is a valid target for this head.
func (h head) checkTarget(y float64) error {
	if math.IsNaN(y) || math.IsInf(y, 0) {
		return fmt.Errorf("%g is not a finite number", y)
	}
	switch h.kind {
	case headLogistic, headSoftmax:
		if y != math.Trunc(y) || y < 0 || int(y) >= h.classes {
			return fmt.Errorf("%g is not a class index in 0…%d", y, h.classes-1)
		}
	case headLog:
		switch {
		case h.power == 2 && y <= 0:
			return fmt.Errorf("%g is not positive, which family gamma requires", y)
		case y < 0:
			return fmt.Errorf("%g is negative, which poisson and tweedie families do not allow", y)
		}
	}
	return nil
}

// grad writes scale·∂loss/∂η for every row of eta into g (same shape).
func (h head) grad(eta rawMatrix, y, g []float64, scale float64) {
	k := eta.Cols
	switch h.kind {
	case headLogistic:
		for i, yi := range y {
			g[i] = scale * (sigmoid(eta.Data[i]) - yi)
		}
	case headSoftmax:
		for i, yi := range y {
			row := eta.Data[i*k : (i+1)*k]
			gi := g[i*k : (i+1)*k]
			softmax(row, gi)
			for j := range gi {
				gi[j] *= scale
			}
			gi[int(yi)] -= scale
		}
	case headIdentity:
		for i, yi := range y {
			g[i] = scale * 2 * (eta.Data[i] - yi)
		}
	case headLog:
		// d deviance/dη = 2(μ − y)μ^(1−p) for the log link.
		for i, yi := range y {
			e := eta.Data[i]
			mu := math.Exp(e)
			g[i] = scale * 2 * (mu - yi) * math.Exp((1-h.power)*e)
		}
	}
}

// gradLoss is grad, returning loss as well. The logistic head shares one
// exp per row between the two, where grad and loss apart took three exps
// and two log1ps; the gradient is the same bit for bit. The loss's
// log1p(e^−|η|) terms are summed as the log of a product of 16 of them at
// a time (each factor is in [1, 2], so the product cannot overflow), which
// changes the sum by rounding only and takes a sixteenth of the logs.
func (h head) gradLoss(eta rawMatrix, y, g []float64, scale float64) float64 {
	if h.kind != headLogistic {
		sum := h.loss(eta, y)
		h.grad(eta, y, g, scale)
		return sum
	}
	sum, prod := 0.0, 1.0
	for i, yi := range y {
		e := eta.Data[i]
		z := math.Exp(-math.Abs(e))
		// softplus(±e) = max(±e, 0) + log1p(z)
		sum += (1-yi)*max(e, 0) + yi*max(-e, 0)
		prod *= 1 + z
		if i&15 == 15 {
			sum += math.Log(prod)
			prod = 1
		}
		s := 1 / (1 + z) // sigmoid(e)
		if e < 0 {
			s = z / (1 + z)
		}
		g[i] = scale * (s - yi)
	}
	return sum + math.Log(prod)
}

// loss returns the summed loss of the rows of eta.
func (h head) loss(eta rawMatrix, y []float64) float64 {
	k := eta.Cols
	sum := 0.0
	switch h.kind {
	case headLogistic:
		// softplus(η) − yη, written so neither branch cancels.
		for i, yi := range y {
			e := eta.Data[i]
			sum += (1-yi)*softplus(e) + yi*softplus(-e)
		}
	case headSoftmax:
		for i, yi := range y {
			row := eta.Data[i*k : (i+1)*k]
			sum += logSumExp(row) - row[int(yi)]
		}
	case headIdentity:
		for i, yi := range y {
			d := yi - eta.Data[i]
			sum += d * d
		}
	case headLog:
		for i, yi := range y {
			sum += h.deviance(yi, clampEta(eta.Data[i]))
		}
	}
	return sum
}

// deviance is the unit deviance of the log-link families at μ = exp(e).
func (h head) deviance(y, e float64) float64 {
	p := h.power
	switch p {
	case 1: // poisson: 2(y log(y/μ) − (y − μ))
		d := math.Exp(e)
		if y > 0 {
			d += y*(math.Log(y)-e) - y
		}
		return 2 * d
	case 2: // gamma: 2(−log(y/μ) + (y − μ)/μ)
		return 2 * (e - math.Log(y) + y*math.Exp(-e) - 1)
	default: // tweedie, 1 < p < 2
		return 2 * (math.Pow(y, 2-p)/((1-p)*(2-p)) - y*math.Exp((1-p)*e)/(1-p) + math.Exp((2-p)*e)/(2-p))
	}
}

// predict writes each row's prediction (k probabilities or one mean) to out.
func (h head) predict(eta rawMatrix, out []float64) {
	switch h.kind {
	case headLogistic:
		for i, e := range eta.Data[:eta.Rows] {
			out[2*i] = sigmoid(-e)
			out[2*i+1] = sigmoid(e)
		}
	case headSoftmax:
		k := eta.Cols
		for i := 0; i < eta.Rows; i++ {
			softmax(eta.Data[i*k:(i+1)*k], out[i*k:(i+1)*k])
		}
	case headIdentity:
		copy(out, eta.Data[:eta.Rows])
	case headLog:
		for i, e := range eta.Data[:eta.Rows] {
			out[i] = math.Exp(clampEta(e))
		}
	}
}

func clampEta(e float64) float64 { return max(-maxEta, min(maxEta, e)) }

// sigmoid is 1/(1+e^−x) without overflow for large |x|.
func sigmoid(x float64) float64 {
	if x >= 0 {
		return 1 / (1 + math.Exp(-x))
	}
	e := math.Exp(x)
	return e / (1 + e)
}

// softplus is log(1+e^x) without overflow or cancellation.
func softplus(x float64) float64 {
	return max(x, 0) + math.Log1p(math.Exp(-math.Abs(x)))
}

func logSumExp(v []float64) float64 {
	m := math.Inf(-1)
	for _, x := range v {
		m = max(m, x)
	}
	s := 0.0
	for _, x := range v {
		s += math.Exp(x - m)
	}
	return m + math.Log(s)
}

// softmax writes the softmax of v to out, shifted by the maximum for stability.
func softmax(v, out []float64) {
	m := math.Inf(-1)
	for _, x := range v {
		m = max(m, x)
	}
	s := 0.0
	for j, x := range v {
		out[j] = math.Exp(x - m)
		s += out[j]
	}
	for j := range out {
		out[j] /= s
	}
}
