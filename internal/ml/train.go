package ml

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
)

// Optimizers.
const (
	OptimizerSGD  = "sgd"
	OptimizerAdam = "adam"
	// OptimizerLBFGS solves each round's local problem with full-batch
	// L-BFGS: LocalEpochs caps its iterations (each a pass over every
	// training row, more when the line search backtracks), LearningRate is
	// the first trial step of each line search (1 is the quasi-Newton
	// step), and BatchSize and Momentum are unused. It needs a smooth,
	// deterministic objective: no L1, no dropout, no DP.
	OptimizerLBFGS = "lbfgs"
)

// Adam defaults, used where the Optimizer field is zero.
const (
	DefaultBeta1   = 0.9
	DefaultBeta2   = 0.999
	DefaultEpsilon = 1e-8
)

// Optimizer configures local training on a client. Its state (momentum,
// Adam moments) starts fresh on every Train call, i.e. every round.
type Optimizer struct {
	Name         string  `json:"name"` // "sgd", "adam" or "lbfgs"
	LearningRate float64 `json:"learning_rate"`
	Momentum     float64 `json:"momentum,omitempty"` // sgd: heavy-ball momentum in [0,1); Nesterov is not used
	Beta1        float64 `json:"beta1,omitempty"`    // adam; 0 means DefaultBeta1
	Beta2        float64 `json:"beta2,omitempty"`    // adam; 0 means DefaultBeta2
	Epsilon      float64 `json:"epsilon,omitempty"`  // adam; 0 means DefaultEpsilon
	BatchSize    int     `json:"batch_size"`
	LocalEpochs  int     `json:"local_epochs"`
}

// Validate reports the first problem with o.
func (o Optimizer) Validate() error {
	switch o.Name {
	case OptimizerSGD, OptimizerAdam, OptimizerLBFGS:
	case "":
		return errors.New(`ml: optimizer name is required ("sgd", "adam" or "lbfgs")`)
	default:
		return fmt.Errorf(`ml: unknown optimizer %q (want "sgd", "adam" or "lbfgs")`, o.Name)
	}
	if !(o.LearningRate > 0) || math.IsInf(o.LearningRate, 0) {
		return fmt.Errorf("ml: learning_rate must be a positive number, got %g", o.LearningRate)
	}
	if !(o.Momentum >= 0 && o.Momentum < 1) {
		return fmt.Errorf("ml: momentum must be in [0, 1), got %g", o.Momentum)
	}
	if o.Name == OptimizerAdam && o.Momentum != 0 {
		return errors.New("ml: momentum is for sgd; adam uses beta1")
	}
	if o.Name == OptimizerLBFGS {
		if o.Momentum != 0 {
			return errors.New("ml: momentum is for sgd; lbfgs builds its own curvature estimate")
		}
		if o.LocalEpochs < 1 {
			return fmt.Errorf("ml: local_epochs (lbfgs iterations) must be at least 1, got %d", o.LocalEpochs)
		}
		return nil // batch size and Adam settings do not apply
	}
	if !(o.Beta1 >= 0 && o.Beta1 < 1) || !(o.Beta2 >= 0 && o.Beta2 < 1) {
		return fmt.Errorf("ml: adam betas must be in [0, 1), got beta1=%g beta2=%g", o.Beta1, o.Beta2)
	}
	if !(o.Epsilon >= 0) || math.IsInf(o.Epsilon, 0) {
		return fmt.Errorf("ml: adam epsilon must be a finite number ≥ 0, got %g", o.Epsilon)
	}
	if o.BatchSize < 1 {
		return fmt.Errorf("ml: batch_size must be at least 1, got %d", o.BatchSize)
	}
	if o.LocalEpochs < 1 {
		return fmt.Errorf("ml: local_epochs must be at least 1, got %d", o.LocalEpochs)
	}
	return nil
}

// DPOptions switches on DP-SGD.
type DPOptions struct {
	ClipNorm        float64 // per-example gradient L2 bound C
	NoiseMultiplier float64 // σ: each noisy sum gets N(0, (σC)²) per coordinate
}

