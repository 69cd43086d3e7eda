package ml

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"
)

func binaryData(seed uint64, n, d int) Dataset {
	rng := newRand(seed)
	beta := make([]float64, d+1)
	for j := range beta {
		beta[j] = rng.NormFloat64()
	}
	x, eta := linearData(rng, n, beta)
	y := make([]float64, n)
	for i, e := range eta {
		if rng.Float64() < sigmoid(e) {
			y[i] = 1
		}
	}
	return Dataset{X: x, Y: y}
}

// TestDPWithoutNoiseOrClippingIsPlainSGD: with q = 1, no noise and a clip
// norm nothing reaches, DP-SGD's sum over the whole data divided by n is the
// ordinary full-batch gradient, so the runs agree to rounding.
func TestDPWithoutNoiseOrClippingIsPlainSGD(t *testing.T) {
	specs := []Spec{
		{Package: PackageGLM, Task: Classification, NumFeatures: 3, Classes: classes(2), L2: 0.01},
		{Package: PackageFFNet, Task: Classification, NumFeatures: 3, Classes: classes(2), HiddenLayers: []int{8, 4}},
	}
	for _, s := range specs {
		t.Run(s.Package, func(t *testing.T) {
			const n = 50
			d := binaryData(1, n, 3)
			opt := sgd(0.3, n, 4) // BatchSize = n → sample rate 1
			opt.Momentum = 0.5

			plain := mustModel(t, s, 2)
			train(t, plain, d, TrainOptions{Optimizer: opt})
			private := mustModel(t, s, 2)
			res := train(t, private, d, TrainOptions{Optimizer: opt, DP: &DPOptions{ClipNorm: 1e12, NoiseMultiplier: 0}})

			if res.SampleRate != 1 || res.Steps != 4 {
				t.Errorf("sample rate %v, steps %d; want 1 and 4", res.SampleRate, res.Steps)
			}
			if diff := norm2(sub(plain.Params(), private.Params())); diff > 1e-12 {
				t.Errorf("DP and plain parameters differ by %g", diff)
			}
			if norm2(sub(plain.Params(), mustModel(t, s, 2).Params())) < 1e-3 {
				t.Error("training did not move the parameters; the comparison is vacuous")
			}
		})
	}
}

// TestDPClipsAnOutlier: one example whose gradient norm is in the millions
// moves the parameters by exactly lr·ClipNorm under DP.
func TestDPClipsAnOutlier(t *testing.T) {
	s := Spec{Package: PackageGLM, Task: Regression, NumFeatures: 3}
	d := Dataset{X: mat.NewDense(1, 3, []float64{1e3, -2e3, 5e2}), Y: []float64{1e3}}
	const lr, clip = 0.01, 1.5

	plain := mustModel(t, s, 1)
	train(t, plain, d, TrainOptions{Optimizer: sgd(lr, 1, 1)})
	if g := norm2(plain.Params()) / lr; g < 1e6 {
		t.Fatalf("outlier gradient norm %g, want ≥ 1e6", g)
	}

	private := mustModel(t, s, 1)
	train(t, private, d, TrainOptions{Optimizer: sgd(lr, 1, 1), DP: &DPOptions{ClipNorm: clip}})
	step := norm2(private.Params())
	if step > lr*clip*(1+1e-12) {
		t.Errorf("update norm %g exceeds lr·ClipNorm = %g", step, lr*clip)
	}
	if step < lr*clip*(1-1e-12) {
		t.Errorf("update norm %g, want exactly lr·ClipNorm = %g (a clipped gradient has norm C)", step, lr*clip)
	}
	// Clipping scales the gradient; it must not change its direction.
	cos := dot(plain.Params(), private.Params()) / (norm2(plain.Params()) * step)
	if cos < 1-1e-12 {
		t.Errorf("clipped update is not parallel to the gradient (cos %g)", cos)
	}
}

