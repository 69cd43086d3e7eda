// Package fl is the server side of federated learning: the strategies that
// aggregate the clients' locally trained parameters into the next global
// model, and the exact merge of the clients' statistics used to standardise
// features before round 1. It is pure math — no I/O — so the server can
// persist its state however it likes and resume after a restart.
package fl

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
)

// Update is one client's answer to a round: its locally trained parameters
// (the same flat layout as the global parameters) and the number of training
// examples behind them, which weights its vote.
type Update struct {
	Params      []float64
	NumExamples int
}

// Strategy turns a round's updates into the next global parameters.
//
// Adaptive strategies carry optimiser state from round to round; State
// serialises it and Restore loads it into a strategy built by NewStrategy
// with the same name and Params, so that a server resuming a session after a
// restart aggregates exactly as if it had never stopped. Strategies without
// state return nil and accept only an empty state.
type Strategy interface {
	Aggregate(global []float64, updates []Update) ([]float64, error)
	State() []byte
	Restore(state []byte) error
}

// Params are a strategy's hyperparameters, named as in Reddi et al. (2021),
// "Adaptive Federated Optimization" (arXiv:2003.00295), Algorithm 2.
type Params struct {
	// ServerLearningRate is η, the adaptive strategies' step size.
	ServerLearningRate float64
	// Beta1 is the momentum decay β1 of the adaptive strategies.
	Beta1 float64
	// Beta2 is the second-moment decay β2 of FedAdam and FedYogi.
	Beta2 float64
	// Tau is τ, the adaptivity: it keeps η·m/(√v+τ) finite when v ≈ 0 and
	// bounds each coordinate's step by about η·|m|/τ.
	Tau float64
	// Mu is FedProx's proximal coefficient μ. It acts on the clients (each
	// adds μ/2·‖w − w_global‖² to its loss); the server aggregates as FedAvg
	// and carries μ only so that one Params describes the whole strategy.
	Mu float64
}

// Strategy names (the session config's strategy.name).
const (
	FedAvg     = "fedavg"
	FedProx    = "fedprox"
	FedAdam    = "fedadam"
	FedYogi    = "fedyogi"
	FedAdagrad = "fedadagrad"
)

// DefaultParams returns the hyperparameters a strategy uses unless a session
// sets them. The adaptive defaults follow Flower's FedAdam, FedYogi and
// FedAdagrad (η = 0.1, 0.01 and 0.1, β1 = 0.9, β2 = 0.99), with τ = 1e-3
// for all three: Reddi et al. found τ around 1e-3 robust across tasks, and
// it keeps a parameter whose pseudo-gradient is ~0 from taking a unit step.
// FedAvg and FedProx have no server hyperparameters (η would be 1: the new
// model is the weighted mean); FedProx's μ has no default, the session must
// choose it.
func DefaultParams(name string) (Params, error) {
	switch name {
	case FedAvg, FedProx:
		return Params{ServerLearningRate: 1}, nil
	case FedAdam:
		return Params{ServerLearningRate: 0.1, Beta1: 0.9, Beta2: 0.99, Tau: 1e-3}, nil
	case FedYogi:
		return Params{ServerLearningRate: 0.01, Beta1: 0.9, Beta2: 0.99, Tau: 1e-3}, nil
	case FedAdagrad:
		return Params{ServerLearningRate: 0.1, Beta1: 0.9, Tau: 1e-3}, nil
	}
	return Params{}, unknownStrategy(name)
}

func unknownStrategy(name string) error {
	return fmt.Errorf("unknown strategy %q: use one of %s, %s, %s, %s, %s", name, FedAvg, FedProx, FedAdam, FedYogi, FedAdagrad)
}