// TrainOptions configures one local training run.
type TrainOptions struct {
	Optimizer Optimizer
	// ProximalMu > 0 adds (μ/2)·‖w − Global‖² to the local objective
	// (FedProx), keeping heterogeneous clients near the global model.
	ProximalMu float64
	Global     []float64
	// DP, when set, trains with DP-SGD: each step samples every row
	// independently with probability PoissonSampleRate(n, BatchSize), clips
	// each example's gradient to ClipNorm, adds Gaussian noise to the sum and
	// divides by the expected batch size.
	DP *DPOptions
	// Workers is how many goroutines may share the work: lbfgs's rows, and
	// the large matrix products of a network's steps. It is the vCPUs the
	// runner may use; 0 means 1.
	Workers int
	// Rand drives all randomness (shuffling, dropout, Poisson sampling,
	// noise), so a seed reproduces a run. Under DP it must be secret and
	// unpredictable — e.g. rand.New(rand.NewChaCha8(seed)) with seed from
	// crypto/rand — because whoever can replay the sampling and the noise can
	// subtract them, and the privacy guarantee is void. Never seed it from the
	// session seed when DP is on.
	Rand *rand.Rand
}

// TrainResult summarises a Train call.
type TrainResult struct {
	// Steps is the number of optimiser steps; under DP, the number of noisy
	// releases a privacy accountant must charge (also StepsPerEpoch ×
	// LocalEpochs, so it can be planned before training).
	Steps int
	// Examples is the number of training rows, the client's weight in FedAvg.
	Examples int
	// SampleRate is the Poisson sampling rate q under DP, 0 otherwise.
	SampleRate float64
	// Loss is the mean data loss (no penalty) over the examples of the last
	// epoch, accumulated from the training passes themselves (so with dropout
	// active, and as the parameters moved) like a Keras epoch loss: a second
	// pass over the data would cost a third of an epoch. Model.Loss gives the
	// exact loss of the final parameters. It is computed on the raw training
	// data and so is not covered by DP.
	Loss float64
}

// PoissonSampleRate is DP-SGD's per-step sampling rate for n rows and the
// configured batch size: BatchSize/n, at most 1.
func PoissonSampleRate(n, batchSize int) float64 {
	if n <= 0 || batchSize >= n {
		return 1
	}
	return float64(batchSize) / float64(n)
}

// StepsPerEpoch is the number of optimiser steps in one local epoch,
// ⌈n/BatchSize⌉, with or without DP.
func StepsPerEpoch(n, batchSize int) int {
	if n <= 0 || batchSize <= 0 {
		return 0
	}
	return (n + batchSize - 1) / batchSize
}

// Train runs local training on d, updating the model's parameters. On any
// error — invalid input, cancellation, divergence — the parameters are left as
// they were.
func (m *Model) Train(ctx context.Context, d Dataset, opt TrainOptions) (TrainResult, error) {
	if err := opt.validate(len(m.params)); err != nil {
		return TrainResult{}, err
	}
	// An SGD or Adam epoch without DP reads every row, and a NaN or ±Inf
	// feature makes the weight gradient non-finite whatever the weights, so
	// such a run fails as diverged; the features are checked then, to say
	// which one it was, rather than in a pass of their own before every
	// Train, which cost a sixth of an epoch.
	deferCheck := opt.DP == nil && opt.Optimizer.Name != OptimizerLBFGS
	n, err := m.checkShape(d.X)
	if err == nil && !deferCheck && n > 0 {
		err = checkFinite(d.X)
	}
	if err == nil {
		err = m.checkTargets(d, n)
	}
	if err != nil {
		return TrainResult{}, err
	}
	if n == 0 {
		return TrainResult{}, errors.New("ml: no training rows")
	}
	if err := opt.checkLBFGS(m.spec); err != nil {
		return TrainResult{}, err
	}
	before := m.Params()
	t := newTrainer(m, d, opt)
	var res TrainResult
	if opt.Optimizer.Name == OptimizerLBFGS {
		res, err = t.lbfgs(ctx)
	} else {
		res, err = t.run(ctx)
	}
	if err != nil {
		copy(m.params, before)
		if deferCheck && ctx.Err() == nil {
			if ferr := checkFinite(d.X); ferr != nil {
				return TrainResult{}, ferr
			}
		}
		return TrainResult{}, err
	}
	return res, nil
}