// TestDPNoiseScale: with zero gradients the update is pure noise, with
// standard deviation lr·σ·C / (expected batch size) per coordinate.
func TestDPNoiseScale(t *testing.T) {
	const d, lr, sigma, clip = 4000, 0.1, 1.3, 2.0
	cases := []struct{ n, batch int }{{1, 1}, {100, 10}}
	for _, tc := range cases {
		// All-zero features and target: a gaussian GLM at zero has zero gradient.
		ds := Dataset{X: mat.NewDense(tc.n, d, nil), Y: make([]float64, tc.n)}
		m := mustModel(t, Spec{Package: PackageGLM, Task: Regression, NumFeatures: d}, 1)
		res := train(t, m, ds, TrainOptions{Optimizer: sgd(lr, tc.batch, 1), DP: &DPOptions{ClipNorm: clip, NoiseMultiplier: sigma}, Rand: newRand(8)})
		if res.Steps != tc.n/tc.batch {
			t.Fatalf("steps %d, want %d", res.Steps, tc.n/tc.batch)
		}
		// After k independent noisy steps the std is √k times one step's.
		want := lr * sigma * clip / float64(tc.batch) * math.Sqrt(float64(res.Steps))
		w := m.Params()[:d]
		mean, sq := 0.0, 0.0
		for _, v := range w {
			mean += v
			sq += v * v
		}
		mean /= d
		std := math.Sqrt(sq/d - mean*mean)
		if math.Abs(std/want-1) > 0.05 || math.Abs(mean) > 4*want/math.Sqrt(d) {
			t.Errorf("n=%d batch=%d: noise mean %.4g std %.4g, want 0 and %.4g", tc.n, tc.batch, mean, std, want)
		}
	}
}

func TestPoissonSampling(t *testing.T) {
	const n, q, draws = 1000, 0.05, 4000
	rng := newRand(9)
	counts := make([]int, n)
	total := 0
	var batch []int
	for range draws {
		batch = poissonSample(rng, n, q, batch)
		if !slices.IsSorted(batch) || slices.Compact(slices.Clone(batch)) == nil {
			t.Fatal("batch not strictly increasing")
		}
		for _, i := range batch {
			counts[i]++
		}
		total += len(batch)
	}
	mean := float64(total) / draws
	if sd := math.Sqrt(n * q * (1 - q) / draws); math.Abs(mean-n*q) > 5*sd {
		t.Errorf("mean batch size %.2f, want %v ± %.2f", mean, n*q, 5*sd)
	}
	// Each row, including the first and last, is included with probability q.
	sd := math.Sqrt(q * (1 - q) / draws)
	for _, i := range []int{0, 1, n / 2, n - 2, n - 1} {
		if f := float64(counts[i]) / draws; math.Abs(f-q) > 5*sd {
			t.Errorf("row %d included with frequency %.4f, want %v", i, f, q)
		}
	}
	chi2 := 0.0
	for _, c := range counts {
		e := q * draws
		chi2 += (float64(c) - e) * (float64(c) - e) / e
	}
	// χ² with n−1 degrees of freedom (variance inflated slightly by the
	// binomial): mean ≈ 950, sd ≈ 44.
	if chi2 > n+250 {
		t.Errorf("inclusion counts χ² = %.0f: not uniform", chi2)
	}
	if got := poissonSample(rng, 5, 1, nil); !slices.Equal(got, []int{0, 1, 2, 3, 4}) {
		t.Errorf("q = 1 sampled %v, want every row", got)
	}
}

