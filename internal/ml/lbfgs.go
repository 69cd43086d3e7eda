package ml

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
)

// L-BFGS settings. A round's local solve stops at the first of: the
// iteration cap (Optimizer.LocalEpochs), a gradient whose largest component
// is below lbfgsGradTol, or an iteration that lowers the objective by less
// than lbfgsRelTol of it (scipy's L-BFGS-B, which scikit-learn uses, stops
// at 2.2e-9).
const (
	lbfgsMemory  = 10
	lbfgsGradTol = 1e-8
	lbfgsRelTol  = 1e-11
	lbfgsArmijo  = 1e-4
	lbfgsBacks   = 40 // halvings of the step before the line search gives up
)

// checkLBFGS reports why model m cannot be trained with L-BFGS under opt.
// Check refuses options a model of spec cannot be trained with, before any
// work (or any privacy budget) is spent on them.
func (o TrainOptions) Check(s Spec) error { return o.checkLBFGS(s) }

// L-BFGS takes exact full-batch steps on a smooth objective: an L1 penalty
// is not differentiable at zero, dropout makes the objective random, and
// DP-SGD privatises per-example minibatch gradients, which L-BFGS does not
// take.
func (o TrainOptions) checkLBFGS(s Spec) error {
	if o.Optimizer.Name != OptimizerLBFGS {
		return nil
	}
	switch {
	case o.DP != nil:
		return errors.New("ml: differential privacy (DP-SGD) needs optimizer sgd or adam; lbfgs takes exact full-batch steps that DP-SGD cannot privatise")
	case s.L1 > 0:
		return errors.New("ml: optimizer lbfgs cannot apply an l1 penalty (it is not differentiable at zero); use l2 with lbfgs, or sgd or adam for l1")
	case s.Dropout > 0:
		return errors.New("ml: optimizer lbfgs needs a deterministic objective, and dropout makes it random; drop the dropout or use sgd or adam")
	}
	return nil
}

// lbfgs minimises the local objective — the mean data loss over all the
// training rows plus the L2 and FedProx terms — by limited-memory BFGS with
// a backtracking (Armijo) line search whose first trial step is the
// learning rate (1 by default, the quasi-Newton step). Every iteration uses
// every row; the rows are split between opt.Workers goroutines.
func (t *trainer) lbfgs(ctx context.Context) (TrainResult, error) {
	o := t.opt.Optimizer
	np := len(t.m.params)
	ev := newEvaluator(t, max(t.opt.Workers, 1))
	x := t.m.params // the model's own vector: trial points are written into it
	x0 := make([]float64, np)
	g0 := make([]float64, np)
	d := make([]float64, np)
	s := make([][]float64, 0, lbfgsMemory)
	y := make([][]float64, 0, lbfgsMemory)
	rho := make([]float64, 0, lbfgsMemory)
	alpha := make([]float64, lbfgsMemory)

	f, data := ev.eval(t.grad)
	if !finite(f) || !allFinite(t.grad) {
		return TrainResult{}, fmt.Errorf("ml: the training loss at the starting parameters is %g; check the data and the model family", f)
	}
	iters := 0
	for iters < o.LocalEpochs {
		if err := ctx.Err(); err != nil {
			return TrainResult{}, fmt.Errorf("ml: training interrupted: %w", err)
		}
		if maxAbs(t.grad) <= lbfgsGradTol {
			break
		}
		// Direction: d = −H·g by the two-loop recursion.
		copy(d, t.grad)
		for k := len(s) - 1; k >= 0; k-- {
			alpha[k] = rho[k] * dot(s[k], d)
			axpy(-alpha[k], y[k], d)
		}
		if k := len(s) - 1; k >= 0 {
			scale(dot(s[k], y[k])/dot(y[k], y[k]), d)
		} else {
			scale(1/math.Sqrt(dot(d, d)), d) // first step: unit length along −g
		}
		for k := range s {
			b := rho[k] * dot(y[k], d)
			axpy(alpha[k]-b, s[k], d)
		}
		scale(-1, d)
		slope := dot(t.grad, d)
		if !(slope < 0) { // not a descent direction: restart from −g
			s, y, rho = s[:0], y[:0], rho[:0]
			copy(d, t.grad)
			scale(-1/math.Sqrt(dot(d, d)), d)
			slope = dot(t.grad, d)
		}

		copy(x0, x)
		copy(g0, t.grad)
		step := o.LearningRate
		accepted := false
		var fNew, dataNew float64
		for range lbfgsBacks {
			for j := range x {
				x[j] = x0[j] + step*d[j]
			}
			fNew, dataNew = ev.eval(t.grad)
			if finite(fNew) && fNew <= f+lbfgsArmijo*step*slope && allFinite(t.grad) {
				accepted = true
				break
			}
			step /= 2
		}
		if !accepted { // no decrease is left to find at this precision
			copy(x, x0)
			copy(t.grad, g0)
			break
		}
		iters++
		// Curvature pair; skipped when it would not keep H positive definite.
		var sk, yk []float64
		if len(s) == lbfgsMemory {
			sk, yk = s[0], y[0]
			s, y, rho = append(s[:0], s[1:]...), append(y[:0], y[1:]...), append(rho[:0], rho[1:]...)
		} else {
			sk, yk = make([]float64, np), make([]float64, np)
		}
		for j := range x {
			sk[j] = x[j] - x0[j]
			yk[j] = t.grad[j] - g0[j]
		}
		if sy := dot(sk, yk); sy > 1e-12*math.Sqrt(dot(sk, sk)*dot(yk, yk)) {
			s, y, rho = append(s, sk), append(y, yk), append(rho, 1/sy)
		}
		done := f-fNew <= lbfgsRelTol*max(math.Abs(f), math.Abs(fNew), 1)
		f, data = fNew, dataNew
		if done {
			break
		}
	}
	if !finite(data) || !allFinite(x) {
		return TrainResult{}, fmt.Errorf("ml: training diverged: the training loss is %g", data)
	}
	return TrainResult{Steps: iters, Examples: t.n, Loss: data}, nil
}