// ParamsFromConfig returns DefaultParams(name) overridden by the keys present
// in m — the session config's strategy.params: "server_learning_rate",
// "beta1", "beta2", "tau", "mu". A key that is present counts even when 0,
// so Validate rejects an explicit 0 instead of silently replacing it.
func ParamsFromConfig(name string, m map[string]float64) (Params, error) {
	p, err := DefaultParams(name)
	if err != nil {
		return p, err
	}
	for k, v := range m {
		switch k {
		case "server_learning_rate":
			p.ServerLearningRate = v
		case "beta1":
			p.Beta1 = v
		case "beta2":
			p.Beta2 = v
		case "tau":
			p.Tau = v
		case "mu":
			p.Mu = v
		default:
			return p, fmt.Errorf("strategy %s: unknown parameter %q", name, k)
		}
	}
	return p, p.Validate(name)
}

// Validate checks that p makes sense for the named strategy.
func (p Params) Validate(name string) error {
	bad := func(field, want string, v float64) error {
		return fmt.Errorf("strategy %s: %s must be %s, got %g", name, field, want, v)
	}
	switch name {
	case FedAvg:
		return nil
	case FedProx:
		if !(p.Mu > 0) || math.IsInf(p.Mu, 1) {
			return bad("mu", "a positive number (e.g. 0.01)", p.Mu)
		}
		return nil
	case FedAdam, FedYogi, FedAdagrad:
	default:
		return unknownStrategy(name)
	}
	if !(p.ServerLearningRate > 0) || math.IsInf(p.ServerLearningRate, 1) {
		return bad("server_learning_rate", "a positive number", p.ServerLearningRate)
	}
	if !(p.Beta1 >= 0 && p.Beta1 < 1) {
		return bad("beta1", "in [0, 1)", p.Beta1)
	}
	if name != FedAdagrad && !(p.Beta2 > 0 && p.Beta2 < 1) {
		return bad("beta2", "in (0, 1)", p.Beta2)
	}
	if !(p.Tau > 0) || math.IsInf(p.Tau, 1) {
		return bad("tau", "a positive number (e.g. 1e-3)", p.Tau)
	}
	return nil
}

// NewStrategy returns the named strategy with hyperparameters p. The zero
// Params means DefaultParams(name); any other p is used as given and must
// pass Validate (build it with DefaultParams or ParamsFromConfig to override
// only some fields).
func NewStrategy(name string, p Params) (Strategy, error) {
	if p == (Params{}) {
		d, err := DefaultParams(name)
		if err != nil {
			return nil, err
		}
		p = d
	}
	if err := p.Validate(name); err != nil {
		return nil, err
	}
	switch name {
	case FedAvg, FedProx:
		return fedAvg{}, nil
	case FedAdam:
		return &adaptive{kind: kindAdam, p: p}, nil
	case FedYogi:
		return &adaptive{kind: kindYogi, p: p}, nil
	default: // FedAdagrad, as Validate accepted the name
		return &adaptive{kind: kindAdagrad, p: p}, nil
	}
}

// fedAvg is McMahan et al.'s FedAvg: the new model is the mean of the
// clients' models weighted by their example counts.
type fedAvg struct{}

func (fedAvg) Aggregate(global []float64, updates []Update) ([]float64, error) {
	total, err := validate(global, updates)
	if err != nil {
		return nil, err
	}
	out := make([]float64, len(global))
	for _, u := range updates {
		n := float64(u.NumExamples)
		for j, x := range u.Params {
			out[j] += n * x
		}
	}
	for j := range out {
		out[j] /= total
	}
	return out, nil
}

func (fedAvg) State() []byte { return nil }

func (fedAvg) Restore(state []byte) error {
	if len(state) != 0 {
		return errors.New("restoring fedavg: it keeps no state, got some")
	}
	return nil
}

type adaptiveKind byte

// The kinds are written into the state, so their values must not change.
const (
	kindAdam    adaptiveKind = 1
	kindYogi    adaptiveKind = 2
	kindAdagrad adaptiveKind = 3
)

