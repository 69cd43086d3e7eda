package fl

import (
	"bytes"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

func closeTo(got, want []float64, tol float64) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if math.Abs(got[i]-want[i]) > tol*math.Max(1, math.Abs(want[i])) {
			return false
		}
	}
	return true
}

func TestFedAvgWeightedMean(t *testing.T) {
	for _, name := range []string{FedAvg, FedProx} {
		s, err := NewStrategy(name, Params{Mu: 0.01})
		if err != nil {
			t.Fatal(err)
		}
		global := []float64{100, 100} // FedAvg ignores the old model
		got, err := s.Aggregate(global, []Update{
			{Params: []float64{1, 2}, NumExamples: 1},
			{Params: []float64{3, -2}, NumExamples: 3},
		})
		if err != nil {
			t.Fatal(err)
		}
		// (1·1 + 3·3)/4 = 2.5 and (1·2 + 3·(−2))/4 = −1, exactly.
		if want := []float64{2.5, -1}; got[0] != want[0] || got[1] != want[1] {
			t.Errorf("%s: got %v, want %v", name, got, want)
		}
	}
	s, _ := NewStrategy(FedAvg, Params{})
	got, _ := s.Aggregate([]float64{0}, []Update{
		{Params: []float64{1}, NumExamples: 10},
		{Params: []float64{2}, NumExamples: 10},
		{Params: []float64{4}, NumExamples: 20},
	})
	if got[0] != 2.75 { // (10 + 20 + 80)/40
		t.Errorf("three clients: got %v, want 2.75", got[0])
	}
}

// The adaptive strategies are checked over two rounds against values worked
// out by hand from Reddi et al. (2021), Algorithm 2, with
// η = 1, β1 = 0.5, β2 = 0.5, τ = 1 (so v starts at τ² = 1), x0 = (0, 0),
// pseudo-gradients Δ1 = (1, −7) in round 1 and Δ2 = (7, 5) in round 2 —
// numbers chosen so that most square roots are whole. Each round has two
// clients, with 1 and 3 examples, whose offsets from the global model
// average to Δ with those weights: (Δ + 3d)·1/4 + (Δ − d)·3/4 = Δ.
var (
	adaptiveParams = Params{ServerLearningRate: 1, Beta1: 0.5, Beta2: 0.5, Tau: 1}
	delta1         = []float64{1, -7}
	delta2         = []float64{7, 5}
)

func roundUpdates(global, delta []float64) []Update {
	d := []float64{0.5, -1.25} // any spread: it must cancel
	a, b := make([]float64, len(global)), make([]float64, len(global))
	for j := range global {
		a[j] = global[j] + delta[j] + 3*d[j]
		b[j] = global[j] + delta[j] - d[j]
	}
	return []Update{{Params: a, NumExamples: 1}, {Params: b, NumExamples: 3}}
}

func TestAdaptiveTwoRounds(t *testing.T) {
	sqrt := math.Sqrt
	for _, c := range []struct {
		name  string
		want1 []float64
		want2 []float64
	}{
		{
			// m1 = 0.5·Δ1 = (0.5, −3.5); v1 = 0.5·1 + 0.5·Δ1² = (1, 25)
			// x1 = (0.5/(1+1), −3.5/(5+1)) = (0.25, −7/12)
			// m2 = 0.5·m1 + 0.5·Δ2 = (3.75, 0.75); v2 = 0.5·v1 + 0.5·Δ2² = (25, 25)
			// x2 = x1 + (3.75/6, 0.75/6) = (0.875, −11/24)
			name:  FedAdam,
			want1: []float64{0.25, -7.0 / 12},
			want2: []float64{0.875, -11.0 / 24},
		},
		{
			// v ← v + Δ²: v1 = (2, 50), x1 = (0.5/(√2+1), −3.5/(√50+1))
			// v2 = (2+49, 50+25) = (51, 75), x2 = x1 + (3.75/(√51+1), 0.75/(√75+1))
			name:  FedAdagrad,
			want1: []float64{0.5 / (sqrt(2) + 1), -3.5 / (sqrt(50) + 1)},
			want2: []float64{0.5/(sqrt(2)+1) + 3.75/(sqrt(51)+1), -3.5/(sqrt(50)+1) + 0.75/(sqrt(75)+1)},
		},
		{
			// v ← v − 0.5·Δ²·sign(v − Δ²):
			// round 1: (1 − 0.5·1·sign(0), 1 − 0.5·49·sign(−48)) = (1, 25.5)
			//   x1 = (0.5/(1+1), −3.5/(√25.5+1))
			// round 2: (1 − 0.5·49·sign(−48), 25.5 − 0.5·25·sign(0.5)) = (25.5, 13)
			//   x2 = x1 + (3.75/(√25.5+1), 0.75/(√13+1))
			// (Adam would have v2 = 25 in the second coordinate: Yogi shrinks
			// v additively when Δ² falls below it.)
			name:  FedYogi,
			want1: []float64{0.25, -3.5 / (sqrt(25.5) + 1)},
			want2: []float64{0.25 + 3.75/(sqrt(25.5)+1), -3.5/(sqrt(25.5)+1) + 0.75/(sqrt(13)+1)},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := NewStrategy(c.name, adaptiveParams)
			if err != nil {
				t.Fatal(err)
			}
			x0 := []float64{0, 0}
			x1, err := s.Aggregate(x0, roundUpdates(x0, delta1))
			if err != nil {
				t.Fatal(err)
			}
			if !closeTo(x1, c.want1, 1e-12) {
				t.Errorf("round 1: got %v, want %v", x1, c.want1)
			}
			x2, err := s.Aggregate(x1, roundUpdates(x1, delta2))
			if err != nil {
				t.Fatal(err)
			}
			if !closeTo(x2, c.want2, 1e-12) {
				t.Errorf("round 2: got %v, want %v", x2, c.want2)
			}
		})
	}
}