func (o TrainOptions) validate(numParams int) error {
	if err := o.Optimizer.Validate(); err != nil {
		return err
	}
	if o.Rand == nil {
		return errors.New("ml: TrainOptions.Rand is required")
	}
	if !(o.ProximalMu >= 0) || math.IsInf(o.ProximalMu, 0) {
		return fmt.Errorf("ml: proximal mu must be a finite number ≥ 0, got %g", o.ProximalMu)
	}
	if o.ProximalMu > 0 {
		if len(o.Global) != numParams {
			return fmt.Errorf("ml: FedProx needs the global model: got %d global parameters, the model has %d", len(o.Global), numParams)
		}
		if i := firstNonFinite(o.Global); i >= 0 {
			return fmt.Errorf("ml: global parameter %d is %g; parameters must be finite", i, o.Global[i])
		}
	}
	if dp := o.DP; dp != nil {
		if !(dp.ClipNorm > 0) || math.IsInf(dp.ClipNorm, 0) {
			return fmt.Errorf("ml: DP clip norm must be a positive number, got %g", dp.ClipNorm)
		}
		if !(dp.NoiseMultiplier >= 0) || math.IsInf(dp.NoiseMultiplier, 0) {
			return fmt.Errorf("ml: DP noise multiplier must be a finite number ≥ 0, got %g", dp.NoiseMultiplier)
		}
	}
	return nil
}

// trainer holds the state of one Train call; its buffers are allocated once
// so that steps allocate nothing.
type trainer struct {
	m     *Model
	x     rawMatrix
	y     []float64
	n     int
	opt   TrainOptions
	rng   *rand.Rand
	ws    *workspace
	grad  []float64
	mom   []float64 // sgd velocity or adam first moment
	sq    []float64 // adam second moment
	steps int
	order []int // row permutation (shuffled each epoch)
	// blocks, for a Shuffled dataset, is the order of its blocks of
	// blockRows rows, shuffled each epoch and expanded into order.
	blocks []int
	batch  []int // Poisson-sampled rows (DP)
	q      float64

	trackLoss bool // accumulate the data loss (last epoch)
	lossSum   float64
	lossRows  int
}

func newTrainer(m *Model, d Dataset, opt TrainOptions) *trainer {
	n := d.Len()
	t := &trainer{
		m:    m,
		x:    d.X.RawMatrix(),
		y:    d.Y,
		n:    n,
		opt:  opt,
		rng:  opt.Rand,
		ws:   m.newWorkspace(min(opt.Optimizer.BatchSize, n, maxChunkRows), true),
		grad: make([]float64, len(m.params)),
	}
	t.ws.workers = max(opt.Workers, 1)
	if opt.Optimizer.Name == OptimizerAdam {
		t.mom = make([]float64, len(m.params))
		t.sq = make([]float64, len(m.params))
	} else if opt.Optimizer.Momentum > 0 {
		t.mom = make([]float64, len(m.params))
	}
	if opt.Optimizer.Name == OptimizerLBFGS {
		return t // lbfgs has workspaces of its own
	}
	if opt.DP != nil {
		t.q = PoissonSampleRate(n, opt.Optimizer.BatchSize)
		t.batch = make([]int, 0, 2*min(opt.Optimizer.BatchSize, n)+16)
	} else {
		t.order = make([]int, n)
		for i := range t.order {
			t.order[i] = i
		}
		if d.Shuffled {
			t.blocks = make([]int, (n+blockRows-1)/blockRows)
			for i := range t.blocks {
				t.blocks[i] = i
			}
		}
	}
	return t
}