func (k adaptiveKind) String() string {
	switch k {
	case kindAdam:
		return FedAdam
	case kindYogi:
		return FedYogi
	case kindAdagrad:
		return FedAdagrad
	}
	return fmt.Sprintf("adaptiveKind(%d)", byte(k))
}

// adaptive is FedAdam, FedYogi or FedAdagrad (Reddi et al. 2021, Algorithm 2)
// without bias correction, as in the paper. With x the global parameters and
// Δ = Σ_i w_i (x_i − x) the weighted pseudo-gradient (w_i = n_i / Σ n):
//
//	m ← β1·m + (1−β1)·Δ
//	v ← v + Δ²                          (FedAdagrad)
//	v ← β2·v + (1−β2)·Δ²                (FedAdam)
//	v ← v − (1−β2)·Δ²·sign(v − Δ²)      (FedYogi)
//	x ← x + η·m / (√v + τ)
//
// State starts at m = 0 and v = τ² (the paper's v₋₁ ≥ τ²) when the first
// round fixes the parameter count.
type adaptive struct {
	kind  adaptiveKind
	p     Params
	round uint64    // rounds aggregated so far
	m, v  []float64 // nil until the first round
}

func (s *adaptive) Aggregate(global []float64, updates []Update) ([]float64, error) {
	total, err := validate(global, updates)
	if err != nil {
		return nil, err
	}
	if s.m != nil && len(s.m) != len(global) {
		return nil, fmt.Errorf("%s: the global model has %d parameters but the strategy's state has %d", s.kind, len(global), len(s.m))
	}
	m, v := s.m, s.v
	if m == nil {
		m = make([]float64, len(global))
		v = make([]float64, len(global))
		for j := range v {
			v[j] = s.p.Tau * s.p.Tau
		}
	}
	// Work on copies so that a failed round leaves the state untouched.
	m, v = slices.Clone(m), slices.Clone(v)
	out := make([]float64, len(global))
	b1, b2 := s.p.Beta1, s.p.Beta2
	for j, x := range global {
		var delta float64
		for _, u := range updates {
			delta += float64(u.NumExamples) / total * (u.Params[j] - x)
		}
		d2 := delta * delta
		m[j] = b1*m[j] + (1-b1)*delta
		switch s.kind {
		case kindAdagrad:
			v[j] += d2
		case kindAdam:
			v[j] = b2*v[j] + (1-b2)*d2
		case kindYogi:
			v[j] -= (1 - b2) * d2 * sign(v[j]-d2)
		}
		out[j] = x + s.p.ServerLearningRate*m[j]/(math.Sqrt(v[j])+s.p.Tau)
		if math.IsNaN(out[j]) || math.IsInf(out[j], 0) {
			return nil, fmt.Errorf("%s: parameter %d became %g; the updates are too large for this server learning rate", s.kind, j, out[j])
		}
	}
	s.m, s.v = m, v
	s.round++
	return out, nil
}

func sign(x float64) float64 {
	switch {
	case x > 0:
		return 1
	case x < 0:
		return -1
	}
	return 0
}

// State layout, little-endian: version byte (1), kind byte, rounds uint64,
// n uint64, then n float64 of m and n of v. Raw float64 bits make the round
// trip exact, which is what lets a resumed session match an uninterrupted
// one bit for bit.
const stateVersion = 1

func (s *adaptive) State() []byte {
	n := len(s.m)
	b := make([]byte, 0, 2+8+8+16*n)
	b = append(b, stateVersion, byte(s.kind))
	b = binary.LittleEndian.AppendUint64(b, s.round)
	b = binary.LittleEndian.AppendUint64(b, uint64(n))
	for _, x := range s.m {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(x))
	}
	for _, x := range s.v {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(x))
	}
	return b
}