func TestStepsAndSampleRate(t *testing.T) {
	d := binaryData(2, 1000, 3)
	s := Spec{Package: PackageGLM, Task: Classification, NumFeatures: 3, Classes: classes(2)}
	res := train(t, mustModel(t, s, 1), d, TrainOptions{Optimizer: sgd(0.1, 64, 3), DP: &DPOptions{ClipNorm: 1, NoiseMultiplier: 1}})
	want := TrainResult{Steps: 3 * 16, Examples: 1000, SampleRate: 0.064, Loss: res.Loss}
	if res != want {
		t.Errorf("got %+v, want %+v", res, want)
	}
	if StepsPerEpoch(1000, 64) != 16 || PoissonSampleRate(1000, 64) != 0.064 || PoissonSampleRate(10, 64) != 1 {
		t.Error("StepsPerEpoch/PoissonSampleRate disagree with Train")
	}
	res = train(t, mustModel(t, s, 1), d, TrainOptions{Optimizer: sgd(0.1, 64, 3)})
	if res.Steps != 48 || res.SampleRate != 0 {
		t.Errorf("without DP: %+v", res)
	}
}

// TestDPTrainingStillLearns: moderate noise (σ = 1) on a few thousand rows
// must still give a useful model.
func TestDPTrainingStillLearns(t *testing.T) {
	d := binaryData(3, 5000, 4)
	s := Spec{Package: PackageGLM, Task: Classification, NumFeatures: 4, Classes: classes(2)}
	m := mustModel(t, s, 1)
	train(t, m, d, TrainOptions{Optimizer: sgd(0.5, 100, 5), DP: &DPOptions{ClipNorm: 1, NoiseMultiplier: 1}})
	met, err := m.Evaluate(binaryDataLike(d, 3))
	if err != nil {
		t.Fatal(err)
	}
	if met["roc_auc"] < 0.8 {
		t.Errorf("DP model ROC AUC %.3f, want ≥ 0.8", met["roc_auc"])
	}
}

// binaryDataLike is fresh data from the same generator (same coefficients).
func binaryDataLike(_ Dataset, seed uint64) Dataset { return binaryData(seed, 5000, 4) }

func TestFedProxStaysNearGlobal(t *testing.T) {
	d := binaryData(4, 2000, 5)
	s := Spec{Package: PackageFFNet, Task: Classification, NumFeatures: 5, Classes: classes(2), HiddenLayers: []int{8}}
	global := mustModel(t, s, 1).Params()
	dist := func(mu float64) float64 {
		m := mustModel(t, s, 1)
		train(t, m, d, TrainOptions{Optimizer: sgd(0.05, 32, 3), ProximalMu: mu, Global: global})
		return norm2(sub(m.Params(), global))
	}
	free, prox := dist(0), dist(10)
	t.Logf("distance from global: μ=0 %.4f, μ=10 %.4f", free, prox)
	if prox > 0.1*free {
		t.Errorf("with μ = 10 the model moved %.4f, more than a tenth of the %.4f it moves freely", prox, free)
	}
}

func TestDeterministicPerSeed(t *testing.T) {
	d := binaryData(5, 500, 4)
	s := Spec{Package: PackageFFNet, Task: Classification, NumFeatures: 4, Classes: classes(2), HiddenLayers: []int{8, 8}, Dropout: 0.2, L1: 1e-3}
	run := func(modelSeed int64, trainSeed uint64, dp bool) []float64 {
		m := mustModel(t, s, modelSeed)
		opt := TrainOptions{Optimizer: adam(0.01, 32, 2), Rand: newRand(trainSeed)}
		if dp {
			opt.DP = &DPOptions{ClipNorm: 1, NoiseMultiplier: 0.8}
		}
		train(t, m, d, opt)
		return m.Params()
	}
	for _, dp := range []bool{false, true} {
		a, b := run(1, 1, dp), run(1, 1, dp)
		if !slices.Equal(a, b) {
			t.Errorf("dp=%v: same seeds gave different parameters", dp)
		}
		if slices.Equal(a, run(1, 2, dp)) {
			t.Errorf("dp=%v: a different training seed gave identical parameters", dp)
		}
		if slices.Equal(a, run(2, 1, dp)) {
			t.Errorf("dp=%v: a different model seed gave identical parameters", dp)
		}
	}
}