func (t *trainer) run(ctx context.Context) (TrainResult, error) {
	o := t.opt.Optimizer
	perEpoch := StepsPerEpoch(t.n, o.BatchSize)
	for epoch := 1; epoch <= o.LocalEpochs; epoch++ {
		t.trackLoss = epoch == o.LocalEpochs
		switch {
		case t.blocks != nil:
			t.shuffleBlocks()
		case t.opt.DP == nil:
			t.rng.Shuffle(t.n, func(i, j int) { t.order[i], t.order[j] = t.order[j], t.order[i] })
		}
		for s := 0; s < perEpoch; s++ {
			if err := ctx.Err(); err != nil {
				return TrainResult{}, fmt.Errorf("ml: training interrupted: %w", err)
			}
			if t.opt.DP != nil {
				t.batch = poissonSample(t.rng, t.n, t.q, t.batch)
				t.dpGradient(t.batch)
			} else {
				lo := s * o.BatchSize
				t.gradient(t.order[lo:min(lo+o.BatchSize, t.n)])
			}
			t.addPenalties()
			if !t.step() {
				return TrainResult{}, fmt.Errorf("ml: training diverged in epoch %d, step %d: the parameters became non-finite; lower the learning rate (now %g)", epoch, s+1, o.LearningRate)
			}
		}
	}
	var loss float64
	if t.lossRows > 0 {
		loss = t.lossSum / float64(t.lossRows)
	} else { // DP sampled no rows at all in the last epoch
		loss = t.m.meanLoss(t.ws, t.x, t.y)
	}
	if math.IsNaN(loss) || math.IsInf(loss, 0) {
		return TrainResult{}, fmt.Errorf("ml: training diverged: the training loss is %g; lower the learning rate (now %g)", loss, o.LearningRate)
	}
	return TrainResult{Steps: t.steps, Examples: t.n, SampleRate: t.q, Loss: loss}, nil
}

// shuffleBlocks draws a new order of the blocks of consecutive rows and
// writes the rows of each block, in turn, into t.order.
func (t *trainer) shuffleBlocks() {
	t.rng.Shuffle(len(t.blocks), func(i, j int) { t.blocks[i], t.blocks[j] = t.blocks[j], t.blocks[i] })
	k := 0
	for _, b := range t.blocks {
		for r := b * blockRows; r < min((b+1)*blockRows, t.n); r++ {
			t.order[k] = r
			k++
		}
	}
}

// gather copies the given rows into the workspace and returns them as a matrix.
func (t *trainer) gather(rows []int) (rawMatrix, []float64) {
	d := t.x.Cols
	x, y := t.ws.x[:len(rows)*d], t.ws.y[:len(rows)]
	for i, r := range rows {
		copy(x[i*d:(i+1)*d], t.x.Data[r*t.x.Stride:r*t.x.Stride+d])
		y[i] = t.y[r]
	}
	return general(x, len(rows), d), y
}

// dropoutRand returns the source for dropout masks, nil when there is none.
func (t *trainer) dropoutRand() *rand.Rand {
	if t.m.spec.Dropout > 0 {
		return t.rng
	}
	return nil
}

// gradient sets t.grad to the mean data-loss gradient over rows.
func (t *trainer) gradient(rows []int) {
	if t.blocks != nil && t.linear() {
		t.linearGradient(rows)
		return
	}
	clear(t.grad)
	scale := 1 / float64(len(rows))
	for lo := 0; lo < len(rows); lo += t.ws.rows {
		x, y := t.gather(rows[lo:min(lo+t.ws.rows, len(rows))])
		t.backward(x, y, scale)
		t.m.accumulate(t.ws, x, t.grad)
	}
}

// linear reports whether the model is one layer with one output (a GLM
// other than multinomial), whose gradient linearGradient computes.
func (t *trainer) linear() bool {
	return len(t.m.layers) == 1 && t.m.layers[0].out == 1
}