// TestStateRoundTrip: two rounds in one strategy must equal one round,
// persist, restore into a fresh strategy, and a second round — bit for bit.
func TestStateRoundTrip(t *testing.T) {
	for _, name := range []string{FedAdam, FedYogi, FedAdagrad, FedAvg} {
		t.Run(name, func(t *testing.T) {
			p, _ := DefaultParams(name)
			x0 := []float64{0.3, -1.2, 4}
			d1, d2 := []float64{0.1, -0.02, 0.5}, []float64{-0.03, 0.2, 0.01}

			a, _ := NewStrategy(name, p)
			a1, _ := a.Aggregate(x0, roundUpdates3(x0, d1))
			a2, err := a.Aggregate(a1, roundUpdates3(a1, d2))
			if err != nil {
				t.Fatal(err)
			}

			b, _ := NewStrategy(name, p)
			b1, _ := b.Aggregate(x0, roundUpdates3(x0, d1))
			saved := bytes.Clone(b.State())
			c, _ := NewStrategy(name, p) // "after the restart"
			if err := c.Restore(saved); err != nil {
				t.Fatal(err)
			}
			c2, err := c.Aggregate(b1, roundUpdates3(b1, d2))
			if err != nil {
				t.Fatal(err)
			}
			for j := range a2 {
				if math.Float64bits(a2[j]) != math.Float64bits(c2[j]) {
					t.Fatalf("resumed round 2 = %v, uninterrupted %v", c2, a2)
				}
			}
			if !bytes.Equal(a.State(), c.State()) {
				t.Errorf("states differ after round 2")
			}
		})
	}
}

func roundUpdates3(global, delta []float64) []Update {
	var a, b []float64
	for j := range global {
		a = append(a, global[j]+delta[j]+0.3)
		b = append(b, global[j]+delta[j]-0.1)
	}
	return []Update{{Params: a, NumExamples: 10}, {Params: b, NumExamples: 30}}
}

func TestRestoreRejectsForeignState(t *testing.T) {
	adam, _ := NewStrategy(FedAdam, Params{})
	x := []float64{1, 2}
	if _, err := adam.Aggregate(x, roundUpdates(x, delta1)); err != nil {
		t.Fatal(err)
	}
	state := adam.State()

	yogi, _ := NewStrategy(FedYogi, Params{})
	if err := yogi.Restore(state); err == nil || !strings.Contains(err.Error(), "fedadam") {
		t.Errorf("restoring Adam's state into Yogi: err = %v", err)
	}
	fresh, _ := NewStrategy(FedAdam, Params{})
	if err := fresh.Restore(state[:len(state)-3]); err == nil {
		t.Error("restoring a truncated state: no error")
	}
	if err := fresh.Restore(nil); err == nil {
		t.Error("restoring an empty state into an adaptive strategy: no error")
	}
	avg, _ := NewStrategy(FedAvg, Params{})
	if avg.State() != nil || avg.Restore(nil) != nil {
		t.Error("fedavg should have no state")
	}
	if err := avg.Restore(state); err == nil {
		t.Error("fedavg accepted an adaptive state")
	}
	// A model of another size than the restored state is refused, not mangled.
	if err := fresh.Restore(state); err != nil {
		t.Fatal(err)
	}
	if _, err := fresh.Aggregate([]float64{1, 2, 3}, []Update{{Params: []float64{1, 2, 3}, NumExamples: 1}}); err == nil {
		t.Error("aggregating 3 parameters with a 2-parameter state: no error")
	}
}

func TestAggregateValidation(t *testing.T) {
	global := []float64{0, 0}
	ok := Update{Params: []float64{1, 1}, NumExamples: 5}
	for _, c := range []struct {
		name    string
		global  []float64
		updates []Update
		want    string
	}{
		{"NaN", global, []Update{ok, {Params: []float64{1, math.NaN()}, NumExamples: 5}}, "client 1 sent a non-finite parameter (NaN at index 1)"},
		{"Inf", global, []Update{{Params: []float64{math.Inf(-1), 0}, NumExamples: 5}, ok}, "client 0 sent a non-finite parameter (-Inf at index 0)"},
		{"length", global, []Update{ok, ok, {Params: []float64{1}, NumExamples: 5}}, "client 2 sent 1 parameters, the model has 2"},
		{"no examples", global, []Update{{Params: []float64{1, 1}}}, "client 0 reported 0 training examples"},
		{"no updates", global, nil, "no client updates"},
		{"empty model", nil, []Update{ok}, "no parameters"},
	} {
		for _, name := range []string{FedAvg, FedAdam} {
			s, _ := NewStrategy(name, Params{})
			_, err := s.Aggregate(c.global, c.updates)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s/%s: err = %v, want it to say %q", name, c.name, err, c.want)
			}
		}
	}
	// A rejected round leaves an adaptive strategy's state as it was.
	s, _ := NewStrategy(FedAdam, Params{})
	before := s.State()
	s.Aggregate(global, []Update{{Params: []float64{math.NaN(), 0}, NumExamples: 1}})
	if !bytes.Equal(before, s.State()) {
		t.Error("a rejected round changed the state")
	}
}

