package ml

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"gonum.org/v1/gonum/mat"
)

// Model is a GLM or feed-forward network with its parameters. Predict, Loss
// and Evaluate may run concurrently with each other, but not with Train or
// SetParams, which write the parameters.
type Model struct {
	spec   Spec
	params []float64
	layers []layer
	head   head
}

// layer is one dense layer: the weights are the row-major in×out matrix at
// params[w:], the biases the out values at params[b:].
type layer struct {
	in, out int
	w, b    int
}

// Dataset is a design matrix with its targets. Y holds the class index
// (0 … len(Classes)-1) for classification and the value for regression.
type Dataset struct {
	X *mat.Dense // n×NumFeatures
	Y []float64  // n
	// Shuffled says the rows are already in random order (the runner
	// shuffles them once when it loads them). An SGD or Adam epoch then
	// visits them in shuffled blocks of blockRows consecutive rows rather
	// than one by one: batches are still random draws of the data, and
	// reading them runs at the memory's sequential speed, where rows
	// fetched one at a time in random order came about five times slower.
	Shuffled bool
}

// blockRows is how many consecutive rows of a Shuffled dataset an epoch
// keeps together: 8 rows of 30 features are 1.9 kB, enough for the
// hardware prefetcher to stream them.
const blockRows = 8

// NewDataset wraps row-major features (len(y) rows of numFeatures values)
// without copying them.
func NewDataset(x []float64, numFeatures int, y []float64) (Dataset, error) {
	if numFeatures < 1 {
		return Dataset{}, fmt.Errorf("ml: dataset needs at least one feature, got %d", numFeatures)
	}
	if len(x) != len(y)*numFeatures {
		return Dataset{}, fmt.Errorf("ml: %d feature values do not make %d rows of %d features", len(x), len(y), numFeatures)
	}
	if len(y) == 0 {
		return Dataset{}, nil
	}
	return Dataset{X: mat.NewDense(len(y), numFeatures, x), Y: y}, nil
}

// Len is the number of rows.
func (d Dataset) Len() int { return len(d.Y) }

// NewModel builds the model s describes with deterministic initial parameters
// for seed: zeros for a GLM (every client then starts from the same convex
// problem), He-normal weights for ReLU layers and Glorot-uniform weights for
// tanh and output layers of an ffnet, zero biases.
func NewModel(s Spec, seed int64) (*Model, error) {
	s, err := s.normalize()
	if err != nil {
		return nil, err
	}
	m := &Model{spec: s}
	widths := s.widths()
	off := 0
	for i := 1; i < len(widths); i++ {
		ly := layer{in: widths[i-1], out: widths[i], w: off}
		ly.b = off + ly.in*ly.out
		off = ly.b + ly.out
		m.layers = append(m.layers, ly)
	}
	m.params = make([]float64, off)
	m.head = newHead(s)

	if s.Package == PackageFFNet {
		// #nosec G115 G404 -- reproducible initial weights from the session seed
		rng := rand.New(rand.NewPCG(uint64(seed), 0x51105eed))
		for i, ly := range m.layers {
			w := m.params[ly.w:ly.b]
			hidden := i < len(m.layers)-1
			if hidden && s.Activation == ActivationReLU {
				std := math.Sqrt(2 / float64(ly.in))
				for j := range w {
					w[j] = std * rng.NormFloat64()
				}
				continue
			}
			limit := math.Sqrt(6 / float64(ly.in+ly.out))
			for j := range w {
				w[j] = limit * (2*rng.Float64() - 1)
			}
		}
	}
	return m, nil
}

// LoadModel rebuilds a trained model from its spec and parameters, as stored
// in a model document.
func LoadModel(s Spec, params []float64) (*Model, error) {
	m, err := NewModel(s, 0)
	if err != nil {
		return nil, err
	}
	if err := m.SetParams(params); err != nil {
		return nil, err
	}
	return m, nil
}

// Spec returns the model's normalised spec (defaults filled in), a copy.
func (m *Model) Spec() Spec {
	s := m.spec
	s.Classes = append([]string(nil), s.Classes...)
	s.HiddenLayers = append([]int(nil), s.HiddenLayers...)
	return s
}

// NumParams is the length of the parameter vector.
func (m *Model) NumParams() int { return len(m.params) }

// Params returns a copy of the parameter vector (layout in the package doc).
func (m *Model) Params() []float64 { return append([]float64(nil), m.params...) }

// SetParams replaces the parameters with a copy of p, which must have
// NumParams finite values.
func (m *Model) SetParams(p []float64) error {
	if len(p) != len(m.params) {
		return fmt.Errorf("ml: got %d parameters, the model has %d", len(p), len(m.params))
	}
	if i := firstNonFinite(p); i >= 0 {
		return fmt.Errorf("ml: parameter %d is %g; parameters must be finite", i, p[i])
	}
	copy(m.params, p)
	return nil
}

// predictionCols is the width of Predict's output.
func (m *Model) predictionCols() int {
	if m.spec.Task == Classification {
		return len(m.spec.Classes)
	}
	return 1
}