// linearGradient is gradient for a single-output GLM on a Shuffled
// dataset, reading each row in place instead of gathering it: its linear
// predictor first, then, with the batch still in cache, its share of the
// gradient. Copying the rows took half of an epoch. (Rows visited one by
// one in random order are gathered: there the copy is what overlaps the
// cache misses best.)
func (t *trainer) linearGradient(rows []int) {
	d := t.x.Cols
	w, b := t.m.params[:d], t.m.params[d]
	clear(t.grad)
	gw := t.grad[:d]
	for lo := 0; lo < len(rows); lo += t.ws.rows {
		chunk := rows[lo:min(lo+t.ws.rows, len(rows))]
		eta, y := t.ws.h[0][:len(chunk)], t.ws.y[:len(chunk)]
		for i, r := range chunk {
			eta[i] = b + dotUnrolled(t.x.Data[r*t.x.Stride:r*t.x.Stride+d], w)
			y[i] = t.y[r]
		}
		g := t.ws.g[0][:len(chunk)]
		scale := 1 / float64(len(rows))
		if t.trackLoss {
			t.lossSum += t.m.head.gradLoss(general(eta, len(chunk), 1), y, g, scale)
			t.lossRows += len(chunk)
		} else {
			t.m.head.grad(general(eta, len(chunk), 1), y, g, scale)
		}
		gb := 0.0
		for i, r := range chunk {
			axpyUnrolled(g[i], t.x.Data[r*t.x.Stride:r*t.x.Stride+d], gw)
			gb += g[i]
		}
		t.grad[d] += gb
	}
}