func TestParams(t *testing.T) {
	if _, err := NewStrategy("fedsgd", Params{}); err == nil || !strings.Contains(err.Error(), "fedavg") {
		t.Errorf("unknown strategy: err = %v, want the list of strategies", err)
	}
	if _, err := NewStrategy(FedProx, Params{}); err == nil || !strings.Contains(err.Error(), "mu") {
		t.Errorf("fedprox without mu: err = %v", err)
	}
	p, err := ParamsFromConfig(FedYogi, map[string]float64{"server_learning_rate": 0.05})
	if err != nil {
		t.Fatal(err)
	}
	if want := (Params{ServerLearningRate: 0.05, Beta1: 0.9, Beta2: 0.99, Tau: 1e-3}); p != want {
		t.Errorf("ParamsFromConfig = %+v, want %+v", p, want)
	}
	// An explicit 0 is honoured where it is meaningful (no momentum) …
	if p, err := ParamsFromConfig(FedAdagrad, map[string]float64{"beta1": 0}); err != nil || p.Beta1 != 0 {
		t.Errorf("fedadagrad beta1=0: %+v, %v", p, err)
	}
	// … and refused where it is not, rather than replaced by a default.
	if _, err := ParamsFromConfig(FedAdam, map[string]float64{"tau": 0}); err == nil || !strings.Contains(err.Error(), "tau") {
		t.Errorf("tau=0: err = %v", err)
	}
	if _, err := ParamsFromConfig(FedAdam, map[string]float64{"beta2": 1}); err == nil {
		t.Error("beta2=1: no error")
	}
	if _, err := ParamsFromConfig(FedAdam, map[string]float64{"momentum": 0.9}); err == nil {
		t.Error("unknown key: no error")
	}
	if p, err := ParamsFromConfig(FedProx, map[string]float64{"mu": 0.01}); err != nil || p.Mu != 0.01 {
		t.Errorf("fedprox mu: %+v, %v", p, err)
	}
}

func TestNorm(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3, -4}, 5},
		{[]float64{1e200, -1e200}, 1e200 * math.Sqrt2}, // squares would overflow
		{[]float64{3e-200, 4e-200}, 5e-200},            // squares would underflow
	} {
		if got := Norm(c.in); math.Abs(got-c.want) > 1e-15*c.want {
			t.Errorf("Norm(%v) = %g, want %g", c.in, got, c.want)
		}
	}
	if !math.IsNaN(Norm([]float64{1, math.NaN()})) || !math.IsInf(Norm([]float64{math.Inf(-1)}), 1) {
		t.Error("Norm should propagate NaN and Inf")
	}
}

// TestMeanFoldsUpdates: for every strategy, aggregating the folded mean of
// the updates gives the same model as aggregating the updates, round after
// round (adaptive state included).
func TestMeanFoldsUpdates(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, name := range []string{FedAvg, FedProx, FedAdam, FedYogi, FedAdagrad} {
		p, _ := DefaultParams(name)
		if name == FedProx {
			p.Mu = 0.01
		}
		direct, err := NewStrategy(name, p)
		if err != nil {
			t.Fatal(err)
		}
		folded, _ := NewStrategy(name, p)
		global := []float64{0.5, -1, 2, 0}
		gd, gf := global, global
		for round := 0; round < 3; round++ {
			var updates []Update
			m := NewMean(len(global))
			for c := 0; c < 4; c++ {
				p := make([]float64, len(global))
				for j := range p {
					p[j] = gd[j] + rng.NormFloat64()
				}
				n := 1 + rng.IntN(100)
				updates = append(updates, Update{Params: p, NumExamples: n})
				m.Add(p, int64(n))
			}
			var err error
			if gd, err = direct.Aggregate(gd, updates); err != nil {
				t.Fatal(err)
			}
			if gf, err = folded.Aggregate(gf, []Update{m.Update()}); err != nil {
				t.Fatal(err)
			}
			if m.Count() != 4 {
				t.Fatalf("Count = %d", m.Count())
			}
			for j := range gd {
				if math.Abs(gd[j]-gf[j]) > 1e-12*(1+math.Abs(gd[j])) {
					t.Fatalf("%s round %d: parameter %d is %g aggregated directly, %g from the folded mean", name, round, j, gd[j], gf[j])
				}
			}
			gf = gd // the same global model next round
		}
	}
}