func (s *adaptive) Restore(b []byte) error {
	if len(b) < 18 {
		return fmt.Errorf("restoring %s: state is %d bytes, too short", s.kind, len(b))
	}
	if b[0] != stateVersion {
		return fmt.Errorf("restoring %s: unknown state version %d", s.kind, b[0])
	}
	if k := adaptiveKind(b[1]); k != s.kind {
		return fmt.Errorf("restoring %s: the state belongs to %s", s.kind, k)
	}
	round := binary.LittleEndian.Uint64(b[2:])
	n := binary.LittleEndian.Uint64(b[10:])
	rest := b[18:]
	if n > uint64(len(rest))/16 || uint64(len(rest)) != 16*n {
		return fmt.Errorf("restoring %s: state says %d parameters but holds %d bytes of them", s.kind, n, len(rest))
	}
	var m, v []float64
	if n > 0 || round > 0 {
		m, v = make([]float64, n), make([]float64, n)
		for j := range m {
			m[j] = math.Float64frombits(binary.LittleEndian.Uint64(rest[8*j:]))
			// #nosec G115 -- n was checked against the bytes held above
			v[j] = math.Float64frombits(binary.LittleEndian.Uint64(rest[8*(int(n)+j):]))
		}
	}
	s.round, s.m, s.v = round, m, v
	return nil
}

// validate checks a round's inputs and returns the total example count.
// Clients are named by their index in updates, the order the server
// collected them in, so that it can map a complaint back to a runner.
func validate(global []float64, updates []Update) (float64, error) {
	if len(global) == 0 {
		return 0, errors.New("aggregating: the global model has no parameters")
	}
	if len(updates) == 0 {
		return 0, errors.New("aggregating: no client updates")
	}
	for j, x := range global {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return 0, fmt.Errorf("aggregating: global parameter %d is %g", j, x)
		}
	}
	var total float64
	for i, u := range updates {
		if len(u.Params) != len(global) {
			return 0, fmt.Errorf("aggregating: client %d sent %d parameters, the model has %d", i, len(u.Params), len(global))
		}
		if u.NumExamples <= 0 {
			return 0, fmt.Errorf("aggregating: client %d reported %d training examples; need at least 1", i, u.NumExamples)
		}
		for j, x := range u.Params {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return 0, fmt.Errorf("aggregating: client %d sent a non-finite parameter (%g at index %d)", i, x, j)
			}
		}
		total += float64(u.NumExamples)
	}
	return total, nil
}

// Norm returns the Euclidean norm of params, scaled so that huge entries do
// not overflow: the server uses it to spot (and its policy to reject or clip)
// an update far from the others, which aggregation itself does not judge.
func Norm(params []float64) float64 {
	var scale float64
	for _, x := range params {
		scale = math.Max(scale, math.Abs(x))
	}
	if scale == 0 || math.IsInf(scale, 1) || math.IsNaN(scale) {
		return scale
	}
	var s float64
	for _, x := range params {
		r := x / scale
		s += r * r
	}
	return scale * math.Sqrt(s)
}

// Mean folds clients' updates into their mean weighted by example counts,
// one update at a time, so an aggregator holds one running sum instead of
// every client's parameters.
type Mean struct {
	sum   []float64
	total int64
	count int
}

// NewMean returns an empty mean of n parameters.
func NewMean(n int) *Mean { return &Mean{sum: make([]float64, n)} }

// Add folds in one update of numExamples examples.
func (m *Mean) Add(params []float64, numExamples int64) {
	n := float64(numExamples)
	for j, x := range params {
		m.sum[j] += n * x
	}
	m.total += numExamples
	m.count++
}

// Count is the number of updates folded in.
func (m *Mean) Count() int { return m.count }

// Update returns the mean as one update carrying every example: for every
// strategy, aggregating it equals aggregating the updates it folded.
func (m *Mean) Update() Update {
	out := make([]float64, len(m.sum))
	for j, s := range m.sum {
		out[j] = s / float64(m.total)
	}
	return Update{Params: out, NumExamples: int(m.total)}
}