// dotUnrolled is the dot product of x and y (len(y) ≥ len(x)) in four
// independent sums.
func dotUnrolled(x, y []float64) float64 {
	y = y[:len(x)]
	var s0, s1, s2, s3 float64
	for len(x) >= 4 {
		s0 += x[0] * y[0]
		s1 += x[1] * y[1]
		s2 += x[2] * y[2]
		s3 += x[3] * y[3]
		x, y = x[4:], y[4:]
	}
	for i, v := range x {
		s0 += v * y[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// axpyUnrolled adds a·x to y (len(y) ≥ len(x)).
func axpyUnrolled(a float64, x, y []float64) {
	y = y[:len(x)]
	for len(x) >= 4 {
		y[0] += a * x[0]
		y[1] += a * x[1]
		y[2] += a * x[2]
		y[3] += a * x[3]
		x, y = x[4:], y[4:]
	}
	for i, v := range x {
		y[i] += a * v
	}
}

// dpGradient sets t.grad to the DP-SGD estimate of the data-loss gradient:
// the sum of clipped per-example gradients plus N(0, (σC)²) noise per
// coordinate, divided by the expected batch size q·n. An empty batch still
// takes a (noise-only) step, as the accountant assumes.
func (t *trainer) dpGradient(rows []int) {
	dp := t.opt.DP
	clear(t.grad)
	for lo := 0; lo < len(rows); lo += t.ws.rows {
		x, y := t.gather(rows[lo:min(lo+t.ws.rows, len(rows))])
		t.backward(x, y, 1)
		t.m.clipExamples(t.ws, x, dp.ClipNorm)
		t.m.accumulate(t.ws, x, t.grad)
	}
	std := dp.NoiseMultiplier * dp.ClipNorm
	inv := 1 / float64(min(t.opt.Optimizer.BatchSize, t.n)) // q·n exactly
	for j, g := range t.grad {
		if std > 0 {
			g += std * t.rng.NormFloat64()
		}
		t.grad[j] = g * inv
	}
}

// backward runs the forward and backward pass for one chunk, leaving
// scale·∂loss/∂(pre-activation) for every layer in the workspace.
func (t *trainer) backward(x rawMatrix, y []float64, scale float64) {
	eta := t.m.forward(t.ws, x, t.dropoutRand())
	g := t.ws.g[len(t.m.layers)-1]
	if t.trackLoss {
		t.lossSum += t.m.head.gradLoss(eta, y, g, scale)
		t.lossRows += len(y)
	} else {
		t.m.head.grad(eta, y, g, scale)
	}
	t.m.backprop(t.ws, x.Rows)
}

// addPenalties adds the data-independent gradient terms: L2 on weights and
// the FedProx pull towards the global model. They need no clipping or noise.
func (t *trainer) addPenalties() {
	p := t.m.params
	if l2 := t.m.spec.L2; l2 > 0 {
		for _, ly := range t.m.layers {
			for j := ly.w; j < ly.b; j++ {
				t.grad[j] += l2 * p[j]
			}
		}
	}
	if mu := t.opt.ProximalMu; mu > 0 {
		for j, g := range t.opt.Global {
			t.grad[j] += mu * (p[j] - g)
		}
	}
}

// step applies the optimiser update and the L1 proximal step, reporting false
// if any parameter became non-finite.
func (t *trainer) step() bool {
	o := t.opt.Optimizer
	lr := o.LearningRate
	p, g := t.m.params, t.grad
	t.steps++
	switch {
	case o.Name == OptimizerAdam:
		t.adam(lr)
	case o.Momentum > 0:
		for j, gj := range g {
			t.mom[j] = o.Momentum*t.mom[j] + gj
			p[j] -= lr * t.mom[j]
		}
	default:
		for j, gj := range g {
			p[j] -= lr * gj
		}
	}
	if l1 := t.m.spec.L1; l1 > 0 {
		// Soft-thresholding is the proximal map of lr·L1·|w|: it sets small
		// weights exactly to zero rather than letting them hover around it.
		thr := lr * l1
		for _, ly := range t.m.layers {
			for j := ly.w; j < ly.b; j++ {
				switch w := p[j]; {
				case w > thr:
					p[j] = w - thr
				case w < -thr:
					p[j] = w + thr
				default:
					p[j] = 0
				}
			}
		}
	}
	return allFinite(p)
}

// adam applies Adam's update. The bias corrections are folded into the
// step size and epsilon, as torch does, so that each parameter costs one
// square root and one division (three divisions and a square root took
// two fifths of an ffnet epoch); with AVX2 four parameters go at a time.
func (t *trainer) adam(lr float64) {
	o := t.opt.Optimizer
	b1, b2, eps := defaultTo(o.Beta1, DefaultBeta1), defaultTo(o.Beta2, DefaultBeta2), defaultTo(o.Epsilon, DefaultEpsilon)
	c1 := 1 - math.Pow(b1, float64(t.steps))
	rc2 := math.Sqrt(1 - math.Pow(b2, float64(t.steps)))
	// lr·(m/c1)/(√(v/c2) + eps) = (lr·√c2/c1)·m/(√v + eps·√c2)
	c := [6]float64{b1, 1 - b1, b2, 1 - b2, lr * rc2 / c1, eps * rc2}
	p, g, m, v := t.m.params, t.grad, t.mom, t.sq
	done := 0
	if haveKernel && len(p) >= 4 {
		done = len(p) &^ 3
		adamKernel(&p[0], &g[0], &m[0], &v[0], done, &c)
	}
	for j := done; j < len(p); j++ {
		gj := g[j]
		m[j] = c[0]*m[j] + c[1]*gj
		v[j] = c[2]*v[j] + c[3]*gj*gj
		p[j] -= c[4] * m[j] / (math.Sqrt(v[j]) + c[5])
	}
}

func defaultTo(v, def float64) float64 {
	if v == 0 {
		return def
	}
	return v
}

// poissonSample includes each of the rows 0…n-1 independently with
// probability q, in increasing order, reusing dst. It draws the geometric gaps
// between included rows rather than n coin flips, so a step costs O(q·n).
func poissonSample(rng *rand.Rand, n int, q float64, dst []int) []int {
	dst = dst[:0]
	if q >= 1 {
		for i := 0; i < n; i++ {
			dst = append(dst, i)
		}
		return dst
	}
	// P(gap ≥ k) = (1−q)^k, so gap = ⌊log(1−U)/log(1−q)⌋ for U uniform on [0,1).
	logNot := math.Log1p(-q)
	i := -1
	for {
		gap := math.Floor(math.Log1p(-rng.Float64()) / logNot)
		if gap >= float64(n-1-i) {
			return dst
		}
		i += int(gap) + 1
		dst = append(dst, i)
	}
}