// evaluator computes the full-batch objective and its gradient, with the
// rows split into one contiguous range per worker. Each worker has its own
// workspace and gradient; the partial gradients are summed in worker order,
// so a result depends on the number of workers only through rounding.
type evaluator struct {
	t     *trainer
	ws    []*workspace
	grads [][]float64
	loss  []float64
}

func newEvaluator(t *trainer, workers int) *evaluator {
	workers = max(1, min(workers, t.n/256+1)) // a worker per 256 rows at least
	e := &evaluator{t: t, loss: make([]float64, workers)}
	for range workers {
		e.ws = append(e.ws, t.m.newWorkspace(min(t.n, maxChunkRows), true))
		e.grads = append(e.grads, make([]float64, len(t.m.params)))
	}
	return e
}

// eval writes the gradient of the objective at the model's parameters into
// grad and returns the objective and its data-loss part.
func (e *evaluator) eval(grad []float64) (obj, data float64) {
	t := e.t
	w := len(e.ws)
	if w == 1 {
		e.part(0, 0, t.n)
	} else {
		var wg sync.WaitGroup
		for k := range w {
			wg.Go(func() { e.part(k, k*t.n/w, (k+1)*t.n/w) })
		}
		wg.Wait()
	}
	copy(grad, e.grads[0])
	data = e.loss[0]
	for k := 1; k < w; k++ {
		axpy(1, e.grads[k], grad)
		data += e.loss[k]
	}
	data /= float64(t.n)
	obj = data
	p := t.m.params
	if l2 := t.m.spec.L2; l2 > 0 {
		for _, ly := range t.m.layers {
			for j := ly.w; j < ly.b; j++ {
				obj += l2 / 2 * p[j] * p[j]
				grad[j] += l2 * p[j]
			}
		}
	}
	if mu := t.opt.ProximalMu; mu > 0 {
		for j, g := range t.opt.Global {
			obj += mu / 2 * (p[j] - g) * (p[j] - g)
			grad[j] += mu * (p[j] - g)
		}
	}
	return obj, data
}

// part accumulates worker k's share, rows [lo, hi), of the summed loss and
// of the gradient of the mean loss.
func (e *evaluator) part(k, lo, hi int) {
	t := e.t
	ws, g := e.ws[k], e.grads[k]
	clear(g)
	sum := 0.0
	inv := 1 / float64(t.n)
	for r := lo; r < hi; r += ws.rows {
		b := min(ws.rows, hi-r)
		x := rowsOf(t.x, r, b)
		eta := t.m.forward(ws, x, nil)
		sum += t.m.head.gradLoss(eta, t.y[r:r+b], ws.g[len(t.m.layers)-1], inv)
		t.m.backprop(ws, b)
		t.m.accumulate(ws, x, g)
	}
	e.loss[k] = sum
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

func maxAbs(v []float64) float64 {
	m := 0.0
	for _, x := range v {
		m = max(m, math.Abs(x))
	}
	return m
}

// axpy adds a·x to y.
func axpy(a float64, x, y []float64) {
	for i, v := range x {
		y[i] += a * v
	}
}

func scale(a float64, v []float64) {
	for i := range v {
		v[i] *= a
	}
}