// Predict returns, for each row of x, the class probabilities in the order of
// Spec.Classes (n×k; binary models give two columns) for classification, or
// the predicted mean (n×1, the inverse link of the linear predictor) for
// regression.
func (m *Model) Predict(x *mat.Dense) (*mat.Dense, error) {
	n, err := m.checkFeatures(x)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, errors.New("ml: no rows to predict")
	}
	k := m.predictionCols()
	out := make([]float64, n*k)
	xs := x.RawMatrix()
	ws := m.newWorkspace(min(n, maxChunkRows), false)
	for lo := 0; lo < n; lo += ws.rows {
		b := min(ws.rows, n-lo)
		eta := m.forward(ws, rowsOf(xs, lo, b), nil)
		m.head.predict(eta, out[lo*k:(lo+b)*k])
	}
	return mat.NewDense(n, k, out), nil
}

// Loss is the mean data loss on d: log loss for classification, mean unit
// deviance for regression (MSE for gaussian). Penalties are not included, so
// it is comparable across regularisation settings.
func (m *Model) Loss(d Dataset) (float64, error) {
	n, err := m.checkData(d)
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, errors.New("ml: no rows to compute the loss on")
	}
	return m.meanLoss(m.newWorkspace(min(n, maxChunkRows), false), d.X.RawMatrix(), d.Y), nil
}

// meanLoss evaluates the data loss in inference mode (no dropout).
func (m *Model) meanLoss(ws *workspace, x rawMatrix, y []float64) float64 {
	n := len(y)
	sum := 0.0
	for lo := 0; lo < n; lo += ws.rows {
		b := min(ws.rows, n-lo)
		eta := m.forward(ws, rowsOf(x, lo, b), nil)
		sum += m.head.loss(eta, y[lo:lo+b])
	}
	return sum / float64(n)
}

// Evaluate predicts d and scores the predictions with Evaluate.
func (m *Model) Evaluate(d Dataset) (Metrics, error) {
	if _, err := m.checkData(d); err != nil {
		return nil, err
	}
	pred, err := m.Predict(d.X)
	if err != nil {
		return nil, err
	}
	return Evaluate(m.spec.Task, len(m.spec.Classes), d.Y, pred)
}

// checkFeatures checks x's shape and that every value is finite, returning
// the number of rows.
func (m *Model) checkFeatures(x *mat.Dense) (int, error) {
	r, err := m.checkShape(x)
	if err != nil || r == 0 {
		return r, err
	}
	return r, checkFinite(x)
}

// checkShape checks that x has the model's number of features, returning
// the number of rows.
func (m *Model) checkShape(x *mat.Dense) (int, error) {
	if x == nil || x.IsEmpty() {
		return 0, nil
	}
	r, c := x.Dims()
	if c != m.spec.NumFeatures {
		return 0, fmt.Errorf("ml: data has %d features, the model expects %d", c, m.spec.NumFeatures)
	}
	return r, nil
}

// checkFinite reports the first NaN or ±Inf feature of x.
func checkFinite(x *mat.Dense) error {
	r, c := x.Dims()
	raw := x.RawMatrix()
	if raw.Stride == c && allFinite(raw.Data[:r*c]) {
		return nil
	}
	for i := 0; i < r; i++ {
		if j := firstNonFinite(raw.Data[i*raw.Stride : i*raw.Stride+c]); j >= 0 {
			return fmt.Errorf("ml: feature %d of row %d is %g; impute or drop missing values before training or prediction", j, i, raw.Data[i*raw.Stride+j])
		}
	}
	return nil
}

// checkData checks features and targets, returning the number of rows.
func (m *Model) checkData(d Dataset) (int, error) {
	n, err := m.checkFeatures(d.X)
	if err != nil {
		return 0, err
	}
	return n, m.checkTargets(d, n)
}

// checkTargets checks that d has n valid targets.
func (m *Model) checkTargets(d Dataset, n int) error {
	if len(d.Y) != n {
		return fmt.Errorf("ml: %d feature rows but %d targets", n, len(d.Y))
	}
	for i, y := range d.Y {
		if err := m.head.checkTarget(y); err != nil {
			return fmt.Errorf("ml: target of row %d: %w", i, err)
		}
	}
	return nil
}

// firstNonFinite returns the index of the first NaN or ±Inf in v, or -1.
func firstNonFinite(v []float64) int {
	if allFinite(v) {
		return -1
	}
	for i, x := range v {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return i
		}
	}
	return -1
}

// allFinite reports whether v holds no NaN or ±Inf. x−x is 0 for a finite x
// and NaN otherwise, so four running sums check without a branch per value:
// the compares of a per-value IsNaN/IsInf took a fifth of a one-epoch Train
// in checking its data.
func allFinite(v []float64) bool {
	var s0, s1, s2, s3 float64
	for ; len(v) >= 4; v = v[4:] {
		s0 += v[0] - v[0]
		s1 += v[1] - v[1]
		s2 += v[2] - v[2]
		s3 += v[3] - v[3]
	}
	for _, x := range v {
		s0 += x - x
	}
	return s0+s1+s2+s3 == 0
}