func TestTrainErrorsLeaveParametersUntouched(t *testing.T) {
	s := Spec{Package: PackageGLM, Task: Regression, NumFeatures: 2, Family: FamilyPoisson}
	x := mat.NewDense(4, 2, []float64{1, 2, 3, 4, 5, 6, 7, 8})
	good := Dataset{X: x, Y: []float64{1, 0, 3, 2}}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	cases := []struct {
		name string
		ctx  context.Context
		d    Dataset
		opt  TrainOptions
		want string
	}{
		{"diverges", context.Background(), Dataset{X: mat.NewDense(4, 2, []float64{10, 20, 30, 40, 50, 60, 70, 80}), Y: []float64{1e3, 0, 3e3, 2}}, TrainOptions{Optimizer: sgd(10, 4, 50)}, "lower the learning rate"},
		{"cancelled", cancelled, good, TrainOptions{Optimizer: sgd(0.1, 2, 1)}, "interrupted"},
		{"nan feature", context.Background(), Dataset{X: mat.NewDense(2, 2, []float64{1, math.NaN(), 0, 0}), Y: []float64{1, 1}}, TrainOptions{Optimizer: sgd(0.1, 2, 1)}, "feature 1 of row 0 is NaN"},
		{"negative count", context.Background(), Dataset{X: x, Y: []float64{1, -1, 0, 0}}, TrainOptions{Optimizer: sgd(0.1, 2, 1)}, "target of row 1"},
		{"rows mismatch", context.Background(), Dataset{X: x, Y: []float64{1}}, TrainOptions{Optimizer: sgd(0.1, 2, 1)}, "4 feature rows but 1 targets"},
		{"feature count", context.Background(), Dataset{X: mat.NewDense(1, 3, nil), Y: []float64{1}}, TrainOptions{Optimizer: sgd(0.1, 2, 1)}, "3 features, the model expects 2"},
		{"no rows", context.Background(), Dataset{}, TrainOptions{Optimizer: sgd(0.1, 2, 1)}, "no training rows"},
		{"global length", context.Background(), good, TrainOptions{Optimizer: sgd(0.1, 2, 1), ProximalMu: 1, Global: []float64{0}}, "got 1 global parameters, the model has 3"},
		{"clip norm", context.Background(), good, TrainOptions{Optimizer: sgd(0.1, 2, 1), DP: &DPOptions{}}, "clip norm"},
		{"optimizer", context.Background(), good, TrainOptions{Optimizer: Optimizer{Name: "rmsprop", LearningRate: 1, BatchSize: 1, LocalEpochs: 1}}, `unknown optimizer "rmsprop"`},
		{"learning rate", context.Background(), good, TrainOptions{Optimizer: sgd(0, 2, 1)}, "learning_rate"},
		{"batch size", context.Background(), good, TrainOptions{Optimizer: sgd(0.1, 0, 1)}, "batch_size"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := mustModel(t, s, 1)
			start := []float64{0.1, -0.2, 0.3}
			if err := m.SetParams(start); err != nil {
				t.Fatal(err)
			}
			if tc.opt.Rand == nil {
				tc.opt.Rand = newRand(1)
			}
			_, err := m.Train(tc.ctx, tc.d, tc.opt)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to mention %q", err, tc.want)
			}
			if !slices.Equal(m.Params(), start) {
				t.Errorf("parameters changed to %v after a failed Train", m.Params())
			}
		})
	}
	_, err := mustModel(t, s, 1).Train(cancelled, good, TrainOptions{Optimizer: sgd(0.1, 2, 1), Rand: newRand(1)})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancellation error %v does not wrap context.Canceled", err)
	}
}

// TestExtremeLogitsStayFinite: saturated models predict 0/1 probabilities
// and finite losses instead of NaN.
func TestExtremeLogitsStayFinite(t *testing.T) {
	x := mat.NewDense(2, 1, []float64{1, -1})
	for _, s := range []Spec{
		{Package: PackageGLM, Task: Classification, NumFeatures: 1, Classes: classes(2)},
		{Package: PackageGLM, Task: Classification, NumFeatures: 1, Classes: classes(3)},
		{Package: PackageGLM, Task: Regression, NumFeatures: 1, Family: FamilyPoisson},
		{Package: PackageGLM, Task: Regression, NumFeatures: 1, Family: FamilyTweedie, TweediePower: 1.2},
	} {
		m := mustModel(t, s, 1)
		p := m.Params()
		for j := range p {
			p[j] = 1e4 * float64(j+1)
		}
		if err := m.SetParams(p); err != nil {
			t.Fatal(err)
		}
		pred, err := m.Predict(x)
		if err != nil {
			t.Fatal(err)
		}
		if i := firstNonFinite(pred.RawMatrix().Data); i >= 0 {
			t.Errorf("%s: prediction %v is not finite", s.Family, mat.Formatted(pred))
		}
		loss, err := m.Loss(Dataset{X: x, Y: []float64{0, 1}})
		if err != nil || math.IsNaN(loss) {
			t.Errorf("%s: loss %v, %v", s.Family, loss, err)
		}
	}
}

func TestPredictShapesAndLinks(t *testing.T) {
	x := mat.NewDense(2, 2, []float64{1, 2, -1, 0.5})
	eta := func(p []float64, i int) float64 { return p[0]*x.At(i, 0) + p[1]*x.At(i, 1) + p[2] }
	params := []float64{0.3, -0.4, 0.2}

	bin, _ := LoadModel(Spec{Package: PackageGLM, Task: Classification, NumFeatures: 2, Classes: []string{"no", "yes"}}, params)
	pois, _ := LoadModel(Spec{Package: PackageGLM, Task: Regression, NumFeatures: 2, Family: FamilyPoisson}, params)
	gaus, _ := LoadModel(Spec{Package: PackageGLM, Task: Regression, NumFeatures: 2}, params)
	pb, err1 := bin.Predict(x)
	pp, err2 := pois.Predict(x)
	pg, err3 := gaus.Predict(x)
	if err := errors.Join(err1, err2, err3); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		e := eta(params, i)
		if p := 1 / (1 + math.Exp(-e)); math.Abs(pb.At(i, 1)-p) > 1e-15 || math.Abs(pb.At(i, 0)-(1-p)) > 1e-15 {
			t.Errorf("binomial row %d: %v, want [%v %v]", i, pb.RawRowView(i), 1-p, p)
		}
		if math.Abs(pp.At(i, 0)-math.Exp(e)) > 1e-12 {
			t.Errorf("poisson row %d: %v, want %v", i, pp.At(i, 0), math.Exp(e))
		}
		if math.Abs(pg.At(i, 0)-e) > 1e-15 {
			t.Errorf("gaussian row %d: %v, want %v", i, pg.At(i, 0), e)
		}
	}

	ff := mustModel(t, Spec{Package: PackageFFNet, Task: Classification, NumFeatures: 2, Classes: classes(4), HiddenLayers: []int{3}}, 1)
	pf, err := ff.Predict(x)
	if err != nil {
		t.Fatal(err)
	}
	if r, c := pf.Dims(); r != 2 || c != 4 {
		t.Fatalf("ffnet prediction is %d×%d, want 2×4", r, c)
	}
	for i := 0; i < 2; i++ {
		if s := mat.Sum(pf.RowView(i)); math.Abs(s-1) > 1e-12 {
			t.Errorf("row %d probabilities sum to %v", i, s)
		}
	}
}

// TestLargeBatchesAreChunked: a full batch larger than the workspace is
// processed in chunks and gives the same gradient as smaller pieces.
func TestLargeBatchesAreChunked(t *testing.T) {
	const n = maxChunkRows*2 + 37
	d := binaryData(6, n, 3)
	s := Spec{Package: PackageFFNet, Task: Classification, NumFeatures: 3, Classes: classes(2), HiddenLayers: []int{4}}
	m := mustModel(t, s, 1)
	tr := newTrainer(m, d, TrainOptions{Optimizer: sgd(0.1, n, 1), Rand: newRand(1)})
	rows := make([]int, n)
	for i := range rows {
		rows[i] = i
	}
	tr.gradient(rows)
	got := slices.Clone(tr.grad)

	want := make([]float64, len(got))
	for lo := 0; lo < n; lo += 1000 {
		hi := min(lo+1000, n)
		tr.gradient(rows[lo:hi])
		for j, g := range tr.grad {
			want[j] += g * float64(hi-lo) / n
		}
	}
	if diff := norm2(sub(got, want)); diff > 1e-12 {
		t.Errorf("chunked gradient differs by %g", diff)
	}
}

// TestTrainingStepsDoNotAllocate: the inner loop reuses its buffers.
func TestTrainingStepsDoNotAllocate(t *testing.T) {
	d := binaryData(7, 500, 6)
	s := Spec{Package: PackageFFNet, Task: Classification, NumFeatures: 6, Classes: classes(2), HiddenLayers: []int{8, 4}, Dropout: 0.2, L1: 1e-3, L2: 1e-3}
	for _, dp := range []*DPOptions{nil, {ClipNorm: 1, NoiseMultiplier: 1}} {
		m := mustModel(t, s, 1)
		opt := TrainOptions{Optimizer: adam(0.01, 32, 1), DP: dp, Rand: newRand(1), ProximalMu: 0.1, Global: m.Params()}
		tr := newTrainer(m, d, opt)
		allocs := testing.AllocsPerRun(50, func() {
			if dp != nil {
				tr.batch = poissonSample(tr.rng, tr.n, tr.q, tr.batch)
				tr.dpGradient(tr.batch)
			} else {
				tr.gradient(tr.order[:32])
			}
			tr.addPenalties()
			tr.step()
		})
		if allocs != 0 {
			t.Errorf("dp=%v: %v allocations per step, want 0", dp != nil, allocs)
		}
	}
}

// TestNonFiniteFeaturesAreReported: without DP the features are not checked
// before training, so a NaN or ±Inf anywhere must still fail the run, with
// the feature named, for every kind of model and optimiser (a ReLU layer
// that zeroes an infinite input still passes it to its weight gradient).
func TestNonFiniteFeaturesAreReported(t *testing.T) {
	specs := []Spec{
		{Package: PackageGLM, Task: Classification, NumFeatures: 3, Classes: classes(2)},
		{Package: PackageGLM, Task: Classification, NumFeatures: 3, Classes: classes(3)},
		{Package: PackageGLM, Task: Regression, NumFeatures: 3, Family: FamilyPoisson},
		{Package: PackageFFNet, Task: Classification, NumFeatures: 3, Classes: classes(2), HiddenLayers: []int{4}},
		{Package: PackageFFNet, Task: Regression, NumFeatures: 3, HiddenLayers: []int{4}, Activation: ActivationTanh},
	}
	rng := newRand(90)
	for _, s := range specs {
		for _, bad := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
			for _, opt := range []Optimizer{sgd(0.1, 4, 1), adam(0.01, 7, 2)} {
				x := randomX(rng, 50, 3)
				row, col := rng.IntN(50), rng.IntN(3)
				x.Set(row, col, bad)
				d := Dataset{X: x, Y: randomTargets(rng, s, 50), Shuffled: rng.IntN(2) == 0}
				m := mustModel(t, s, 1)
				before := m.Params()
				_, err := m.Train(context.Background(), d, TrainOptions{Optimizer: opt, Rand: newRand(2)})
				want := fmt.Sprintf("feature %d of row %d is %g", col, row, bad)
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("%s %s, %s: got %v, want %q", s.Package, s.Family, opt.Name, err, want)
				}
				if !slices.Equal(m.Params(), before) {
					t.Errorf("%s: parameters changed after a failed Train", s.Package)
				}
			}
		}
	}
}
